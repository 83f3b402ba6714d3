"""A local OpenAI-compatible judge server with controllable latency, capacity and faults.

It answers ``POST /v1/chat/completions`` like a judge model would: it reads the JSON pair
out of the user message, decides the category with the offline rule tier (``wrong`` where
the rules cannot decide), and replies with that label. A judge model knows the classes'
taxonomy, which the pair alone does not carry: ``hierarchy`` gives it (ground truth -> the
row fields ``parents``, ``parent_levels``, ``domain_nouns``, ``synonyms``), and any listed
parent, near or far, is then *less specific*, as a model files a manufacturer. ``latency_s`` is added to every
request and at most ``max_concurrency`` requests are served at once, so a benchmark can
compare a client against the theoretical limit. ``fault`` makes it misbehave:

* ``status:<code>``: answer every request with that HTTP status;
* ``hang``: never answer (until the client gives up);
* ``bad_label``: answer 200 with a label outside the set;
* ``drop``: close the connection without answering;
* ``not_json``: answer 200 with a body that is not a chat completion;
* ``flaky:<n>``: answer 503 to the first ``n`` requests, then behave; ``flaky:<n>:<code>``
  answers ``code`` instead of 503;
* ``chance:<p>:<kind>``: each request, with probability ``p`` (from a generator seeded with
  ``seed``), misbehaves as ``kind`` (a status code, ``hang``, ``bad_label``, ``drop`` or
  ``not_json``) and otherwise behaves; several, comma-separated, are drawn in turn
  (``chance:0.1:bad_label,chance:0.05:hang``);
* ``only:<text>:<fault>``: ``fault`` for requests whose user message contains ``text`` (a class
  name, say), none for the others.

``api_key`` makes ``/v1/*`` answer 401 to a request without ``Authorization: Bearer <key>``,
as ``vllm serve --api-key`` does. ``answers_log`` (a path) gets one JSON line per chat request:
the pair, and the label answered or the fault that answered instead, appended and flushed, so
the record survives a killed server and a restarted one adds to it.

``retry_after`` (e.g. ``"2"`` or an HTTP date) is sent as the ``Retry-After`` header of every
error status a fault produces; ``arrivals`` holds the ``time.monotonic()`` at which each chat
request arrived.

``GET /version`` reports ``vllm_version`` (``None``: 404, like a non-vLLM server);
``GET /stats`` the number of chat requests and the most served at once; ``POST /fault`` with
``{"fault": ...}`` (``null``: none) changes the fault of a running server.

Run it as its own process (benchmarks do, so the server does not share the client's
interpreter): ``python -m speciarl_verl.offline_fixtures.fake_judge_server --latency 0.02
--max-concurrency 32 [--port N] [--fault F] [--api-key-env NAME] [--answers-log FILE]``; it prints
``PORT <n>`` once it listens.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from speciarl_verl.core.categories import Category
from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.judge.offline import decide_offline
from speciarl_verl.judge.verifier import VerificationRequest

__all__ = ["FakeJudgeServer"]

_PAIR = re.compile(r"```json\s*(\{.*?\})\s*```", re.DOTALL)


def _pair_in(user: str) -> dict[str, Any]:
    """The pair in a user message: the fenced JSON of our prompts, else the first JSON object that starts
    with ``"ground_truth"`` (a prompt with another ``pair_format``, such as ``compact_json``)."""
    fenced = _PAIR.search(user)
    if fenced:
        return json.loads(fenced.group(1))
    start = re.search(r'\{\s*"ground_truth"', user)
    if start is None:
        raise ValueError("no (ground truth, prediction) pair in the user message")
    return json.JSONDecoder().raw_decode(user, start.start())[0]


@dataclass
class FakeJudgeServer:
    latency_s: float = 0.0
    max_concurrency: int = 1024
    fault: str | None = None
    vllm_version: str | None = "0.30.0"
    requests: list[dict[str, Any]] = field(default_factory=list)
    hierarchy: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    retry_after: str | None = None
    arrivals: list[float] = field(default_factory=list)
    port: int = 0
    api_key: str | None = None
    answers_log: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        # the client may send the pair normalised (lower case, no punctuation), so classes are looked up folded
        self._known = {normalize_label(truth): row for truth, row in self.hierarchy.items()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._random = random.Random(self.seed)
        self.calls = 0
        self.max_seen_concurrency = 0
        self._active = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeJudgeServer:
        self._thread = threading.Thread(target=self._serve, name="fake-judge", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake judge server did not start")
        return self

    def __exit__(self, *exc) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _start(self) -> None:
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/version", self._version)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/fault", self._set_fault)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _version(self, request: web.Request) -> web.Response:
        if self.vllm_version is None:
            raise web.HTTPNotFound()
        return web.json_response({"version": self.vllm_version})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": self.calls, "max_seen_concurrency": self.max_seen_concurrency})

    async def _set_fault(self, request: web.Request) -> web.Response:
        self.fault = (await request.json()).get("fault")
        return web.json_response({"fault": self.fault})

    def _refused(self, request: web.Request) -> web.Response | None:
        """401 for a request without the key, when the server has one."""
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "invalid API key"}, status=401)
        return None

    def _drawn_fault(self, body: dict[str, Any]) -> str:
        """This request's fault: ``only:`` looks at the message, ``chance:`` entries are drawn, anything
        else is the fault as set."""
        fault = self.fault or ""
        if fault.startswith("only:"):
            _, text, fault = fault.split(":", 2)
            if not any(text in str(m.get("content", "")) for m in body.get("messages", [])):
                return ""
        if not fault.startswith("chance:"):
            return fault
        for entry in fault.split(","):
            _, probability, kind = entry.split(":", 2)
            if self._random.random() < float(probability):
                return f"status:{kind}" if kind.isdigit() else kind
        return ""

    def _log_answer(self, body: dict[str, Any], outcome: str) -> None:
        if self.answers_log is None:
            return
        try:
            user = next(m["content"] for m in body["messages"] if m["role"] == "user")
            pair = _pair_in(user)
            line = {"ground_truth": pair.get("ground_truth"), "prediction": pair.get("prediction"), "outcome": outcome}
        except (KeyError, StopIteration, ValueError, TypeError):
            line = {"ground_truth": None, "prediction": None, "outcome": outcome}
        with open(self.answers_log, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return web.json_response({"object": "list", "data": [{"id": "fake-judge", "object": "model"}]})

    def judge_label(self, body: dict[str, Any]) -> str:
        """The label a sensible judge would give the pair in ``body`` (rule tier, else wrong)."""
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        pair = _pair_in(user)
        row = self._known.get(normalize_label(pair["ground_truth"]))
        request = VerificationRequest.for_row(pair["ground_truth"], pair["prediction"], "", row)
        category = decide_offline(request)
        if category is None and normalize_label(request.prediction) in {normalize_label(p) for p in request.parents}:
            category = Category.LESS_SPECIFIC
        return category.value if category is not None else "wrong"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(time.monotonic())
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await request.json()
        self.requests.append(body)
        self.calls += 1
        fault = self._drawn_fault(body)
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
        if fault.startswith("flaky:"):
            _, count, *status = fault.split(":")
            if self.calls <= int(count):
                code = int(status[0]) if status else 503
                self._log_answer(body, str(code))
                return web.json_response({"error": "warming up"}, status=code, headers=headers)
        if fault.startswith("status:"):
            self._log_answer(body, fault.split(":")[1])
            return web.json_response({"error": "injected"}, status=int(fault.split(":")[1]), headers=headers)
        if fault == "hang":
            self._log_answer(body, "hang")
            await self._closing.wait()  # answer nothing until the server stops
        if fault == "drop":
            self._log_answer(body, "drop")
            request.transport.close()
            return web.Response()
        async with self._semaphore:
            self._active += 1
            self.max_seen_concurrency = max(self.max_seen_concurrency, self._active)
            try:
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
            finally:
                self._active -= 1
        if fault == "not_json":
            self._log_answer(body, "not_json")
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        label = "probably specific" if fault == "bad_label" else self.judge_label(body)
        self._log_answer(body, "bad_label" if fault == "bad_label" else f"label:{label}")
        return web.json_response(
            {
                "id": f"cmpl-{self.calls}",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": label}, "finish_reason": "stop"}],
            }
        )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="a local OpenAI-compatible judge server for tests and benchmarks")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every chat request")
    parser.add_argument("--max-concurrency", type=int, default=1024, help="chat requests served at once")
    parser.add_argument("--fault", default=None, help="a fault as in the module's docstring (default none)")
    parser.add_argument("--port", type=int, default=0, help="loopback port to listen on (default: a free one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the chance: faults")
    parser.add_argument("--api-key-env", default=None, help="answer 401 unless requests carry the key in this variable")
    parser.add_argument("--answers-log", default=None, help="append one JSON line per chat request to this file")
    args = parser.parse_args()
    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"--api-key-env {args.api_key_env}: the variable is unset or empty")
    server = FakeJudgeServer(
        latency_s=args.latency,
        max_concurrency=args.max_concurrency,
        fault=args.fault,
        port=args.port,
        api_key=api_key,
        answers_log=args.answers_log,
        seed=args.seed,
    )
    with server:
        print(f"PORT {server.port}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
