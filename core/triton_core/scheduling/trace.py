"""Triton's trace extension, ``triton`` mode: sampled requests' timestamps written to a
JSON trace file in Triton's format, with the trace settings API (global and per model).

Settings (Triton's names and meanings): ``trace_file``, ``trace_level`` (OFF /
TIMESTAMPS / TENSORS, a list), ``trace_rate`` (one request in that many is traced),
``trace_count`` (traces still to take; -1: no limit), ``log_frequency`` (write the file
every that many traces, as ``<trace_file>.<n>``; 0: when the server stops). A model's
settings override the global ones key by key; null removes an override.

A traced request carries a ``Trace``; the scheduler stamps it (REQUEST_START,
QUEUE_START, COMPUTE_START, COMPUTE_INPUT_END, COMPUTE_OUTPUT_START, COMPUTE_END,
REQUEST_END: scheduling/completion.py), and the manager keeps it until it writes it.
Level TENSORS adds each request's inputs (TENSOR_QUEUE_INPUT) and outputs
(TENSOR_BACKEND_OUTPUT) with their values, as Triton writes them.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import TritonError

log = logging.getLogger("triton_core")

LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
KEYS = ("trace_file", "trace_level", "trace_rate", "trace_count", "log_frequency")


@dataclass(frozen=True)
class TraceSetting:
    trace_file: str = ""
    trace_level: tuple[str, ...] = ("OFF",)
    trace_rate: int = 1000
    trace_count: int = -1
    log_frequency: int = 0

    @property
    def on(self) -> bool:
        return any(level != "OFF" for level in self.trace_level) and self.trace_count != 0

    def as_response(self) -> dict[str, Any]:
        """Triton's response: every value a string, trace_level a list of strings."""
        return {"trace_file": self.trace_file, "trace_level": list(self.trace_level),
                "trace_rate": str(self.trace_rate), "trace_count": str(self.trace_count),
                "log_frequency": str(self.log_frequency)}


def _int(key: str, value: Any, low: int) -> int:
    try:
        v = int(value[0] if isinstance(value, list) and len(value) == 1 else value)
    except (TypeError, ValueError):
        raise TritonError.invalid_arg(
            f"Unable to parse '{key}', got: {value}") from None
    if v < low:
        raise TritonError.invalid_arg(f"Invalid '{key}' value: {v}, expected >= {low}")
    return v


def parse_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """A settings request's values as typed settings (None: clear that key)."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in KEYS:
            raise TritonError.invalid_arg(f"Unknown trace setting '{key}'")
        if value is None or value == []:
            out[key] = None
        elif key == "trace_file":
            out[key] = str(value[0] if isinstance(value, list) else value)
        elif key == "trace_level":
            levels = value if isinstance(value, list) else [value]
            for level in levels:
                if str(level).upper() not in LEVELS:
                    raise TritonError.invalid_arg(
                        f"Unable to parse 'trace_level', got: {level} (expected OFF, "
                        "TIMESTAMPS or TENSORS)")
            out[key] = tuple(str(level).upper() for level in levels)
        elif key == "trace_count":
            out[key] = _int(key, value, -1)
        elif key == "trace_rate":
            out[key] = _int(key, value, 1)
        else:
            out[key] = _int(key, value, 0)
    return out


@dataclass
class Trace:
    """One sampled request's trace."""

    id: int
    model_name: str
    model_version: int
    request_id: str
    owner: _Sampler
    traceparent: str = ""  # the client's W3C trace context (opentelemetry mode)
    parent: Trace | None = None  # the ensemble request this step's request belongs to
    start_ns: int = 0  # the request's arrival
    timestamps: list[tuple[str, int]] = field(default_factory=list)
    span: Any = None  # opentelemetry mode: the open span, once a child needed it
    tensors: list[dict[str, Any]] | None = None  # level TENSORS: (activity, tensor) records
    stamps_on: bool = True  # level TIMESTAMPS

    def tensor(self, activity: str, name: str, datatype: str, shape: Any, values: Any) -> None:
        """Level TENSORS: one tensor as Triton writes it (values comma-separated)."""
        if self.tensors is None:
            return
        if hasattr(values, "tolist"):
            values = values.ravel().tolist()
        data = ",".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                        for v in values)
        self.tensors.append({"id": self.id, "activity": activity, "tensor": {
            "name": name, "data": data, "shape": ",".join(str(d) for d in shape),
            "dtype": datatype}})

    def stamp(self, name: str, ns: int) -> None:
        if self.stamps_on:
            self.timestamps.append((name, ns))

    def child(self, model: str, version: int, start_ns: int) -> Trace:
        """The trace of a request this one makes (an ensemble's step)."""
        self.owner.opened()
        return Trace(next(self.owner.manager.ids), model, version, self.request_id, self.owner,
                     self.traceparent, self, start_ns,
                     tensors=[] if self.tensors is not None else None, stamps_on=self.stamps_on)

    def done(self) -> None:
        self.owner.collect(self)

    def records(self) -> list[dict[str, Any]]:
        head: dict[str, Any] = {"id": self.id, "model_name": self.model_name,
                                "model_version": self.model_version}
        if self.request_id:
            head["request_id"] = self.request_id
        if self.parent is not None:
            head["parent_id"] = self.parent.id
        return [head] + [{"id": self.id, "timestamps": [{"name": n, "ns": ns}]}
                         for n, ns in self.timestamps] + (self.tensors or [])


