"""The tiered verifier's own bookkeeping: verdicts known without waiting, one store read per burst, waiters."""

from __future__ import annotations

import asyncio
import socket
import sqlite3

import pytest

from speciarl_verl import Category
from speciarl_verl.judge import JudgeError, JudgeSettings, TieredVerifier, VerificationRequest
from speciarl_verl.judge.sqlite_store import SQLiteVerdictStore

C = Category


def settings(endpoints, tmp_path=None, kind="llm"):
    cache = {"backend": "sqlite", "path": str(tmp_path / "verdicts.sqlite")} if tmp_path else {"backend": "none"}
    llm = {"model": "judge-under-test", "endpoints": endpoints, "max_retries": 0}
    return JudgeSettings.from_mapping({"kind": kind, "llm": llm, "cache": cache})


def pair(prediction, truth="Laysan Albatross"):
    return VerificationRequest(truth, prediction, "cub200", domain_nouns=("bird", "birds"))


def test_offline_verdicts_are_known_without_waiting():
    verifier = TieredVerifier(JudgeSettings.from_mapping({"kind": "offline", "deferred_outcome": "abstain"}))
    assert verifier.recall(pair("Laysan albatross")) == verifier.recall(pair("laysan  albatross"))
    assert (verifier.recall(pair("Laysan albatross")).category, verifier.recall(pair("bird")).source) == (
        C.SPECIFIC,
        "offline",
    )
    deferred = verifier.recall(pair("tern"))
    assert (deferred.category, deferred.source) == (C.ABSTAIN, "deferred")


def test_a_judged_pair_is_then_known_without_waiting(fake_judge):
    server = fake_judge()
    verifier = TieredVerifier(settings([server.url]))
    assert verifier.recall(pair("gull")) is None

    async def go():
        try:
            return await verifier.verify([pair("gull")]), await verifier.verify([pair("gull")])
        finally:
            await verifier.aclose()

    first, second = asyncio.run(go())
    assert (first[0].source, second[0].source, server.calls) == ("llm", "cache", 1)
    known = verifier.recall(pair("gull"))
    assert (known.category, known.source) == (first[0].category, "cache")
    auto = TieredVerifier(settings([server.url], kind="auto"))
    assert auto.recall(pair("bird")).source == "offline" and auto.recall(pair("gull")) is None


def test_a_fresh_worker_reads_a_burst_of_cached_pairs_in_one_store_call(fake_judge, tmp_path):
    server = fake_judge()
    predictions = [f"gull {i}" for i in range(520)]  # more than one SQLite statement holds

    async def judge_all(verifier, per_pair):
        # as verl calls the reward manager, and it the verifier: one pair per rollout, all at once
        try:
            return await asyncio.gather(*(verifier.verify_one(pair(p)) for p in predictions for _ in range(per_pair)))
        finally:
            await verifier.aclose()

    asyncio.run(judge_all(TieredVerifier(settings([server.url], tmp_path)), 1))
    assert server.calls == 520

    fresh = TieredVerifier(settings([server.url], tmp_path))
    reads = []
    get_many = fresh.store.get_many

    async def counted(keys):
        reads.append(len(keys))
        return await get_many(keys)

    fresh.store.get_many = counted
    verdicts = asyncio.run(judge_all(fresh, 5))
    assert reads == [520] and server.calls == 520
    assert {v.source for v in verdicts} == {"cache"} and len(verdicts) == 2600


def test_a_cancelled_duplicate_leaves_the_others_their_verdict(fake_judge):
    server = fake_judge(latency_s=0.2)
    verifier = TieredVerifier(settings([server.url]))

    async def go():
        try:
            calls = [asyncio.ensure_future(verifier.verify([pair("gull")])) for _ in range(4)]
            await asyncio.sleep(0.05)  # all four are waiting on the one call in flight
            calls[2].cancel()
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await verifier.aclose()

    results = asyncio.run(go())
    assert isinstance(results[2], asyncio.CancelledError)
    kept = [r[0] for i, r in enumerate(results) if i != 2]
    assert [v.source for v in kept] == ["llm", "dedup", "dedup"] and len({v.category for v in kept}) == 1
    assert server.calls == 1


@pytest.mark.parametrize("kind", ["llm", "auto", "offline"])
def test_verify_one_gives_what_a_batch_of_one_gives(fake_judge, tmp_path, kind):
    server = fake_judge()
    predictions = ["Laysan Albatross", "bird", "gull", "tern", "gull", "None"]

    async def go(verifier, one):
        try:
            if one:
                return await asyncio.gather(*(verifier.verify_one(pair(p)) for p in predictions))
            return [(await verifier.verify([pair(p)]))[0] for p in predictions]
        finally:
            await verifier.aclose()

    batch = asyncio.run(go(TieredVerifier(settings([server.url], tmp_path / "batch", kind)), one=False))
    calls = server.calls
    single = asyncio.run(go(TieredVerifier(settings([server.url], tmp_path / "single", kind)), one=True))
    assert [v.category for v in single] == [v.category for v in batch]
    # one call per unique pair the rule tier leaves open, whichever way they are asked
    assert server.calls - calls == calls == {"llm": 5, "auto": 2, "offline": 0}[kind]
    if kind == "llm":  # the second "gull" waited for the first one's call
        assert [v.source for v in single].count("dedup") == 1


