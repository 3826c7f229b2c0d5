"""The console scripts' entry (``tritonserver``, ``triton``, ``python -m triton_core``):
plugins' prestart first (prestart.py), then the command line (cli.py).

Only the standard library is imported before the prestart entry points return.
"""

from __future__ import annotations

import argparse
import sys

from . import prestart


class _Unparsable(Exception):
    pass


class _FlagReader(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Unparsable(message)  # cli.py's parser says what is wrong, once


_FLAGS = ("--model-repository", "--model-store", "--model-control-mode", "--load-model",
          "--frontend-processes")
# no server runs in this process, or none runs at all
_NO_SERVER = frozenset(("-h", "--help", "--version", "--ray"))


def plan_for(argv: list[str]) -> prestart.PrestartPlan | None:
    """The prestart plan for a server command line; None where it does not parse (the
    server then refuses it with its own words), no server will load models in this
    process, or nothing would be adopted."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name in _NO_SERVER:
            return None
        # cli.py's parser takes abbreviations (--frontend-proc 2): read them as it would
        # rather than guess, by not planning at all
        if name.startswith("--") and name not in _FLAGS and any(f.startswith(name) for f in _FLAGS):
            return None
    p = _FlagReader(add_help=False, allow_abbrev=False)
    p.add_argument("--model-repository", "--model-store", action="append", default=[])
    p.add_argument("--model-control-mode", default="none")
    p.add_argument("--load-model", action="append", default=[])
    p.add_argument("--frontend-processes", default="1")
    try:
        a, _ = p.parse_known_args(argv)
        n = int(a.frontend_processes)
    except (_Unparsable, ValueError):
        return None
    return prestart.plan_from_flags(a.model_repository, a.model_control_mode, a.load_model, n)


def _prestart(argv: list[str]) -> None:
    plan = plan_for(argv)
    if plan is not None:
        prestart.FAILURES.extend(prestart.run(plan))


def tritonserver_main() -> None:
    _prestart(sys.argv[1:])
    from .cli import tritonserver_main as main

    main()


def triton_main() -> None:
    if sys.argv[1:2] == ["serve"]:
        _prestart(sys.argv[2:])
    from .cli import triton_main as main

    main()
