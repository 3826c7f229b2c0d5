"""The trace extension's ``opentelemetry`` mode: each traced request becomes spans exported
over OTLP/HTTP by the OpenTelemetry SDK (batch span processor), continuing the client's
W3C ``traceparent`` when the request carried one.

Per request, as Triton: a span ``InferRequest`` from REQUEST_START to REQUEST_END with
the timestamps as events and the model as attributes, and its child ``compute`` from
COMPUTE_START to COMPUTE_END. ``--trace-config opentelemetry,<key>=<value>``: ``url``
(the collector's traces endpoint, default http://localhost:4318/v1/traces), ``resource``
(``key=value``, repeatable: resource attributes), ``bsp_max_queue_size``,
``bsp_schedule_delay`` (ms), ``bsp_max_export_batch_size``. The SDK is imported only in
this mode (the ``opentelemetry`` extra of triton-core).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ..errors import TritonError

DEFAULT_URL = "http://localhost:4318/v1/traces"
KEYS = ("url", "resource", "bsp_max_queue_size", "bsp_schedule_delay",
        "bsp_max_export_batch_size")


class OtelExporter:
    """Spans of finished traces, sent by a batch span processor to an OTLP/HTTP endpoint."""

    def __init__(self, settings: dict[str, list[str]]) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError as e:
            raise TritonError.unsupported(
                f"--trace-config mode=opentelemetry needs the OpenTelemetry SDK ({e.name} is not "
                f"installed): {sys.executable} -m pip install opentelemetry-sdk "
                "opentelemetry-exporter-otlp-proto-http") from None
        unknown = sorted(set(settings) - set(KEYS))
        if unknown:
            raise TritonError.invalid_arg(
                f"--trace-config opentelemetry,{unknown[0]}: unknown setting (known: "
                f"{', '.join(KEYS)})")
        attrs: dict[str, str] = {"service.name": "triton-inference-server"}
        for kv in settings.get("resource", []):
            k, eq, v = kv.partition("=")
            if not eq or not k:
                raise TritonError.invalid_arg(
                    f"--trace-config opentelemetry,resource={kv}: expected <key>=<value>")
            attrs[k] = v
        bsp: dict[str, Any] = {}
        for key, arg in (("bsp_max_queue_size", "max_queue_size"),
                         ("bsp_schedule_delay", "schedule_delay_millis"),
                         ("bsp_max_export_batch_size", "max_export_batch_size")):
            if key in settings:
                try:
                    bsp[arg] = int(settings[key][-1])
                except ValueError:
                    raise TritonError.invalid_arg(
                        f"--trace-config opentelemetry,{key}={settings[key][-1]}: expected an "
                        "integer") from None
        url = settings.get("url", [DEFAULT_URL])[-1]
        self.provider = TracerProvider(resource=Resource.create(attrs))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url), **bsp))
        self.tracer = self.provider.get_tracer("triton-core")
        self._propagator = TraceContextTextMapPropagator()
        # our timestamps are monotonic; spans carry wall-clock nanoseconds
        self._epoch_offset = time.time_ns() - time.monotonic_ns()

    def _span(self, trace: Any) -> Any:
        """The trace's InferRequest span, started at the request's arrival (once)."""
        from opentelemetry import trace as otel_trace

        if trace.span is None:
            if trace.parent is not None:  # an ensemble step: a child of the ensemble's span
                parent = otel_trace.set_span_in_context(self._span(trace.parent))
            elif trace.traceparent:
                parent = self._propagator.extract({"traceparent": trace.traceparent})
            else:
                parent = None
            start = trace.start_ns or (trace.timestamps[0][1] if trace.timestamps else 0)
            trace.span = self.tracer.start_span(
                "InferRequest", context=parent, start_time=start + self._epoch_offset,
                attributes={"triton.model_name": trace.model_name,
                            "triton.model_version": trace.model_version,
                            "triton.trace_id": trace.id, "triton.request_id": trace.request_id})
        return trace.span

    def export(self, trace: Any) -> None:
        """Turn a finished trace (scheduling/trace.Trace) into its spans."""
        from opentelemetry import trace as otel_trace

        stamps = dict(trace.timestamps)
        off = self._epoch_offset
        span = self._span(trace)
        end = stamps.get("REQUEST_END", trace.start_ns)
        for name, ns in trace.timestamps:
            span.add_event(name, timestamp=ns + off)
        if "COMPUTE_START" in stamps:
            child = self.tracer.start_span(
                "compute", context=otel_trace.set_span_in_context(span),
                start_time=stamps["COMPUTE_START"] + off)
            for name in ("COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"):
                if name in stamps:
                    child.add_event(name, timestamp=stamps[name] + off)
            child.end(end_time=stamps.get("COMPUTE_END", end) + off)
        span.end(end_time=end + off)

    def close(self) -> None:
        self.provider.shutdown()  # flushes what the batch processor holds