def test_verify_one_raises_a_judge_error_naming_the_endpoint(fake_judge):
    server = fake_judge(fault="status:400")
    verifier = TieredVerifier(settings([server.url]))

    async def go():
        try:
            return await verifier.verify_one(pair("gull"))
        finally:
            await verifier.aclose()

    with pytest.raises(JudgeError, match=r"judge failed for 1 of 1 pair\(s\): judge endpoint http://127") as failed:
        asyncio.run(go())
    assert failed.value.verdicts == [None] and failed.value.endpoint.startswith("http://127.0.0.1")


# ---------------------------------------------------------------- every failure is a judge failure


def unused_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(verifier, *requests, one=True):
    async def go():
        try:
            if one:
                return await verifier.verify_one(requests[0])
            return await verifier.verify(list(requests))
        finally:
            await verifier.aclose()

    return asyncio.run(go())


def test_an_unreachable_redis_cache_is_a_judge_error_naming_the_cache_without_its_password(fake_judge):
    server = fake_judge()
    port = unused_port()  # nobody listens: connection refused
    values = {
        "kind": "auto",
        "llm": {"model": "judge-under-test", "endpoints": [server.url], "max_retries": 0},
        "cache": {"backend": "redis", "redis_url": f"redis://:s3cret@127.0.0.1:{port}/0", "reconnect_s": 0},
    }
    with pytest.raises(JudgeError) as failed:
        run(TieredVerifier(JudgeSettings.from_mapping(values)), pair("gull"))
    assert f"127.0.0.1:{port}" in str(failed.value) and "Redis" in str(failed.value)
    assert "s3cret" not in str(failed.value)
    # in a batch, what the rule tier decided is still reached; the pair that needed the cache is not
    with pytest.raises(JudgeError) as batch:
        run(TieredVerifier(JudgeSettings.from_mapping(values)), pair("bird"), pair("gull"), one=False)
    assert [v and v.category for v in batch.value.verdicts] == [C.GENERIC, None]
    assert server.calls == 0


