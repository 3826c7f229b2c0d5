"""`triton check REPO`: validate every model's config and files without serving."""

from __future__ import annotations

from pathlib import Path

from . import abi
from .errors import TritonError
from .models.defaults import check_config, complete_config
from .models.manager import ModelManager
from .models.registry import BackendRegistry
from .models.repository import (
    Repository,
    looks_like_model_folder,
    no_version_message,
    numeric_versions,
    read_config,
    root_problem,
    select_versions,
)


def check_repository(roots: list[Path], config_name: str | None = None) -> tuple[int, list[str]]:
    """Returns (number of models with errors, report lines)."""
    registry = BackendRegistry()
    registry.discover()
    repo = Repository(roots, config_name)
    lines: list[str] = []
    errors = 0
    for root in roots:
        problem = root_problem(root)
        if problem:
            return 1, [f"error: {problem}"]
        if looks_like_model_folder(root):
            return 1, [f"error: '{root}' looks like a model folder, not a repository (a repository "
                       f"holds one folder per model): check its parent, "
                       f"`triton check {root.resolve().parent}`"]
    scan = repo.scan()
    for name, msg in scan.errors.items():
        errors += 1
        lines.append(f"FAIL {name}: {msg}")
    mgr = ModelManager(repo, registry)
    for name, src in sorted(scan.models.items()):
        entry = None
        try:
            cfg = read_config(src)
            if cfg.name and cfg.name != name:
                raise TritonError.invalid_arg(
                    f"field 'name': config name '{cfg.name}' does not match the folder '{name}'")
            backend_name = mgr._resolve_backend(cfg, src)  # noqa: SLF001
            entry = registry.entry(backend_name)
            # a backend that cannot serve here (Core ML on Linux) still checks its models
            backend = registry.backend(backend_name, allow_unavailable=True)
            pre = complete_config(cfg, name, backend_name, (), entry.default_model_filename if entry else "")
            available = numeric_versions(src.path)
            versions = select_versions(pre.version_policy, available)
            if not versions:
                raise TritonError.invalid_arg(no_version_message(
                    name, src.path, available, entry.default_model_filename if entry else ""))
            for v in versions:
                ctx = abi.ModelContext(name=name, version=v, model_path=src.path, config=pre)
                model = backend.load_model(ctx)
                try:
                    final = complete_config(model.config, name, backend_name,
                                            entry.platforms if entry else (),
                                            entry.default_model_filename if entry else "")
                    check_config(final, f"model '{name}'")
                finally:
                    model.close()
            unavailable = entry is not None and entry.resolve().status == "unavailable"
            note = f"; cannot serve here: {entry.reason}" if unavailable and entry else ""
            lines.append(f"ok   {name} (backend {backend_name}, versions "
                         f"{', '.join(map(str, versions))}{note})")
        except TritonError as e:
            errors += 1
            lines.append(f"FAIL {name}: {e.message}")
        except Exception as e:  # noqa: BLE001 - a backend bug is a failed check, not a crash
            errors += 1
            why = f" (backend '{entry.name}' is unavailable: {entry.reason})" \
                if entry is not None and entry.resolve().status == "unavailable" else ""
            lines.append(f"FAIL {name}: {type(e).__name__}: {e}{why}")
    registry.close()
    lines.append(f"{len(scan.models) + len(scan.errors)} model(s), {errors} with errors")
    return errors, lines
