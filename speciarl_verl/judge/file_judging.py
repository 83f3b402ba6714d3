"""Judge a JSONL file into a JSONL file of verdicts, resumably: the pipeline under ``speciarl verify``
and ``speciarl eval judge``.

A command describes its rows with a :class:`RowFormat` (what an input item is, its key, the request it
sends to the judge, its output row); this module does the rest, the same way for both commands:

* **settings**: :func:`settings_from_cli` merges defaults, a settings file, flags and ``KEY=VALUE``
  overrides on OmegaConf; :func:`file_judge_settings` validates them, refusing ``deferred_outcome``;
* **verifier**: built from the settings (:func:`open_verifier`, checked before OUT is touched) only when
  there is something to judge, and closed at the end; a verifier the caller passes is the caller's;
* **fingerprint**: every row written carries ``judge_fingerprint``, a digest of everything in the
  settings that shapes a verdict (:func:`settings_fingerprint`: the judge kind and, unless it is
  ``offline``, the LLM judge's identity: model, prompt version, decoding, input cleaning);
* **resume**: every row already in OUT must be a row of the input with the same key, made by the same
  judge from the same fields: the pipeline checks the fingerprint, the format checks everything else
  that decides a verdict (:meth:`RowFormat.mismatch`: the answer, the ground truth, the class fields
  the rule tier reads, the parse mode). Matching items are skipped. An OUT row the input does not
  have, that differs from it, that another judge made, or that has no fingerprint (written before
  there was one, so nothing says which judge made it) is a
  :class:`~speciarl_verl.cli_errors.UserInputError`, one line naming ``OUT:line`` and what differs;
* **chunks**: items are judged ``chunk_size`` at a time; each chunk is appended and flushed, so an
  interruption loses at most the chunk in flight;
* **offline**: a pair the rule tier cannot decide is written with ``category: null``,
  ``reason: "undecided"``, ``source: "offline"``, never with a guessed category;
* **failure**: a :class:`~speciarl_verl.judge.verifier.JudgeError` stops the run as
  :class:`JudgingStopped` after the chunk's reached verdicts are written (an ordered format, whose rows
  are keyed by position, writes none of that chunk: OUT stays a prefix of the input).

Example, an offline run on ``speciarl verify``'s format (:class:`speciarl_verl.judge.cli.PairRows`)::

    settings = file_judge_settings({"kind": "offline"})
    summary = asyncio.run(judge_file(PairRows(input_path), out_path, settings=settings))
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from speciarl_verl.cli_errors import UserInputError, one_line, user_input
from speciarl_verl.core.categories import Category
from speciarl_verl.jsonl_io import JsonlAppender, drop_torn_tail, read_jsonl
from speciarl_verl.judge.verifier import JudgeError, Verdict, VerificationRequest, Verifier

if TYPE_CHECKING:
    from speciarl_verl.judge.settings import JudgeSettings

__all__ = [
    "CHUNK",
    "DEFERRED_SOURCE",
    "FINGERPRINT_KEY",
    "UNDECIDED",
    "FileJudgingSummary",
    "JudgingStopped",
    "Outcome",
    "RowFormat",
    "difference",
    "file_judge_settings",
    "judge_file",
    "open_verifier",
    "outcome_of",
    "resumed_keys",
    "settings_fingerprint",
    "settings_from_cli",
]

#: Items per verifier call and per flushed append.
CHUNK = 256

#: ``reason`` of a row whose ``category`` is ``null`` because the rule tier had no rule for it.
UNDECIDED = "undecided"

#: ``source`` the judge gives a pair its rule tier deferred; its category is a placeholder, not a verdict.
DEFERRED_SOURCE = "deferred"

#: The key of every output row that holds :func:`settings_fingerprint` of the judge that made it.
FINGERPRINT_KEY = "judge_fingerprint"

Item = TypeVar("Item")


# ---------------------------------------------------------------- settings from the command line


def settings_from_cli(
    config_file: Path | None,
    overrides: Sequence[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    option: str = "--judge-set",
    what: str = "judge settings",
) -> dict[str, Any]:
    """A settings mapping from the command line, layer over layer (nested mappings merge key by key, a
    list or scalar replaces): ``base``, the YAML/JSON ``config_file``, ``flags`` (the command's own
    options), then each ``KEY=VALUE`` of ``overrides`` (``option`` names them in errors). Values are
    YAML scalars and flow collections, dotted keys nest, OmegaConf interpolations are resolved.

    A file that cannot be read, is not YAML or not a mapping (of ``what``), and a malformed override,
    are :class:`UserInputError`.

    >>> settings_from_cli(None, ["llm.model=m", "llm.endpoints=[http://h:8002/v1]"], base={"kind": "llm"})
    {'kind': 'llm', 'llm': {'model': 'm', 'endpoints': ['http://h:8002/v1']}}
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    merged = OmegaConf.create(dict(base or {}))
    if config_file is not None:
        merged = OmegaConf.merge(merged, _settings_file(config_file, what))
    if flags:
        merged = OmegaConf.merge(merged, dict(flags))
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not all(part.strip() for part in key.split(".")):
            raise UserInputError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item]))
        except (yaml.YAMLError, OmegaConfBaseException) as error:
            raise UserInputError(f"{option} {item!r}: {one_line(error)}") from error
    try:
        return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise UserInputError(f"{option}: {one_line(error)}") from error


