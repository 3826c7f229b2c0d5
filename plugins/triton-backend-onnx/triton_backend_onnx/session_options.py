"""onnxruntime SessionOptions and RunOptions from a model config, with Triton's keys.

| config                                              | onnxruntime                                  |
|-----------------------------------------------------|----------------------------------------------|
| ``optimization { graph { level: N } }``             | graph_optimization_level: -1 basic,          |
|                                                     | 1 extended, 2 disable all, else (0) all      |
| parameter ``execution_mode`` 0 / 1                  | ORT_SEQUENTIAL / ORT_PARALLEL                |
| parameter ``intra_op_thread_count`` N (>0)          | intra_op_num_threads (0: ORT's default)      |
| parameter ``inter_op_thread_count`` N (>0)          | inter_op_num_threads (0: ORT's default)      |
| parameter ``enable_mem_arena`` bool                 | enable_cpu_mem_arena                         |
| parameter ``enable_mem_pattern`` bool               | enable_mem_pattern                           |
| parameter ``session.<key>`` (e.g.                   | add_session_config_entry(``session.<key>``)  |
| ``session.use_device_allocator_for_initializers``)  |                                              |
| parameter ``memory.enable_memory_arena_shrinkage``  | RunOptions config entry (e.g. "cpu:0")       |
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from triton_core.config import ModelConfig
from triton_core.errors import TritonError

from .params import bool_param, int_param

log = logging.getLogger("triton_backend_onnx")

GRAPH_LEVELS = {-1: "ORT_ENABLE_BASIC", 1: "ORT_ENABLE_EXTENDED", 2: "ORT_DISABLE_ALL"}
RUN_CONFIG_KEYS = ("memory.enable_memory_arena_shrinkage",)


@dataclass
class SessionSettings:
    """Everything a session needs from the config, parsed once per model."""

    graph_optimization_level: str = "ORT_ENABLE_ALL"
    execution_mode: int = 0
    intra_op_thread_count: int = 0
    inter_op_thread_count: int = 0
    enable_mem_arena: bool | None = None
    enable_mem_pattern: bool | None = None
    session_config: dict[str, str] = field(default_factory=dict)
    run_config: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: ModelConfig, model: str) -> SessionSettings:
        s = cls()
        graph = ((config.optimization or {}).get("graph") or {})
        level = int(graph.get("level", 0) or 0)
        s.graph_optimization_level = GRAPH_LEVELS.get(level, "ORT_ENABLE_ALL")

        s.execution_mode = int_param(config, "execution_mode", model, 0)
        if s.execution_mode not in (0, 1):
            raise TritonError.invalid_arg(
                f"model '{model}': invalid configuration value provided. Expected values for "
                f"execution_mode are 0 or 1 but got {s.execution_mode}"
            )
        for key in ("intra_op_thread_count", "inter_op_thread_count"):
            n = int_param(config, key, model, 0)
            if n < 0:
                raise TritonError.invalid_arg(f"model '{model}': {key} must be >= 0, got {n}")
            setattr(s, key, n)
        s.enable_mem_arena = bool_param(config, "enable_mem_arena", model)
        s.enable_mem_pattern = bool_param(config, "enable_mem_pattern", model)
        for key, p in config.parameters.items():
            if key.startswith("session."):
                s.session_config[key] = p.string_value
            elif key in RUN_CONFIG_KEYS:
                s.run_config[key] = p.string_value
        if bool_param(config, "share_session_between_instances", model, False):
            log.warning(
                "model '%s': share_session_between_instances is not supported; each "
                "instance creates its own session",
                model,
            )
        return s

    def session_options(self):  # -> onnxruntime.SessionOptions
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, self.graph_optimization_level
        )
        so.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == 1 else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        if self.intra_op_thread_count > 0:
            so.intra_op_num_threads = self.intra_op_thread_count
        if self.inter_op_thread_count > 0:
            so.inter_op_num_threads = self.inter_op_thread_count
        if self.enable_mem_arena is not None:
            so.enable_cpu_mem_arena = self.enable_mem_arena
        if self.enable_mem_pattern is not None:
            so.enable_mem_pattern = self.enable_mem_pattern
        for k, v in self.session_config.items():
            try:
                so.add_session_config_entry(k, v)
            except Exception as e:  # noqa: BLE001 - ORT raises its own types
                raise TritonError.invalid_arg(f"session option '{k}' = '{v}': {e}") from None
        return so

    def run_options(self):  # -> onnxruntime.RunOptions | None
        if not self.run_config:
            return None
        import onnxruntime as ort

        ro = ort.RunOptions()
        for k, v in self.run_config.items():
            ro.add_run_config_entry(k, v)
        return ro