class _Sampler:
    """The counters and collected traces of one setting (global, or a model's own)."""

    def __init__(self, manager: TraceManager, setting: TraceSetting) -> None:
        self.manager = manager
        self.setting = setting
        self.seen = 0
        self.collected: list[Trace] = []
        self.file_index = 0
        self.open = 0  # traces taken and not collected yet (children included)
        self.lock = threading.Lock()

    def opened(self) -> None:
        with self.lock:
            self.open += 1

    def sample(self, model: str, version: int, request_id: str,
               traceparent: str = "", start_ns: int = 0) -> Trace | None:
        with self.lock:
            s = self.setting
            if not s.on:
                return None
            self.seen += 1
            if self.seen % s.trace_rate:
                return None
            if s.trace_count > 0:
                self.setting = replace(s, trace_count=s.trace_count - 1)
            self.open += 1
            return Trace(next(self.manager.ids), model, version, request_id, self, traceparent,
                         None, start_ns, tensors=[] if "TENSORS" in s.trace_level else None,
                         stamps_on="TIMESTAMPS" in s.trace_level)

    def collect(self, trace: Trace) -> None:
        exporter = self.manager.exporter
        if exporter is not None:  # opentelemetry mode: spans, no file
            with self.lock:
                self.open -= 1
            exporter.export(trace)
            return
        with self.lock:
            self.collected.append(trace)
            self.open -= 1
            s = self.setting
            # the last traces of a count: written once their children are in too
            due = ((s.log_frequency and len(self.collected) >= s.log_frequency)
                   or (s.trace_count == 0 and self.open <= 0))
            if not due:
                return
            batch, self.collected = self.collected, []
            path = f"{s.trace_file}.{self.file_index}" if s.trace_file else ""
            self.file_index += 1
        _write(path, batch)

    def flush(self) -> None:
        """Write what is collected to trace_file (shutdown, or the file changes)."""
        with self.lock:
            batch, self.collected = self.collected, []
            path = self.setting.trace_file
            if self.setting.log_frequency and batch:
                path = f"{path}.{self.file_index}" if path else ""
                self.file_index += 1
        if batch:
            _write(path, batch)


def _write(path: str, traces: list[Trace]) -> None:
    if not path:
        log.warning("%d traces collected with no trace_file set: dropped", len(traces))
        return
    records = [r for t in traces for r in t.records()]
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(records, f)
    except OSError as e:
        log.error("writing the trace file '%s' failed: %s", path, e)