def _settings_file(path: Path, what: str) -> dict[str, Any]:
    """The mapping in a YAML/JSON settings file, its interpolations resolved (so errors name the file)."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except OSError as error:
        raise UserInputError(f"{path}: cannot read it ({error.strerror or error})") from error
    except (yaml.YAMLError, OmegaConfBaseException) as error:
        raise UserInputError(f"{path}: not a valid settings file ({one_line(error)})") from error
    if not isinstance(loaded, dict):
        raise UserInputError(f"{path}: expected a mapping of {what}, got {type(loaded).__name__}")
    return loaded


def file_judge_settings(mapping: Mapping[str, Any]) -> JudgeSettings:
    """The validated judge settings of a file-judging run; bad settings are :class:`UserInputError`.

    ``deferred_outcome`` (the training judge's placeholder for undecided pairs) is refused: a file
    run writes such pairs as undecided.

    >>> file_judge_settings({"kind": "offline"}).kind
    'offline'
    """
    from speciarl_verl.judge.settings import JudgeSettings

    if "deferred_outcome" in mapping:
        raise UserInputError(
            f"judge setting deferred_outcome={mapping['deferred_outcome']!r} does not apply to evaluation or "
            "`speciarl verify`: a pair no judge decided is written as undecided (category null, reason "
            "undecided); drop it (`speciarl eval report --undecided exclude|wrong|<category>` chooses how a "
            "report counts such pairs)"
        )
    with user_input():
        return JudgeSettings.from_mapping(mapping)


def open_verifier(settings: JudgeSettings) -> Verifier:
    """The verifier for ``settings``; what only shows when it is built (an unset ``api_key_env`` or
    ``redis_password_env``, a prompt missing from ``llm.prompt_file``) is :class:`UserInputError`.
    The caller closes it."""
    with user_input():
        settings.check_secrets()
        return settings.build_verifier()


def settings_fingerprint(settings: JudgeSettings) -> str:
    """16 hex digits of SHA-256 over what in ``settings`` shapes a verdict: ``kind``, and for a judge
    that asks an LLM (``llm``, ``auto``) its identity
    (:func:`~speciarl_verl.judge.llm_judge.llm_identity` of the resolved prompt). Endpoints, retries,
    the cache and the failure policy change how verdicts are reached, not what they are, and are left
    out. A prompt that cannot be resolved is :class:`UserInputError`.

    >>> offline = settings_fingerprint(file_judge_settings({"kind": "offline"}))
    >>> len(offline), offline == settings_fingerprint(file_judge_settings({"kind": "offline", "llm": {"model": "x"}}))
    (16, True)
    >>> a, b = (settings_fingerprint(file_judge_settings({"kind": "auto", "llm": {"model": m}})) for m in "ab")
    >>> a == b
    False
    """
    shape: dict[str, Any] = {"kind": settings.kind}
    if settings.kind != "offline":
        from speciarl_verl.judge.llm_judge import llm_identity, resolve_prompt

        with user_input():
            shape["llm"] = llm_identity(settings.llm, resolve_prompt(settings.llm).version)
    canonical = json.dumps(shape, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    """What a row of OUT says about its pair: a category and who gave it, or ``None`` and why not.

    >>> outcome_of(Verdict(Category.WRONG, "deferred"))
    Outcome(category=None, source='offline', reason='undecided')
    """

    category: Category | None
    source: str
    reason: str | None = None

    @property
    def tally(self) -> str:
        """The count a summary files it under: the reason of a null category, else the source."""
        return self.source if self.category is not None else str(self.reason)


def outcome_of(verdict: Verdict) -> Outcome:
    """The outcome a verifier's verdict becomes; a ``deferred`` verdict's category is a placeholder, so
    the pair is written undecided."""
    if verdict.source == DEFERRED_SOURCE:
        return Outcome(None, "offline", UNDECIDED)
    return Outcome(verdict.category, verdict.source)


# ---------------------------------------------------------------- the pipeline


class RowFormat(ABC, Generic[Item]):
    """One command's rows on the pipeline.

    ``items`` are the input's items in order. ``ordered`` formats have no key but the position (OUT is a
    prefix of the input, so a chunk the judge failed on is written whole or not at all); the others key
    each item (a failed chunk still writes the verdicts it reached). ``out_option`` is the command's
    flag for OUT, named in resume errors.
    """

    input_path: Path
    items: Sequence[Item]
    ordered: bool = False
    out_option: str = "--out"

    @abstractmethod
    def key(self, item: Item) -> Hashable:
        """The item's key; for an ordered format, its position."""

    @abstractmethod
    def describe(self, key: Hashable) -> str:
        """The key in words (``"sample 'a' answer 0"``), for errors."""

    @abstractmethod
    def request(self, item: Item) -> VerificationRequest | Outcome:
        """What to ask the judge about the item, or its outcome when no judge is asked."""

    @abstractmethod
    def output_row(self, item: Item, outcome: Outcome) -> dict[str, Any]:
        """The row OUT gets for the item (:func:`judge_file` adds :data:`FINGERPRINT_KEY`)."""

    @abstractmethod
    def out_key(self, row: Any, where: str, position: int) -> Hashable:
        """The key of an OUT row (``position``: rows of OUT before it); a malformed row raises
        ``ValueError`` starting with ``where`` (``file:line``)."""

    @abstractmethod
    def mismatch(self, item: Item, row: Any, out_name: str) -> str | None:
        """Why OUT's ``row`` (OUT is the file ``out_name``) is not the item's verdict, or ``None``: the
        first field that decides a verdict (the answer, the ground truth, a class field, the parse mode)
        and differs, in words, with both values where they are short (:func:`difference`). The judge's
        fingerprint is checked apart (:func:`resumed_keys`)."""


