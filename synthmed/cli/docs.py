"""The CLI reference, docs/cli.md, generated from the typer app itself.

    python -m synthmed.cli.docs --out docs/cli.md      # or: make docs
    python -m synthmed.cli.docs                        # print it

Every command, argument and option comes from click's view of the app (`typer.main.get_command`),
so the reference cannot describe a flag the code does not have; tests/test_docs.py fails when
docs/cli.md differs from what this module generates. The text depends only on the code: commands
in the app's order, no terminal width, no environment.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import typing
from pathlib import Path

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

HEADER = """\
# synthmed command-line reference

Generated from the code by `make docs` (`python -m synthmed.cli.docs --out docs/cli.md`); do not
edit by hand. `tests/test_docs.py` fails when this file and the code differ. `synthmed COMMAND
--help` prints the same on a terminal.
"""


def click_app() -> TyperGroup:
    """The click group behind `synthmed` (typer's own click), with every command registered."""
    from synthmed.cli import app  # importing the package registers each command on `app`

    return typer.main.get_command(app)


def walk(group: TyperGroup, path: tuple[str, ...] = ("synthmed",), parent: typer.Context | None = None):
    """(command path, command, context) for every command under `group`, depth first, in the
    app's order."""
    ctx = typer.Context(group, info_name=path[-1], parent=parent)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = typer.Context(cmd, info_name=name, parent=ctx)
        yield path + (name,), cmd, sub
        if isinstance(cmd, TyperGroup):
            yield from walk(cmd, path + (name,), ctx)


def find_command(words: list[str]):
    """The command a command line names (`["synthmed", "identity", "train", ...]`): (command,
    its context, the words after its name). Raises LookupError for an unknown command."""
    group = click_app()
    ctx = typer.Context(group, info_name=words[0])
    cmd, i = group, 1
    while isinstance(cmd, TyperGroup):
        if i >= len(words) or words[i] not in cmd.list_commands(ctx):
            known = ", ".join(cmd.list_commands(ctx))
            got = words[i] if i < len(words) else "nothing"
            raise LookupError(f"{' '.join(words[:i])}: no command {got!r} (known: {known})")
        cmd = cmd.get_command(ctx, words[i])
        ctx = typer.Context(cmd, info_name=words[i], parent=ctx)
        i += 1
    return cmd, ctx, words[i:]


def _help_text(cmd) -> str:
    text = inspect.cleandoc(cmd.help or cmd.short_help or "")
    # click's \b (no-rewrap) and \f (cut) markers are for the terminal, not for Markdown.
    text = text.split("\f", 1)[0]
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b").strip()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


_TYPES = {Path: "path", str: "text", int: "integer", float: "number", bool: "boolean"}


def _type_name(param) -> str:
    if isinstance(param, TyperOption) and param.is_flag:
        return "flag"
    ann = param.type_descriptor.annotation
    args = typing.get_args(ann)
    if typing.get_origin(ann) in (list, tuple) and args:
        return f"{_TYPES.get(args[0], getattr(args[0], '__name__', str(args[0])))}, repeatable"
    if typing.get_origin(ann) is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    return _TYPES.get(ann, getattr(ann, "__name__", str(ann)))


def _default(param) -> str:
    if param.required:
        return "required"
    value = param.default
    if isinstance(param, TyperOption) and param.is_flag:
        if param.secondary_opts:
            return f"`{param.opts[0] if value else param.secondary_opts[0]}`"
        return ""
    if value is None or value == () or value == []:
        return ""
    if callable(value):
        return "(computed)"
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def _metavar(param) -> str:
    name = (param.metavar or param.name).upper()
    name = f"{name}..." if param.nargs == -1 else name
    return name if param.required else f"[{name}]"


def _names(param) -> str:
    if isinstance(param, TyperArgument):
        return f"`{_metavar(param).strip('[]')}`"
    opts = [*param.opts]
    if param.secondary_opts:
        opts = [f"{a}/{b}" for a, b in zip(param.opts, param.secondary_opts)] + param.opts[1:]
    return ", ".join(f"`{o}`" for o in opts)


def _usage(path: tuple[str, ...], cmd) -> str:
    args = [_metavar(p) for p in cmd.params if isinstance(p, TyperArgument)]
    return " ".join([*path, "[OPTIONS]", *args])


def render() -> str:
    """The whole reference as Markdown."""
    group = click_app()
    commands = list(walk(group))
    lines = [HEADER, _help_text(group), "", "| command | what it does |", "|---|---|"]
    for path, cmd, _ in commands:
        anchor = "-".join(path)
        summary = _cell(_help_text(cmd).split("\n\n", 1)[0])
        lines.append(f"| [`{' '.join(path)}`](#{anchor}) | {summary} |")
    for path, cmd, ctx in commands:
        lines += ["", f"## {' '.join(path)}", ""]
        text = _help_text(cmd)
        if text:
            lines += [text, ""]
        if isinstance(cmd, TyperGroup):
            subs = ", ".join(f"`{' '.join(path)} {n}`" for n in cmd.list_commands(ctx))
            lines.append(f"Subcommands: {subs}.")
            continue
        lines += ["```text", _usage(path, cmd), "```"]
        params = [p for p in cmd.params if not getattr(p, "hidden", False)]
        if params:
            lines += ["", "| argument / option | type | default | description |",
                      "|---|---|---|---|"]
            for p in params:
                lines.append(f"| {_names(p)} | {_type_name(p)} | {_default(p)} | "
                             f"{_cell(getattr(p, 'help', None) or '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate the synthmed CLI reference (Markdown).")
    ap.add_argument("--out", type=Path, default=None, help="file to write (default: print it)")
    args = ap.parse_args(argv)
    text = render()
    if args.out is None:
        sys.stdout.write(text)
    else:
        from synthmed.io.atomic import write_text

        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