class TraceManager:
    """The server's trace settings and samplers (global, and per model)."""

    def __init__(self, setting: TraceSetting | None = None, mode: str = "triton",
                 opentelemetry: dict[str, list[str]] | None = None) -> None:
        self.mode = mode
        self.exporter: Any = None  # opentelemetry mode: trace_otel.OtelExporter
        if mode == "opentelemetry":
            from .trace_otel import OtelExporter

            self.exporter = OtelExporter(opentelemetry or {})
        self.ids = itertools.count(1)
        self._lock = threading.Lock()
        self._global = _Sampler(self, setting or TraceSetting())
        self._overrides: dict[str, dict[str, Any]] = {}  # model -> its own keys
        self._models: dict[str, _Sampler] = {}

    def setting(self, model: str | None = None) -> TraceSetting:
        with self._lock:
            if model is None or model not in self._models:
                return self._global.setting
            return self._models[model].setting

    def update(self, model: str | None, changes: dict[str, Any]) -> TraceSetting:
        """Apply a settings request (Triton's semantics); returns the setting now in force."""
        typed = parse_changes(changes)
        with self._lock:
            if model is None:
                base = self._global.setting
                new = replace(base, **{k: (getattr(TraceSetting(), k) if v is None else v)
                                       for k, v in typed.items()})
                old_file = base.trace_file
                self._global.setting = new
                if new.trace_file != old_file:
                    self._global.file_index = 0
                # models without their own value of a key follow the global one
                for name, sampler in self._models.items():
                    sampler.setting = self._merged(name)
                return new
            own = self._overrides.setdefault(model, {})
            for k, v in typed.items():
                if v is None:
                    own.pop(k, None)
                else:
                    own[k] = v
            sampler = self._models.get(model)
            if sampler is None:
                sampler = self._models[model] = _Sampler(self, self._merged(model))
            else:
                sampler.setting = self._merged(model)
            return sampler.setting

    def _merged(self, model: str) -> TraceSetting:
        return replace(self._global.setting, **self._overrides.get(model, {}))

    def sample(self, model: str, version: int, request_id: str,
               traceparent: str = "", start_ns: int = 0) -> Trace | None:
        sampler = self._models.get(model, self._global)
        if not sampler.setting.on:  # the common case: no lock
            return None
        return sampler.sample(model, version, request_id, traceparent, start_ns)

    def flush(self) -> None:
        """Write or send what is collected (the server stops)."""
        if self.exporter is not None:
            self.exporter.close()
            return
        with self._lock:
            samplers = [self._global, *self._models.values()]
        for s in samplers:
            s.flush()


@dataclass(frozen=True)
class TraceConfig:
    """``--trace-config``: the global setting, the mode and the opentelemetry settings."""

    setting: TraceSetting = TraceSetting()
    mode: str = "triton"
    opentelemetry: dict[str, list[str]] = field(default_factory=dict)

    def manager(self) -> TraceManager:
        return TraceManager(self.setting, self.mode, self.opentelemetry)


def parse_trace_flags(values: list[str]) -> TraceConfig:
    """``--trace-config [triton,|opentelemetry,]<key>=<value>`` (Triton's keys)."""
    changes: dict[str, Any] = {}
    otel: dict[str, list[str]] = {}
    mode = "triton"
    names = {"file": "trace_file", "level": "trace_level", "rate": "trace_rate",
             "count": "trace_count", "log-frequency": "log_frequency"}
    for v in values:
        scope, comma, rest = v.partition(",")
        spec = rest if comma else v
        if comma and scope not in ("triton", "opentelemetry"):
            raise TritonError.invalid_arg(f"--trace-config '{v}': unknown trace mode '{scope}'")
        key, eq, value = spec.partition("=")
        if not eq:
            raise TritonError.invalid_arg(f"--trace-config '{v}': expected <setting>=<value>")
        if comma and scope == "opentelemetry":
            otel.setdefault(key, []).append(value)
            continue
        if not comma and key == "mode":
            if value not in ("triton", "opentelemetry"):
                raise TritonError.invalid_arg(
                    f"--trace-config mode={value}: expected triton or opentelemetry")
            mode = value
            continue
        if key not in names or (comma and key in ("level", "rate", "count")):
            raise TritonError.invalid_arg(f"--trace-config '{v}': unknown setting '{key}'")
        name = names[key]
        if name == "trace_level":
            changes[name] = [*(changes.get(name) or []), value]
        else:
            changes[name] = value
    typed = parse_changes(changes)
    setting = replace(TraceSetting(), **{k: v for k, v in typed.items() if v is not None})
    if mode == "opentelemetry" and "TENSORS" in setting.trace_level:
        raise TritonError.invalid_arg(
            "--trace-config level=TENSORS is not supported in opentelemetry mode")
    return TraceConfig(setting, mode, otel)
