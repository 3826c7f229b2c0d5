"""The native gRPC engine at the HTTP/2 level: bad calls, deadlines, resets, pings, age.

A raw HTTP/2 client (ngh2) sends what tritonclient never would; every case ends in a gRPC
status with a clear message, and the server keeps serving.
"""

from __future__ import annotations

import socket
import time

import ngh2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from testing_backend import make_server
from tritonclient.grpc import service_pb2 as pb

from triton_core.frontends.grpc import GrpcFrontEnd, wire
from triton_core.testing import LoopThread
from waiting import wait_until

INFER = b"/inference.GRPCInferenceService/ModelInfer"
LIVE = b"/inference.GRPCInferenceService/ServerLive"


class RawClient:
    def __init__(self, port: int, settings: dict | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        # Generous: these only bound a failing test; a loaded machine must not fail a good one.
        self.sock.settimeout(120)
        self.h2 = ngh2.Connection(ngh2.Role.CLIENT)
        self.h2.initiate_connection(settings)
        self.events: list[ngh2.Event] = []
        self.ended: set[int] = set()  # streams whose last frame arrived, kept as events come
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(self, path: bytes, headers: list | None = None,
              content_type: bytes = b"application/grpc", method: bytes = b"POST") -> int:
        sid = self.h2.send_request([
            (b":method", method), (b":scheme", b"http"), (b":path", path),
            (b":authority", b"localhost"), (b"content-type", content_type), (b"te", b"trailers"),
            *(headers or [])])
        self.flush()
        return sid

    def send(self, sid: int, body: bytes, end: bool = True) -> None:
        self.h2.send_data(sid, body, end_stream=end)
        self.flush()

    def call(self, path: bytes, body: bytes, headers: list | None = None,
             content_type: bytes = b"application/grpc") -> int:
        sid = self.start(path, headers, content_type)
        self.send(sid, body)
        return sid

    def read_until(self, done, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < end, f"timed out; events: {self.events[-20:]}"
            data = self.sock.recv(1 << 16)
            if not data:
                return
            self.h2.receive_data(data)
            for e in self.h2.events():
                self.events.append(e)
                if (isinstance(e, (ngh2.TrailersReceived, ngh2.StreamReset))
                        or (isinstance(e, ngh2.ResponseReceived) and e.end_stream)):
                    self.ended.add(e.stream_id)
            self.flush()

    def result(self, sid: int) -> tuple[dict[bytes, bytes], bytes]:
        """The call's headers and trailers in one dict, and its body."""

        # Looked up in a set, not by scanning every event after each read: a 20 MiB answer
        # arrives as over a thousand frames, and a scan per read made this quadratic.
        self.read_until(lambda: sid in self.ended)
        headers: dict[bytes, bytes] = {}
        body = []
        for e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, (ngh2.ResponseReceived, ngh2.TrailersReceived)):
                headers.update(dict(e.headers))
            elif isinstance(e, ngh2.DataReceived):
                body.append(e.data)
        return headers, b"".join(body)

    def reset_code(self, sid: int) -> int:
        """The error code of the server's RST_STREAM for the call (it may follow the status)."""
        self.read_until(lambda: any(isinstance(e, ngh2.StreamReset) and e.stream_id == sid
                                    for e in self.events))
        return next(e.error_code for e in self.events
                    if isinstance(e, ngh2.StreamReset) and e.stream_id == sid)

    def has(self, kind: type) -> bool:
        return any(isinstance(e, kind) for e in self.events)

    def close(self) -> None:
        self.sock.close()


class Served:
    def __init__(self, tmp_path, **grpc_kwargs) -> None:
        self.server = make_server(tmp_path)
        self.loop = LoopThread()
        self.front = GrpcFrontEnd(self.server, "127.0.0.1", 0, **grpc_kwargs)
        self.loop.run(self.front.start())
        self.port = self.front.port

    def close(self) -> None:
        self.loop.run(self.front.stop(0))
        self.loop.close()
        self.server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("h2"), max_receive_message_length=1 << 20)
    yield s
    s.close()


@pytest.fixture
def raw(served):
    c = RawClient(served.port)
    yield c
    c.close()


def infer_request(model: str = "simple") -> bytes:
    msg = pb.ModelInferRequest(model_name=model)
    for name in ("INPUT0", "INPUT1"):
        t = msg.inputs.add(name=name, datatype="INT32", shape=[1, 16] if model == "simple" else [16])
        t.contents.int_contents.extend(range(16))
    return msg.SerializeToString()


def assert_serving(served: Served) -> None:
    with grpcclient.InferenceServerClient(f"127.0.0.1:{served.port}") as c:
        assert c.is_server_live()


def test_a_unary_call(raw):
    h, body = raw.result(raw.call(INFER, wire.frame(infer_request())))
    assert h[b":status"] == b"200" and h[b"grpc-status"] == b"0"
    resp = pb.ModelInferResponse.FromString(body[5:])
    out = np.frombuffer(resp.raw_output_contents[0], dtype=np.int32)
    assert out.tolist() == [2 * i for i in range(16)]


@pytest.mark.parametrize(("path", "body", "headers", "status", "message"), [
    (b"/inference.GRPCInferenceService/NoSuchRpc", wire.frame(b""), [], 12, b"Method not found!"),
    (INFER, wire.frame(infer_request())[:-3], [], 13, b"the request ended inside a message"),
    (INFER, wire.frame(infer_request()) * 2, [], 12, b"more than one request message"),
    (INFER, b"", [], 12, b"no request message in a unary call"),
    (INFER, wire.frame(b"\xff\xff\xff"), [], 13, b"Exception deserializing request"),
    (INFER, wire.frame(infer_request(), compressed=True), [], 13, b"no grpc-encoding"),
    (INFER, wire.frame(infer_request(), compressed=True), [(b"grpc-encoding", b"snappy")], 12,
     b"Compression algorithm 'snappy' is not supported"),
    (INFER, wire.frame(b"not gzip", compressed=True), [(b"grpc-encoding", b"gzip")], 13,
     b"cannot decompress"),
    (INFER, wire.frame(b"\x00" * ((1 << 20) + 1)), [], 8,
     b"Received message larger than max (1048577 vs. 1048576)"),
    (INFER, wire.frame(wire.compress(b"\x00" * (2 << 20), 1), compressed=True),
     [(b"grpc-encoding", b"gzip")], 8, b"Received message larger than max"),
    (INFER, b"\x07\x00\x00\x00\x00", [], 13, b"invalid message flag 7"),
], ids=["unknown-method", "truncated", "two-messages", "no-message", "not-protobuf",
        "compressed-without-encoding", "unknown-encoding", "bad-gzip", "too-large",
        "too-large-after-gzip", "bad-flag"])
def test_bad_calls_get_a_status_and_the_server_serves_on(served, raw, path, body, headers, status,
                                                         message):
    h, _ = raw.result(raw.call(path, body, headers))
    assert h[b":status"] == b"200"
    assert h[b"grpc-status"] == str(status).encode(), h
    assert message in h.get(b"grpc-message", b""), h
    # the same connection still answers
    h, _ = raw.result(raw.call(LIVE, wire.frame(b"")))
    assert h[b"grpc-status"] == b"0"
    assert_serving(served)


def test_a_gzip_request_is_read(raw):
    body = wire.frame(wire.compress(infer_request(), 6), compressed=True)
    h, out = raw.result(raw.call(INFER, body, [(b"grpc-encoding", b"gzip")]))
    assert h[b"grpc-status"] == b"0"
    assert pb.ModelInferResponse.FromString(out[5:]).model_name == "simple"


