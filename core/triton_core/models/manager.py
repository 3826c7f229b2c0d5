"""Model lifecycle: load, unload, reload and the state of every model version."""

from __future__ import annotations

import base64
import binascii
import errno
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .. import abi, install_hint
from ..config import ModelConfig, parse_config_json
from ..devices import DEFAULT_MIN_COMPUTE_CAPABILITY, Gpus
from ..devices import SYSTEM as SYSTEM_GPUS
from ..errors import TritonError, as_triton_error
from ..scheduling.clock import MONOTONIC, Clock
from ..scheduling.engine_loop import EngineLoop
from ..scheduling.ensemble import EnsembleVersion, check_ensemble, composing_models
from ..scheduling.latency_summary import Histogram, LatencySummaries
from ..scheduling.policy import DEFAULT_POLICY, DriverPolicy
from ..scheduling.rate_limiter import RateLimiter
from ..scheduling.servable import Servable
from .defaults import check_config, complete_config
from .placement import validate_instance_groups
from .registry import BackendRegistry
from .repository import (
    ModelSource,
    Repository,
    no_version_message,
    numeric_versions,
    read_config,
    select_versions,
)
from .version import LoadedVersion
from .warmup import run_warmup

if TYPE_CHECKING:
    from ..scheduling.cache import ResponseCache

log = logging.getLogger("triton_core")

UNKNOWN, READY, UNAVAILABLE, LOADING, UNLOADING = (
    "UNKNOWN", "READY", "UNAVAILABLE", "LOADING", "UNLOADING")


@dataclass(frozen=True)
class VersionState:
    """One version's state; never changed in place (a new one replaces it)."""

    state: str = UNKNOWN
    reason: str = ""
    loaded: Servable | None = None  # a LoadedVersion or an EnsembleVersion


@dataclass
class ModelRecord:
    """A model's versions. ``versions`` is copy-on-write: a load or unload builds a new
    mapping and assigns it once (under ``lock``), so the request path reads it without a
    lock and never sees a mapping change while it iterates."""

    name: str
    source: ModelSource | None = None
    config: ModelConfig | None = None  # of the newest ready version
    versions: dict[int, VersionState] = field(default_factory=dict)
    error: str = ""  # model-level failure with no version to pin it on
    fingerprint: tuple | None = None
    load_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class LoadPlan:
    """What a load will build: the model's config (a backend's before auto-complete; an
    ensemble's final) and the versions its policy selects."""

    name: str
    src: ModelSource
    where: str  # how errors name the config
    config: ModelConfig
    fingerprint: tuple
    ensemble: bool = False
    backend: str = ""
    platforms: tuple[str, ...] = ()
    default_file: str = ""
    config_changed: bool = True
    versions: list[int] = field(default_factory=list)
    gpu_ids: list[int] = field(default_factory=list)  # the GPUs instances may use
    uses_gpus: bool = False  # the backend can run instances on GPUs (BackendSpec.gpu)
    device_tensors: bool = False  # its GPU instances take GPU inputs (BackendSpec.device_tensors)


def _set_version(rec: ModelRecord, version: int, state: VersionState) -> None:
    """Replace one version's state: a new mapping, assigned once (copy-on-write)."""
    rec.versions = {**rec.versions, version: state}