def test_a_locked_sqlite_cache_is_a_judge_error_naming_the_file(fake_judge, tmp_path):
    server = fake_judge()
    path = tmp_path / "verdicts.sqlite"

    async def create():
        store = SQLiteVerdictStore(path)
        await store.count()  # the schema exists
        await store.aclose()

    asyncio.run(create())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock past our busy timeout
    try:
        verifier = TieredVerifier(settings([server.url], tmp_path), store=SQLiteVerdictStore(path, busy_timeout_s=0.1))
        with pytest.raises(JudgeError, match="database is locked") as failed:
            run(verifier, pair("gull"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(path) in str(failed.value)


@pytest.mark.parametrize("where", ["llm.api_key_env", "cache.redis_password_env"])
def test_an_unset_secret_is_a_judge_error_naming_the_variable(fake_judge, monkeypatch, where):
    server = fake_judge()
    monkeypatch.delenv("SPECIARL_TEST_UNSET_SECRET", raising=False)
    values = {"kind": "llm", "llm": {"model": "m", "endpoints": [server.url], "max_retries": 0}}
    if where == "llm.api_key_env":
        values["llm"]["api_key_env"] = "SPECIARL_TEST_UNSET_SECRET"
        values["cache"] = {"backend": "none"}
    else:
        values["cache"] = {"backend": "redis", "redis_password_env": "SPECIARL_TEST_UNSET_SECRET"}
    judge = JudgeSettings.from_mapping(values)
    with pytest.raises(ValueError, match="SPECIARL_TEST_UNSET_SECRET"):
        judge.check_secrets()  # what a reward worker runs at start-up
    with pytest.raises(JudgeError, match=f"judge.{where} names 'SPECIARL_TEST_UNSET_SECRET', which is not set"):
        run(TieredVerifier(judge), pair("gull"))
    assert server.calls == 0


# ---------------------------------------------------------------- the cache key is what the judge reads


def test_two_predictions_the_judge_reads_differently_never_share_a_verdict(fake_judge, tmp_path):
    server = fake_judge()
    # cut before cleaning, both would be 200 "!" and nothing else; the judge reads the species names
    albatross, crow = "!" * 200 + " laysan albatross", "!" * 200 + " crow"

    async def go():
        verifier = TieredVerifier(settings([server.url], tmp_path))
        try:
            return [await verifier.verify_one(pair(p)) for p in (albatross, crow, albatross)]
        finally:
            await verifier.aclose()

    verdicts = asyncio.run(go())
    assert [v.category for v in verdicts] == [C.SPECIFIC, C.WRONG, C.SPECIFIC]
    assert [v.source for v in verdicts] == ["llm", "llm", "cache"]
    assert server.calls == 2
    # what the judge read is what the cache is keyed by: the cleaned text, then the cut
    read = [r["messages"][-1]["content"] for r in server.requests]
    assert "laysan albatross" in read[0] and "crow" in read[1] and "!" not in read[0] + read[1]


def test_answers_the_judge_reads_alike_share_one_call(fake_judge):
    server = fake_judge()
    verifier = TieredVerifier(settings([server.url]))
    first, second = run(verifier, pair("Gull!"), pair("  gull "), one=False)
    assert (first.source, second.source, server.calls) == ("llm", "dedup", 1)


# ---------------------------------------------------------------- cancellation and event loops


def test_cancelling_the_caller_that_started_a_call_leaves_the_others_their_verdict(fake_judge):
    server = fake_judge(latency_s=0.3)
    verifier = TieredVerifier(settings([server.url]))

    async def go():
        try:
            owner = asyncio.ensure_future(verifier.verify_one(pair("gull")))
            await asyncio.sleep(0.05)  # the owner's call is in flight
            others = [asyncio.ensure_future(verifier.verify_one(pair("gull"))) for _ in range(2)]
            await asyncio.sleep(0.05)
            owner.cancel()
            return await asyncio.gather(owner, *others, return_exceptions=True)
        finally:
            await verifier.aclose()

    owner, *others = asyncio.run(go())
    assert isinstance(owner, asyncio.CancelledError)
    assert [(v.category, v.source) for v in others] == [(C.WRONG, "dedup")] * 2
    assert server.calls == 1


def test_a_cancelled_waiter_on_another_workers_pair_does_not_stop_the_others(fake_judge, tmp_path):
    server = fake_judge()
    path = tmp_path / "verdicts.sqlite"
    verifier = TieredVerifier(settings([server.url], tmp_path))
    other = SQLiteVerdictStore(path)  # another worker, which holds the claims on both pairs
    keys = [verifier.key(pair("gull")), verifier.key(pair("tern"))]

    async def go():
        try:
            await other.claim_many(keys, "other-worker", 60.0)
            gull = asyncio.ensure_future(verifier.verify_one(pair("gull")))
            tern = asyncio.ensure_future(verifier.verify_one(pair("tern")))
            await asyncio.sleep(0.2)  # both wait for the other worker's verdicts
            gull.cancel()
            await asyncio.sleep(0.2)
            await other.put_many({keys[0]: "wrong", keys[1]: "abstain"}, "other-worker")
            return await asyncio.wait_for(tern, timeout=10), gull.cancelled()
        finally:
            await verifier.aclose()
            await other.aclose()

    tern, gull_cancelled = asyncio.run(go())
    assert gull_cancelled and (tern.category, tern.source) == (C.ABSTAIN, "dedup")
    assert server.calls == 0


def test_a_verifier_reused_after_its_loop_was_torn_down_mid_call_still_answers(fake_judge, tmp_path):
    server = fake_judge(latency_s=0.2)
    verifier = TieredVerifier(settings([server.url], tmp_path))

    async def abandoned():
        task = asyncio.ensure_future(verifier.verify_one(pair("gull")))
        await asyncio.sleep(0)  # a store lookup is waiting for its window; asyncio.run then cancels everything
        assert not task.done()

    asyncio.run(abandoned())

    async def later():
        try:
            return await asyncio.wait_for(verifier.verify_one(pair("gull")), timeout=10)
        finally:
            await verifier.aclose()

    assert asyncio.run(later()).category == C.WRONG


def test_a_claim_outlives_its_lease_while_the_pair_is_still_being_judged(fake_judge, tmp_path):
    server = fake_judge(latency_s=1.0)  # a judge slower than the lease (as retries and back-off can make it)
    values = {
        "kind": "llm",
        "llm": {"model": "judge-under-test", "endpoints": [server.url], "max_retries": 0},
        "cache": {"backend": "sqlite", "path": str(tmp_path / "verdicts.sqlite"), "lease_s": 0.3},
    }
    first, second = (TieredVerifier(JudgeSettings.from_mapping(values)) for _ in range(2))  # two reward workers

    async def go():
        try:
            judging = asyncio.ensure_future(first.verify_one(pair("gull")))
            await asyncio.sleep(0.6)  # twice the lease: without renewal the claim has lapsed
            return await asyncio.gather(judging, second.verify_one(pair("gull")))
        finally:
            await first.aclose()
            await second.aclose()

    judged, waited = asyncio.run(go())
    assert (judged.source, waited.source) == ("llm", "dedup")
    assert server.calls == 1