def test_not_grpc_content_type_is_415(raw):
    h, _ = raw.result(raw.call(LIVE, wire.frame(b""), content_type=b"application/json"))
    assert h[b":status"] == b"415"


@pytest.mark.parametrize("method", [b"GET", b"PUT", b"HEAD"])
def test_a_method_other_than_post_is_refused(served, raw, method):
    """As grpc C-core's http_server_filter: gRPC status UNKNOWN "Bad method header", and no
    handler runs (as a POST, this request would infer)."""
    sid = raw.start(INFER, method=method)
    raw.send(sid, wire.frame(infer_request()))
    h, body = raw.result(sid)
    assert h[b":status"] == b"200" and h[b"grpc-status"] == b"2", h
    assert h[b"grpc-message"] == b"Bad method header" and body == b""
    h, _ = raw.result(raw.call(LIVE, wire.frame(b"")))
    assert h[b"grpc-status"] == b"0"
    assert_nothing_left(served)


ECHO = b"/test.Metadata/Echo"


async def _echo_metadata(request, context) -> bytes:
    """What a servicer sees of its call's metadata (the x-* keys), on either engine."""
    return repr([(k, v) for k, v in context.invocation_metadata() if k.startswith("x-")]).encode()


@pytest.fixture
def echo(served):
    from triton_core.frontends.grpc.h2_server import Route

    routes = served.front._h2.routes
    routes[ECHO] = Route("Echo", _echo_metadata, bytes, bytes, False, None)
    yield
    del routes[ECHO]


def test_binary_metadata_reaches_the_servicer_decoded(raw, echo):
    """A -bin key's value is base64, padded or not (gRPC over HTTP/2)."""
    for value, decoded in [(b"AP9h", b"\x00\xffa"), (b"AP8", b"\x00\xff"), (b"AP8=", b"\x00\xff"),
                           (b"AA==", b"\x00"), (b"", b"")]:
        h, body = raw.result(raw.call(ECHO, wire.frame(b""), [(b"x-test-bin", value),
                                                              (b"x-text", b"AP8")]))
        assert h[b"grpc-status"] == b"0", h
        assert body[5:] == repr([("x-test-bin", decoded), ("x-text", "AP8")]).encode()


@pytest.mark.parametrize("value", [b"!!", b"A", b"YR", b"A-8", b"AP8=A", b"AP 8"])
def test_malformed_binary_metadata_fails_the_call(served, raw, echo, value):
    """grpc C-core's answer (an HPACK stream error): INTERNAL, before any handler runs."""
    h, body = raw.result(raw.call(ECHO, wire.frame(b""), [(b"x-test-bin", value)]))
    assert h[b"grpc-status"] == b"13" and body == b"", h
    assert h[b"grpc-message"] == b"Error parsing 'x-test-bin' metadata: illegal base64 encoding"
    h, _ = raw.result(raw.call(LIVE, wire.frame(b"")))
    assert h[b"grpc-status"] == b"0"
    assert_nothing_left(served)


def test_a_servicer_sees_the_metadata_grpc_aio_gives(served, echo):
    """Bytes for -bin keys, str for the others: the servicer sees the same types on both engines."""
    import grpc

    loop = LoopThread()

    async def start():
        srv = grpc.aio.server()
        srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "test.Metadata", {"Echo": grpc.unary_unary_rpc_method_handler(_echo_metadata)}),))
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        return srv, port

    srv, port = loop.run(start())
    md = (("x-test-bin", b"\x00\xff\x10"), ("x-empty-bin", b""), ("x-text", "plain text"))
    try:
        seen = []
        for p in (served.port, port):
            with grpc.insecure_channel(f"127.0.0.1:{p}") as ch:
                seen.append(ch.unary_unary(ECHO.decode())(b"", metadata=md, timeout=10))
    finally:
        loop.run(srv.stop(0))
        loop.close()
    assert seen[0] == seen[1] == repr(list(md)).encode()


def test_grpc_message_is_percent_encoded(raw):
    h, _ = raw.result(raw.call(INFER, wire.frame(infer_request("no_such_model_é"))))
    assert h[b"grpc-status"] == b"5"
    assert b"no_such_model_%C3%A9" in h[b"grpc-message"]


def test_server_side_deadline(served, raw):
    h, _ = raw.result(raw.call(INFER, wire.frame(infer_request("slow")), [(b"grpc-timeout", b"50m")]))
    assert h[b"grpc-status"] == b"4" and h[b"grpc-message"] == b"Deadline Exceeded"
    assert_serving(served)


def test_a_reset_call_is_cancelled(served, raw):
    sid = raw.call(INFER, wire.frame(infer_request("slow")))
    wait_until(lambda: served.front._h2.calls, "the call to start", 5)
    raw.h2.reset_stream(sid, ngh2.ErrorCode.CANCEL)
    raw.flush()
    # the handler's task ends now, not after the model's 200 ms
    wait_until(lambda: not served.front._h2.calls, "the call to end", 5)
    h, _ = raw.result(raw.call(LIVE, wire.frame(b"")))
    assert h[b"grpc-status"] == b"0"


def test_a_closed_connection_cancels_its_calls(served):
    c = RawClient(served.port)
    c.call(INFER, wire.frame(infer_request("slow")))
    wait_until(lambda: served.front._h2.calls, "the call to start", 5)
    c.close()
    wait_until(lambda: not served.front._h2.calls, "the call to end", 5)
    assert_serving(served)


def test_large_messages_both_ways(served, tmp_path):
    """Larger than the 16 MiB flow-control windows, in both directions."""
    data = np.array([b"x" * (20 << 20)], dtype=np.object_).reshape(1, 1)
    with grpcclient.InferenceServerClient(f"127.0.0.1:{served.port}") as c:
        inp = grpcclient.InferInput("INPUT0", [1, 1], "BYTES")
        inp.set_data_from_numpy(data)
        with pytest.raises(Exception, match="Received message larger than max"):
            c.infer("simple_string", [inp])  # this server reads 1 MiB at most
    s = Served(tmp_path)
    try:
        with grpcclient.InferenceServerClient(f"127.0.0.1:{s.port}") as c:
            out = c.infer("simple_string", [inp]).as_numpy("OUTPUT0")
            assert out.shape == (1, 1) and out[0, 0] == data[0, 0]
    finally:
        s.close()


def test_too_many_pings_get_goaway(tmp_path):
    s = Served(tmp_path, http2_max_ping_strikes=2)
    c = RawClient(s.port)
    try:
        for _ in range(4):
            c.h2.ping(b"12345678")
        c.flush()
        c.read_until(lambda: c.has(ngh2.GoAwayReceived))
        goaway = next(e for e in c.events if isinstance(e, ngh2.GoAwayReceived))
        assert goaway.error_code == ngh2.ErrorCode.ENHANCE_YOUR_CALM
        assert goaway.debug_data == b"too_many_pings"
    finally:
        c.close()
        s.close()


def test_keepalive_pings_and_connection_age(tmp_path):
    s = Served(tmp_path, keepalive_time_ms=50, keepalive_permit_without_calls=True,
               max_connection_age_ms=300, max_connection_age_grace_ms=100)
    c = RawClient(s.port)
    try:
        c.read_until(lambda: c.has(ngh2.PingReceived), timeout=30)
        c.read_until(lambda: c.has(ngh2.GoAwayReceived), timeout=30)
        c.read_until(lambda: False, timeout=30)  # returns when the server closes the connection
    finally:
        c.close()
        s.close()


