"""Talking to OpenAI-compatible chat endpoints: bounded, retried, spread over several servers.

* at most ``max_in_flight`` requests per process (a semaphore), optionally a
  requests-per-second cap (``aiolimiter``);
* each request goes to the endpoint with the fewest requests in flight;
* timeouts, connection errors (refused, reset, dropped), 5xx, 408 and 429 are retried with
  exponential back-off and jitter (``tenacity``), possibly on another endpoint; any other
  4xx fails at once (a wrong model name does not get better by asking again);
* the client is ``aiohttp`` (already a verl dependency): at a few hundred requests in
  flight, httpx's connection pool spent more CPU scanning its connections than the
  judge spent answering (docs/notes.md).
* choice-constrained decoding is chosen per server: vLLM >= 0.12 takes
  ``structured_outputs={"choice": [...]}``, older vLLM ``guided_choice``. The server's
  ``/version`` decides it once; a fallback is never a silent retry (newer vLLM accepts
  ``guided_choice`` with HTTP 200 and ignores it).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from speciarl_verl.judge.settings import LLMSettings

__all__ = ["Completion", "EndpointPool", "JudgeTransportError", "decoding_mode_for_version", "is_retryable"]

#: vLLM versions before this one only understand ``guided_choice``.
STRUCTURED_OUTPUTS_SINCE = (0, 12)


class JudgeTransportError(RuntimeError):
    """A request failed for good: a non-retryable status, or retries exhausted."""

    def __init__(self, message: str, endpoint: str):
        super().__init__(message)
        self.endpoint = endpoint


@dataclass(frozen=True)
class Completion:
    text: str
    latency_s: float
    endpoint: str


class HTTPStatusError(RuntimeError):
    """A response with an error status (kept with the start of its body for the message)."""

    def __init__(self, status: int, reason: str, body: str):
        super().__init__(f"HTTP {status} {reason}: {body[:200]}")
        self.status = status


def is_retryable(error: BaseException) -> bool:
    """Timeouts, transport failures, 5xx, 408 and 429 are worth another try; other 4xx are not."""
    if isinstance(error, HTTPStatusError):
        return error.status >= 500 or error.status in (408, 429)
    return isinstance(error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | asyncio.TimeoutError)


def decoding_mode_for_version(version: str | None) -> str:
    """``structured_outputs`` for vLLM >= 0.12 or an unknown server, ``guided_choice`` for older vLLM.

    >>> decoding_mode_for_version("0.30.0"), decoding_mode_for_version("0.8.5"), decoding_mode_for_version(None)
    ('structured_outputs', 'guided_choice', 'structured_outputs')
    """
    if version is None:
        return "structured_outputs"
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        return "structured_outputs"
    return "structured_outputs" if (int(match[1]), int(match[2])) >= STRUCTURED_OUTPUTS_SINCE else "guided_choice"


class EndpointPool:
    """Sends chat completions for the judge to one or several endpoints.

    Clients, semaphores and limiters are created on first use inside the running event
    loop (a Ray actor's loop is not the one that constructed the object).
    """

    def __init__(self, settings: LLMSettings, choices: Sequence[str]):
        self.settings = settings
        self.choices = list(choices)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._limiter: AsyncLimiter | None = None
        self._in_flight = {endpoint: 0 for endpoint in settings.endpoints}
        self._modes: dict[str, str] = {}
        self._mode_locks: dict[str, asyncio.Lock] = {}
        self._turn = 0

    def _bind(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            settings = self.settings
            headers = {}
            key = settings.api_key()
            if key:
                headers["Authorization"] = f"Bearer {key}"
            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
                connector=aiohttp.TCPConnector(limit=settings.max_in_flight),
                headers=headers,
            )
            self._semaphore = asyncio.Semaphore(settings.max_in_flight)
            self._limiter = AsyncLimiter(settings.requests_per_second, 1.0) if settings.requests_per_second else None
            self._loop = loop
        return self._client

    def _pick(self, avoid: set[str]) -> str:
        """Fewest in flight, skipping endpoints that already failed this request while others remain;
        ties rotate so idle endpoints share the load."""
        endpoints = self.settings.endpoints
        self._turn = (self._turn + 1) % len(endpoints)
        ordered = [e for e in endpoints[self._turn :] + endpoints[: self._turn] if e not in avoid] or list(endpoints)
        return min(ordered, key=self._in_flight.__getitem__)

    async def _decoding_mode(self, client: aiohttp.ClientSession, endpoint: str) -> str:
        configured = self.settings.constrained_decoding
        if configured != "auto":
            return configured
        if endpoint not in self._modes:
            lock = self._mode_locks.setdefault(endpoint, asyncio.Lock())
            async with lock:  # ask each server once, however many requests start together
                if endpoint not in self._modes:
                    self._modes[endpoint] = decoding_mode_for_version(await self._server_version(client, endpoint))
        return self._modes[endpoint]

    async def _server_version(self, client: aiohttp.ClientSession, endpoint: str) -> str | None:
        root = re.sub(r"/v1$", "", endpoint)
        timeout = aiohttp.ClientTimeout(total=min(self.settings.timeout_s, 10.0))
        async with client.get(f"{root}/version", timeout=timeout) as response:
            if response.status != 200:
                return None
            try:
                return str((await response.json(content_type=None)).get("version"))
            except (ValueError, AttributeError):
                return None

    def request_body(self, messages: list[dict[str, str]], mode: str) -> dict[str, Any]:
        """The JSON body of one judge request (vLLM takes its extensions at the top level)."""
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "temperature": 0.0,
            "max_tokens": self.settings.max_tokens,
            "n": 1,
            "chat_template_kwargs": {"enable_thinking": self.settings.enable_thinking},
        }
        if mode == "structured_outputs":
            body["structured_outputs"] = {"choice": self.choices}
        elif mode == "guided_choice":
            body["guided_choice"] = self.choices
        return body

    async def _post_once(
        self, client: aiohttp.ClientSession, messages: list[dict[str, str]], failed: set[str]
    ) -> Completion:
        endpoint = self._pick(avoid=failed)
        self._in_flight[endpoint] += 1
        try:
            if self._limiter is not None:
                await self._limiter.acquire()
            mode = await self._decoding_mode(client, endpoint)
            started = time.perf_counter()
            async with client.post(f"{endpoint}/chat/completions", json=self.request_body(messages, mode)) as response:
                body = await response.text()
                if response.status >= 400:
                    raise HTTPStatusError(response.status, response.reason or "", body)
            latency = time.perf_counter() - started
        except Exception as error:
            error.endpoint = endpoint  # type: ignore[attr-defined]
            failed.add(endpoint)
            raise
        finally:
            self._in_flight[endpoint] -= 1
        try:
            text = json.loads(body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            message = f"{endpoint} sent a reply that is not a chat completion: {error!r}"
            raise JudgeTransportError(message, endpoint) from error
        return Completion(text=text if isinstance(text, str) else str(text), latency_s=latency, endpoint=endpoint)

    async def complete(self, messages: list[dict[str, str]]) -> Completion:
        """One chat completion, retried as described above; :class:`JudgeTransportError` when it fails for good."""
        client = self._bind()
        settings = self.settings
        assert self._semaphore is not None
        async with self._semaphore:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(settings.max_retries + 1),
                wait=wait_exponential_jitter(initial=settings.backoff_initial_s, max=settings.backoff_max_s),
                retry=retry_if_exception(is_retryable),
                reraise=True,
            )
            failed: set[str] = set()
            try:
                async for attempt in retrying:
                    with attempt:
                        return await self._post_once(client, messages, failed)
            except JudgeTransportError:
                raise
            except Exception as error:
                endpoint = getattr(error, "endpoint", ",".join(settings.endpoints))
                attempts = retrying.statistics.get("attempt_number", 1)
                raise JudgeTransportError(
                    f"judge endpoint {endpoint} failed after {attempts} attempt(s): {_describe(error)}", endpoint
                ) from error
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = None


def _describe(error: BaseException) -> str:
    if isinstance(error, HTTPStatusError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
