"""Stopping the front ends while a client has stopped reading: the server's unsent bytes
would keep the connection open for ever (and, on Python 3.12+, Server.wait_closed()
waiting); connections still open after a short grace are aborted."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time

import numpy as np

from expr_backend import IDENTITY_BYTES, make_server, write_model
from live_server import serving_http
from triton_core.frontends.closing import close_connections

BIG = IDENTITY_BYTES.replace("TYPE_STRING", "TYPE_INT32")
N = 8 << 20  # int32 elements: 32 MiB each way, more than the socket buffers hold


def infer_request(n: int) -> bytes:
    header = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [n],
                                     "parameters": {"binary_data_size": 4 * n}}],
                         "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]
                         }).encode()
    body = header + np.arange(n, dtype=np.int32).tobytes()
    return (b"POST /v2/models/big/infer HTTP/1.1\r\nHost: x\r\n"
            b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
            % (len(header), len(body))) + body


def read_to_end(sock: socket.socket, timeout: float) -> int:
    """Bytes read until the server's close (EOF or reset); fails if it never comes."""
    sock.settimeout(timeout)
    got = 0
    try:
        while chunk := sock.recv(1 << 20):
            got += len(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the stalled connection was left open ({got} bytes read)") from None
    return got


def test_http_stop_closes_a_connection_whose_client_does_not_read(tmp_path):
    write_model(tmp_path, "big", BIG)
    with make_server(tmp_path) as s:
        with serving_http(s) as addr:
            host, port = addr.split(":")
            client = socket.create_connection((host, int(port)))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            client.sendall(infer_request(N))
            p = select.poll()
            p.register(client, select.POLLIN)
            assert p.poll(10_000), "no response started"
            t0 = time.monotonic()
        # serving_http's exit stopped the front end (joined its thread) without waiting for
        # the client; the connection is closed, with what the kernel had already taken
        assert time.monotonic() - t0 < 8
        assert read_to_end(client, 10) < 4 * N
        client.close()


class _Conn:
    def __init__(self, group: set, unsent: list[int]) -> None:
        self.group = group
        self.unsent = unsent  # what get_write_buffer_size() answers, one value a call
        self.aborted = False
        self.transport = self

    def get_write_buffer_size(self) -> int:
        n = self.unsent.pop(0) if len(self.unsent) > 1 else self.unsent[0]
        if n == 0:
            self.group.discard(self)  # drained: the transport closes
        return n

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True
        self.group.discard(self)


def test_close_connections_aborts_only_those_that_stop_draining():
    conns: set = set()
    stuck = _Conn(conns, [100])
    draining = _Conn(conns, list(range(100, -1, -1)))  # a byte less each look, ~2 s in all
    conns.update((stuck, draining))
    t0 = time.monotonic()
    asyncio.run(close_connections(conns, grace=0.2, limit=10))
    assert 1 < time.monotonic() - t0 < 8
    assert stuck.aborted and not draining.aborted and not conns


def test_close_connections_aborts_everything_at_the_limit():
    conns: set = set()
    slow = _Conn(conns, list(range(10**6, 0, -1)))
    conns.add(slow)
    t0 = time.monotonic()
    asyncio.run(close_connections(conns, grace=0.2, limit=0.5))
    assert time.monotonic() - t0 < 3 and slow.aborted


BLOCKING = """
backend: "expr"
max_batch_size: 0
input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [1] }]
output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [1] }]
parameters { key: "OUTPUT0" value { string_value: "INPUT0" } }
parameters { key: "block_value" value { string_value: "7" } }
"""


def test_http_stop_lets_a_request_in_flight_finish(tmp_path):
    """Triton drains on stop: no new connections, but a request in flight when the stop
    begins still gets its response (up to the exit timeout), then the connection closes."""
    import http.client
    import threading

    import expr_backend
    from live_server import free_port
    from triton_core.frontends.http.app import HttpFrontEnd
    from waiting import wait_until

    write_model(tmp_path, "gate", BLOCKING)
    with make_server(tmp_path) as s:
        port = free_port()
        front = HttpFrontEnd(s)
        loop = asyncio.new_event_loop()
        t = threading.Thread(target=loop.run_until_complete,
                             args=(front.serve("127.0.0.1", port),), daemon=True)
        t.start()
        wait_until(lambda: front.started, "HTTP front end started")
        inst = s.manager.get("gate").instances[0]
        got: dict = {}

        def client() -> None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1],
                                           "data": [7]}]})
            try:
                c.request("POST", "/v2/models/gate/infer", body)
                r = c.getresponse()
                got["status"], got["body"] = r.status, json.loads(r.read())
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                got["error"] = e

        expr_backend.GATE.clear()
        try:
            ct = threading.Thread(target=client)
            ct.start()
            wait_until(lambda: inst.blocked == 1, "the request reached the model")
            front.shutdown()  # default drain: Triton's exit timeout, 30 s

            def refused() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return False
                except OSError:
                    return True

            wait_until(refused, "the listener closed")
            assert t.is_alive()  # still draining the request in flight
        finally:
            expr_backend.GATE.set()
        ct.join(30)
        t.join(30)
        loop.close()
        assert got.get("status") == 200, got
        assert got["body"]["outputs"][0]["data"] == [7]
        assert not t.is_alive()
