"""The documentation's commands, read from the documents themselves so they cannot drift.

* README's "Each command on the CPU" block runs as written, line after line as a newcomer pastes it,
  in a fresh folder holding copies of the repository files it names (twice: a second run works too);
* every ``speciarl`` command in a fenced block of README.md, recipes/README.md and docs/ parses: no
  option that does not exist, no missing required one;
* README's Python API block gives the values its comments show;
* the config tables of README and recipes/README.md name every shipped config and no other.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speciarl_verl.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, ROOT / "recipes" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIGS = ROOT / "speciarl_verl" / "config"


def fenced_blocks(path: Path) -> list[tuple[str, str, str]]:
    """``(language, code, heading)`` of each fenced block of a markdown file; ``heading`` is the last
    ``##`` heading above it."""
    blocks, heading = [], ""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        if line.startswith("```"):
            language, body = line[3:].strip(), []
            index += 1
            while not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            blocks.append((language, "\n".join(body), heading))
        index += 1
    return blocks


def shell_commands(code: str, first_word: str | None = None) -> list[list[str]]:
    """The commands of a shell block (those starting with ``first_word`` if given): continuation lines
    joined, comments dropped, split as bash would."""
    lines = re.sub(r"\\\n\s*", " ", code).splitlines()
    if first_word is not None:
        lines = [line for line in lines if line.split()[:1] == [first_word]]
    return [words for line in lines if (words := shlex.split(line, comments=True))]


def cpu_block() -> list[list[str]]:
    [code] = [code for lang, code, heading in fenced_blocks(README) if heading == "Each command on the CPU"]
    return shell_commands(code)


def argv_for(words: list[str]) -> list[str]:
    """The command as this test runs it: the ``speciarl`` script and the interpreter of this environment
    (the script, not ``python -m``: the working folder holds a copy of ``speciarl_verl/...`` files)."""
    if words[0] == "speciarl":
        script = Path(sys.executable).with_name("speciarl")
        assert script.is_file(), f"{script}: the package is not installed in this environment"
        return [str(script), *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    raise AssertionError(f"README's CPU block runs only speciarl and python commands, not {words[0]!r}")


def test_readmes_cpu_commands_run_as_written(tmp_path):
    commands = [words for words in cpu_block() if words[0] not in (".", "source")]  # activating the venv
    steps = {tuple(w[1:3]) if w[1] in ("data", "eval") else (w[1],) for w in commands if w[0] == "speciarl"}
    assert {("data", "build"), ("verify",), ("eval", "judge"), ("eval", "report")} <= steps
    for words in commands:  # the repository files a command reads, copied to the same place
        for word in words:
            source = ROOT / word
            if not word.startswith("-") and "/" in word and source.is_file():
                (tmp_path / word).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, tmp_path / word)
    for attempt in ("first", "second"):  # a second run of the same commands works too
        for words in commands:
            done = subprocess.run(argv_for(words), cwd=tmp_path, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{attempt} run of {shlex.join(words)}:\n{done.stderr[-2000:]}"
    written = [words[i + 1] for words in commands for i, w in enumerate(words[:-1]) if w in ("--out", "--output")]
    assert written and all((tmp_path / path).exists() for path in written), written
    assert (tmp_path / "outputs" / "report" / "report.md").is_file()


def documented_speciarl_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCUMENTS:
        for language, code, _ in fenced_blocks(path):
            if language in ("bash", "sh"):
                found += [(str(path.relative_to(ROOT)), words) for words in shell_commands(code, "speciarl")]
    return found


@pytest.mark.parametrize(
    ("document", "words"),
    documented_speciarl_commands(),
    ids=[f"{doc}:{' '.join(words[1:3])}" for doc, words in documented_speciarl_commands()],
)
def test_every_documented_speciarl_command_parses(document, words, capsys):
    try:
        build_parser().parse_args(words[1:])
    except SystemExit as exit_:
        pytest.fail(f"{document}: `{shlex.join(words)}` does not parse (exit {exit_.code}): {capsys.readouterr().err}")


def test_the_python_api_block_gives_the_values_its_comments_show():
    [code] = [code for lang, code, heading in fenced_blocks(README) if lang == "python" and heading == "Python API"]
    namespace: dict = {}
    checked = 0
    for line in code.splitlines():
        statement, _, shown = line.partition("  # ")
        if statement.startswith(("from ", "import ")):
            exec(statement, namespace)  # the README's own import line
        elif statement.strip() and shown:
            assert eval(statement, namespace) == ast.literal_eval(shown.strip()), line
            checked += 1
    assert checked >= 4


def table_configs(path: Path) -> set[str]:
    """The config names the first column of a markdown table row names in ``path`` (``speciarl_grpo_n5``,
    ``_n15`` after it, ``speciarl_grpo_scala1/2/3``), expanded against the shipped names."""
    shipped = {p.stem for p in CONFIGS.glob("speciarl_*.yaml")}
    named = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `speciarl_"):
            continue
        first = line.split("|")[1]
        names = re.findall(r"`([^`]+)`", first)
        full = names[0]
        for name in names:
            for part in name.split("/"):
                if part.startswith("speciarl_"):
                    candidate = part
                elif part.startswith("_"):  # a sibling: the first name's stem (cut at an underscore) + part
                    stems = [full[:i] for i in range(len(full), 0, -1) if i == len(full) or full[i] == "_"]
                    candidate = next((stem + part for stem in stems if stem + part in shipped), full + part)
                else:  # scala1/2/3: the first part without its trailing number, + this number
                    candidate = re.sub(r"\d+$", "", name.split("/")[0]) + part
                named.add(candidate)
    return named


@pytest.mark.parametrize("document", [README, ROOT / "recipes" / "README.md"], ids=["README", "recipes/README"])
def test_the_config_tables_name_every_shipped_config(document):
    shipped = {p.stem for p in CONFIGS.glob("speciarl_*.yaml")}
    named = table_configs(document)
    assert named - shipped == set(), "named but not shipped"
    assert shipped - named == set(), "shipped but not in the table"
