"""Talking to OpenAI-compatible chat endpoints: bounded, retried, spread over several servers.

* at most ``max_in_flight`` requests per process (a semaphore), optionally a
  requests-per-second cap (``aiolimiter``);
* each request goes to the endpoint with the fewest requests in flight;
* timeouts, connection errors (refused, reset, dropped), 5xx, 408 and 429 are retried with
  exponential back-off and jitter (``tenacity``), possibly on another endpoint; any other
  4xx fails at once (a wrong model name does not get better by asking again). A 429 or 503
  that carries ``Retry-After`` (seconds or an HTTP date) delays the next attempt at least
  that long, up to ``backoff_max_s``;
* a 200 reply that is not usable is retried the same way, within the same budget: one that is
  not a chat completion (a flapping proxy's error page), or one the caller's ``accept``
  refuses (a judge answering outside its labels), both :class:`BadReplyError`. The final
  error names the endpoint, the attempts and what was wrong with the last reply;
* every :class:`Completion` says how many attempts it took (``attempts``, 1 = no retry), and
  every :class:`JudgeTransportError` from :meth:`EndpointPool.complete` how many were made;
* a request holds its concurrency slot (and passes the rate limiter) only while one attempt
  talks to a server, never while it sleeps between attempts;
* endpoint URLs are shown with any password hidden (:func:`~speciarl_verl.judge.redaction.redact_url`),
  in messages, ``.endpoint`` attributes and log lines alike;
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
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from speciarl_verl.judge.redaction import redact_url
from speciarl_verl.judge.settings import LLMSettings

__all__ = [
    "BadReplyError",
    "Completion",
    "EndpointPool",
    "HTTPStatusError",
    "JudgeTransportError",
    "decoding_mode_for_version",
    "is_retryable",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

#: vLLM versions before this one only understand ``guided_choice``.
STRUCTURED_OUTPUTS_SINCE = (0, 12)

#: Statuses whose ``Retry-After`` header is honoured (RFC 9110 defines it for these two).
RETRY_AFTER_STATUSES = (429, 503)


class JudgeTransportError(RuntimeError):
    """A request failed for good: a non-retryable status, or retries exhausted.

    ``endpoint`` is the URL of the endpoint that failed, password hidden; ``attempts`` how many
    attempts the request made (``None`` when not known).
    """

    def __init__(self, message: str, endpoint: str, attempts: int | None = None):
        super().__init__(message)
        self.endpoint = endpoint
        self.attempts = attempts


class BadReplyError(JudgeTransportError):
    """A 200 reply that cannot be used: not a chat completion, or refused by the caller's ``accept``.

    Retried like a 5xx. The message says what was wrong without naming the endpoint (the final
    error of :meth:`EndpointPool.complete` puts it in front); subclasses keep this constructor,
    as the final error is rebuilt with the same type.
    """


@dataclass(frozen=True)
class Completion:
    """A reply; ``endpoint`` is the URL of the server that gave it, password hidden; ``attempts``
    how many attempts the request took to get it (1 = no retry)."""

    text: str
    latency_s: float
    endpoint: str
    attempts: int = 1


class HTTPStatusError(RuntimeError):
    """A response with an error status (kept with the start of its body for the message).

    ``retry_after`` is the server's ``Retry-After`` in seconds (``None`` without a usable one).
    """

    def __init__(self, status: int, reason: str, body: str, retry_after: float | None = None):
        super().__init__(f"HTTP {status} {reason}: {body[:200]}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (a date in the
    past is 0); ``None`` for a missing or unreadable header.

    >>> parse_retry_after("120"), parse_retry_after(" 1.5 "), parse_retry_after(None), parse_retry_after("soon")
    (120.0, 1.5, None, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")  # long past
    0.0
    """
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d*)?", value):
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is not a date
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def is_retryable(error: BaseException) -> bool:
    """Timeouts, transport failures, 5xx, 408, 429 and bad replies are worth another try; other 4xx are not."""
    if isinstance(error, BadReplyError):
        return True
    if isinstance(error, HTTPStatusError):
        return error.status >= 500 or error.status in (408, 429)
    return isinstance(error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | asyncio.TimeoutError)


