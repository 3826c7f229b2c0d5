"""mkdocs hook (mkdocs.yml `hooks:`): the CLI reference page, generated from the argument parsers.

The page (reference/cli.md) exists only in the built site; tests/docs/test_manual.py renders it
too and fails when a flag or a command has no documentation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = "reference/cli.md"


def _import_cli():  # noqa: ANN202 - the module triton_core.cli
    # the manual documents this clone's sources, whatever else the venv holds
    sys.path.insert(0, str(ROOT / "core"))
    try:
        from triton_core import cli
    except ImportError as e:
        raise SystemExit(f"the CLI reference imports triton_core, whose dependencies this venv lacks ({e}): "
                         "build the manual with the venv of `bash scripts/test.sh`, or install ./core "
                         "next to mkdocs") from None

    return cli


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(action: argparse.Action) -> str:
    if action.default in (None, [], "", argparse.SUPPRESS) or action.nargs == 0:
        return ""
    return f"`{action.default}`"


def _flags_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| flag | default | meaning |", "|---|---|---|"]
    # the parser's own formatter: the same flag spellings and metavars as --help
    formatter = parser._get_formatter()  # noqa: SLF001
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of its actions
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            continue
        invocation = formatter._format_action_invocation(action)  # noqa: SLF001
        names = ", ".join(f"`{part}`" for part in invocation.split(", "))
        help_text = action.help or ""
        rows.append(f"| {names} | {_default(action)} | {_cell(help_text)} |")
    return rows


def render() -> str:
    cli = _import_cli()
    from triton_core.frontends.ray_serve import ray_parser  # imports ray only when serving
    server = cli.build_parser()
    triton = cli.build_triton_parser()
    lines = [
        "# Command-line reference",
        "",
        "Generated from the argument parsers (`triton_core/cli.py`) when the manual is built.",
        "",
        "## tritonserver",
        "",
        f"`tritonserver` takes Triton's flags; `triton serve` takes the same. {server.description}.",
        "",
        *_flags_table(server),
        "",
        "### Triton flags that are refused",
        "",
        "These flags of Triton's name features this server does not provide: each stops the "
        "server at start with the reason below, rather than being ignored.",
        "",
        "| flag | reason |",
        "|---|---|",
        *(f"| `{flag}` | {_cell(reason)} |" for flag, reason in cli._REFUSED.items()),  # noqa: SLF001
        "",
        "## triton",
        "",
        *_flags_table(triton),
        "",
    ]
    commands = next(a for a in triton._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    helps = {c.dest: c.help for c in commands._choices_actions}  # noqa: SLF001
    for name, sub in commands.choices.items():
        lines += [f"### triton {name}", "", _cell(helps.get(name) or ""), ""]
        if name == "serve":
            lines += ["Takes the flags of [tritonserver](#tritonserver). With `--ray`, these too "
                      "([Scaling out](../scaling-out.md)):", "", *_flags_table(ray_parser()), ""]
        elif name == "conformance":
            lines += ["`triton conformance BACKEND [pytest arguments]`: its options are in "
                      "[the conformance suite](../conformance.md).", ""]
        else:
            lines += [*_flags_table(sub), ""]
    return "\n".join(lines)


def on_files(files, config):  # noqa: ANN001, ANN201 - mkdocs' hook signature
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files