def test_keepalive_holds_a_bounded_number_of_timers(tmp_path):
    """A long-lived connection holds a bounded number of timer handles however many keepalive
    periods pass (each period's ping and timeout handles were kept for the connection's life)."""
    import asyncio
    import gc

    s = Served(tmp_path, keepalive_time_ms=2, keepalive_timeout_ms=60_000,
               keepalive_permit_without_calls=True, http2_max_pings_without_data=0)
    c = RawClient(s.port)

    def pings() -> int:
        return sum(type(e) is ngh2.PingReceived for e in c.events)

    def timers() -> int:
        return sum(issubclass(type(o), asyncio.TimerHandle) for o in gc.get_objects())

    try:
        c.read_until(lambda: pings() >= 10)  # the client answers each ping as it reads it
        before = timers()
        c.read_until(lambda: pings() >= 300)
        assert timers() - before < 20
        h, _ = c.result(c.call(LIVE, wire.frame(b"")))  # the connection serves on
        assert h[b"grpc-status"] == b"0"
    finally:
        c.close()
        s.close()


def test_a_connection_that_never_sends_its_preface_is_closed(tmp_path):
    s = Served(tmp_path, handshake_timeout_ms=300)
    try:
        ok = RawClient(s.port)  # connected first: its deadline passes first too
        h, _ = ok.result(ok.call(LIVE, wire.frame(b"")))
        assert h[b"grpc-status"] == b"0"
        silent = socket.create_connection(("127.0.0.1", s.port))
        silent.settimeout(10)
        while silent.recv(1 << 16):  # the server's SETTINGS, then the end
            pass
        silent.close()
        wait_until(lambda: len(s.front._h2.connections) == 1, "the silent connection to be forgotten")
        h, _ = ok.result(ok.call(LIVE, wire.frame(b"")))
        assert h[b"grpc-status"] == b"0"
        ok.close()
    finally:
        s.close()


def test_unanswered_keepalive_closes_the_connection(tmp_path):
    s = Served(tmp_path, keepalive_time_ms=50, keepalive_timeout_ms=50,
               keepalive_permit_without_calls=True)
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.settimeout(5)
    try:
        h2 = ngh2.Connection(ngh2.Role.CLIENT)
        h2.initiate_connection()
        sock.sendall(h2.data_to_send())
        # read nothing back into the session, so no ping is ever acknowledged
        while sock.recv(1 << 16):
            pass
    finally:
        sock.close()
        s.close()


def test_wire_helpers():
    assert wire.parse_timeout(b"100m") == pytest.approx(0.1)
    assert wire.parse_timeout(b"2S") == 2.0
    assert wire.parse_timeout(b"1H") == 3600.0
    assert wire.parse_timeout(b"x") is None
    assert wire.parse_timeout(b"123456789S") is None
    assert wire.encode_message("ok") == b"ok"
    assert wire.encode_message("50%\n") == b"50%25%0A"
    r = wire.MessageReader(b"", 100)
    whole = wire.frame(b"abc") + wire.frame(b"de")
    assert r.feed(whole[:4]) == [] and r.partial
    assert r.feed(whole[4:]) == [b"abc", b"de"] and not r.partial


@pytest.mark.parametrize("n", [20_000, 1_000_000])  # the fixture reads up to 1 MiB
def test_a_huge_model_name_gets_its_status_with_a_shortened_message(served, n):
    """The details quote the name: whole, a 1 MB grpc-message was not sent (the call was
    reset), and 20 KB was more than a grpc client takes (RESOURCE_EXHAUSTED)."""
    with grpcclient.InferenceServerClient(f"127.0.0.1:{served.port}") as c:
        with pytest.raises(grpcclient.InferenceServerException) as e:
            c.get_model_metadata("m" * n)
        assert e.value.status() == "StatusCode.NOT_FOUND"
        msg = e.value.message()
        assert msg.startswith("Request for unknown model: 'mmmm") and msg.endswith("mmm' is not found")
        assert "..." in msg and len(msg) <= wire.MAX_MESSAGE
        assert c.is_server_live()
    assert_serving(served)


def test_long_grpc_messages_are_cut_to_the_limit():
    for details in ("x" * 10_000, "é" * 10_000, "a" + "€" * 5000 + "end"):
        out = wire.encode_message(details)
        assert len(out) <= wire.MAX_MESSAGE and b"..." in out
        assert out.endswith(wire.encode_message(details[-5:])[-5:])
    assert wire.encode_message("x" * wire.MAX_MESSAGE) == b"x" * wire.MAX_MESSAGE


def test_metadata_over_the_hard_limit_is_refused_with_grpcs_words(served, raw):
    from triton_core.frontends.grpc.h2_connection import MAX_METADATA_SIZE

    h, _ = raw.result(raw.call(LIVE, wire.frame(b""), [(b"x-big", b"v" * MAX_METADATA_SIZE)]))
    assert h[b"grpc-status"] == b"8", h
    assert h[b"grpc-message"].startswith(b"received metadata size exceeds hard limit (")
    assert h[b"grpc-message"].endswith(b" vs. 16384)")
    h, _ = raw.result(raw.call(LIVE, wire.frame(b""), [(b"x-fine", b"v" * 8000)]))
    assert h[b"grpc-status"] == b"0"
    assert_serving(served)


def test_message_reader_splits_messages_however_the_frames_cut_them():
    msgs = [b"", b"a", b"xyz" * 10, bytes(range(256)) * 40]
    whole = b"".join(wire.frame(m) for m in msgs)
    for step in (1, 3, 5, 7, 64, 1000, len(whole)):
        r = wire.MessageReader(b"", 1 << 20)
        got: list[bytes] = []
        ends: list[int] = []
        fed = 0  # the body's offset where the reader's held bytes start, as _on_data keeps it
        for i in range(0, len(whole), step):
            base = fed - r.held
            e: list[int] = []
            got += r.feed(whole[i:i + step], e)
            ends += [base + x for x in e]
            fed = i + len(whole[i:i + step])
        assert got == msgs and not r.partial
        assert ends == [sum(5 + len(m) for m in msgs[:k + 1]) for k in range(len(msgs))]


def test_a_large_message_in_small_frames_is_read_in_linear_time():
    # one copy per message, not one per frame: 64 MiB in 16 KiB frames took about a minute
    body = wire.frame(bytes(64 << 20))
    r = wire.MessageReader(b"", 1 << 30)
    chunk = 16 << 10
    start = time.monotonic()
    out = []
    for i in range(0, len(body), chunk):
        out += r.feed(body[i:i + chunk])
    assert time.monotonic() - start < 5.0
    assert len(out) == 1 and len(out[0]) == 64 << 20


def test_responses_are_gzipped_when_asked_and_accepted(tmp_path):
    s = Served(tmp_path, compression_level="high")
    c = RawClient(s.port)
    try:
        h, out = c.result(c.call(INFER, wire.frame(infer_request()),
                                 [(b"grpc-accept-encoding", b"identity,gzip")]))
        assert h[b"grpc-status"] == b"0" and h[b"grpc-encoding"] == b"gzip"
        assert out[0] == 1
        resp = pb.ModelInferResponse.FromString(wire.decompress(out[5:], b"gzip", 1 << 20))
        assert resp.model_name == "simple"
        # a client that does not accept gzip gets the message uncompressed
        h, out = c.result(c.call(INFER, wire.frame(infer_request())))
        assert b"grpc-encoding" not in h and out[0] == 0
    finally:
        c.close()
        s.close()


# --- every way a call ends leaves nothing behind ------------------------------------------------

STREAM = b"/inference.GRPCInferenceService/ModelStreamInfer"


def raw_frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + payload


def leftovers(s: Served) -> tuple[list[int], int, int]:
    """Streams still held, calls (tasks) in flight, and request bytes received but not
    acknowledged (flow-control window not given back)."""
    h2 = s.front._h2
    conns = list(h2.connections)
    return ([sid for c in conns for sid in c.streams], len(h2.calls),
            sum(c.unacked for c in conns))


