"""The tiered verifier's own bookkeeping: verdicts known without waiting, one store read per burst, waiters."""

from __future__ import annotations

import asyncio

import pytest

from speciarl_verl import Category
from speciarl_verl.judge import JudgeError, JudgeSettings, TieredVerifier, VerificationRequest

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

    with pytest.raises(JudgeError, match=r"judge failed for 1 of 1 pair\(s\) \(last endpoint http://127") as failed:
        asyncio.run(go())
    assert failed.value.verdicts == [None] and failed.value.endpoint.startswith("http://127.0.0.1")