def retry_wait(initial_s: float, max_s: float) -> Callable[[RetryCallState], float]:
    """The pause before the next attempt: exponential back-off with jitter (``initial_s`` .. ``max_s``),
    or, after a 429/503 with ``Retry-After``, at least what the server asked for, never more than ``max_s``."""
    backoff = wait_exponential_jitter(initial=initial_s, max=max_s)

    def wait(state: RetryCallState) -> float:
        pause = backoff(state)
        error = state.outcome.exception() if state.outcome is not None and state.outcome.failed else None
        asked = error.retry_after if isinstance(error, HTTPStatusError) else None
        if asked is not None and error.status in RETRY_AFTER_STATUSES:
            pause = min(max(pause, asked), max_s)
        return pause

    return wait


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
        #: each endpoint as it may be shown (password hidden)
        self._shown = {endpoint: redact_url(endpoint) for endpoint in settings.endpoints}
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

    def _scrub(self, text: str) -> str:
        """``text`` with every endpoint URL that carries a password replaced by its shown form."""
        for endpoint, shown in self._shown.items():
            if endpoint != shown:
                text = text.replace(endpoint, shown)
        return text

    async def _post_once(
        self,
        client: aiohttp.ClientSession,
        messages: list[dict[str, str]],
        failed: set[str],
        accept: Callable[[Completion], object] | None,
        attempt: int,
    ) -> Completion:
        """One attempt. The concurrency slot (and the rate limiter) is taken here, for this
        exchange only: a request waiting to retry holds neither."""
        assert self._semaphore is not None
        async with self._semaphore:
            if self._limiter is not None:
                await self._limiter.acquire()
            endpoint = self._pick(avoid=failed)  # picked once a slot is ours: in-flight counts are current
            self._in_flight[endpoint] += 1
            try:
                mode = await self._decoding_mode(client, endpoint)
                started = time.perf_counter()
                body_json = self.request_body(messages, mode)
                async with client.post(f"{endpoint}/chat/completions", json=body_json) as response:
                    body = await response.text()
                    if response.status >= 400:
                        retry_after = parse_retry_after(response.headers.get("Retry-After"))
                        raise HTTPStatusError(response.status, response.reason or "", body, retry_after)
                latency = time.perf_counter() - started
            except Exception as error:
                error.endpoint = self._shown[endpoint]  # type: ignore[attr-defined]
                failed.add(endpoint)
                raise
            finally:
                self._in_flight[endpoint] -= 1
        shown = self._shown[endpoint]
        try:
            try:
                text = json.loads(body)["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise BadReplyError(f"sent a reply that is not a chat completion: {error!r}", shown) from error
            text = text if isinstance(text, str) else str(text)
            completion = Completion(text=text, latency_s=latency, endpoint=shown, attempts=attempt)
            if accept is not None:
                accept(completion)
        except BadReplyError:
            failed.add(endpoint)  # the next attempt goes elsewhere if it can, as after a 5xx
            raise
        return completion

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        logger.debug(
            "judge endpoint %s: attempt %d failed (%s); next attempt in %.2f s",
            getattr(error, "endpoint", "?"),
            state.attempt_number,
            self._scrub(_describe(error)) if error is not None else "?",
            pause,
        )

    async def complete(
        self, messages: list[dict[str, str]], accept: Callable[[Completion], object] | None = None
    ) -> Completion:
        """One chat completion, retried as described above; :class:`JudgeTransportError` when it fails for good.

        ``accept``, if given, checks each reply inside its attempt and raises :class:`BadReplyError`
        (or a subclass) to refuse it: the request is then retried like after a 5xx, and after the
        last attempt that error's type is raised, naming the endpoint and the attempts. Anything
        else it raises fails the request at once.
        """
        client = self._bind()
        settings = self.settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.max_retries + 1),
            wait=retry_wait(settings.backoff_initial_s, settings.backoff_max_s),
            retry=retry_if_exception(is_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        failed: set[str] = set()
        try:
            async for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    return await self._post_once(client, messages, failed, accept, number)
        except Exception as error:
            attempts = retrying.statistics.get("attempt_number", 1)
            if isinstance(error, JudgeTransportError) and not isinstance(error, BadReplyError):
                error.attempts = error.attempts or attempts
                raise
            endpoint = getattr(error, "endpoint", None) or ",".join(self._shown.values())
            message = f"judge endpoint {endpoint} failed after {attempts} attempt(s): {self._scrub(_describe(error))}"
            kind = type(error) if isinstance(error, BadReplyError) else JudgeTransportError
            raise kind(message, endpoint, attempts) from error
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = None


def _describe(error: BaseException) -> str:
    if isinstance(error, HTTPStatusError | BadReplyError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