def assert_nothing_left(s: Served) -> None:
    try:
        wait_until(lambda: leftovers(s) == ([], 0, 0), "")
    except AssertionError:
        raise AssertionError(
            f"left behind (streams, calls, unacknowledged): {leftovers(s)}") from None


def _unary_ok(s, c):
    h, _ = c.result(c.call(LIVE, wire.frame(b"")))
    assert h[b"grpc-status"] == b"0"


def _unary_bad_at_the_end(s, c):
    h, _ = c.result(c.call(INFER, wire.frame(infer_request())[:-3]))
    assert h[b"grpc-status"] == b"13"


def _unary_bad_before_the_end(s, c):
    sid = c.start(INFER)
    c.send(sid, wire.frame(b"xx", compressed=True), end=False)
    h, _ = c.result(sid)
    assert h[b"grpc-status"] == b"13"


def _unary_deadline(s, c):
    h, _ = c.result(c.call(INFER, wire.frame(infer_request("slow")), [(b"grpc-timeout", b"20m")]))
    assert h[b"grpc-status"] == b"4"


def _unary_deadline_before_the_end(s, c):
    h, _ = c.result(c.start(INFER, [(b"grpc-timeout", b"20m")]))
    assert h[b"grpc-status"] == b"4"


def _unary_reset(s, c):
    sid = c.call(INFER, wire.frame(infer_request("slow")))
    wait_until(lambda: s.front._h2.calls, "the call to start")
    c.h2.reset_stream(sid, ngh2.ErrorCode.CANCEL)
    c.flush()
    wait_until(lambda: not s.front._h2.calls, "the call to end")


def _stream_ok(s, c):
    h, body = c.result(c.call(STREAM, wire.frame(infer_request()) * 3))
    assert h[b"grpc-status"] == b"0" and body.count(b"simple") == 3


def _stream_bad_message(s, c):
    sid = c.start(STREAM)
    c.send(sid, wire.frame(b"xx", compressed=True), end=False)
    h, _ = c.result(sid)
    assert h[b"grpc-status"] == b"13"


def _stream_not_protobuf(s, c):
    sid = c.start(STREAM)
    c.send(sid, wire.frame(infer_request("slow")) + wire.frame(b"\xff\xff\xff"), end=False)
    h, _ = c.result(sid)
    assert h[b"grpc-status"] == b"13" and b"deserializing" in h[b"grpc-message"]


def _stream_deadline(s, c):
    sid = c.start(STREAM, [(b"grpc-timeout", b"20m")])
    c.send(sid, wire.frame(infer_request()), end=False)
    h, _ = c.result(sid)
    assert h[b"grpc-status"] == b"4"


@pytest.mark.parametrize("kind", [
    _unary_ok, _unary_bad_at_the_end, _unary_bad_before_the_end, _unary_deadline,
    _unary_deadline_before_the_end, _unary_reset, _stream_ok, _stream_bad_message,
    _stream_not_protobuf, _stream_deadline], ids=lambda f: f.__name__.strip("_"))
def test_every_way_a_call_ends_forgets_it(served, kind):
    """Nothing more arrives on the connection after the calls: their streams must be gone."""
    c = RawClient(served.port)
    try:
        for _ in range(3):
            kind(served, c)
            c.events.clear()
        assert_nothing_left(served)
    finally:
        c.close()


def test_a_bad_message_on_a_stream_ends_its_handler(tmp_path):
    s = Served(tmp_path)
    c = RawClient(s.port)
    try:
        sid = c.start(STREAM)
        c.send(sid, wire.frame(infer_request()), end=False)
        c.send(sid, b"\x07\x00\x00\x00\x00", end=False)
        h, body = c.result(sid)
        assert h[b"grpc-status"] == b"13" and b"invalid message flag" in h[b"grpc-message"]
        wait_until(lambda: not s.front._h2.calls, "the handler to stop waiting for requests")
        assert_serving(s)
    finally:
        c.close()
        s.close()


@pytest.mark.parametrize("path", [INFER, STREAM])
def test_a_call_the_http2_layer_resets_is_dropped(tmp_path, path):
    """libnghttp2 resets a stream itself (here: more DATA than its content-length)."""
    s = Served(tmp_path)
    c = RawClient(s.port)
    try:
        sid = c.start(path, [(b"content-length", b"3")])
        c.send(sid, wire.frame(infer_request()), end=False)
        c.read_until(lambda: c.has(ngh2.StreamReset))
        assert_nothing_left(s)
    finally:
        c.close()
        s.close()


def test_a_call_reset_as_it_arrives_is_not_left_behind(tmp_path):
    """The request's last DATA and the client's RST_STREAM in one read: the call's task is
    cancelled before it runs, and nothing of the call stays behind."""
    s = Served(tmp_path)
    c = RawClient(s.port)
    try:
        out = b""
        for _ in range(5):  # HEADERS by the client's session; DATA and RST_STREAM by hand
            sid = c.h2.send_request([(b":method", b"POST"), (b":scheme", b"http"), (b":path", INFER),
                                     (b":authority", b"localhost"),
                                     (b"content-type", b"application/grpc")])
            out += c.h2.data_to_send() + raw_frame(0, 1, sid, wire.frame(infer_request())) \
                + raw_frame(3, 0, sid, (8).to_bytes(4, "big"))
        c.sock.sendall(out)
        h, _ = c.result(c.call(LIVE, wire.frame(b"")))  # answered after those were read
        assert h[b"grpc-status"] == b"0"
        assert_nothing_left(s)
    finally:
        c.close()
        s.close()


# --- a call the server ends while the client still sends: its status, then RST_STREAM(NO_ERROR) ---

def _ends_unknown_method(c):
    sid = c.start(b"/inference.GRPCInferenceService/NoSuchRpc")
    c.send(sid, wire.frame(b"abc")[:4], end=False)
    return sid, {b"grpc-status": b"12"}


def _ends_too_large(c):
    sid = c.start(INFER)
    c.send(sid, wire.frame(b"\x00" * ((1 << 20) + 1))[:100], end=False)
    return sid, {b"grpc-status": b"8"}


def _ends_past_its_deadline(c):
    sid = c.start(INFER, [(b"grpc-timeout", b"50m")])
    c.send(sid, wire.frame(infer_request())[:20], end=False)
    return sid, {b"grpc-status": b"4"}


def _ends_on_a_bad_stream_message(c):
    sid = c.start(STREAM)
    c.send(sid, wire.frame(infer_request()) + b"\x07\x00\x00\x00\x00", end=False)
    return sid, {b"grpc-status": b"13"}


def _ends_on_a_stream_message_not_protobuf(c):
    sid = c.start(STREAM)
    c.send(sid, wire.frame(b"\xff\xff\xff"), end=False)
    return sid, {b"grpc-status": b"13"}


def _ends_not_grpc(c):
    sid = c.start(LIVE, content_type=b"application/json")
    c.send(sid, b"{", end=False)
    return sid, {b":status": b"415"}


def _ends_not_post(c):
    sid = c.start(INFER, method=b"PUT")
    c.send(sid, wire.frame(infer_request())[:20], end=False)
    return sid, {b"grpc-status": b"2"}


def _ends_on_bad_binary_metadata(c):
    sid = c.start(LIVE, [(b"x-test-bin", b"!!")])
    c.send(sid, b"\x00", end=False)
    return sid, {b"grpc-status": b"13"}


@pytest.mark.parametrize("kind", [
    _ends_unknown_method, _ends_too_large, _ends_past_its_deadline, _ends_on_a_bad_stream_message,
    _ends_on_a_stream_message_not_protobuf, _ends_not_grpc, _ends_not_post,
    _ends_on_bad_binary_metadata], ids=lambda f: f.__name__.removeprefix("_ends_"))
