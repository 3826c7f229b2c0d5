"""Plugins' prestart: work a plugin starts before the server has imported itself.

The server's imports (numpy, pydantic, protobuf and the core: about 0.3 s) come before
its first model load. A plugin whose models wait on a slow resource of their own (the
python backend's worker: a new interpreter importing numpy, about 0.1 s) can start it
meanwhile, on another core. Entry points of group ``triton_core.prestart`` are called
once, from the command line only, with a ``PrestartPlan``; they must import only the
standard library and return at once (start a process, not wait for it). Whatever they
start must be adopted by the plugin's model loads or released by the plugin itself;
the core never sees it again. A failing prestart is ignored: it only saves time.

Standard library only: this runs before the rest of triton_core is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GROUP = "triton_core.prestart"
FAILURES: list[str] = []  # run()'s, for the server's log once it is set up


@dataclass(frozen=True)
class PrestartPlan:
    """What the server will load at start: ``repositories`` are the local model
    repositories (absolute paths), ``models`` the names --load-model gives (None: every
    model of the repositories)."""

    repositories: tuple[str, ...]
    models: tuple[str, ...] | None

    def model_dirs(self) -> list[str]:
        """The folders of the models the server will load (those that exist)."""
        found = []
        for repo in self.repositories:
            try:
                names = sorted(os.listdir(repo)) if self.models is None else self.models
            except OSError:
                continue
            for name in names:
                path = os.path.join(repo, name)
                if not name.startswith(".") and os.path.isdir(path):
                    found.append(path)
        return found


def plan_from_flags(repositories: list[str], control_mode: str, load_models: list[str],
                    frontend_processes: int) -> PrestartPlan | None:
    """The plan for these command-line values, or None where nothing would be adopted:
    several front-end processes (each loads its own models after the fork), explicit
    mode without --load-model (nothing loads at start), or no local repository."""
    if frontend_processes != 1:
        return None
    if control_mode == "explicit":
        if not load_models:
            return None
        models = None if "*" in load_models else tuple(load_models)
    else:
        models = None
    local = tuple(os.path.abspath(r) for r in repositories if "://" not in r and os.path.isdir(r))
    return PrestartPlan(local, models) if local else None


def run(plan: PrestartPlan) -> list[str]:
    """Calls every installed prestart entry point; returns what failed, for the log."""
    from importlib import metadata

    # the plugin registry's switches (models/registry.py), by entry-point name here
    if os.environ.get("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", "").strip() not in ("", "0", "false"):
        return []
    only = {p.strip() for p in os.environ.get("TRITON_CORE_PLUGINS", "").split(",") if p.strip()}
    failures = []
    for ep in metadata.entry_points(group=GROUP):
        if only and ep.name not in only:
            continue
        try:
            ep.load()(plan)
        except Exception as e:  # noqa: BLE001 - a prestart only saves time; never fatal
            failures.append(f"prestart '{ep.name}' ({ep.value}) failed: {type(e).__name__}: {e}")
    return failures
