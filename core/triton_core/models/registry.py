"""Backend discovery: entry points (group ``triton_core``) through pluggy.

Environment:
- TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD=1: load no entry point (plugins may still
  be registered by code through ``BackendRegistry.register_plugin``).
- TRITON_CORE_PLUGINS=a,b: load only these plugins: entry-point names (``onnx``) or backend
  names (``onnxruntime``); a name that is neither is reported with the names that exist.

A plugin that fails to import, provides an invalid spec, an incompatible ABI,
or a backend name already taken is recorded with its reason; the server runs on.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from .. import abi, install_hint
from ..abi import BackendSpec
from ..errors import TritonError

log = logging.getLogger("triton_core")

ENV_DISABLE_AUTOLOAD = "TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "TRITON_CORE_PLUGINS"


@dataclass
class BackendEntry:
    """One backend as `triton backends` shows it."""

    name: str
    plugin: str
    distribution: str = ""
    version: str = ""
    abi: tuple[int, int] | None = None
    platforms: tuple[str, ...] = ()
    default_model_filename: str = ""
    status: str = "available"  # available | unavailable | failed (after resolve())
    reason: str = ""
    spec: BackendSpec | None = None
    # the spec's availability check, run on first need (resolve): it may import the backend's
    # framework, which a server whose models do not use that backend never pays for
    check: Callable[[], str | None] | None = field(default=None, repr=False, compare=False)

    def resolve(self) -> BackendEntry:
        """Run the availability check once: ``status`` and ``reason`` are final from here."""
        check, self.check = self.check, None
        if check is not None:
            try:
                reason = check()
            except Exception as e:  # noqa: BLE001 - a broken check is the reason
                reason = f"availability check raised {type(e).__name__}: {e}"
            if reason:
                self.status = "unavailable"
                self.reason = reason
        return self

    def as_dict(self) -> dict[str, Any]:
        self.resolve()
        return {
            "name": self.name,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "abi": list(self.abi) if self.abi else None,
            "platforms": list(self.platforms),
            "default_model_filename": self.default_model_filename,
            "status": self.status,
            "reason": self.reason,
        }


class BackendRegistry:
    """Discovers backends and creates each Backend object once, on first use."""

    def __init__(self, backend_config: dict[str, dict[str, str]] | None = None) -> None:
        self.pm = pluggy.PluginManager(abi.PROJECT)
        self.pm.add_hookspecs(abi.HookSpecs)
        self.entries: list[BackendEntry] = []
        self._by_name: dict[str, BackendEntry] = {}
        self._instances: dict[str, abi.Backend] = {}
        self._lock = threading.Lock()
        self.backend_config = backend_config or {}
        # False: discover() loads no entry point (triton_core.testing.make_server; tests see only
        # the plugins they register, whatever else is installed).
        self.autoload = True
        self._seen_backends: set[str] = set()  # backend names of plugins TRITON_CORE_PLUGINS left out
        self.unknown_plugin_names: list[str] = []  # names in TRITON_CORE_PLUGINS that match nothing

    # discovery -------------------------------------------------------------
    def discover(self) -> None:
        if not self.autoload:
            return
        if os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip() not in ("", "0", "false"):
            return
        only = {p.strip() for p in os.environ.get(ENV_PLUGINS, "").split(",") if p.strip()}
        points = list(md.entry_points(group=abi.ENTRY_POINT_GROUP))
        # names in TRITON_CORE_PLUGINS that are no entry point's: backend names, known once
        # each plugin is imported (plugin modules import light, as the ABI asks)
        backends = only - {ep.name for ep in points}
        for ep in points:
            if only and ep.name not in only and not backends:
                continue
            dist = ep.dist.name if ep.dist else ""
            version = ep.dist.version if ep.dist else ""
            try:
                module = ep.load()
            except Exception as e:  # a broken plugin must not stop the server
                log.warning("failed to load plugin '%s': %s", ep.name, e)
                self.entries.append(
                    BackendEntry(ep.name, ep.name, dist, version, status="failed",
                                 reason=f"import failed: {type(e).__name__}: {e}")
                )
                continue
            self.register_plugin(module, ep.name, dist, version,
                                 only_backends=None if not only or ep.name in only else backends)
        unknown = backends - {e.name for e in self.entries}
        if unknown:
            found = sorted({e.name for e in self.entries if e.spec is not None} | self._seen_backends)
            log.warning("%s names %s, neither a plugin (entry points: %s) nor a backend (%s)%s",
                        ENV_PLUGINS, ", ".join(f"'{n}'" for n in sorted(unknown)),
                        ", ".join(sorted(ep.name for ep in points)) or "none",
                        ", ".join(found) or "none", self.failed_plugins_note())
            self.unknown_plugin_names = sorted(unknown)

    def register_plugin(
        self, module: ModuleType | object, plugin_name: str, distribution: str = "", version: str = "",
        only_backends: set[str] | None = None,
    ) -> None:
        """``only_backends``: register the plugin only for these backend names (and only when it
        provides one of them)."""
        hook = getattr(module, "triton_backends", None)
        specs: list[Any] = []
        if hook is not None:
            try:
                specs = list(hook())
            except Exception as e:
                if only_backends is None:
                    self.entries.append(BackendEntry(
                        plugin_name, plugin_name, distribution, version, status="failed",
                        reason=f"triton_backends() raised {type(e).__name__}: {e}"))
                return
        if only_backends is not None:
            self._seen_backends.update(str(getattr(s, "name", "")) for s in specs)
            specs = [s for s in specs if getattr(s, "name", None) in only_backends]
            if not specs:
                return
        try:
            self.pm.register(module, name=plugin_name)
        except ValueError as e:
            self.entries.append(BackendEntry(plugin_name, plugin_name, distribution, version,
                                             status="failed", reason=str(e)))
            return
        for spec in specs:
            self._add_spec(spec, plugin_name, distribution, version)

    def _add_spec(self, spec: Any, plugin: str, dist: str, version: str) -> None:
        if not isinstance(spec, BackendSpec) or not spec.name or not callable(spec.factory):
            self.entries.append(BackendEntry(getattr(spec, "name", plugin) or plugin, plugin, dist,
                                             version, status="failed",
                                             reason="invalid BackendSpec (needs a name and a factory)"))
            return
        entry = BackendEntry(spec.name, plugin, dist, version, tuple(spec.abi), tuple(spec.platforms),
                             spec.default_model_filename, spec=spec)
        if not abi.abi_compatible(tuple(spec.abi)):
            entry.status = "failed"
            entry.reason = (f"incompatible ABI {spec.abi[0]}.{spec.abi[1]}: the core provides "
                            f"{abi.ABI_VERSION[0]}.{abi.ABI_VERSION[1]}")
        elif spec.name in self._by_name:
            other = self._by_name[spec.name]
            entry.status = "failed"
            entry.reason = f"backend name '{spec.name}' already provided by plugin '{other.plugin}'"
        else:
            entry.check = spec.available  # run when the backend is first needed or listed
            self._by_name[spec.name] = entry
        self.entries.append(entry)

    # lookup ----------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._by_name)

    def entry(self, name: str) -> BackendEntry | None:
        return self._by_name.get(name)

    def for_platform(self, platform: str) -> BackendEntry | None:
        for e in self._by_name.values():
            if platform in e.platforms:
                return e
        return None

    def for_model_files(self, names: set[str]) -> BackendEntry | None:
        """Infer the backend from the files a version folder holds."""
        for e in self._by_name.values():
            if e.default_model_filename and e.default_model_filename in names:
                return e
        return None

    def failed_plugins_note(self) -> str:
        """'; plugin 'x' failed to import: ...' for each plugin that did not load: the backend a
        model asks for may be one of theirs (its name is only known once the plugin loads)."""
        return "".join(f"; plugin '{e.plugin}' ({e.distribution or 'no distribution'}) failed to "
                       f"{'import' if e.reason.startswith('import failed') else 'register'}: "
                       f"{e.reason.removeprefix('import failed: ')}"
                       for e in self.entries if e.status == "failed" and e.spec is None)

    def backend(self, name: str, allow_unavailable: bool = False) -> abi.Backend:
        """The process-wide Backend object for ``name``, created on first use.

        ``allow_unavailable``: also for a backend that cannot run here (`triton check`: a
        backend may still read, auto-complete and validate its models, e.g. Core ML on Linux)."""
        entry = self._by_name.get(name)
        refused = [e for e in self.entries if e.name == name and e.status == "failed"]
        if entry is None and refused:  # provided, but refused (an incompatible ABI, a name taken)
            raise TritonError.unavailable(f"backend '{name}' failed to register: {refused[-1].reason}")
        if entry is None or entry.spec is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise TritonError.invalid_arg(
                f"unable to find backend '{name}' (installed backends: {known})"
                f"{self.failed_plugins_note()}{install_hint.for_backend(name)}"
            )
        entry.resolve()
        if entry.status != "available" and not (allow_unavailable and entry.status == "unavailable"):
            raise TritonError.unavailable(f"backend '{name}' is unavailable: {entry.reason}")
        with self._lock:
            inst = self._instances.get(name)
            if inst is None:
                ctx = abi.BackendContext(name, dict(self.backend_config.get(name, {})))
                inst = entry.spec.factory(ctx)
                self._instances[name] = inst
            return inst

    def close(self) -> None:
        with self._lock:
            for name, b in list(self._instances.items()):
                try:
                    b.close()
                except Exception as e:
                    log.warning("backend '%s' failed to close: %s", name, e)
            self._instances.clear()