def test_a_call_ended_while_the_client_sends_is_reset_with_no_error(served, raw, kind):
    """gRPC over HTTP/2 (and grpc C-core): a status sent before the client's END_STREAM is
    followed by RST_STREAM(NO_ERROR), so that the client stops sending; the connection serves on."""
    sid, expected = kind(raw)
    h, _ = raw.result(sid)
    assert {k: h.get(k) for k in expected} == expected, h
    assert raw.reset_code(sid) == ngh2.ErrorCode.NO_ERROR
    h, _ = raw.result(raw.call(LIVE, wire.frame(b"")))
    assert h[b"grpc-status"] == b"0"
    assert_nothing_left(served)


# --- ModelStreamInfer through tritonclient -------------------------------------------------------

BIG = 7 << 20


class ExprServed(Served):
    """The expr test backend: add (fast), waits (waits for its cancellation), repeat
    (decoupled, 300 responses), big (7 MiB out of one INT32)."""

    def __init__(self, tmp_path, **grpc_kwargs) -> None:
        from expr_backend import ADD_SUB, REPEAT_DECOUPLED, make_server, write_model

        write_model(tmp_path, "add", ADD_SUB)
        write_model(tmp_path, "waits", ADD_SUB.replace("max_batch_size: 8", "max_batch_size: 0")
                    + 'parameters { key: "cancel_wait_ms" value { string_value: "10000" } }\n')
        write_model(tmp_path, "repeat", REPEAT_DECOUPLED.replace('string_value: "3"',
                                                                  'string_value: "300"'))
        write_model(tmp_path, "big", REPEAT_DECOUPLED.replace("model_transaction_policy { decoupled: true }",
                                                              "")
                    .replace("IN * i", f"np.repeat(IN, {BIG // 4})"))
        self.server = make_server(tmp_path)
        self.server.start()
        self.loop = LoopThread()
        self.front = GrpcFrontEnd(self.server, "127.0.0.1", 0, **grpc_kwargs)
        self.loop.run(self.front.start())
        self.port = self.front.port

    def instance(self, model: str):
        return self.server.manager.get(model).instances[0]


@pytest.fixture(scope="module")
def expr_served(tmp_path_factory):
    s = ExprServed(tmp_path_factory.mktemp("h2expr"))
    yield s
    s.close()


def add_inputs(a: np.ndarray, shape=(1, 16)) -> list:
    out = []
    for name in ("INPUT0", "INPUT1"):
        t = grpcclient.InferInput(name, list(shape), "INT32")
        t.set_data_from_numpy(a.reshape(shape))
        out.append(t)
    return out


def test_a_stream_of_many_requests_and_responses(expr_served):
    import queue

    got: queue.Queue = queue.Queue()
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{expr_served.port}")
    try:
        c.start_stream(callback=lambda result, error: got.put((result, error)))
        for i in range(200):
            c.async_stream_infer("add", add_inputs(np.full(16, i, np.int32)), request_id=str(i))
        x = grpcclient.InferInput("IN", [3], "INT32")
        x.set_data_from_numpy(np.array([1, 2, 3], np.int32))
        c.async_stream_infer("repeat", [x], request_id="r", enable_empty_final_response=True)
        c.stop_stream()  # half-closes at once: every answer must still come
        results = [got.get(timeout=10) for _ in range(200 + 301)]
        assert got.empty()
        assert all(e is None for _, e in results), [e for _, e in results if e is not None][:3]
        sums = {r.get_response().id: r.as_numpy("OUTPUT0") for r, _ in results
                if r.get_response().id != "r"}
        assert sorted(sums, key=int) == [str(i) for i in range(200)]
        assert all((v == 2 * int(k)).all() for k, v in sums.items())
        repeats = [r for r, _ in results if r.get_response().id == "r"]
        assert [int(r.as_numpy("OUT")[2]) for r in repeats[:-1]] == [3 * i for i in range(300)]
        assert repeats[-1].get_response().parameters["triton_final_response"].bool_param
    finally:
        c.close()
    assert_nothing_left(expr_served)


def test_a_cancelled_stream_cancels_its_requests(expr_served):
    import queue

    inst = expr_served.instance("waits")
    inst.saw_cancel = False
    got: queue.Queue = queue.Queue()
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{expr_served.port}")
    try:
        c.start_stream(callback=lambda result, error: got.put((result, error)))
        c.async_stream_infer("waits", add_inputs(np.ones(16, np.int32), (16,)))
        wait_until(lambda: inst.active, "the request to execute")
        c.stop_stream(cancel_requests=True)
        wait_until(lambda: inst.saw_cancel, "the model to see the cancellation")
    finally:
        c.close()
    assert_nothing_left(expr_served)
    with grpcclient.InferenceServerClient(f"127.0.0.1:{expr_served.port}") as c:
        assert c.infer("add", add_inputs(np.ones(16, np.int32))).as_numpy("OUTPUT0").sum() == 32


def test_a_stream_that_never_reads_holds_a_bounded_number_of_requests_and_responses(
        expr_served, monkeypatch):
    """A client that sends on and never reads: once its responses fill what the connection
    queues, the server holds at most STREAM_IN_FLIGHT requests and STREAM_RESPONSES responses
    for it and takes no more messages (flow control holds the client); others are served."""
    from triton_core.frontends.grpc import h2_connection, service

    monkeypatch.setattr(h2_connection, "_STREAM_BUFFER", 0)  # write() waits at once
    monkeypatch.setattr(service, "STREAM_IN_FLIGHT", 4)
    monkeypatch.setattr(service, "STREAM_RESPONSES", 4)
    front = expr_served.front

    async def state() -> tuple[int, int]:
        held = sum(st.held() for st in front.servicer.streams)
        unread = sum(s.messages.qsize() for c in front._h2.connections
                     for s in c.streams.values() if s.messages is not None)
        return held, unread

    # its stream window takes a few responses: the rest wait in libnghttp2, so write() waits
    c = RawClient(expr_served.port, {ngh2.Setting.INITIAL_WINDOW_SIZE: 1024})
    try:
        sid = c.start(STREAM)
        for i in range(200):
            msg = pb.ModelInferRequest(model_name="add", id=str(i))
            for name in ("INPUT0", "INPUT1"):
                t = msg.inputs.add(name=name, datatype="INT32", shape=[1, 16])
                t.contents.int_contents.extend(range(16))
            c.h2.send_data(sid, wire.frame(msg.SerializeToString()), end_stream=False)
        c.flush()
        # held: 4 requests waiting for room, 4 responses waiting for the writer; the rest unread
        wait_until(lambda: expr_served.loop.run(state())[0] == 8 and expr_served.loop.run(state())[1] > 0,
                   "the stream to fill up")
        with grpcclient.InferenceServerClient(f"127.0.0.1:{expr_served.port}") as other:
            assert other.infer("add", add_inputs(np.ones(16, np.int32))).as_numpy("OUTPUT0").sum() == 32
        held, unread = expr_served.loop.run(state())
        assert held == 8 and unread > 0, (held, unread)
    finally:
        c.close()
    wait_until(lambda: not front.servicer.streams, "the stream to end")
    assert_nothing_left(expr_served)


async def _loop_turn() -> None:
    """Run on the loop: callbacks already scheduled there have run when it returns."""