@dataclass(frozen=True)
class FileJudgingSummary:
    """What :func:`judge_file` did: ``by_outcome`` counts this run's rows by :attr:`Outcome.tally`."""

    rows: int
    resumed: int
    written: int
    by_outcome: Mapping[str, int] = field(default_factory=dict)


class JudgingStopped(JudgeError):
    """The judge failed part-way: ``in_out`` of the ``total`` rows are in OUT; the same run resumes."""

    def __init__(self, error: JudgeError, in_out: int, total: int):
        super().__init__(str(error), error.verdicts, error.endpoint)
        self.in_out = in_out
        self.total = total


def resumed_keys(rows: RowFormat, out_path: Path, fingerprint: str) -> set[Hashable]:
    """The keys of the items OUT already holds, each row checked against the input and against this run's
    judge ``fingerprint`` (:func:`settings_fingerprint`; see the module)."""
    if not out_path.exists():
        return set()
    drop_torn_tail(out_path)  # a line cut by an interruption: that item is judged again
    known = {rows.key(item): item for item in rows.items}
    seen: dict[Hashable, int] = {}
    for line, row in read_jsonl(out_path):
        where = f"{out_path}:{line}"
        key = rows.out_key(row, where, len(seen))
        if key not in known:
            raise UserInputError(
                f"{where}: {rows.input_path} does not have {rows.describe(key)}; {out_path.name} belongs to "
                f"another input, use a new {rows.out_option}"
            )
        if key in seen:
            raise UserInputError(f"{where}: {rows.describe(key)} repeats line {seen[key]}; use a new {rows.out_option}")
        problem = (  # an unknown judge first: the other checks would misread such a row
            _unverifiable(row, out_path.name)
            or rows.mismatch(known[key], row, out_path.name)
            or _another_judge(row[FINGERPRINT_KEY], fingerprint, out_path.name)
        )
        if problem is not None:
            raise UserInputError(f"{where}: {problem}; use a new {rows.out_option}")
        seen[key] = line
    return set(seen)


#: Longest value (as ``repr``) a resume error quotes; longer ones are named, not shown.
_QUOTED = 60


def difference(what: str, ours: Any, theirs: Any, input_name: str, out_name: str) -> str:
    """A field that differs between the input (``ours``) and OUT (``theirs``), in words for a resume
    error: both values when they are short, else only the field.

    >>> difference("answer", "bird", "Laysan Albatross", "p.jsonl", "v.jsonl")
    "answer 'bird' in p.jsonl, 'Laysan Albatross' in v.jsonl"
    >>> difference("answer", "bird", "x" * 80, "p.jsonl", "v.jsonl")
    'the answer differs between p.jsonl and v.jsonl'
    """
    shown = repr(ours), repr(theirs)
    if max(map(len, shown)) > _QUOTED:
        return f"the {what} differs between {input_name} and {out_name}"
    return f"{what} {shown[0]} in {input_name}, {shown[1]} in {out_name}"


