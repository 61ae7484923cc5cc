"""The README and docs/ run as written: every ``bash`` and ``python`` block is run in order, in one
scratch folder, with ``wmsim`` and ``python`` of this checkout, offline; and every ``wmsim`` command
line of every block (run or not) parses, so no option can drift from the command line.

A block may be preceded by HTML comments (invisible on the rendered page)::

    <!-- docs-test: skip: REASON -->            not run (trains for long, needs a GPU, a display, the
                                                network); REASON shows in the test report
    <!-- docs-test: needs PATH: COMMAND -->     before the block, run COMMAND (a shell line) if PATH does
                                                not exist yet: a quick stand-in (a tiny-preset run) for a
                                                path that a skipped block makes
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}
FENCE = re.compile(r"^(\s*)```([\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
NEEDS = re.compile(r"^needs\s+(\S+?):\s+(.+)$")
OPTION = re.compile(r"(?<![\w-])--[a-z][\w.-]*[a-z0-9]")


@dataclass(frozen=True)
class Block:
    """One fenced block of a markdown file and its ``docs-test`` directives."""

    file: Path
    line: int
    language: str
    code: str
    skip: str | None
    needs: tuple[tuple[str, str], ...]
    problems: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    """The ``bash`` and ``python`` blocks of ``path`` with their directives."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start, language = i, fence.group(2)
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1
        if language not in LANGUAGES:
            continue
        directives = []
        j = start - 1
        while j >= 0 and MARKER.match(lines[j]):
            directives.insert(0, MARKER.match(lines[j]).group(1))  # type: ignore[union-attr]
            j -= 1
        skip, needs, problems = None, [], []
        for directive in directives:
            if directive.startswith("skip:"):
                skip = directive[len("skip:") :].strip() or None
                if skip is None:
                    problems.append("a skip without a reason")
            elif (match := NEEDS.match(directive)) is not None:
                needs.append((match.group(1), match.group(2)))
            else:
                problems.append(f"unknown directive {directive!r}")
        code = textwrap.dedent("\n".join(body))
        found.append(Block(path, start + 1, LANGUAGES[language], code, skip, tuple(needs), tuple(problems)))
    return found


BLOCKS = [block for path in DOCS for block in read_blocks(path)]


def test_every_block_runs_or_says_why_not() -> None:
    assert len(BLOCKS) > 15
    problems = [f"{b.id}: {p}" for b in BLOCKS for p in b.problems]
    assert not problems, problems
    assert any(b.skip is None for b in BLOCKS)


# ---------------------------------------------------------------------------------------------- options
def wmsim_command_lines(code: str) -> list[list[str]]:
    """The arguments of every ``wmsim`` command in shell code (continuations joined, comments dropped,
    ``[--optional]`` brackets of usage lines opened; ``pip install wmsim`` is no command)."""
    calls = []
    for line in code.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line.replace("[", " ").replace("]", " "), comments=True)
        for i, token in enumerate(tokens):  # the command, or torchrun's --no-python wmsim
            if token == "wmsim" and (i == 0 or tokens[i - 1] == "--no-python"):
                calls.append(tokens[i + 1 :])
    return calls


def _parse(args: list[str]) -> argparse.Namespace:
    """Parse a wmsim command line as the CLI does, and build the config of train and pretrain (which
    checks every option's value)."""
    from agents.cli import build_parser, config_from_args
    from agents.commands import pretrain

    namespace = build_parser().parse_args(args)
    if namespace.command == "train":
        config_from_args(namespace)
    elif namespace.command == "pretrain":
        pretrain.config_from_args(namespace)
    return namespace


COMMANDS = [
    (block.id, args)
    for block in BLOCKS
    for code in (block.code if block.language == "bash" else "", *(c for _, c in block.needs))
    for args in wmsim_command_lines(code)
]


def test_the_docs_use_wmsim_commands() -> None:
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(
    ("where", "args"), COMMANDS, ids=[f"{w} wmsim {' '.join(a)[:60]}" for w, a in COMMANDS]
)
def test_every_wmsim_command_in_the_docs_parses(
    where: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        _parse(args)
    except SystemExit:
        pytest.fail(f"{where}: `wmsim {' '.join(args)}` does not parse: {capsys.readouterr().err}")


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _subparsers(sub)
    return found


def test_the_cli_help_names_only_options_that_exist() -> None:
    from agents.cli import build_parser

    parsers = _subparsers(build_parser())
    options = {option for p in parsers for action in p._actions for option in action.option_strings}
    texts = [p.description or "" for p in parsers]
    texts += [action.help or "" for p in parsers for action in p._actions]
    named = {option for text in texts for option in OPTION.findall(text)}
    assert named and named <= options, sorted(named - options)


# ---------------------------------------------------------------------------------------------- running
@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The folder every block runs in (``examples`` linked in), and the environment: ``wmsim`` and
    ``python`` of this checkout first on PATH, the Hub offline with an empty cache, no display."""
    folder = tmp_path_factory.mktemp("docs")
    shims = tmp_path_factory.mktemp("bin")
    for name, command in (("wmsim", f'"{sys.executable}" -m agents.cli'), ("python", f'"{sys.executable}"')):
        (shims / name).write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        (shims / name).chmod(0o755)
    (folder / "examples").symlink_to(ROOT / "examples")
    env = {
        **os.environ,
        "PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path_factory.mktemp("hf-home")),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "MPLBACKEND": "Agg",
        "SDL_VIDEODRIVER": "dummy",
    }
    env.pop("DISPLAY", None)
    return folder, env


def _run(command: list[str], folder: Path, env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_the_block_runs_as_written(block: Block, scratch: tuple[Path, dict[str, str]]) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    folder, env = scratch
    for path, command in block.needs:
        if not (folder / path).exists():
            _run(["bash", "-euo", "pipefail", "-c", command], folder, env, f"the stand-in `{command}`")
            assert (folder / path).exists(), f"`{command}` did not make {path}"
    if block.language == "bash":
        _run(["bash", "-euo", "pipefail", "-c", block.code], folder, env, block.id)
    else:
        script = folder / f"_block_{block.file.stem}_{block.line}.py"
        script.write_text(block.code + "\n")
        _run([sys.executable, str(script)], folder, env, block.id)
