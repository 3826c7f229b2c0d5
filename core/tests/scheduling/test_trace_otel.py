"""The trace extension's opentelemetry mode: spans exported over OTLP/HTTP to a real
receiver on localhost (an HTTP server decoding the OTLP protobuf), continuing the
client's W3C traceparent."""

import gzip
import http.server
import threading

import numpy as np
import pytest
import tritonclient.http as httpclient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from expr_backend import ADD_SUB, make_server, write_model
from triton_core import TritonError
from triton_core.scheduling.trace_otel import OtelExporter
from triton_core.testing import serving_http, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list = []
        self.resources: list = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        req = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:  # type: ignore[attr-defined]
            for rs in req.resource_spans:
                self.server.resources.append(  # type: ignore[attr-defined]
                    {a.key: a.value.string_value for a in rs.resource.attributes})
                for ss in rs.scope_spans:
                    self.server.spans.extend(ss.spans)  # type: ignore[attr-defined]
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_spans_reach_the_collector_and_continue_the_clients_trace(tmp_path, receiver):
    write_model(tmp_path, "add", ADD_SUB)
    flags = ["mode=opentelemetry", "level=TIMESTAMPS", "rate=1",
             f"opentelemetry,url={receiver.url}", "opentelemetry,resource=deployment=test",
             "opentelemetry,bsp_schedule_delay=50"]
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    with make_server(tmp_path, trace_config=flags) as s, serving_http(s) as addr:
        assert s.trace_setting()["trace_mode"] == "opentelemetry"
        client = httpclient.InferenceServerClient(addr)
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"),
                  httpclient.InferInput("INPUT1", [1, 16], "INT32")]
        for i in inputs:
            i.set_data_from_numpy(a)
        client.infer("add", inputs, headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        client.infer("add", inputs)  # no traceparent: a trace of its own
        client.close()
        wait_until(lambda: len(receiver.spans) >= 4, "the spans exported", 20)
    spans = {(sp.name, sp.trace_id.hex()): sp for sp in receiver.spans}
    root = spans[("InferRequest", TRACE_ID)]
    assert root.parent_span_id.hex() == PARENT_ID
    assert [e.name for e in root.events] == [
        "REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
        "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]
    attrs = {a.key: a.value for a in root.attributes}
    assert attrs["triton.model_name"].string_value == "add"
    compute = spans[("compute", TRACE_ID)]
    assert compute.parent_span_id == root.span_id
    assert root.start_time_unix_nano <= compute.start_time_unix_nano <= compute.end_time_unix_nano \
        <= root.end_time_unix_nano
    others = [sp for sp in receiver.spans if sp.name == "InferRequest"
              and sp.trace_id.hex() != TRACE_ID]
    assert len(others) == 1 and not others[0].parent_span_id
    assert receiver.resources[0]["deployment"] == "test"
    assert receiver.resources[0]["service.name"] == "triton-inference-server"


@pytest.mark.parametrize("settings, words", [
    ({"nope": ["1"]}, "unknown setting"),
    ({"resource": ["novalue"]}, "expected <key>=<value>"),
    ({"bsp_schedule_delay": ["soon"]}, "expected an integer"),
])
def test_bad_opentelemetry_settings_are_refused(settings, words):
    with pytest.raises(TritonError) as e:
        OtelExporter(settings)
    assert words in e.value.message


def test_ensemble_steps_are_child_spans(tmp_path, receiver):
    from test_sequence_ensemble_cache import DAG_IN, DAG_OUT, DAG_STEPS, SCALE, ens_cfg

    write_model(tmp_path, "add", ADD_SUB)
    write_model(tmp_path, "scale", SCALE)
    write_model(tmp_path, "a_ens", ens_cfg(DAG_STEPS, DAG_IN, DAG_OUT))
    flags = ["mode=opentelemetry", "level=TIMESTAMPS", "rate=1",
             f"opentelemetry,url={receiver.url}", "opentelemetry,bsp_schedule_delay=50"]
    one = np.ones((1, 16), np.int32)
    with make_server(tmp_path, trace_config=flags) as s:
        s.model("a_ens").infer({"IN0": one, "IN1": one})
    requests = [sp for sp in receiver.spans if sp.name == "InferRequest"]
    attrs = [{a.key: a.value.string_value for a in sp.attributes} for sp in requests]
    root = next(sp for sp, a in zip(requests, attrs, strict=True)
                if a["triton.model_name"] == "a_ens")
    steps = [sp for sp in requests if sp is not root]
    assert steps and all(sp.parent_span_id == root.span_id and sp.trace_id == root.trace_id
                         for sp in steps)
