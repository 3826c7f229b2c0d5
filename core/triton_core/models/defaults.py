"""Fills and checks what Triton's core fills and checks in every model config."""

from __future__ import annotations

from collections.abc import Sequence

from ..batch_io import validate_batch_io
from ..config import ModelConfig
from ..config.model_config import InstanceGroup, VersionPolicy
from ..errors import TritonError
from .placement import normalize_instance_groups


def complete_config(config: ModelConfig, name: str, backend: str, platforms: tuple[str, ...],
                    default_filename: str, gpus: Sequence[int] = (),
                    backend_uses_gpus: bool = False) -> ModelConfig:
    """``gpus``: the supported GPUs' CUDA ordinals; ``backend_uses_gpus``: BackendSpec.gpu
    (see placement.normalize_instance_groups). Without them KIND_AUTO means KIND_CPU."""
    cfg = config.model_copy(deep=True)
    cfg.name = name
    if not cfg.backend:
        cfg.backend = backend
    if not cfg.platform and platforms:
        cfg.platform = platforms[0]
    if not cfg.default_model_filename and default_filename:
        cfg.default_model_filename = default_filename
    vp = cfg.version_policy
    if vp.latest is None and vp.all is None and vp.specific is None:
        cfg.version_policy = VersionPolicy(latest={"num_versions": 1})
    if not cfg.instance_group:
        cfg.instance_group = [InstanceGroup(name=name, kind="KIND_AUTO", count=1)]
    for i, g in enumerate(cfg.instance_group):
        if not g.name:
            g.name = f"{name}_{i}"  # Triton's name for an unnamed group
    normalize_instance_groups(cfg, gpus, backend_uses_gpus)
    return cfg


def check_config(cfg: ModelConfig, where: str) -> None:
    """Structural checks Triton makes after auto-complete; errors name the field."""
    def fail(field: str, msg: str) -> None:
        raise TritonError.invalid_arg(f"{where}: field '{field}': {msg}")

    if not cfg.input and not cfg.ensemble_scheduling:
        fail("input", f"model '{cfg.name}' must specify at least one input")
    if not cfg.output and not cfg.ensemble_scheduling:
        fail("output", f"model '{cfg.name}' must specify at least one output")
    seen: set[str] = set()
    for kind, tensors in (("input", cfg.input), ("output", cfg.output)):
        for i, t in enumerate(tensors):
            if not t.name:
                fail(f"{kind}[{i}].name", "must not be empty")
            if t.name in seen and kind == "input":
                fail(f"{kind}[{i}].name", f"duplicate {kind} '{t.name}'")
            seen.add(t.name)
            if t.data_type == "TYPE_INVALID":
                fail(f"{kind}[{i}].data_type", f"{kind} '{t.name}' must specify a data type")
            if not t.dims and t.reshape is None:
                fail(f"{kind}[{i}].dims", f"{kind} '{t.name}' must specify dims")
        seen = set()
    schedulers = [n for n in ("dynamic_batching", "sequence_batching", "ensemble_scheduling")
                  if getattr(cfg, n) is not None]
    if len(schedulers) > 1:
        fail(schedulers[1], f"a model may use only one scheduler, found {', '.join(schedulers)}")
    if cfg.platform == "ensemble" and cfg.ensemble_scheduling is None:
        fail("ensemble_scheduling", "an ensemble must specify ensemble_scheduling")
    rc = cfg.response_cache
    if rc is not None and rc.enable:
        if cfg.decoupled:
            fail("response_cache", f"Response Cache does not currently support model "
                 f"'{cfg.name}' with 'decoupled' transaction policy. Please disable the "
                 "response cache.")
        if cfg.sequence_batching is not None:
            fail("response_cache", f"Response Cache does not currently support model "
                 f"'{cfg.name}' with sequence batching. Please disable the response cache.")
    if cfg.sequence_batching is not None:
        from ..scheduling.sequence import parse_controls
        parse_controls(cfg.sequence_batching, where)
        sb = cfg.sequence_batching
        if sb.get("direct") is not None and sb.get("oldest") is not None:
            fail("sequence_batching", "specify only one of direct and oldest")
    if cfg.max_batch_size == 0 and cfg.dynamic_batching is not None:
        fail("dynamic_batching", "dynamic batching requires max_batch_size > 0")
    validate_batch_io(cfg)
    db = cfg.dynamic_batching
    if db is not None and db.priority_levels:
        if not 1 <= db.default_priority_level <= db.priority_levels:
            fail("dynamic_batching.default_priority_level",
                 f"default priority level {db.default_priority_level} must be between 1 and "
                 f"priority_levels {db.priority_levels}")
        for k in db.priority_queue_policy:
            if not k.isdigit() or not 1 <= int(k) <= db.priority_levels:
                fail("dynamic_batching.priority_queue_policy",
                     f"priority level {k} must be between 1 and {db.priority_levels}")
    if db is not None:
        for pol in [db.default_queue_policy, *db.priority_queue_policy.values()]:
            if pol is not None and str(pol.timeout_action).upper() not in ("REJECT", "DELAY"):
                fail("dynamic_batching.queue_policy.timeout_action",
                     f"timeout action '{pol.timeout_action}' must be REJECT or DELAY")
    if db is not None:
        for p in db.preferred_batch_size:
            if p < 1 or p > cfg.max_batch_size:
                fail("dynamic_batching.preferred_batch_size",
                     f"preferred batch size {p} must be between 1 and max_batch_size "
                     f"{cfg.max_batch_size}")
