"""Eight processes share one verdict store: every pair judged exactly once, no verdict lost or doubled."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from speciarl_verl.judge.redis_store import RedisVerdictStore
from speciarl_verl.judge.sqlite_store import SQLiteVerdictStore

WORKER = r"""
import asyncio, json, random, sys
from speciarl_verl.judge import JudgeSettings, TieredVerifier, VerificationRequest
url, cache, seed = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
predictions = [f"candidate {i}" for i in range(100)] + ["Laysan Albatross"] * 10 + ["None"] * 10
random.Random(seed).shuffle(predictions)
settings = JudgeSettings.from_mapping({"kind": "llm", "llm": {"endpoints": [url], "model": "m"}, "cache": cache})
async def main():
    verifier = TieredVerifier(settings)
    try:
        verdicts = await verifier.verify([VerificationRequest("Laysan Albatross", p) for p in predictions])
    finally:
        await verifier.aclose()
    print(json.dumps([[p, v.category.value, v.source] for p, v in zip(predictions, verdicts)]))
asyncio.run(main())
"""

UNIQUE_PAIRS = 102  # 100 candidates + the exact name + "None"


def expected(prediction: str) -> str:
    return {"Laysan Albatross": "specific", "None": "abstain"}.get(prediction, "wrong")


def run_workers(url: str, cache: dict, processes: int = 8) -> list[list[list[str]]]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, json.dumps(cache), str(seed)], stdout=subprocess.PIPE, text=True
        )
        for seed in range(processes)
    ]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0] * processes
    return [json.loads(out) for out in outputs]


def check(results, server) -> None:
    assert server.calls == UNIQUE_PAIRS  # never two calls for one pair, across 8 processes
    sources = [source for result in results for _, _, source in result]
    assert sources.count("llm") == UNIQUE_PAIRS
    for result in results:
        assert len(result) == 120
        assert all(category == expected(prediction) for prediction, category, _ in result)


def test_sqlite_store_with_eight_processes(fake_judge, tmp_path):
    server = fake_judge(latency_s=0.05)
    path = tmp_path / "verdicts.sqlite"
    results = run_workers(server.url, {"backend": "sqlite", "path": str(path)})
    check(results, server)
    assert asyncio.run(_count(SQLiteVerdictStore(path))) == UNIQUE_PAIRS
    # a ninth process now finds everything cached
    (again,) = run_workers(server.url, {"backend": "sqlite", "path": str(path)}, processes=1)
    assert {source for _, _, source in again} == {"cache"} and server.calls == UNIQUE_PAIRS


def test_redis_store_with_eight_processes(fake_judge, redis_url):
    server = fake_judge(latency_s=0.05)
    cache = {"backend": "redis", "redis_url": redis_url, "namespace": "eight-processes"}
    results = run_workers(server.url, cache)
    check(results, server)
    assert asyncio.run(_count(RedisVerdictStore(redis_url, "eight-processes"))) == UNIQUE_PAIRS


async def _count(store) -> int:
    try:
        return await store.count()
    finally:
        await store.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_expired_claim_of_a_crashed_worker_is_taken_over(backend, tmp_path, redis_url):
    store = SQLiteVerdictStore(tmp_path / "v.sqlite") if backend == "sqlite" else RedisVerdictStore(redis_url, "lease")

    async def go():
        try:
            assert await store.claim("k", "crashed-worker", lease_s=0.2)
            assert not await store.claim("k", "survivor", lease_s=5)
            assert await store.claimed(["k", "other"]) == {"k"}
            await asyncio.sleep(0.3)
            assert await store.claim("k", "survivor", lease_s=5)
            await store.put("k", "generic", "survivor")
            await store.put("k", "wrong", "late-writer")  # the first verdict stored wins
            assert await store.get_many(["k", "missing"]) == {"k": "generic"}
            assert await store.claimed(["k"]) == set()
        finally:
            await store.aclose()

    asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_renew_extends_only_the_claims_the_owner_still_holds(backend, tmp_path, redis_url):
    store = SQLiteVerdictStore(tmp_path / "v.sqlite") if backend == "sqlite" else RedisVerdictStore(redis_url, "renew")

    async def go():
        try:
            assert await store.claim("mine", "me", lease_s=30)
            assert await store.claim_many(["lapsed", "taken"], "me", lease_s=0.2) == {"lapsed", "taken"}
            assert await store.claim("theirs", "other", lease_s=30)
            await asyncio.sleep(0.5)  # "lapsed" and "taken" run out; another worker takes "taken" over
            assert await store.claim("taken", "other", lease_s=30)
            keys = ["mine", "lapsed", "taken", "theirs", "nobody"]
            assert await store.renew_many(keys, "me", lease_s=60) == {"mine"}
            assert await store.renew_many([], "me", lease_s=60) == set()
            # the other worker's claims are untouched: still theirs, and "me" cannot take them
            assert await store.claimed(keys) == {"mine", "taken", "theirs"}
            assert not await store.claim("taken", "me", lease_s=30)
            assert not await store.claim("theirs", "me", lease_s=30)
            # a renewed claim outlives its first lease
            assert await store.claim("short", "me", lease_s=2)
            assert await store.renew_many(["short"], "me", lease_s=60) == {"short"}
            await asyncio.sleep(2.5)  # past the first lease (the renewed one has a minute to go)
            assert await store.claimed(["short"]) == {"short"}
            assert not await store.claim("short", "other", lease_s=30)
        finally:
            await store.aclose()

    asyncio.run(go())
