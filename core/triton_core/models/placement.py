"""Where a model's instances run: Triton's instance-group rules, from a config and the GPUs.

Three steps, as Triton's core takes them (model_config_utils: NormalizeInstanceGroup,
ValidateInstanceGroup; backend_model_instance: CreateInstances):

- ``normalize_instance_groups``: KIND_AUTO becomes KIND_GPU when GPUs are supported here,
  the backend can use them and every listed id exists, else KIND_CPU; a KIND_GPU group
  without ``gpus`` gets every supported GPU.
- ``validate_instance_groups``: Triton's INVALID_ARG messages for a KIND_GPU group with no
  GPU, an id that is not a supported GPU, GPUs on a KIND_CPU group.
- ``plan_instances``: ``count`` instances per listed GPU (one set for CPU and MODEL kinds),
  named ``<group name>_<index>``: Triton gives the same name to the instance of each GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config import ModelConfig
from ..devices import DEFAULT_MIN_COMPUTE_CAPABILITY
from ..errors import TritonError


@dataclass(frozen=True)
class PlannedInstance:
    """One instance to create."""

    name: str
    """``<group name>_<index>`` (InstanceContext.name)."""
    kind: str
    """KIND_CPU, KIND_GPU or KIND_MODEL."""
    device_id: int
    """The GPU's CUDA ordinal for KIND_GPU, else 0 (Triton's)."""
    group: str


def normalize_instance_groups(config: ModelConfig, supported_gpus: Sequence[int],
                              backend_uses_gpus: bool) -> None:
    """Resolve KIND_AUTO and fill a KIND_GPU group's ``gpus``, in place.

    ``supported_gpus``: the CUDA ordinals of the GPUs at or above the minimum compute
    capability. ``backend_uses_gpus``: the backend runs KIND_GPU instances on a GPU
    (BackendSpec.gpu); without it KIND_AUTO means KIND_CPU even where GPUs exist.
    """
    usable = set(supported_gpus) if backend_uses_gpus else set()
    for group in config.instance_group:
        if group.kind == "KIND_AUTO":
            if usable and all(g in usable for g in group.gpus):
                group.kind = "KIND_GPU"
            else:  # listed GPUs stay: validation then refuses them, as Triton does
                group.kind = "KIND_CPU"
        if group.kind == "KIND_GPU" and not group.gpus:
            group.gpus = sorted(supported_gpus)


def _capability(value: float) -> str:
    return f"{value:.6f}"  # std::to_string of a double, as Triton's message prints it


def validate_instance_groups(config: ModelConfig, supported_gpus: Sequence[int],
                             min_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY
                             ) -> None:
    """Triton's checks and words for each instance group (INVALID_ARG)."""
    supported = sorted(set(supported_gpus))
    for group in config.instance_group:
        where = f"instance group {group.name} of model {config.name}"
        if group.kind == "KIND_GPU":
            if not group.gpus:
                if not supported:
                    raise TritonError.invalid_arg(
                        f"{where} has kind KIND_GPU but no GPUs are available")
                raise TritonError.invalid_arg(f"{where} has kind KIND_GPU but specifies no GPUs")
            for gid in group.gpus:
                if gid not in supported:
                    raise TritonError.invalid_arg(
                        f"{where} specifies invalid or unsupported gpu id {gid}. GPUs with at "
                        "least the minimum required CUDA compute compatibility of "
                        f"{_capability(min_compute_capability)} are: "
                        f"{', '.join(map(str, supported))}")
        elif group.kind == "KIND_CPU":
            if group.gpus:
                raise TritonError.invalid_arg(
                    f"{where} has kind KIND_CPU but specifies one or more GPUs")
        elif group.kind != "KIND_MODEL":
            raise TritonError.internal(f"{where} has unexpected kind {group.kind}")


def plan_instances(config: ModelConfig) -> list[PlannedInstance]:
    """The instances of a normalized, validated config, in Triton's creation order."""
    plan: list[PlannedInstance] = []
    for index, group in enumerate(config.instance_group):
        gname = group.name or f"{config.name}_{index}"
        kind = "KIND_CPU" if group.kind == "KIND_AUTO" else group.kind  # not normalized: CPU
        devices = list(group.gpus) if kind == "KIND_GPU" else [0]
        for i in range(group.count):
            plan.extend(PlannedInstance(f"{gname}_{i}", kind, dev, gname) for dev in devices)
    return plan


def instance_count(config: ModelConfig) -> int:
    """How many instances ``plan_instances`` creates (at least 1: the scheduler's sizing)."""
    n = 0
    for g in config.instance_group:
        kind = "KIND_CPU" if g.kind == "KIND_AUTO" else g.kind
        n += g.count * (len(g.gpus) if kind == "KIND_GPU" and g.gpus else 1)
    return max(1, n)


__all__ = ["PlannedInstance", "instance_count", "normalize_instance_groups", "plan_instances",
           "validate_instance_groups"]