def test_a_slow_reader_holds_back_stream_responses_larger_than_the_window(expr_served):
    """Three 7 MiB answers (more than the 16 MiB windows) to a client that stops reading:
    the server queues a bounded amount (write_message waits), and all arrive intact."""
    big = expr_served.server.manager.get("big")
    done = big.stats.inference_count
    c = RawClient(expr_served.port)
    try:
        sid = c.start(STREAM)
        for i in range(3):
            msg = pb.ModelInferRequest(model_name="big", id=str(i))
            msg.inputs.add(name="IN", datatype="INT32", shape=[1]).contents.int_contents.append(i)
            c.send(sid, wire.frame(msg.SerializeToString()), end=i == 2)
        # the client reads nothing for now
        def queued() -> int:
            return max((c.h2.queued_body_size() for c in list(expr_served.front._h2.connections)),
                       default=0)

        wait_until(lambda: queued() > 0, "responses to queue")
        # all three answers made and handed to the loop: the writer holds back the rest
        wait_until(lambda: big.stats.inference_count == done + 3, "the three executions")
        for _ in range(3):
            expr_served.loop.run(_loop_turn())
        assert queued() < 2 * BIG  # not all three: the writer waits
        h, body = c.result(sid)
        assert h[b"grpc-status"] == b"0", h
        ids = []
        while body:
            n = int.from_bytes(body[1:5], "big")
            r = pb.ModelStreamInferResponse.FromString(body[5:5 + n])
            assert not r.error_message
            i = int(r.infer_response.id)
            ids.append(i)
            out = r.infer_response.raw_output_contents[0]
            assert out == np.full(BIG // 4, i, np.int32).tobytes()
            body = body[5 + n:]
        assert sorted(ids) == [0, 1, 2]
    finally:
        c.close()
    assert_nothing_left(expr_served)


def test_a_reset_waits_for_the_status_queued_behind_responses(expr_served):
    """The call ends while its 7 MiB answer waits for the client's window: its status goes out
    after the answer, and the reset (which would drop both) only then."""
    c = RawClient(expr_served.port)
    try:
        sid = c.start(STREAM)
        msg = pb.ModelInferRequest(model_name="big", id="7")
        msg.inputs.add(name="IN", datatype="INT32", shape=[1]).contents.int_contents.append(7)
        c.send(sid, wire.frame(msg.SerializeToString()), end=False)

        def conns() -> list:
            return list(expr_served.front._h2.connections)

        wait_until(lambda: any(x.h2.queued_body_size(sid) > 0 for x in conns()), "the answer to queue")
        c.send(sid, wire.frame(b"\xff\xff\xff"), end=False)  # not protobuf: the call ends
        wait_until(lambda: any(sid in x._resets for x in conns()), "the status to wait")
        h, body = c.result(sid)
        assert h[b"grpc-status"] == b"13", h
        assert pb.ModelStreamInferResponse.FromString(body[5:]).infer_response.id == "7"
        assert c.reset_code(sid) == ngh2.ErrorCode.NO_ERROR
        kinds = [type(e) for e in c.events if getattr(e, "stream_id", None) == sid]
        assert kinds.index(ngh2.TrailersReceived) < kinds.index(ngh2.StreamReset)
    finally:
        c.close()
    assert_nothing_left(expr_served)


# --- stop(grace) ---------------------------------------------------------------------------------

def test_stop_lets_a_call_whose_request_is_still_arriving_finish(tmp_path):
    import asyncio

    s = Served(tmp_path)
    c = RawClient(s.port)
    stopped = None
    try:
        body = wire.frame(infer_request())
        sid = c.start(INFER)
        c.send(sid, body[:20], end=False)
        wait_until(lambda: any(sid in conn.streams for conn in list(s.front._h2.connections)),
                 "the call to arrive")
        stopped = asyncio.run_coroutine_threadsafe(s.front.stop(10), s.loop.loop)
        c.read_until(lambda: c.has(ngh2.GoAwayReceived))
        with pytest.raises(OSError):  # no new connections
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
        c.send(sid, body[20:])
        h, out = c.result(sid)
        assert h.get(b"grpc-status") == b"0", h
        assert pb.ModelInferResponse.FromString(out[5:]).model_name == "simple"
        stopped.result(timeout=10)
    finally:
        c.close()
        if stopped is None:
            s.close()
        else:
            s.loop.close()
            s.server.stop()


def test_stop_past_grace_ends_calls_with_unavailable(tmp_path):
    import asyncio

    s = Served(tmp_path)
    c = RawClient(s.port)
    try:
        sid = c.call(INFER, wire.frame(infer_request("slow")))
        wait_until(lambda: s.front._h2.calls, "the call to start")
        asyncio.run_coroutine_threadsafe(s.front.stop(0.02), s.loop.loop).result(timeout=10)
        h, _ = c.result(sid)
        assert h.get(b"grpc-status") == b"14", h
        assert h[b"grpc-message"] == b"the server is shutting down"
        slow = s.server.manager.get("slow")  # its execution ends (on its thread) before the loop closes
        wait_until(lambda: int(slow.inflight) == 0, "the execution to end")
    finally:
        c.close()
        s.loop.close()
        s.server.stop()


def test_ping_strikes_start_over_when_the_server_sends(tmp_path):
    """As grpc C-core (Chttp2PingAbusePolicy::ResetPingStrikes on every DATA or HEADERS sent):
    after the server sends, the next ping is not a strike and max_ping_strikes more pass;
    a client's keepalive on a long call is refused no sooner than by grpcio's server."""
    s = Served(tmp_path, http2_max_ping_strikes=2)
    c = RawClient(s.port)

    def pings(n: int) -> None:
        acks = sum(isinstance(e, ngh2.PingAcknowledged) for e in c.events) + n
        for _ in range(n):
            c.h2.ping(b"12345678")
        c.flush()
        c.read_until(lambda: sum(isinstance(e, ngh2.PingAcknowledged) for e in c.events) >= acks)

    try:
        sid = c.start(STREAM)  # a call in flight: the transport is not idle
        pings(1)
        c.send(sid, wire.frame(infer_request()), end=False)
        c.read_until(lambda: any(isinstance(e, ngh2.DataReceived) for e in c.events))
        pings(3)  # one free, then two strikes: allowed
        assert not c.has(ngh2.GoAwayReceived)
        pings(1)  # a third strike
        c.read_until(lambda: c.has(ngh2.GoAwayReceived))
    finally:
        c.close()
        s.close()


# --- receive-side flow control -------------------------------------------------------------------

HOLD = b"/test.Flow/Hold"
PIECE = (64 << 10) - 5  # a message of 64 KiB on the wire: the windows hold whole messages


class Holds(Served):
    """A test-only client-streaming method, Hold: its handler waits until the test opens the
    call's gate (metadata x-gate), then reads every message and answers "<count> <sha256>",
    or with x-then: return, ends the call (OK) without reading."""

    def __init__(self, tmp_path, **grpc_kwargs) -> None:
        import asyncio

        from triton_core.frontends.grpc.h2_server import Route

        super().__init__(tmp_path, **grpc_kwargs)
        self.gates: dict[str, asyncio.Event] = {}
        self.front._h2.routes[HOLD] = Route("Hold", self._hold, bytes, bytes, True, None)

    def _gate(self, name: str):
        import asyncio

        return self.gates.setdefault(name, asyncio.Event())

    async def _hold(self, requests, call) -> None:
        import hashlib

        md = dict(call.invocation_metadata())
        await self._gate(md.get("x-gate", "")).wait()
        if md.get("x-then") == "return":
            return
        if "x-write" in md:  # answers that many bytes and ends without reading
            await call.write(b"a" * int(md["x-write"]))
            return
        h = hashlib.sha256()
        n = 0
        async for m in requests:
            h.update(m)
            n += 1
        await call.write(f"{n} {h.hexdigest()}".encode())

    def open(self, gate: str) -> None:
        self.loop.loop.call_soon_threadsafe(lambda: self._gate(gate).set())

    def connection(self):
        (conn,) = self.front._h2.connections  # the test's only connection
        return conn


@pytest.fixture
def holds(tmp_path):
    s = Holds(tmp_path)
    yield s
    s.close()


def pieces(n: int, seed: int = 0) -> list[bytes]:
    return [bytes([(seed + i) % 251]) * PIECE for i in range(n)]


def digest(msgs: list[bytes]) -> bytes:
    import hashlib

    return f"{len(msgs)} {hashlib.sha256(b''.join(msgs)).hexdigest()}".encode()


def start_hold(c: RawClient, msgs: list[bytes], gate: str, headers: list | None = None) -> int:
    """A Hold call with all of ``msgs`` queued in the client's session (sent as the windows
    allow); the client's side ends after them."""
    sid = c.start(HOLD, [(b"x-gate", gate.encode()), *(headers or [])])
    c.h2.send_data(sid, b"".join(wire.frame(m) for m in msgs), end_stream=True)
    c.flush()
    return sid


def assert_answered(c: RawClient, sid: int, msgs: list[bytes]) -> None:
    """The Hold call completed OK, having read exactly ``msgs``."""
    h, body = c.result(sid)
    assert h[b"grpc-status"] == b"0", h
    assert body == wire.frame(digest(msgs))


def sent(c: RawClient, sid: int, msgs: list[bytes]) -> int:
    return len(msgs) * (PIECE + 5) - c.h2.queued_body_size(sid)


def fill_window(c: RawClient, sid: int, msgs: list[bytes], window: int) -> None:
    """Reads (window updates) until the client has sent the stream's window."""
    c.read_until(lambda: sent(c, sid, msgs) >= window)


def barrier(c: RawClient) -> None:
    """A unary call on the same connection: when it is answered, the server has read all the
    client sent before, and every WINDOW_UPDATE that reading caused has arrived."""
    h, _ = c.result(c.call(LIVE, wire.frame(b"")))
    assert h[b"grpc-status"] == b"0"


def assert_stalled(s: Holds, c: RawClient, sid: int, msgs: list[bytes], window: int) -> None:
    """The client cannot send more than the stream's window, and the server holds no more."""
    assert c.h2.stream_remote_window_size(sid) == 0
    assert sent(c, sid, msgs) == window
    st = s.connection().streams[sid]
    assert st.messages.qsize() == window // (PIECE + 5) and not st.reader.partial
    assert st.received - st.acked == window


def test_a_stream_whose_handler_does_not_read_gets_no_more_than_its_window(holds):
    from triton_core.frontends.grpc.h2_connection import _WINDOW

    c = RawClient(holds.port)
    try:
        msgs = pieces(400)  # 25 MiB: more than the 16 MiB window
        sid = start_hold(c, msgs, "a")
        fill_window(c, sid, msgs, _WINDOW)
        barrier(c)
        assert_stalled(holds, c, sid, msgs, _WINDOW)
        holds.open("a")  # the handler reads: the rest flows
        assert_answered(c, sid, msgs)
    finally:
        c.close()
    assert_nothing_left(holds)


def echo_request(payload: bytes) -> bytes:
    msg = pb.ModelInferRequest(model_name="simple_string")
    msg.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 1])
    msg.raw_input_contents.append(len(payload).to_bytes(4, "little") + payload)
    return msg.SerializeToString()


