"""Server options: one place for what the CLI flags and Server(...) keywords mean."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .models.remote import is_remote


class ServerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # folders, or object-storage paths kept as written (s3://, gs://, as://: models/remote.py)
    model_repository: list[Path | str] = Field(default_factory=list)
    model_control_mode: Literal["none", "poll", "explicit"] = "none"
    load_model: list[str] = Field(default_factory=list)
    repository_poll_secs: float = 15.0
    strict_readiness: bool = True
    exit_on_error: bool = True
    exit_timeout_secs: float = 30.0
    disable_auto_complete_config: bool = False
    model_load_thread_count: int = 4
    model_config_name: str | None = None
    backend_config: dict[str, dict[str, str]] = Field(default_factory=dict)
    server_id: str = "triton"
    allow_client_shm: bool = False
    # Registered system shared-memory regions at most (each costs a memory map and an
    # fd; a process has ~65k maps). Triton has no cap.
    shm_max_regions: int = 1024
    # --rate-limit off | execution_count, --rate-limit-resource <name>:<count>[:<device>]
    rate_limit: Literal["off", "execution_count"] = "off"
    rate_limit_resource: list[str] = Field(default_factory=list)
    # --trace-config [triton,]<key>=<value> (Triton's keys: level, rate, count, file, ...)
    trace_config: list[str] = Field(default_factory=list)
    # --metrics-config <key>=<value>: summary_latencies, summary_quantiles, counter_latencies
    metrics_config: dict[str, str] = Field(default_factory=dict)
    # GPUs below this CUDA compute capability are not used (Triton's default, 6.0)
    min_supported_compute_capability: float = 6.0
    # Triton's CUDA / pinned memory pools: accepted for compatibility, no pool is kept
    # (docs/gpus.md): {device id: bytes}, bytes
    cuda_memory_pool_byte_size: dict[int, int] = Field(default_factory=dict)
    pinned_memory_pool_byte_size: int = 268435456
    # --cache-config <cache>,<key>=<value>: {"local": {"size": "1048576"}}
    cache_config: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("model_repository", mode="before")
    @classmethod
    def _repos(cls, v: object) -> object:
        if isinstance(v, (str, Path)):
            v = [v]
        if isinstance(v, (list, tuple)):
            # Path("s3://b/p") would fold the "//"; other strings are folders
            return [r if is_remote(r) else Path(r) if isinstance(r, str) else r for r in v]
        return v

    @field_validator("shm_max_regions")
    @classmethod
    def _shm_max(cls, v: int) -> int:
        if v < 1:
            raise ValueError("--shm-max-regions must be at least 1")
        return v

    @field_validator("model_load_thread_count")
    @classmethod
    def _threads(cls, v: int) -> int:
        if v < 1:
            raise ValueError("model load thread count must be at least 1")
        return v
