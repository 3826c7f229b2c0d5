"""The manual (mkdocs.yml) documents every flag, command and hook.

The CLI reference page is rendered here as `mkdocs build` renders it (scripts/mkdocs_cli_reference.py);
CI builds the whole site with --strict (scripts/test.sh), which fails on a broken link or a page
missing from the nav.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

from triton_core import abi
from triton_core.cli import _REFUSED, build_parser, build_triton_parser
from triton_core.frontends.ray_serve import ray_parser

ROOT = Path(__file__).resolve().parents[2]


def _hook_module():  # noqa: ANN202 - the hook module
    path = ROOT / "scripts/mkdocs_cli_reference.py"
    spec = importlib.util.spec_from_file_location("mkdocs_cli_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cli_page() -> str:
    return _hook_module().render()


def _rows(page: str) -> dict[str, str]:
    """First cell of each table row -> the row's last cell."""
    rows = {}
    for line in page.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0]] = cells[-1]
    return rows


def _documented(page: str, option: str) -> str:
    # the meaning of the row whose flag cell names this option
    for names, meaning in _rows(page).items():
        if re.search(rf"`{re.escape(option)}( |`)", names):
            return meaning
    return ""


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]  # noqa: SLF001


@pytest.mark.parametrize("action", _options(build_parser()), ids=lambda a: a.option_strings[-1])
def test_every_tritonserver_flag_is_documented(cli_page: str, action: argparse.Action) -> None:
    for option in action.option_strings:
        if action.help == argparse.SUPPRESS:
            assert option in _REFUSED, f"{option} is hidden from --help but not a refused Triton flag"
        assert _documented(cli_page, option), f"tritonserver {option} has no documentation"


def test_every_triton_command_and_its_flags_are_documented(cli_page: str) -> None:
    commands = next(a for a in build_triton_parser()._actions  # noqa: SLF001
                    if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    for name, parser in commands.choices.items():
        section = cli_page.split(f"### triton {name}\n", 1)
        assert len(section) == 2, f"`triton {name}` has no section"
        body = section[1].split("\n### ", 1)[0]
        assert body.strip().splitlines()[0].strip(), f"`triton {name}` has no description"
        for action in _options(parser):
            for option in action.option_strings:
                assert _documented(body, option), f"triton {name} {option} has no documentation"


def test_every_triton_serve_ray_flag_is_documented(cli_page: str) -> None:
    body = cli_page.split("### triton serve\n", 1)[1].split("\n### ", 1)[0]
    for action in _options(ray_parser()):
        for option in action.option_strings:
            assert _documented(body, option), f"triton serve {option} has no documentation"


def test_an_undocumented_flag_fails_the_check() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documented", help="says what it does")
    parser.add_argument("--silent")
    page = "\n".join(_hook_module()._flags_table(parser))  # noqa: SLF001
    assert _documented(page, "--documented")
    assert not _documented(page, "--silent")


HOOKS = [name for name, _ in inspect.getmembers(abi.HookSpecs, inspect.isfunction)]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_and_a_row_in_the_abi_page(hook: str) -> None:
    assert inspect.getdoc(getattr(abi.HookSpecs, hook)), f"hook {hook} has no docstring"
    assert f"| `{hook}(" in (ROOT / "docs/abi.md").read_text(), f"hook {hook} has no row in docs/abi.md"


def test_the_abi_reference_page_renders_the_hookspecs() -> None:
    assert "::: triton_core.abi.HookSpecs" in (ROOT / "docs/reference/abi-api.md").read_text()