def _unverifiable(row: Mapping[str, Any], out_name: str) -> str | None:
    """Why nothing says which judge made the row (no fingerprint, or not a string), or ``None``.

    A row without one was written before rows had it: the run cannot tell whether appending to the
    file would mix two judges' verdicts, so it refuses rather than guess.
    """
    if FINGERPRINT_KEY not in row:
        return (
            f"{out_name} was written without a judge fingerprint ({FINGERPRINT_KEY}, by an older version), so "
            "resuming it cannot be verified"
        )
    if not isinstance(row[FINGERPRINT_KEY], str):
        return f"{FINGERPRINT_KEY} must be a string, got {row[FINGERPRINT_KEY]!r}"
    return None


def _another_judge(theirs: str, ours: str, out_name: str) -> str | None:
    """Why a row's fingerprint is not this run's, or ``None``."""
    if theirs == ours:
        return None
    return (
        f"judged by another judge ({FINGERPRINT_KEY} {theirs!r} in {out_name}, {ours!r} for this run: the judge "
        "kind, model, prompt or decoding differ)"
    )


async def judge_file(
    rows: RowFormat[Item],
    out_path: Path,
    *,
    settings: JudgeSettings,
    verifier: Verifier | None = None,
    chunk_size: int = CHUNK,
    progress: bool = True,
) -> FileJudgingSummary:
    """Judge every item of ``rows`` not yet in ``out_path`` and append its row; returns the counts.

    Every row gets ``settings``' fingerprint (:data:`FINGERPRINT_KEY`); the verifier is ``verifier``
    (left open; the caller vouches that it judges as ``settings`` would) or one built from ``settings``
    (closed here). Raises :class:`UserInputError` for an OUT of another input or bad settings (before OUT is
    written), :class:`JudgingStopped` when the judge fails (finished rows stay in OUT), and
    ``RuntimeError`` for a verifier that breaks its contract.
    """
    from rich.progress import Progress

    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    fingerprint = settings_fingerprint(settings)
    done = resumed_keys(rows, out_path, fingerprint)
    pending = [item for item in rows.items if rows.key(item) not in done]
    counts: Counter[str] = Counter()
    owned = verifier is None and bool(pending)
    if owned:
        verifier = open_verifier(settings)
    written = 0
    try:
        with Progress(disable=not progress) as bar, JsonlAppender(out_path) as out:
            task = bar.add_task("judging", total=len(rows.items), completed=len(done))
            for start in range(0, len(pending), chunk_size):
                chunk = pending[start : start + chunk_size]
                outcomes, failure = await _judge_chunk(rows, chunk, verifier)  # type: ignore[arg-type]
                if failure is not None and rows.ordered:
                    outcomes = [None] * len(chunk)
                reached = [(item, o) for item, o in zip(chunk, outcomes, strict=True) if o is not None]
                out.write_many(
                    {**rows.output_row(item, outcome), FINGERPRINT_KEY: fingerprint} for item, outcome in reached
                )
                out.flush()
                counts.update(outcome.tally for _, outcome in reached)
                written += len(reached)
                bar.advance(task, len(reached))
                if failure is not None:
                    raise JudgingStopped(failure, len(done) + written, len(rows.items)) from failure
    finally:
        if owned:
            await verifier.aclose()  # type: ignore[union-attr]
    return FileJudgingSummary(len(rows.items), len(done), written, dict(counts))


async def _judge_chunk(
    rows: RowFormat[Item], chunk: Sequence[Item], verifier: Verifier
) -> tuple[list[Outcome | None], JudgeError | None]:
    """Each item's outcome (``None`` where the judge failed on it) and the judge's error, if any."""
    planned = [rows.request(item) for item in chunk]
    outcomes: list[Outcome | None] = [p if isinstance(p, Outcome) else None for p in planned]
    asked = [i for i, p in enumerate(planned) if isinstance(p, VerificationRequest)]
    if not asked:
        return outcomes, None
    requests = [p for p in planned if isinstance(p, VerificationRequest)]
    failure: JudgeError | None = None
    try:
        verdicts: Sequence[Verdict | None] = await verifier.verify(requests)
    except JudgeError as error:
        verdicts, failure = error.verdicts, error
    if len(verdicts) != len(asked):
        if failure is None:
            raise RuntimeError(f"the verifier returned {len(verdicts)} verdicts for {len(asked)} requests")
        verdicts = [None] * len(asked)  # an error without per-request verdicts: none was reached
    for i, verdict in zip(asked, verdicts, strict=True):
        if verdict is not None:
            outcomes[i] = outcome_of(verdict)
    return outcomes, failure