def assert_echoes(c: RawClient, payload: bytes) -> None:
    h, body = c.result(c.call(INFER, wire.frame(echo_request(payload))))
    assert h[b"grpc-status"] == b"0", h
    out = pb.ModelInferResponse.FromString(body[5:]).raw_output_contents[0]
    assert out[4:] == payload


def test_calls_go_on_while_streams_on_their_connection_are_stalled(holds):
    """Stalled calls hold three stream windows, more than a connection window of the same
    size would allow: unary calls on the connection, larger than a window, still pass."""
    from triton_core.frontends.grpc.h2_connection import _WINDOW

    c = RawClient(holds.port)
    try:
        calls = []
        for i in range(3):
            msgs = pieces(300, seed=i)
            sid = start_hold(c, msgs, str(i))
            fill_window(c, sid, msgs, _WINDOW)
            calls.append((sid, msgs))
        barrier(c)
        for sid, msgs in calls:
            assert_stalled(holds, c, sid, msgs, _WINDOW)
        assert_echoes(c, b"y" * (20 << 20))  # both ways
        for sid, msgs in calls:  # still held
            assert c.h2.stream_remote_window_size(sid) == 0 and sent(c, sid, msgs) == _WINDOW
        for i in range(3):
            holds.open(str(i))
        for sid, msgs in calls:
            assert_answered(c, sid, msgs)
    finally:
        c.close()
    assert_nothing_left(holds)


# Small windows, so that a window not given back stops the connection within a few calls.
SMALL_STREAM = 256 << 10
SMALL_CONNECTION = 1 << 20


@pytest.fixture
def small_holds(tmp_path, monkeypatch):
    from triton_core.frontends.grpc import h2_connection

    monkeypatch.setattr(h2_connection, "_WINDOW", SMALL_STREAM)
    monkeypatch.setattr(h2_connection, "_CONNECTION_WINDOW", SMALL_CONNECTION)
    s = Holds(tmp_path)
    yield s
    s.close()


def _held_then_read(s, c, i):
    msgs = pieces(20, seed=i)  # 1.25 MiB
    sid = start_hold(c, msgs, f"r{i}")
    fill_window(c, sid, msgs, SMALL_STREAM)
    barrier(c)
    assert_stalled(s, c, sid, msgs, SMALL_STREAM)
    s.open(f"r{i}")
    h, body = c.result(sid)
    assert h[b"grpc-status"] == b"0" and body == wire.frame(digest(msgs)), h


def _messages_larger_than_the_window(s, c, i):
    """Held inside its first message; once the handler waits, what came of a message is given
    back, or the rest of it could never come."""
    import hashlib

    msgs = [bytes([i + k]) * (1 << 20) for k in range(3)]  # 4 stream windows each
    body = b"".join(wire.frame(m) for m in msgs)
    sid = c.start(HOLD, [(b"x-gate", f"l{i}".encode())])
    c.h2.send_data(sid, body, end_stream=True)
    c.flush()
    c.read_until(lambda: len(body) - c.h2.queued_body_size(sid) >= SMALL_STREAM)
    barrier(c)
    assert c.h2.stream_remote_window_size(sid) == 0
    assert len(body) - c.h2.queued_body_size(sid) == SMALL_STREAM
    s.open(f"l{i}")
    h, out = c.result(sid)
    assert h[b"grpc-status"] == b"0", h
    assert out == wire.frame(f"3 {hashlib.sha256(b''.join(msgs)).hexdigest()}".encode())


def _held_then_reset_by_the_client(s, c, i):
    msgs = pieces(20, seed=i)
    sid = start_hold(c, msgs, f"c{i}")
    fill_window(c, sid, msgs, SMALL_STREAM)
    barrier(c)
    c.h2.reset_stream(sid, ngh2.ErrorCode.CANCEL)
    c.flush()
    wait_until(lambda: sid not in s.connection().streams, "the reset to be read")


def _held_then_ended_by_the_server_unread(s, c, i):
    msgs = pieces(20, seed=i)
    sid = start_hold(c, msgs, f"e{i}", [(b"x-then", b"return")])
    fill_window(c, sid, msgs, SMALL_STREAM)
    barrier(c)
    s.open(f"e{i}")  # OK, and what the client sends on is read by nobody
    c.read_until(lambda: c.h2.queued_body_size(sid) == 0)
    h, _ = c.result(sid)
    assert h[b"grpc-status"] == b"0", h