class ModelManager:
    def __init__(self, repository: Repository, registry: BackendRegistry, *,
                 auto_complete: bool = True, load_threads: int = 4,
                 exit_timeout: float = 30.0, server: abi.ServerHandle | None = None,
                 response_cache: ResponseCache | None = None, clock: Clock = MONOTONIC,
                 policy: DriverPolicy = DEFAULT_POLICY, engine: EngineLoop | None = None,
                 rate_limiter: RateLimiter | None = None,
                 summary_quantiles: tuple[tuple[float, float], ...] | None = None,
                 first_response_histogram: bool = False, gpus: Gpus = SYSTEM_GPUS,
                 min_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY) -> None:
        self.repository = repository
        self.registry = registry
        self.auto_complete = auto_complete
        self.load_threads = max(1, load_threads)
        self.exit_timeout = exit_timeout
        self.server = server  # given to backends (BLS, model control)
        self.response_cache = response_cache
        self.clock = clock  # given to every version's scheduler
        self.policy = policy  # given to every version's drivers
        self.engine = engine or EngineLoop()  # the loop that loop drivers run on
        self.rate_limiter = rate_limiter  # --rate-limit (None: off)
        # why this server cannot serve a config (--frontend-processes N > 1: sequence
        # batching), None when it can; a refused model fails to load with that reason
        self.refuse_config: Callable[[ModelConfig], str | None] | None = None
        # --metrics-config summary_latencies=true: every version's latency summaries
        self.summary_quantiles = summary_quantiles
        self.first_response_histogram = first_response_histogram  # histogram_latencies=true
        self.gpus = gpus  # where KIND_GPU instances may go (discovered on the first load)
        self.min_compute_capability = min_compute_capability
        self.models: dict[str, ModelRecord] = {}
        self._lock = threading.Lock()
        self._tempdirs: dict[str, Path] = {}
        # Set when the server begins to stop: loads in progress give up, none start.
        self.stopping = threading.Event()

    # queries -----------------------------------------------------------------
    def record(self, name: str) -> ModelRecord:
        with self._lock:
            rec = self.models.get(name)
            if rec is None:
                rec = ModelRecord(name)
                self.models = {**self.models, name: rec}  # copy-on-write, as versions
            return rec

    def get(self, name: str, version: int | None = None) -> Servable:
        """The ready version asked for (None or -1: the newest ready one)."""
        rec = self.models.get(name)
        if rec is None:
            raise TritonError.not_found(f"Request for unknown model: '{name}' is not found")
        if version is None or version == -1:
            best = None
            for v, st in rec.versions.items():
                if st.state == READY and st.loaded is not None and (best is None or v > best[0]):
                    best = (v, st.loaded)
            if best is None:
                raise TritonError.unavailable(
                    f"Request for unknown model: '{name}' has no available versions")
            return best[1]
        st = rec.versions.get(version)
        if st is None:
            raise TritonError.not_found(
                f"Request for unknown model: '{name}' version {version} is not found")
        if st.state != READY or st.loaded is None:
            raise TritonError.unavailable(
                f"Request for unknown model: '{name}' version {version} is not at ready state")
        return st.loaded

    def loaded_versions(self, name: str | None = None) -> list[tuple[str, int, Any]]:
        """(model, version, loaded version) of every loaded version, or of model ``name``,
        in order. Reads one snapshot of each record (no lock)."""
        models = self.models
        names = sorted(models) if name is None else [name] if name in models else []
        return [(n, v, st.loaded) for n in names
                for v, st in sorted(models[n].versions.items()) if st.loaded is not None]

    def ready_versions(self, name: str) -> list[int]:
        rec = self.models.get(name)
        return [] if rec is None else sorted(v for v, st in rec.versions.items()
                                             if st.state == READY)

    def model_folder(self, name: str) -> Path | None:
        """The folder the model was loaded from (its labels files live there)."""
        rec = self.models.get(name)
        return rec.source.path if rec is not None and rec.source is not None else None

    def load_seconds(self, name: str) -> float:
        rec = self.models.get(name)
        return rec.load_seconds if rec is not None else 0.0

    def is_ready(self, name: str, version: int | None = None) -> bool:
        try:
            return self.get(name, version).instances_ready()
        except TritonError:
            return False

    def index(self, ready_only: bool = False) -> list[dict]:
        out = []
        with self._lock:
            records = sorted(self.models.values(), key=lambda r: r.name)
        if not ready_only:
            known = set(self.models)
            try:
                scan = self.repository.scan()
                for n in sorted(set(scan.models) - known):
                    out.append({"name": n})
            except Exception:  # index must answer even on an unreadable repository
                pass
        for rec in records:
            if not rec.versions:
                if not ready_only:
                    row = {"name": rec.name, "version": "", "state": UNAVAILABLE,
                           "reason": rec.error or "unloaded"}
                    out.append(row)
                continue
            for v, st in sorted(rec.versions.items()):
                if ready_only and st.state != READY:
                    continue
                out.append({"name": rec.name, "version": str(v), "state": st.state,
                            "reason": st.reason})
        return sorted(out, key=lambda r: (r["name"], r.get("version", "")))

    def all_ready(self) -> bool:
        """Every model that was asked to load has at least its versions ready."""
        for rec in list(self.models.values()):
            for st in rec.versions.values():
                if st.state != READY or (st.loaded is not None and not st.loaded.instances_ready()):
                    return False
            if rec.error:
                return False
        return True

    # loading -----------------------------------------------------------------
    def load_many(self, names: list[str]) -> dict[str, str]:
        """Load models in parallel; returns {name: error} for those that failed (without the
        "failed to load 'name': " that each caller puts in front)."""
        errors: dict[str, str] = {}

        def one(n: str) -> None:
            if self.stopping.is_set():
                errors[n] = "the server is stopping"
                return
            try:
                self.load(n)
            except Exception as e:  # noqa: BLE001 - reported, never fatal to others
                errors[n] = as_triton_error(e, f"loading '{n}'").message.removeprefix(
                    f"failed to load '{n}': ")

        # Ensembles load after the models they compose (rounds, for ensembles of ensembles).
        deps = {n: self._ensemble_deps(n) for n in names}
        remaining = list(names)
        loaded: set[str] = set()
        while remaining:
            wave = [n for n in remaining
                    if deps[n] is None or not (deps[n] & set(remaining)) or deps[n] <= loaded]
            if not wave:
                wave = remaining  # a cycle: let the loads fail with their own message
            with ThreadPoolExecutor(self.load_threads, thread_name_prefix="triton-load") as pool:
                list(pool.map(one, wave))
            loaded.update(wave)
            remaining = [n for n in remaining if n not in loaded]
        return errors

    def _ensemble_deps(self, name: str) -> set[str] | None:
        """The composing models of an ensemble in the repository; None for other models."""
        try:
            cfg = read_config(self.repository.find(name))
        except Exception:  # noqa: BLE001 - the load itself reports a broken config
            return None
        if cfg.platform != "ensemble" and not cfg.ensemble_scheduling:
            return None
        return composing_models(cfg)

    def dependents(self, name: str) -> list[str]:
        """Loaded ensembles that use ``name``, directly or through other ensembles."""
        out: list[str] = []
        frontier = {name}
        while frontier:
            nxt = set()
            for n, rec in list(self.models.items()):
                if n in out or n == name:
                    continue
                for st in rec.versions.values():
                    lv = st.loaded
                    if isinstance(lv, EnsembleVersion) and lv.composing() & frontier:
                        out.append(n)
                        nxt.add(n)
                        break
            frontier = nxt
        return out

    def load(self, name: str, config_json: str | dict | None = None,
             files: dict[str, str] | None = None) -> None:
        """Load or reload a model (every version its policy selects)."""
        rec = self.record(name)
        with rec.lock:
            t0 = time.monotonic()
            try:
                self._load_locked(rec, config_json, files)
                rec.error = ""
            except TritonError as e:
                rec.error = e.message
                if not any(st.state == READY for st in rec.versions.values()):
                    rec.versions = {v: VersionState(UNAVAILABLE, e.message)
                                    for v in (rec.versions or {})}
                raise
            finally:
                rec.load_seconds = time.monotonic() - t0

    def _source_for(self, name: str, config_json: str | dict | None,
                    files: dict[str, str] | None) -> ModelSource:
        if files:
            if config_json is None:
                raise TritonError.invalid_arg(
                    f"failed to load '{name}': file overrides need a 'config' parameter")
            return self._write_override_files(name, files)
        return self.repository.find(name)

    def _write_override_files(self, name: str, files: dict[str, str]) -> ModelSource:
        """Files of a load request go into a fresh folder for this model, never outside it.

        The folder is the caller's to keep (on success) or remove (see _load_locked); here
        it is removed on every failure, its creation included.
        """
        for key in files:
            _check_file_path(name, key)
        root: Path | None = None
        try:
            root = Path(tempfile.mkdtemp(prefix="tritoncore-model-"))
            model_dir = root / name
            model_dir.mkdir()
            for key, b64 in files.items():
                rel = PurePosixPath(key)
                target = model_dir.joinpath(*rel.parts)
                if not target.resolve().is_relative_to(model_dir.resolve()):
                    raise TritonError.invalid_arg(
                        f"failed to load '{name}': invalid file path '{key}'")
                try:
                    data = base64.b64decode(b64, validate=True) if isinstance(b64, str) else bytes(b64)
                except (binascii.Error, ValueError):
                    raise TritonError.invalid_arg(
                        f"failed to load '{name}': file '{key}' is not valid base64") from None
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        except OSError as e:
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)
            if e.errno == errno.ENAMETOOLONG:  # a path past PATH_MAX: many short names
                raise TritonError.invalid_arg(
                    f"failed to load '{name}': a name or the path of its files is too long") from None
            # the checks above leave only the server's own failures (disk full, permissions)
            raise TritonError.internal(
                f"failed to load '{name}': writing the override files failed: {e}") from None
        except BaseException:
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)
            raise
        return ModelSource(name, model_dir, None, temporary=True)

    def _keep_source(self, name: str, src: ModelSource) -> None:
        """After a successful load: the source's temporary folder replaces the model's last."""
        self._drop_tempdir(name)
        if src.temporary:
            self._tempdirs[name] = src.path.parent

    def _drop_tempdir(self, name: str) -> None:
        old = self._tempdirs.pop(name, None)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _resolve_backend(self, cfg: ModelConfig, src: ModelSource) -> str:
        if cfg.backend:
            return cfg.backend
        if cfg.platform:
            if cfg.platform == "ensemble":
                raise TritonError.unsupported(
                    f"model '{src.name}': ensemble models are not supported yet")
            e = self.registry.for_platform(cfg.platform)
            if e is None:
                raise TritonError.invalid_arg(
                    f"model '{src.name}': no installed backend serves platform '{cfg.platform}'"
                    f"{self.registry.failed_plugins_note()}{install_hint.for_backend(cfg.platform)}")
            return e.name
        names: set[str] = set()
        for v in numeric_versions(src.path):
            try:
                names.update(p.name for p in (src.path / str(v)).iterdir())
            except OSError:
                pass
        try:
            names.update(p.name for p in src.path.iterdir() if p.is_file())
        except OSError:
            pass
        e = self.registry.for_model_files(names)
        if e is None:
            raise TritonError.invalid_arg(
                f"model '{src.name}': config names no backend or platform and no installed "
                f"backend's default model file is in its folder (installed: "
                f"{', '.join(self.registry.names()) or 'none'}){self.registry.failed_plugins_note()}")
        return e.name

    def _load_locked(self, rec: ModelRecord, config_json: str | dict | None,
                     files: dict[str, str] | None) -> None:
        """Load from the repository or from override files (a fresh temporary folder)."""
        src = self._source_for(rec.name, config_json, files)
        try:
            self._load_from(rec, src, config_json)
        except BaseException:
            if src.temporary:  # a failed load's files go; the serving version keeps its own
                shutil.rmtree(src.path.parent, ignore_errors=True)
            raise
        self._keep_source(rec.name, src)

    def _load_from(self, rec: ModelRecord, src: ModelSource,
                   config_json: str | dict | None) -> None:
        """Plan (config, versions), build (each version's servable), commit (swap them in,
        close what they replace): the same three steps for backend models and ensembles."""
        plan = self._plan(rec, src, config_json)
        self._commit(rec, plan, self._build(rec, plan))

    def _plan(self, rec: ModelRecord, src: ModelSource, config_json: str | dict | None) -> LoadPlan:
        name = rec.name
        where = f"model '{name}'"
        if config_json is not None:
            try:
                cfg = parse_config_json(config_json, f"{where}: config parameter")
            except TritonError as e:
                # Triton's words first: clients look for "failed to load"
                raise TritonError(e.code, f"failed to load '{name}': Invalid config override: "
                                          f"{e.message}") from None
        else:
            cfg = read_config(src)
            where = f"model '{name}', file '{src.config_path}'" if src.config_path else where
        if cfg.name and cfg.name != name:
            raise TritonError.invalid_arg(
                f"{where}: field 'name': config name '{cfg.name}' does not match the model "
                f"folder '{name}'")
        cfg.name = name
        fingerprint = src.fingerprint()
        if cfg.platform == "ensemble" or cfg.ensemble_scheduling is not None:
            cfg.platform = "ensemble"
            final = complete_config(cfg, name, "", (), "")
            final.backend = ""
            final.instance_group = []
            plan = LoadPlan(name, src, where, final, fingerprint, ensemble=True)
        else:
            backend_name = self._resolve_backend(cfg, src)
            entry = self.registry.entry(backend_name)
            default_file = entry.default_model_filename if entry else ""
            gpu_ids = self.gpus.placement_ids(self.min_compute_capability)
            uses_gpus = bool(entry and entry.spec and entry.spec.gpu)
            pre = complete_config(cfg, name, backend_name, (), default_file, gpu_ids, uses_gpus)
            # an unchanged READY version stays as it is on a reload of the same config
            changed = (rec.fingerprint is None or rec.fingerprint[0] != fingerprint[0]
                       or config_json is not None or src.temporary)
            plan = LoadPlan(name, src, where, pre, fingerprint, backend=backend_name,
                            platforms=entry.platforms if entry else (),
                            default_file=default_file, config_changed=changed,
                            gpu_ids=gpu_ids, uses_gpus=uses_gpus,
                            device_tensors=bool(entry and entry.spec
                                                and entry.spec.device_tensors))
        available = numeric_versions(src.path)
        plan.versions = select_versions(plan.config.version_policy, available)
        if not plan.versions:
            raise TritonError.invalid_arg(
                no_version_message(name, src.path, available, plan.default_file))
        return plan

    def _build(self, rec: ModelRecord, plan: LoadPlan) -> dict[int, Servable]:
        """A servable for each planned version that needs one; on failure the versions not
        READY become UNAVAILABLE with the error, and nothing built stays."""
        new: dict[int, Servable] = {}
        try:
            refused = self.refuse_config(plan.config) if self.refuse_config is not None else None
            if refused:
                raise TritonError.unsupported(refused)
            steps = None
            if plan.ensemble:
                check_config(plan.config, plan.where)
                steps = check_ensemble(plan.config, plan.where, self)
            for v in plan.versions:
                cur = rec.versions.get(v)
                if plan.ensemble:
                    assert steps is not None
                    ev = EnsembleVersion(plan.name, v, plan.config, steps, self)
                    self._attach_cache(ev)
                    self._attach_summaries(ev)
                    new[v] = ev
                    continue
                if cur and cur.state == READY and cur.loaded and not plan.config_changed:
                    continue
                if not (cur and cur.state == READY):
                    _set_version(rec, v, VersionState(LOADING))
                new[v] = self._build_version(plan, v)
        except BaseException as e:
            for sv in new.values():
                sv.close(timeout=1.0)
            if not isinstance(e, Exception):  # an interrupt, SystemExit: not a load error
                raise
            err = as_triton_error(e, f"loading model '{plan.name}'")  # a backend bug: traceback logged
            for v in plan.versions:
                st = rec.versions.get(v)
                if st is None or st.state != READY:
                    _set_version(rec, v, VersionState(UNAVAILABLE, err.message))
            raise TritonError(err.code, f"failed to load '{plan.name}': {err.message}") from None
        return new

    def _build_version(self, plan: LoadPlan, v: int) -> LoadedVersion:
        """One backend model version: loaded, its config completed and checked, its
        instances created and warmed up, its drivers started."""
        ctx = abi.ModelContext(name=plan.name, version=v, model_path=plan.src.path,
                               config=plan.config, auto_complete=self.auto_complete,
                               server=self.server)
        model = self.registry.backend(plan.backend).load_model(ctx)
        try:
            final = complete_config(model.config, plan.name, plan.backend, plan.platforms,
                                    plan.default_file, plan.gpu_ids, plan.uses_gpus)
            check_config(final, plan.where)
            validate_instance_groups(final, plan.gpu_ids, self.min_compute_capability)
            lv = LoadedVersion(plan.name, v, model, final, plan.src.path, self.clock, self.policy,
                               self.engine, self.rate_limiter)
        except BaseException:
            model.close()
            raise
        lv.stopping = self.stopping.is_set
        lv.device_tensors = plan.device_tensors
        self._attach_cache(lv)
        self._attach_summaries(lv)
        try:
            lv.create_instances()
        except BaseException:
            model.close()
            raise
        try:
            run_warmup(lv, plan.src.path)
            lv.start()
        except BaseException:
            lv.close(timeout=1.0)
            raise
        return lv

    def _commit(self, rec: ModelRecord, plan: LoadPlan, new: dict[int, Servable]) -> None:
        """The built versions serve from here; what they replace, and versions the policy
        no longer selects, close once their requests in flight are done."""
        old: list[Servable] = []
        for v, sv in new.items():
            prev = rec.versions.get(v)
            if prev is not None and prev.loaded is not None:
                old.append(prev.loaded)
            _set_version(rec, v, VersionState(READY, "", sv))
        wanted = set(plan.versions)
        dropped = [st for v, st in rec.versions.items() if v not in wanted]
        if dropped:
            rec.versions = {v: st for v, st in rec.versions.items() if v in wanted}
            old.extend(st.loaded for st in dropped if st.loaded is not None)
        rec.source = plan.src
        rec.fingerprint = plan.fingerprint
        newest = rec.versions[max(plan.versions)].loaded
        if newest is not None:
            rec.config = newest.config
        for sv in old:  # in-flight requests on the old versions finish first
            sv.close(self.exit_timeout)
        log.info("successfully loaded '%s' version(s) %s", plan.name,
                 ", ".join(map(str, plan.versions)))

    def _attach_summaries(self, sv: LoadedVersion | EnsembleVersion) -> None:
        if self.summary_quantiles is not None:
            sv.stats.summaries = LatencySummaries(self.summary_quantiles)
        if self.first_response_histogram:
            sv.stats.first_response = Histogram()

    def _attach_cache(self, lv: LoadedVersion | EnsembleVersion) -> None:
        """Let ``lv`` use the server's response cache when its config enables it."""
        rc = lv.config.response_cache
        cache = self.response_cache
        if rc is None or not rc.enable or cache is None:
            return
        if isinstance(lv, EnsembleVersion):
            why = lv.uncacheable()
            if why:
                log.warning("ensemble '%s' version %d: response cache not used: %s",
                            lv.name, lv.version, why)
                return
        elif lv.decoupled or lv.config.sequence_batching is not None:
            return
        lv.cache = cache

    # unloading ---------------------------------------------------------------
    def unload(self, name: str, timeout: float | None = None) -> None:
        """Unload every version: each is UNLOADING (not ready, refusing requests) at once,
        then in-flight requests get until ``timeout`` (default: the exit timeout) to finish."""
        rec = self.models.get(name)
        if rec is None:
            raise TritonError.invalid_arg(f"failed to unload '{name}': model is not loaded")
        deadline = time.monotonic() + (self.exit_timeout if timeout is None else timeout)
        with rec.lock:
            loaded = [(v, st) for v, st in rec.versions.items()]
            for v, st in loaded:
                if st.loaded is not None:
                    st.loaded.accepting = False
                    _set_version(rec, v, VersionState(UNLOADING, "", st.loaded))
            for _v, st in loaded:
                if st.loaded is not None:
                    st.loaded.close(max(0.0, deadline - time.monotonic()))
            rec.versions = {v: VersionState(UNAVAILABLE, "unloaded") for v, _ in loaded}
            rec.error = ""
            rec.config = None
            rec.fingerprint = None
            self._drop_tempdir(name)
        log.info("successfully unloaded '%s'", name)

    def unload_all(self, timeout: float | None = None) -> None:
        """Unload every model at once under one deadline (server shutdown): no model
        waits for another's in-flight requests, and none stays READY meanwhile."""
        deadline = time.monotonic() + (self.exit_timeout if timeout is None else timeout)
        names = list(self.models)
        for name in names:  # not ready from now on, before any wait
            rec = self.models[name]  # no rec.lock: a load may hold it for long
            for v, st in rec.versions.items():
                if st.loaded is not None:
                    st.loaded.accepting = False
                    _set_version(rec, v, VersionState(UNLOADING, "", st.loaded))

        def one(name: str) -> None:
            try:
                self.unload(name, max(0.0, deadline - time.monotonic()))
            except TritonError:
                pass

        threads = [threading.Thread(target=one, args=(n,), name="triton-unload", daemon=True)
                   for n in names]
        for t in threads:
            t.start()
        for t in threads:
            # a model's unload is itself bounded by the deadline (plus its close grace)
            t.join(max(0.0, deadline - time.monotonic()) + 5.0)

    # polling -----------------------------------------------------------------
    def poll_once(self) -> None:
        """Reload what changed on disk, load what appeared, unload what went away."""
        scan = self.repository.scan()
        for name, src in scan.models.items():
            rec = self.models.get(name)
            if rec is None or rec.source is None:
                if rec is None or not rec.versions or rec.error:
                    if rec is not None and rec.error and rec.fingerprint == src.fingerprint():
                        continue
                    try:
                        self.load(name)
                    except TritonError as e:
                        rec = self.record(name)
                        rec.fingerprint = src.fingerprint()
                        log.error("poll: %s", e.message)
                continue
            if not rec.source.temporary and rec.fingerprint != src.fingerprint():
                try:
                    self.load(name)
                except TritonError as e:
                    rec.fingerprint = src.fingerprint()
                    log.error("poll: %s", e.message)
        for name, rec in list(self.models.items()):
            if name not in scan.models and rec.source is not None and not rec.source.temporary:
                if any(st.loaded is not None for st in rec.versions.values()):
                    self.unload(name)

    def close(self, timeout: float | None = None) -> None:
        self.stopping.set()
        self.unload_all(timeout)
        for name in list(self._tempdirs):
            self._drop_tempdir(name)


# Linux's NAME_MAX: a longer folder or file name fails in the OS (ENAMETOOLONG)
MAX_NAME_BYTES = 255


def _check_file_path(name: str, key: str) -> None:
    """A load override's file path: relative, inside the model folder, names the OS takes."""
    rel = PurePosixPath(key)
    if (rel.is_absolute() or not rel.parts or ".." in rel.parts
            or "\\" in key or any(p in ("", ".") for p in rel.parts)):
        raise TritonError.invalid_arg(
            f"failed to load '{name}': invalid file path '{key}': paths must stay "
            "inside the model folder")
    if "\0" in key:
        raise TritonError.invalid_arg(
            f"failed to load '{name}': invalid file path {key!r}: it contains a NUL character")
    for part in rel.parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise TritonError.invalid_arg(
                f"failed to load '{name}': invalid file path '{key[:64]}...': a name is longer "
                f"than {MAX_NAME_BYTES} bytes")
