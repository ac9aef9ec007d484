"""The documentation cannot drift from the code: docs/cli.md is what the CLI generates, and every
`synthmed` command line in README.md's code blocks names a real command with real options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from synthmed.cli import docs

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "make docs   (or: python -m synthmed.cli.docs --out docs/cli.md)"


def test_cli_reference_is_the_generated_text():
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == docs.render(), (
        f"docs/cli.md is out of date with the CLI; regenerate it with: {REGENERATE}")


def test_cli_reference_covers_every_command_and_option():
    """The generator walks the whole app: a command or option missing from the text is a bug
    in the walk, which the equality test above could not see."""
    text = docs.render()
    paths = [" ".join(path) for path, _, _ in docs.walk(docs.click_app())]
    assert {"synthmed ingest", "synthmed audit", "synthmed release", "synthmed identity train"} <= set(paths)
    for path, cmd, _ in docs.walk(docs.click_app()):
        section = text.split(f"\n## {' '.join(path)}\n", 1)[1].split("\n## ", 1)[0]
        for param in cmd.params:
            for opt in param.opts if param.opts[0].startswith("-") else []:
                assert f"`{opt}" in section, (path, opt)


# -- README.md --------------------------------------------------------------------------------

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")


def _command_lines(markdown: str) -> list[str]:
    """Every shell line of the fenced code blocks, continuation lines joined."""
    lines = []
    for block in _FENCE.findall(markdown):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                lines.append(line.strip())
    return lines


def _synthmed_words(line: str) -> list[str] | None:
    """The words of a `synthmed` command on `line` (after VAR=value prefixes and a torchrun
    launcher with its options), from the word `synthmed`, or None if the line runs something else."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    while words and _ASSIGN.match(words[0]):
        words = words[1:]
    if words and words[0] == "torchrun":
        words = [w for w in words[1:]]
        while words and words[0].startswith("-"):
            words = words[1:]
    if not words or not (words[0] == "synthmed" or words[0].endswith("/synthmed")):
        return None
    return ["synthmed", *words[1:]]


def readme_commands() -> list[list[str]]:
    return [w for w in map(_synthmed_words, _command_lines((ROOT / "README.md").read_text()))
            if w is not None]


def check_command(words: list[str]) -> None:
    """Raise (LookupError or click's UsageError) if `words` is not a command line the CLI parses:
    an unknown command, an unknown option, an option missing its value, or too many arguments.
    Values are not converted (README paths need not exist)."""
    cmd, ctx, rest = docs.find_command(words)
    opts, extra, _ = cmd.make_parser(ctx).parse_args(args=list(rest))
    if extra:
        raise LookupError(f"{' '.join(words[:2])}: unexpected extra argument(s) {extra}")


def test_readme_command_checker_rejects_what_the_cli_rejects():
    """The checker below is itself checked: it must refuse each kind of drift."""
    check_command(["synthmed", "ingest", "SRC", "--out", "DATA", "-c", "cxr-64"])
    check_command(["synthmed", "identity", "train", "--dataset", "D", "--out", "W"])
    for bad in (["synthmed", "ingestt", "SRC"],                      # no such command
                ["synthmed", "ingest", "SRC", "--outt", "DATA"],     # no such option
                ["synthmed", "train", "DATA", "--config"],           # option without its value
                ["synthmed", "inspect", "DATA", "MORE"],             # one argument too many
                ["synthmed", "identity", "trian"]):                  # no such subcommand
        with pytest.raises(Exception):
            check_command(bad)
    assert _synthmed_words("SYNTHMED_NO_PROGRESS=1 torchrun --nproc_per_node=4 .venv/bin/synthmed "
                           "train DATA  # note") == ["synthmed", "train", "DATA"]
    assert _synthmed_words("pip install synthmed") is None


def test_every_readme_command_is_a_real_command_line():
    commands = readme_commands()
    # The README has a walkthrough: far more than the quick start's one synthmed line.
    assert len(commands) >= 10, commands
    problems = []
    for words in commands:
        try:
            check_command(words)
        except Exception as err:  # noqa: BLE001 (click's UsageError and LookupError alike)
            problems.append(f"{shlex.join(words)}: {err}")
    assert not problems, "README.md names commands or options the CLI does not have:\n" + "\n".join(problems)


def test_readme_names_every_command():
    """A newcomer finds each top-level command in the README (the details are in docs/cli.md)."""
    text = (ROOT / "README.md").read_text()
    group = docs.click_app()
    missing = [path[1] for path, _, _ in docs.walk(group) if len(path) == 2
               and f"synthmed {path[1]}" not in text]
    assert not missing, f"README.md never mentions: {missing}"


def test_quick_start_block_is_the_contract():
    """Exactly one quick-start block between its markers, two commands: the demo test runs them."""
    text = (ROOT / "README.md").read_text()
    assert text.count("<!-- quick-start -->") == 1 and text.count("<!-- /quick-start -->") == 1
    block = text.split("<!-- quick-start -->", 1)[1].split("<!-- /quick-start -->", 1)[0]
    lines = _command_lines(block)
    assert len(lines) == 2 and lines[0] == "make venv", lines
    assert _synthmed_words(lines[1])[:2] == ["synthmed", "demo"], lines


def test_make_bench_has_a_quick_form_of_every_benchmark():
    """`make bench` (benchmarks/run_all.py) runs every script in benchmarks/; a new script without
    quick arguments there would silently never run. (Nothing is run here.)"""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("_bench_run_all", ROOT / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = run_all  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(run_all)
    finally:
        del sys.modules[spec.name]
    listed = [b.script for b in run_all.benches(ROOT, ROOT, ROOT)]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == run_all.scripts(), "add the new script's quick form to benches() in benchmarks/run_all.py"
    assert "bench_ingest.py" in listed and "run_all.py" not in listed