def _held_past_its_deadline(s, c, i):
    msgs = pieces(20, seed=i)
    sid = start_hold(c, msgs, f"d{i}", [(b"grpc-timeout", b"100m")])
    h, _ = c.result(sid)
    assert h[b"grpc-status"] == b"4", h


def _unknown_method_sent_on(s, c, i):
    sid = c.start(b"/test.Flow/NoSuchMethod")
    c.h2.send_data(sid, wire.frame(b"z" * (2 << 20)), end_stream=True)  # 2 connection windows
    c.flush()
    h, _ = c.result(sid)  # answered at once; the client sends on
    assert h[b"grpc-status"] == b"12", h
    c.read_until(lambda: c.h2.queued_body_size(sid) == 0)


def _refused_sent_on(s, c, i):
    sid = c.start(HOLD, method=b"PUT")
    c.h2.send_data(sid, wire.frame(b"z" * (2 << 20)), end_stream=True)  # 2 connection windows
    c.flush()
    h, _ = c.result(sid)
    assert h[b"grpc-status"] == b"2", h
    c.read_until(lambda: c.h2.queued_body_size(sid) == 0)


def _stream_reset_on_a_bad_message(s, c, i):
    sid = c.start(HOLD, [(b"x-gate", f"b{i}".encode())])
    c.send(sid, wire.frame(b"x" * PIECE) + b"\x07\x00\x00\x00\x00" + wire.frame(b"x" * PIECE),
           end=False)
    h, _ = c.result(sid)
    assert h[b"grpc-status"] == b"13", h


def _large_unary_both_ways(s, c, i):
    assert_echoes(c, bytes([i]) * (3 << 20))  # 12 stream windows, 3 connection windows


@pytest.mark.parametrize("kind", [
    _held_then_read, _messages_larger_than_the_window, _held_then_reset_by_the_client,
    _held_then_ended_by_the_server_unread, _held_past_its_deadline, _unknown_method_sent_on,
    _refused_sent_on, _stream_reset_on_a_bad_message, _large_unary_both_ways],
    ids=lambda f: f.__name__.strip("_"))
def test_every_way_a_call_ends_gives_its_window_back(small_holds, kind):
    """Each way, more than the connection's window in all: a call's bytes never acknowledged
    would stop the connection (read_until times out)."""
    c = RawClient(small_holds.port)
    try:
        for i in range(6):
            kind(small_holds, c, i)
        barrier(c)
        assert_nothing_left(small_holds)
        conn = small_holds.connection()
        # all given back; WINDOW_UPDATEs go out once half the window is acknowledged
        assert c.h2.remote_window_size >= SMALL_CONNECTION // 2
        assert conn.h2.local_window_size >= SMALL_CONNECTION // 2
    finally:
        c.close()


def test_data_for_a_stream_the_server_reset_counts_for_the_connection(small_holds):
    """DATA that arrives after the server reset its stream never shows as an event: libnghttp2
    counts it as consumed for the connection window by itself (none of it may leak)."""
    c = RawClient(small_holds.port)
    try:
        barrier(c)
        sid = c.start(HOLD)
        c.send(sid, b"\x07\x00\x00\x00\x00", end=False)
        h, _ = c.result(sid)
        assert h[b"grpc-status"] == b"13", h  # and the server reset the stream
        updates = sum(e.increment for e in c.events if isinstance(e, ngh2.WindowUpdated)
                      and e.stream_id == 0)
        late = 3 * SMALL_CONNECTION // 4  # sent by hand: the client's session closed the stream
        frames = b"".join(raw_frame(0, 0, sid, b"x" * (16 << 10)) for _ in range(late >> 14))
        c.sock.sendall(frames)
        barrier(c)
        given_back = sum(e.increment for e in c.events if isinstance(e, ngh2.WindowUpdated)
                         and e.stream_id == 0) - updates
        # a WINDOW_UPDATE goes out once half the window is consumed: less than that may wait
        assert given_back >= late - SMALL_CONNECTION // 2
        assert small_holds.connection().h2.local_window_size >= SMALL_CONNECTION // 2
        assert_nothing_left(small_holds)
    finally:
        c.close()


def test_a_stream_the_server_ends_first_is_reset_after_its_status(holds):
    """The handler returns (OK) while the client still streams: the client is told to stop."""
    c = RawClient(holds.port)
    try:
        sid = c.start(HOLD, [(b"x-gate", b"first"), (b"x-then", b"return")])
        c.send(sid, wire.frame(b"x"), end=False)
        holds.open("first")
        h, _ = c.result(sid)
        assert h[b"grpc-status"] == b"0", h
        assert c.reset_code(sid) == ngh2.ErrorCode.NO_ERROR
        barrier(c)
    finally:
        c.close()
    assert_nothing_left(holds)


@pytest.mark.parametrize("size", [65535 - 5 - 1, 65535 - 5])
def test_the_status_goes_out_before_the_reset_when_a_response_used_the_window_up(holds, size):
    """65530 bytes fill the client's 65535-byte windows exactly: libnghttp2 then holds the
    status until a WINDOW_UPDATE, and a reset sent meanwhile would have dropped it."""
    c = RawClient(holds.port)
    try:
        sid = c.start(HOLD, [(b"x-gate", b"w"), (b"x-write", str(size).encode())])
        c.send(sid, wire.frame(b"x"), end=False)
        holds.open("w")
        h, body = c.result(sid)
        assert h.get(b"grpc-status") == b"0", h
        assert len(body) == size + 5
        assert c.reset_code(sid) == ngh2.ErrorCode.NO_ERROR
        barrier(c)
    finally:
        c.close()
    assert_nothing_left(holds)


def test_a_stream_whose_response_is_too_large_ends_its_handler(tmp_path):
    s = ExprServed(tmp_path, max_send_message_length=1 << 20)  # "big" answers 7 MiB
    c = RawClient(s.port)
    try:
        sid = c.start(STREAM)
        msg = pb.ModelInferRequest(model_name="big", id="7")
        msg.inputs.add(name="IN", datatype="INT32", shape=[1]).contents.int_contents.append(7)
        c.send(sid, wire.frame(msg.SerializeToString()), end=False)  # the client's side stays open
        h, _ = c.result(sid)
        assert h[b"grpc-status"] == str(grpc_code("RESOURCE_EXHAUSTED")).encode(), h
        assert c.reset_code(sid) == ngh2.ErrorCode.NO_ERROR
        barrier(c)
        assert_nothing_left(s)  # the handler no longer waits for requests
    finally:
        c.close()
        s.close()


def grpc_code(name: str) -> int:
    import grpc

    return getattr(grpc.StatusCode, name).value[0]


def test_a_call_moves_only_along_its_states():
    from triton_core.frontends.grpc.call import CallState as S
    from triton_core.frontends.grpc.call import IllegalTransition, Stream

    unary = Stream(1, None, (), None)  # type: ignore[arg-type]
    unary.request_ended()
    unary.headers_out()
    unary.status_out()
    assert unary.state is S.CLOSED
    streaming = Stream(3, None, (), None)  # type: ignore[arg-type]
    streaming.headers_out()
    streaming.status_out()  # the status before the client's end: a reset is owed
    assert streaming.state is S.CLOSED_LOCAL and streaming.state.closed and not streaming.state.ended
    streaming.request_ended()
    assert streaming.state is S.CLOSED
    streaming.reset()
    streaming.request_ended()  # a reset call stays reset
    assert streaming.state is S.RESET
    with pytest.raises(IllegalTransition):
        streaming.headers_out()
    with pytest.raises(IllegalTransition):
        unary.status_out()  # one status per call
