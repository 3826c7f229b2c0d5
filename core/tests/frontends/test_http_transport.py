"""The HTTP/1.1 transport itself: pipelining, chunked bodies, Expect: 100-continue, bad bytes."""

import json
import socket

from http_helpers import assert_serves


def _infer_body() -> bytes:
    return json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]}).encode()


def _read_responses(sock: socket.socket, n: int) -> list[tuple[int, bytes]]:
    buf = b""
    out = []
    while len(out) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        while True:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                break
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            length = next(int(v) for k, v in (ln.split(b": ", 1) for ln in lines[1:])
                          if k.lower() == b"content-length")
            if len(rest) < length:
                break
            out.append((status, rest[:length]))
            buf = rest[length:]
    return out


def _connect(addr: str) -> socket.socket:
    host, port = addr.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _model_path() -> str:
    return "/v2/models/add/infer"


def test_pipelined_requests_answer_in_order(addr):
    body = _infer_body()
    req = (f"POST {_model_path()} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    health = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    with _connect(addr) as s:
        s.sendall(req + health + req)
        got = _read_responses(s, 3)
    assert [st for st, _ in got] == [200, 200, 200]
    assert json.loads(got[0][1])["outputs"][0]["data"] == [i + 1 for i in range(16)]
    assert got[1][1] == b""


def test_chunked_body_and_expect_continue(addr):
    body = _infer_body()
    head = (f"POST {_model_path()} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50]), body[i:i + 50])
                      for i in range(0, len(body), 50)) + b"0\r\n\r\n"
    with _connect(addr) as s:
        s.sendall(head)
        first = s.recv(1024)
        assert first.startswith(b"HTTP/1.1 100 Continue")
        s.sendall(chunks)
        (status, out), = _read_responses(s, 1)
    assert status == 200 and json.loads(out)["outputs"][1]["data"] == [i - 1 for i in range(16)]


def _read_until_closed(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_chunked_body_with_a_content_length_is_read_by_its_chunks(addr):
    # Triton's test_content_encoding_chunked_manually (requests adds the Content-Length):
    # the chunks count (RFC 9112 6.3), and the connection closes after the answer
    body = _infer_body()
    head = (f"POST {_model_path()} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Content-Length: 7\r\n\r\n").encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    with _connect(addr) as s:
        s.sendall(head + chunked)
        raw = _read_until_closed(s)
    status, _, rest = raw.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 200"), raw
    assert b"connection: close" in rest.lower()
    out = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert out["outputs"][0]["data"] == [i + 1 for i in range(16)]
    assert_serves(addr)


def test_a_body_of_tiny_chunks_is_joined_right(addr):
    # tiny pieces are copied together as they come (no object kept per chunk): the body
    # must come out whole and in order, large pieces between them included
    body = _infer_body()
    assert body[:1] == b"{"
    pieces = [b"{", *(b" " for _ in range(300)), b" " * 5000]  # JSON allows the spaces
    pieces += [body[i:i + 3] for i in range(1, len(body), 3)]
    head = (f"POST {_model_path()} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "\r\n").encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
    with _connect(addr) as s:
        s.sendall(head + chunked)
        (status, out), = _read_responses(s, 1)
    assert status == 200, out
    assert json.loads(out)["outputs"][1]["data"] == [i - 1 for i in range(16)]


def test_chunked_body_of_too_many_chunks_is_refused_with_tritons_words(addr):
    from triton_core.frontends.http.server import MAX_CHUNKS

    head = (f"POST {_model_path()} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Inference-Header-Content-Length: 0\r\n\r\n").encode()
    with _connect(addr) as s:
        # MAX_CHUNKS chunks are read (the request is then refused for its content)
        s.sendall(head + b"1\r\nA\r\n" * MAX_CHUNKS + b"0\r\n\r\n")
        (status, body), = _read_responses(s, 1)
    assert status == 400 and b"exceeds maximum" not in body
    with _connect(addr) as s:
        s.sendall(head + b"1\r\nA\r\n" * (MAX_CHUNKS + 1))  # no end: refused before it
        raw = _read_until_closed(s)
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert (b"Chunked request body exceeds maximum of 65536 non-empty chunks. Send fewer or "
            b"larger HTTP chunks.") in raw
    assert_serves(addr)


def test_garbage_gets_400_and_the_server_serves_on(addr):
    with _connect(addr) as s:
        s.sendall(b"\x00\x01 NOT HTTP\r\n\r\n")
        (status, body), = _read_responses(s, 1)
    assert status == 400 and b"malformed HTTP request" in body
    assert_serves(addr)


def test_idle_connections_close(addr, monkeypatch):
    from triton_core.frontends.http import server as http_server

    monkeypatch.setattr(http_server, "IDLE_TIMEOUT_S", 0.2)
    with _connect(addr) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_responses(s, 1)[0][0] == 200
        assert s.recv(1) == b""  # waits for the server to close the idle connection (sweep: 1 s)


def test_an_unexpected_error_after_the_handler_gets_a_500_not_silence(http_server, monkeypatch):
    """Anything the connection task raises (a MemoryError building the response, say)
    answers the request with 500 and closes the connection; the server serves on."""
    from live_server import serving_http
    from triton_core.frontends.http.app import HttpFrontEnd

    real = HttpFrontEnd.handle

    async def failing(self, req, path):
        if path == "/v2/health/ready":
            raise MemoryError("no room for the response")
        return await real(self, req, path)

    monkeypatch.setattr(HttpFrontEnd, "handle", failing)
    with serving_http(http_server) as a:
        host, port = a.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while chunk := s.recv(4096):
                got += chunk
        assert got.startswith(b"HTTP/1.1 500"), got
        assert b"MemoryError: no room for the response" in got
        assert_serves(a)
