"""Judge configuration (``reward.reward_kwargs.judge`` for training; its own file for evaluation).

Three nested records: which tiers run and what a failure does (:class:`JudgeSettings`),
how to reach an LLM judge (:class:`LLMSettings`), and where verdicts are cached
(:class:`CacheSettings`). All are validated on construction; unknown keys are errors.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from speciarl_verl.core.categories import Category

if TYPE_CHECKING:
    from speciarl_verl.judge.tiered import TieredVerifier

__all__ = [
    "FAILURE_POLICIES",
    "JUDGE_KINDS",
    "CacheBackend",
    "CacheSettings",
    "ConstrainedDecoding",
    "FailurePolicy",
    "JudgeInput",
    "JudgeKind",
    "JudgeSettings",
    "LLMSettings",
]

JudgeKind = Literal["offline", "llm", "auto"]
FailurePolicy = Literal["raise", "mask"]
ConstrainedDecoding = Literal["auto", "structured_outputs", "guided_choice", "none"]
JudgeInput = Literal["normalized", "raw"]
CacheBackend = Literal["sqlite", "redis", "none"]
# the accepted values, for validation and messages: read off the types, never listed twice
JUDGE_KINDS: tuple[JudgeKind, ...] = get_args(JudgeKind)
FAILURE_POLICIES: tuple[FailurePolicy, ...] = get_args(FailurePolicy)
CONSTRAINED_DECODING: tuple[ConstrainedDecoding, ...] = get_args(ConstrainedDecoding)
JUDGE_INPUTS: tuple[JudgeInput, ...] = get_args(JudgeInput)
CACHE_BACKENDS: tuple[CacheBackend, ...] = get_args(CacheBackend)


def _secret_from_env(variable: str | None, setting: str, what: str) -> str | None:
    """The value of the environment variable a ``*_env`` setting names, read when used (``None`` if none is named).

    A named variable that is unset or empty is a ``ValueError`` saying what to export.
    """
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ValueError(f"{setting} names {variable!r}, which is not set; export it with {what}")
    return value


def _from_mapping(cls, values: Mapping[str, Any] | None, where: str, **nested):
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {where} setting(s) {unknown} (known: {sorted(known)})")
    for name, builder in nested.items():
        value = values.get(name)
        if value is None or isinstance(value, Mapping):
            values[name] = builder(value)
    return cls(**values)


@dataclass(frozen=True)
class LLMSettings:
    """An OpenAI-compatible chat endpoint serving the judge model (vLLM ``serve`` on GPU nodes).

    * ``endpoints``: base URLs ending in ``/v1``; requests go to the one with the fewest in flight.
      A password in a URL (``http://user:PASSWORD@host/v1``) is shown as ``***`` in messages and logs.
    * ``model``: the served model name. The training default is a Qwen3-30B-A3B-Instruct-2507
      class model; the evaluation judge is set by the user.
    * ``prompt``: the judge prompt's name, from the registry or, with ``prompt_file``, from that JSON
      file (:func:`~speciarl_verl.judge.prompt.load_judge_prompts`; a prompt's ``pair_format`` lays
      out the pair, e.g. ``compact_json`` for a copy of the method's prompt).
    * ``constrained_decoding``: ``auto`` asks each vLLM server its version and uses
      ``structured_outputs`` (vLLM >= 0.12) or ``guided_choice`` (older); every reply is
      validated against the label set either way.
    * ``max_tokens``: room for the longest label in the judge's tokenizer.
    * ``timeout_s``: per request; ``max_retries`` with exponential back-off and jitter
      (``backoff_initial_s`` .. ``backoff_max_s``) on timeouts, connection errors, 5xx, 408, 429
      and 200 replies that are no use (not a chat completion, or not one of the labels); any other
      4xx fails at once. A 429 or 503 with a ``Retry-After`` header (seconds or an HTTP
      date) waits at least that long before the next attempt, but never more than ``backoff_max_s``.
    * ``max_in_flight``: requests in flight per process; ``requests_per_second``: optional cap. A
      request waiting to retry holds neither: both count attempts talking to a server. The default,
      256, is vLLM's default ``max_num_seqs``: a vLLM judge batches that many sequences at once, so
      fewer in flight would leave it idle (64 in flight at 50 ms per call judge 580 pairs in 0.45 s).
    * ``max_prediction_chars``: ``None`` (the default, as the method: the judge reads the whole
      prediction) or a length the prediction is cut to, after ``input_text``'s cleaning, before it
      reaches the judge and its cache key. A cut bounds the judge's input tokens for rambling
      answers, but an answer longer than the cut is judged on its beginning only.
    * ``input_text``: ``normalized`` (the method's cleaning of both strings: lower case, punctuation
      other than dashes dropped, whitespace collapsed; see
      :func:`speciarl_verl.core.label_normalization.normalize_for_judge`) or ``raw``.
    * ``api_key_env``: name of an environment variable holding a bearer token (read when the
      client is created, never at import).
    """

    endpoints: tuple[str, ...] = ("http://127.0.0.1:8001/v1",)
    model: str = "Qwen/Qwen3-30B-A3B-Instruct-2507"
    prompt: str = "speciarl_v2"
    prompt_file: str | None = None
    constrained_decoding: ConstrainedDecoding = "auto"
    enable_thinking: bool = False
    max_tokens: int = 16
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 20.0
    max_in_flight: int = 256
    requests_per_second: float | None = None
    max_prediction_chars: int | None = None
    input_text: JudgeInput = "normalized"
    api_key_env: str | None = None

    def __post_init__(self) -> None:
        endpoints = (self.endpoints,) if isinstance(self.endpoints, str) else tuple(self.endpoints)
        object.__setattr__(self, "endpoints", tuple(e.rstrip("/") for e in endpoints))
        if not self.endpoints:
            raise ValueError("judge.llm.endpoints must list at least one URL")
        bad = [e for e in self.endpoints if not e.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"judge.llm.endpoints must be http(s) URLs, got {bad}")
        if self.constrained_decoding not in CONSTRAINED_DECODING:
            raise ValueError(
                f"judge.llm.constrained_decoding={self.constrained_decoding!r} is not one of {CONSTRAINED_DECODING}"
            )
        if self.input_text not in JUDGE_INPUTS:
            raise ValueError(f"judge.llm.input_text={self.input_text!r} is not one of {JUDGE_INPUTS}")
        for name in ("max_tokens", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"judge.llm.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_prediction_chars is not None and self.max_prediction_chars < 1:
            raise ValueError(f"judge.llm.max_prediction_chars must be null or >= 1, got {self.max_prediction_chars}")
        if self.max_retries < 0 or self.timeout_s <= 0:
            raise ValueError("judge.llm.max_retries must be >= 0 and judge.llm.timeout_s > 0")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError(f"judge.llm.requests_per_second must be positive, got {self.requests_per_second}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> LLMSettings:
        return _from_mapping(cls, values, "judge.llm")

    def api_key(self) -> str | None:
        """The bearer token from ``api_key_env`` (``None`` when no variable is named)."""
        return _secret_from_env(
            self.api_key_env, "judge.llm.api_key_env", "the judge server's API key (vllm serve --api-key) on every node"
        )


@dataclass(frozen=True)
class CacheSettings:
    """Where verdicts of the LLM tier are kept across steps, workers and runs.

    * ``sqlite`` (default): one file shared by the reward workers of a node (WAL mode). ``path``
      defaults to a node-local file in the system temporary folder
      (``/tmp/speciarl_verl-<uid>/verdicts.sqlite``): SQLite's locking is not safe on network file
      systems, where home directories often live. Point ``path`` at a local disk to keep
      verdicts across runs. When the store first opens, a missing folder is created with mode
      0o700 and a new database file with mode 0o600; then the folder is checked, since anyone
      who can write into it can plant verdicts. The default folder (anyone may create that name
      in ``/tmp`` first) must be owned by you and writable by nobody else; the folder of an
      explicit ``path`` must not be writable by every user (``/tmp`` itself is refused: give the
      file a folder of its own). A folder that fails is an error saying how to fix it.
    * ``redis``: one server shared by every node (``redis_url``). Its password comes from the
      environment variable named by ``redis_password_env`` (read when the store opens, never at
      import; with an ACL user, name the user in the URL: ``redis://speciarl@host:6379/0``) or from
      the URL itself. A URL reaching another host without a password is refused unless
      ``allow_unauthenticated_redis`` is true (a trusted, isolated network): an open Redis lets
      anyone who reaches the port forge verdicts, and often much more. Connecting gives up after
      10 s and each command after 30 s (``redis.TimeoutError``), so a server that silently drops
      packets fails the judge call instead of hanging a reward worker. A server that refuses or
      drops connections (restarting, loading its append-only file) is asked again with back-off
      for ``reconnect_s`` seconds (default 30) before the lookup is a judge failure; a wrong
      password or a timeout is not retried. Messages show the URL with any password as ``***``.
    * ``none``: no persistence (duplicates within a process are still judged once).

    ``lease_s``: how long a worker may hold the claim on a pair it is judging before
    another worker takes over (a crashed worker never blocks a pair for longer); a live worker
    renews its claims while it is still judging.
    """

    backend: CacheBackend = "sqlite"
    path: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password_env: str | None = None
    allow_unauthenticated_redis: bool = False
    namespace: str = "speciarl"
    lease_s: float = 120.0
    poll_interval_s: float = 0.05
    reconnect_s: float = 30.0

    def __post_init__(self) -> None:
        if self.backend not in CACHE_BACKENDS:
            raise ValueError(f"judge.cache.backend={self.backend!r} is not one of {CACHE_BACKENDS}")
        if self.lease_s <= 0 or self.poll_interval_s <= 0:
            raise ValueError("judge.cache.lease_s and judge.cache.poll_interval_s must be positive")
        if self.reconnect_s < 0:
            raise ValueError(f"judge.cache.reconnect_s must be >= 0, got {self.reconnect_s}")
        if self.backend == "redis":  # refused at start-up, not when the first verdict is looked up
            from speciarl_verl.judge.redis_store import check_redis_access

            check_redis_access(
                self.redis_url,
                has_password=self.redis_password_env is not None,
                allow_unauthenticated=self.allow_unauthenticated_redis,
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> CacheSettings:
        return _from_mapping(cls, values, "judge.cache")

    def redis_password(self) -> str | None:
        """The Redis password from ``redis_password_env`` (``None`` when no variable is named)."""
        return _secret_from_env(
            self.redis_password_env,
            "judge.cache.redis_password_env",
            "the Redis password on every node (before `ray start`)",
        )

    @staticmethod
    def default_sqlite_folder() -> Path:
        """The folder of the default SQLite file: ``<system temp>/speciarl_verl-<uid>``."""
        return Path(tempfile.gettempdir()) / f"speciarl_verl-{os.getuid()}"

    def sqlite_path(self) -> Path:
        if self.path:
            return Path(self.path).expanduser()
        return self.default_sqlite_folder() / "verdicts.sqlite"


@dataclass(frozen=True)
class JudgeSettings:
    """Which verifier the reward asks, and what a judge failure does.

    * ``kind``: ``offline`` (rule tier only; pairs it cannot decide get ``deferred_outcome`` and
      the verdict source ``deferred``), ``llm`` (every pair to the LLM judge, through the cache),
      ``auto`` (rule tier first, the LLM for what it defers). ``offline`` is the default here, but
      the reward manager refuses the dynamic reward unless ``reward.reward_kwargs.judge.kind`` is
      set (:func:`speciarl_verl.verl_ext.config_checks.check_judge_kind`): a recipe that forgot it
      would otherwise train on undecided pairs scored *wrong*.
    * ``failure_policy``: ``raise`` stops training with an error naming the endpoint and how
      many pairs failed; ``mask`` gives every rollout of an affected group the same reward 0
      (zero advantage) and counts the group in ``speciarl/masked_groups_total``.
    """

    kind: JudgeKind = "offline"
    deferred_outcome: Category = Category.WRONG
    failure_policy: FailurePolicy = "raise"
    llm: LLMSettings = field(default_factory=LLMSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)

    def __post_init__(self) -> None:
        if self.kind not in JUDGE_KINDS:
            raise ValueError(f"judge.kind={self.kind!r} is not supported (expected one of {JUDGE_KINDS})")
        if self.failure_policy not in FAILURE_POLICIES:
            raise ValueError(f"judge.failure_policy={self.failure_policy!r} is not one of {FAILURE_POLICIES}")
        object.__setattr__(self, "deferred_outcome", Category.coerce(self.deferred_outcome))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> JudgeSettings:
        return _from_mapping(cls, values, "judge", llm=LLMSettings.from_mapping, cache=CacheSettings.from_mapping)

    def check_secrets(self) -> None:
        """Read every secret these settings name from the environment now, so an unset variable
        stops a process at start-up (a ``ValueError`` naming it) instead of failing its first verdict."""
        if self.kind != "offline":
            self.llm.api_key()
            if self.cache.backend == "redis":
                self.cache.redis_password()

    def build_verifier(self) -> TieredVerifier:
        """A fresh verifier for this process. Network clients and files open on first use."""
        from speciarl_verl.judge.tiered import TieredVerifier

        return TieredVerifier(self)
