"""The model repository on disk: model folders, version folders, config files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ModelConfig, load_config_file
from ..config.model_config import VersionPolicy
from ..errors import TritonError
from .remote import RemoteMirror, is_remote


@dataclass
class ModelSource:
    """Where one model lives: its folder and (if any) its config file."""

    name: str
    path: Path
    config_path: Path | None
    temporary: bool = False  # a folder made for a load request with file overrides

    def fingerprint(self) -> tuple:
        """Changes when the config or the set of version folders changes (poll mode)."""
        cfg = None
        if self.config_path is not None and self.config_path.exists():
            st = self.config_path.stat()
            cfg = (st.st_mtime_ns, st.st_size)
        versions = []
        for v in numeric_versions(self.path):
            vp = self.path / str(v)
            try:
                versions.append((v, vp.stat().st_mtime_ns))
            except OSError:
                pass
        return (cfg, tuple(versions))


@dataclass
class ScanResult:
    models: dict[str, ModelSource] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def numeric_versions(model_path: Path) -> list[int]:
    """Version folders: all-digit names without a leading zero (Triton ignores others)."""
    out = []
    try:
        entries = list(model_path.iterdir())
    except OSError:
        return []
    for p in entries:
        n = p.name
        if p.is_dir() and n.isdigit() and not n.startswith("0"):
            out.append(int(n))
    return sorted(out)


def select_versions(policy: VersionPolicy, available: list[int]) -> list[int]:
    kind = policy.kind()
    if kind == "all":
        return list(available)
    if kind == "specific":
        return [v for v in policy.specific_versions() if v in available]
    n = policy.num_versions()
    return sorted(available)[-n:] if available else []


def no_version_message(name: str, model_path: Path, available: list[int], model_file: str = "") -> str:
    """Triton's words when the version policy selects nothing, then how to fix it."""
    message = f"at least one version must be available under the version policy of model '{name}'"
    if available:
        return (f"{message} (version folders: {', '.join(map(str, available))}; the config's "
                f"version_policy selects none of them)")
    holding = f" holding {model_file}" if model_file else " holding the model file"
    return (f"{message} (no version folder: create '{model_path / '1'}'{holding}; versions are "
            f"folders named 1, 2, ...)")


def looks_like_model_folder(root: Path) -> bool:
    """A model's own folder given where a repository (a folder of model folders) is expected."""
    if (root / "config.pbtxt").is_file():
        return True
    return bool(numeric_versions(root)) and not any(
        (d / "config.pbtxt").is_file() for d in root.iterdir() if d.is_dir())


def root_problem(root: Path) -> str | None:
    """Why ``root`` cannot be a model repository, or None."""
    if not root.exists():
        return f"failed to stat model repository path '{root}': it does not exist"
    if not root.is_dir():
        return f"failed to stat model repository path '{root}': it is a file, not a folder"
    return None


class Repository:
    def __init__(self, roots: list[Path | str], config_name: str | None = None) -> None:
        """``roots``: folders, or object-storage paths (s3://, gs://, as://) read through a
        local mirror that each scan brings up to date (models/remote.py)."""
        self.mirrors: list[RemoteMirror] = []
        self.roots: list[Path] = []
        for r in roots:
            if is_remote(r):
                mirror = RemoteMirror(str(r))
                self.mirrors.append(mirror)
                self.roots.append(mirror.local)
            else:
                self.roots.append(Path(os.fspath(r)))
        self.config_name = config_name

    def sync_remote(self) -> None:
        """Copy what changed in the remote repositories to their local folders."""
        for mirror in self.mirrors:
            mirror.sync()

    def close(self) -> None:
        for mirror in self.mirrors:
            mirror.close()

    def check_roots(self) -> None:
        self.sync_remote()
        for r in self.roots:
            problem = root_problem(r)
            if problem:
                raise TritonError.invalid_arg(problem)

    def config_path_for(self, model_dir: Path) -> Path | None:
        if self.config_name:
            custom = model_dir / "configs" / f"{self.config_name}.pbtxt"
            if custom.is_file():
                return custom
        p = model_dir / "config.pbtxt"
        return p if p.is_file() else None

    def scan(self) -> ScanResult:
        self.sync_remote()
        res = ScanResult()
        for root in self.roots:
            try:
                children = sorted(root.iterdir())
            except OSError as e:
                res.errors[str(root)] = f"failed to read repository '{root}': {e.strerror}"
                continue
            for d in children:
                if not d.is_dir() or d.name.startswith("."):
                    continue
                name = d.name
                if name in res.models:
                    res.errors[name] = (
                        f"model '{name}' appears in two model repositories: "
                        f"'{res.models[name].path.parent}' and '{root}'"
                    )
                    continue
                res.models[name] = ModelSource(name, d, self.config_path_for(d))
        for name in list(res.errors):
            res.models.pop(name, None)
        return res

    def find(self, name: str) -> ModelSource:
        found = self.scan()
        if name in found.errors:
            raise TritonError.invalid_arg(found.errors[name])
        src = found.models.get(name)
        if src is None:
            raise TritonError.invalid_arg(f"failed to load '{name}', failed to poll from model repository")
        return src


def read_config(source: ModelSource) -> ModelConfig:
    """The model's config as written (an empty one when there is no config file)."""
    if source.config_path is None:
        return ModelConfig(name=source.name)
    return load_config_file(source.config_path)
