"""What `triton --version` and `tritonserver --version` print: the core's version and the installed plugins'.

Read from the installed distributions' metadata, without importing a plugin: a broken or
slow-to-import plugin does not stop --version (`triton backends` says why it fails).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
from typing import NoReturn

from . import __version__
from .abi import ABI_VERSION, ENTRY_POINT_GROUP

# not a backend, but its version is what a conformance report is read against
CONFORMANCE_DISTRIBUTION = "triton-conformance"


def plugin_distributions() -> dict[str, tuple[str, list[str]]]:
    """Distribution name -> (version, its entry-point names in the triton_core group)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        name = ep.dist.name if ep.dist else f"(entry point {ep.name})"
        version = ep.dist.version if ep.dist else "unknown"
        found.setdefault(name, (version, []))[1].append(ep.name)
    return dict(sorted(found.items()))


def version_text() -> str:
    lines = [f"triton-core {__version__} (backend ABI {ABI_VERSION[0]}.{ABI_VERSION[1]})"]
    plugins = plugin_distributions()
    for dist, (version, entry_points) in plugins.items():
        lines.append(f"  {dist} {version} (plugin {', '.join(sorted(entry_points))})")
    if not plugins:
        lines.append("  no backend plugins installed (pip install 'triton-core[onnx]': docs/install.md)")
    try:
        lines.append(f"  {CONFORMANCE_DISTRIBUTION} {md.version(CONFORMANCE_DISTRIBUTION)}")
    except md.PackageNotFoundError:
        pass
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """--version: argparse's own action reflows its text into one paragraph; this keeps the lines."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> NoReturn:
        print(version_text())
        parser.exit(0)
