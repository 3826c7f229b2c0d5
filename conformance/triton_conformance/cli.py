"""``triton conformance <backend> [--report FILE] [--xfail FILE] [pytest options]``."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import sys


def _plugin_autoloaded() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == "triton_conformance.plugin" for ep in md.entry_points(group="pytest11"))


def build_parser(prog: str = "triton conformance") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Run the triton-core conformance suite against one installed backend.",
        epilog="Other options go to pytest, e.g. -k EXPR, -x, -v, --lf.")
    p.add_argument("backend", help="backend name, as `triton backends` lists it")
    p.add_argument("--report", metavar="FILE", help="write a JSON report (counts, per capability, per test)")
    p.add_argument("--instance-kind", choices=("KIND_GPU",), default=None,
                   help="run every model's instances as this kind (KIND_GPU: on the GPUs, "
                        "where the backend declares the gpu capability and a GPU is usable); "
                        "default: the kinds the backend's models name")
    p.add_argument("--xfail", metavar="FILE",
                   help="expected failures: one test id per line, `# reason` optional; strict "
                        "(a listed test that passes fails the run)")
    return p


def pytest_args(ns: argparse.Namespace, extra: list[str]) -> list[str]:
    args = ["--pyargs", "triton_conformance.suite", "--triton-backend", ns.backend,
            # the suite brings its own settings: ignore the project's pytest configuration
            "-c", os.devnull, "--rootdir", os.getcwd(), "-p", "no:cacheprovider",
            "-o", "python_files=test_*.py", "-rfE", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if not _plugin_autoloaded():
        args[0:0] = ["-p", "triton_conformance.plugin"]
    if ns.report:
        args += ["--triton-report", ns.report]
    if ns.xfail:
        args += ["--triton-xfail", ns.xfail]
    if ns.instance_kind:
        args += ["--triton-instance-kind", ns.instance_kind]
    if not any(a.startswith("-q") or a.startswith("-v") for a in extra):
        args.append("-q")
    return args + extra


def main(argv: list[str] | None = None, prog: str = "triton conformance") -> int:
    import pytest

    ns, extra = build_parser(prog).parse_known_args(sys.argv[1:] if argv is None else argv)
    if ns.xfail and not os.path.isfile(ns.xfail):
        print(f"error: --xfail file '{ns.xfail}' does not exist", file=sys.stderr)
        return 2
    unknown = _unknown_backend(ns.backend)
    if unknown:
        print(f"error: {unknown}", file=sys.stderr)
        return 2
    return int(pytest.main(pytest_args(ns, extra)))


def _unknown_backend(name: str) -> str | None:
    """Why ``name`` is no installed backend (with the names there are), or None when it is one:
    a typo fails at once instead of after a run of skips."""
    from triton_core.models.registry import BackendRegistry

    registry = BackendRegistry()
    registry.discover()
    try:
        names = {e.name for e in registry.entries}
        if name in names:
            return None
        backends = sorted(e.name for e in registry.entries if e.spec is not None)
        return (f"no installed backend is named '{name}' (installed: {', '.join(backends) or 'none'}; "
                f"`triton backends` lists them){registry.failed_plugins_note()}")
    finally:
        registry.close()
