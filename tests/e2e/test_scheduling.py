"""End-to-end: the scheduling features through the real `tritonserver` and NVIDIA's tritonclient.

One server (with a response cache) serves tests/e2e/models plus the ONNX `simple` model:
ensembles, the dynamic batcher, the sequence batcher, decoupled streaming, the response
cache and client timeouts, each over HTTP and gRPC where the protocol allows it.
"""

from __future__ import annotations

import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from e2e_server import EXAMPLES, ROOT, Running, start_server, stop_server
from triton_core.testing import wait_until

MODELS = Path(__file__).resolve().parent / "models"
WAIT = 20.0  # seconds: the longest any poll here waits before failing

Client = httpclient.InferenceServerClient | grpcclient.InferenceServerClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("sched")
    repo = root / "models"
    shutil.copytree(MODELS, repo, ignore=shutil.ignore_patterns("README.md", "__pycache__"))
    shutil.copytree(EXAMPLES / "simple", repo / "simple")
    # the python backend's own decoupled test model, unchanged
    shutil.copytree(ROOT / "plugins/triton-backend-python/tests/models/repeat", repo / "repeat",
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = start_server(root, "--model-repository", str(repo), "--cache-config", "local,size=1048576")
    r.repo = repo  # type: ignore[attr-defined]
    yield r
    assert stop_server(r) == 0, r.log.read_text()


@pytest.fixture(scope="module")
def http(server: Running) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(server.http_url, concurrency=8)
    yield c
    c.close()


@pytest.fixture(scope="module")
def grpc(server: Running) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


def mod(proto: str) -> Any:
    return httpclient if proto == "http" else grpcclient


def client(proto: str, http: httpclient.InferenceServerClient,
           grpc: grpcclient.InferenceServerClient) -> Client:
    return http if proto == "http" else grpc


def tensors(proto: str, **arrays: np.ndarray) -> list:
    out = []
    for name, a in arrays.items():
        t = mod(proto).InferInput(name, list(a.shape), np_to_triton_dtype(a.dtype))
        t.set_data_from_numpy(a)
        out.append(t)
    return out


def stats(http: httpclient.InferenceServerClient, model: str) -> dict[str, int]:
    """Counts of one model's statistics: success, fail, cache_hit, cache_miss, inference, execution."""
    st = http.get_inference_statistics(model)["model_stats"][0]
    inf = st["inference_stats"]
    got = {k: int(inf[k]["count"]) for k in ("success", "fail", "cache_hit", "cache_miss")}
    got["inference"] = int(st["inference_count"])
    got["execution"] = int(st["execution_count"])
    return got


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def poll(what: Callable[[], bool], message: str) -> None:
    wait_until(what, message, WAIT)


# 1. ensembles --------------------------------------------------------------------------------

@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_ensemble_onnx_then_python(proto: str, http, grpc) -> None:
    c = client(proto, http, grpc)
    before = {m: stats(http, m) for m in ("ens", "simple", "double")}
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    r = c.infer("ens", tensors(proto, IN0=a, IN1=b))
    np.testing.assert_array_equal(r.as_numpy("OUT"), 2 * (a + b))
    np.testing.assert_array_equal(r.as_numpy("DIFF"), a - b)
    only = c.infer("ens", tensors(proto, IN0=a, IN1=b),
                   outputs=[mod(proto).InferRequestedOutput("OUT")])
    np.testing.assert_array_equal(only.as_numpy("OUT"), 2 * (a + b))
    assert only.as_numpy("DIFF") is None
    got = {m: delta(stats(http, m), before[m]) for m in before}
    assert got["ens"]["success"] == 2 and got["ens"]["fail"] == 0
    assert got["ens"]["inference"] == 4  # two requests of batch 2
    for m in ("simple", "double"):
        assert got[m]["success"] == 2 and got[m]["inference"] == 4, (m, got[m])
        assert 1 <= got[m]["execution"] <= 2


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_ensemble_step_error_reaches_the_client(proto: str, http, grpc) -> None:
    c = client(proto, http, grpc)
    before = {m: stats(http, m) for m in ("ens", "simple", "double")}
    a = np.full((1, 16), -100, dtype=np.int32)
    b = np.ones((1, 16), dtype=np.int32)
    with pytest.raises(InferenceServerException, match="double: negative value -99") as e:
        c.infer("ens", tensors(proto, IN0=a, IN1=b))
    assert e.value.status() == ("400" if proto == "http" else "StatusCode.INVALID_ARGUMENT")
    got = {m: delta(stats(http, m), before[m]) for m in before}
    assert got["ens"]["fail"] == 1 and got["ens"]["success"] == 0
    assert got["simple"]["success"] == 1  # the first step ran
    assert got["double"]["fail"] == 1 and got["double"]["success"] == 0
    # the ensemble still serves
    r = c.infer("ens", tensors(proto, IN0=b, IN1=b))
    np.testing.assert_array_equal(r.as_numpy("OUT"), 4 * b)


# 2. dynamic batcher ---------------------------------------------------------------------------

def test_dynamic_batching_under_concurrent_clients(server: Running, http) -> None:
    n = 8
    before = stats(http, "batched")
    start = threading.Barrier(n)
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        proto = "http" if i % 2 else "grpc"
        c: Client = (httpclient.InferenceServerClient(server.http_url) if proto == "http"
                     else grpcclient.InferenceServerClient(server.grpc_url))
        try:
            x = np.full((1, 4), 10 * i, dtype=np.int32)
            start.wait(WAIT)
            r = c.infer("batched", tensors(proto, X=x))
            results[i] = (r.as_numpy("Y"), r.as_numpy("N"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert not errors, errors
    assert sorted(results) == list(range(n))
    for i, (y, _) in results.items():
        np.testing.assert_array_equal(y, np.full((1, 4), 10 * i + 1, dtype=np.int32))
    assert max(int(nn.reshape(-1)[0]) for _, nn in results.values()) > 1
    got = delta(stats(http, "batched"), before)
    assert got["success"] == n and got["inference"] == n
    assert got["execution"] < got["inference"], got


# 3. sequence batcher --------------------------------------------------------------------------

@pytest.mark.parametrize("ids", ["int", "string"])
@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_interleaved_sequences(proto: str, ids: str, http, grpc) -> None:
    c = client(proto, http, grpc)
    base = {"http": 1000, "grpc": 2000}[proto]
    a, b = ((base + 1, base + 2) if ids == "int" else (f"{proto}-seq-a", f"{proto}-seq-b"))
    steps = [(a, 1, True, False), (b, 100, True, False), (a, 2, False, False),
             (b, 200, False, False), (b, 300, False, True), (a, 3, False, False),
             (a, 4, False, True)]
    sums: dict[Any, int] = {}
    for cid, v, first, last in steps:
        r = c.infer("accum", tensors(proto, X=np.array([[v]], dtype=np.int32)),
                    sequence_id=cid, sequence_start=first, sequence_end=last)
        sums[cid] = sums.get(cid, 0) + v
        assert int(r.as_numpy("SUM").reshape(-1)[0]) == sums[cid], (cid, v)
    assert sums == {a: 10, b: 600}
    # both sequences ended: the same ids start again from zero
    r = c.infer("accum", tensors(proto, X=np.array([[5]], dtype=np.int32)),
                sequence_id=a, sequence_start=True, sequence_end=True)
    assert int(r.as_numpy("SUM").reshape(-1)[0]) == 5


def test_sequence_request_without_id_is_refused(http, grpc) -> None:
    for proto in ("http", "grpc"):
        c = client(proto, http, grpc)
        with pytest.raises(InferenceServerException, match="correlation ID"):
            c.infer("accum", tensors(proto, X=np.array([[1]], dtype=np.int32)))


# 4. decoupled streaming -----------------------------------------------------------------------

def test_decoupled_over_grpc_stream(server: Running) -> None:
    got: queue.Queue = queue.Queue()
    c = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        c.start_stream(callback=lambda result, error: got.put((result, error)))
        values = np.array([7, 8, 9, 10], dtype=np.int32)
        for rid in ("a", "b"):
            c.async_stream_infer("repeat", tensors("grpc", IN=values), request_id=rid,
                                 enable_empty_final_response=True)
        seen: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
        finals: set[str] = set()
        while finals != {"a", "b"}:
            result, error = got.get(timeout=WAIT)
            assert error is None, error
            resp = result.get_response()
            rid = resp.id
            assert rid not in finals, "a response after the final one"
            if resp.parameters["triton_final_response"].bool_param:
                assert result.as_numpy("OUT") is None  # the empty final response
                finals.add(rid)
                continue
            seen[rid].append((int(result.as_numpy("OUT")[0]), int(result.as_numpy("IDX")[0])))
        for rid in ("a", "b"):
            assert seen[rid] == [(int(v), i) for i, v in enumerate(values)], seen
        c.stop_stream()
    finally:
        c.close()


def test_decoupled_refused_over_unary_infer(http, grpc) -> None:
    # Triton: UNSUPPORTED (HTTP 501, gRPC UNIMPLEMENTED) with these words
    with pytest.raises(InferenceServerException,
                       match="HTTP end point doesn't support models with decoupled "
                             "transaction policy") as e:
        http.infer("repeat", tensors("http", IN=np.array([1, 2], dtype=np.int32)))
    assert e.value.status() == "501"
    with pytest.raises(InferenceServerException,
                       match="ModelInfer RPC doesn't support models with decoupled "
                             "transaction policy") as e:
        grpc.infer("repeat", tensors("grpc", IN=np.array([1, 2], dtype=np.int32)))
    assert e.value.status() == "StatusCode.UNIMPLEMENTED"


# 5. response cache ----------------------------------------------------------------------------

def test_response_cache_hit(http, grpc) -> None:
    before = stats(http, "cached")
    x = np.array([1.5, 2.0, -3.0, 4.25], dtype=np.float32)
    first = http.infer("cached", tensors("http", X=x))
    np.testing.assert_array_equal(first.as_numpy("Y"), 3 * x)
    for proto in ("http", "grpc"):  # identical requests: hits, over either protocol
        again = client(proto, http, grpc).infer("cached", tensors(proto, X=x))
        np.testing.assert_array_equal(again.as_numpy("Y"), first.as_numpy("Y"))
        np.testing.assert_array_equal(again.as_numpy("RUN"), first.as_numpy("RUN"))  # not executed
    other = grpc.infer("cached", tensors("grpc", X=x + 1))  # other data: a miss
    np.testing.assert_array_equal(other.as_numpy("Y"), 3 * (x + 1))
    assert int(other.as_numpy("RUN")[0]) == int(first.as_numpy("RUN")[0]) + 1
    got = delta(stats(http, "cached"), before)
    assert got["cache_hit"] == 2 and got["cache_miss"] == 2, got
    assert got["success"] == 4 and got["execution"] == 2, got


def test_ensemble_response_cache_hit(http, grpc) -> None:
    before = {m: stats(http, m) for m in ("ens_cached", "simple", "double")}
    a = np.arange(16, dtype=np.int32).reshape(1, 16) * 7
    b = np.full((1, 16), 5, dtype=np.int32)
    first = grpc.infer("ens_cached", tensors("grpc", IN0=a, IN1=b))
    np.testing.assert_array_equal(first.as_numpy("OUT"), 2 * (a + b))
    ran = {m: delta(stats(http, m), before[m]) for m in before}
    assert ran["ens_cached"]["cache_miss"] == 1 and ran["simple"]["execution"] == 1
    for proto in ("grpc", "http"):
        again = client(proto, http, grpc).infer("ens_cached", tensors(proto, IN0=a, IN1=b))
        for name in ("OUT", "DIFF"):
            np.testing.assert_array_equal(again.as_numpy(name), first.as_numpy(name))
    got = {m: delta(stats(http, m), before[m]) for m in before}
    assert got["ens_cached"]["cache_hit"] == 2 and got["ens_cached"]["cache_miss"] == 1
    assert got["ens_cached"]["success"] == 3
    for m in ("simple", "double"):  # the hits ran no composing model
        assert got[m]["execution"] == ran[m]["execution"] and got[m]["success"] == 1, (m, got[m])


# 6. client timeout of a queued request ---------------------------------------------------------

def test_grpc_client_timeout_on_a_queued_request(server: Running, http, grpc) -> None:
    folder: Path = server.repo / "slow"  # type: ignore[attr-defined]
    before = stats(http, "slow")
    done: queue.Queue = queue.Queue()
    one = np.ones((1, 1), dtype=np.float32)
    grpc.async_infer("slow", tensors("grpc", X=-one),
                     callback=lambda result, error: done.put((result, error)))
    try:
        poll(lambda: (folder / "started").exists(), "the blocking request to start")
        with pytest.raises(InferenceServerException) as e:
            grpc.infer("slow", tensors("grpc", X=7 * one), client_timeout=0.5)
        assert e.value.status() in ("StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"), e.value
        # the server drops the queued request: it fails without running
        poll(lambda: delta(stats(http, "slow"), before)["fail"] == 1, "the queued request to fail")
        # other models keep serving while `slow` is busy
        r = http.infer("cached", tensors("http", X=np.zeros(4, dtype=np.float32)))
        np.testing.assert_array_equal(r.as_numpy("Y"), np.zeros(4, dtype=np.float32))
    finally:
        (folder / "release").write_text("go")
    result, error = done.get(timeout=WAIT)
    assert error is None, error
    np.testing.assert_array_equal(result.as_numpy("Y"), -one)
    for proto in ("grpc", "http"):  # and `slow` serves again
        r = client(proto, http, grpc).infer("slow", tensors(proto, X=8 * one))
        np.testing.assert_array_equal(r.as_numpy("Y"), 8 * one)
    executed = [float(v) for v in (folder / "executed").read_text().split()]
    assert executed == [-1.0, 8.0, 8.0]  # the timed-out request never ran
    got = delta(stats(http, "slow"), before)
    assert got["success"] == 3 and got["fail"] == 1, got


# gRPC streaming of models that are not decoupled ------------------------------------------------

class Stream:
    """A tritonclient gRPC stream whose results come back through a queue."""

    def __init__(self, server: Running) -> None:
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.got: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.got.put((result, error)))

    def call(self, model: str, **kwargs: Any) -> tuple[Any, Any]:
        self.client.async_stream_infer(model, **kwargs)
        return self.got.get(timeout=WAIT)

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


def test_ensemble_and_sequences_over_one_grpc_stream(server: Running) -> None:
    s = Stream(server)
    try:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        result, error = s.call("ens", inputs=tensors("grpc", IN0=a, IN1=a), request_id="e1")
        assert error is None, error
        assert result.get_response().id == "e1"
        np.testing.assert_array_equal(result.as_numpy("OUT"), 4 * a)
        # a failing step: the error comes back on the stream, which stays usable
        result, error = s.call("ens", inputs=tensors("grpc", IN0=-9 * a - 1, IN1=a))
        assert result is None and "double: negative value" in str(error), (result, error)
        # interleaved sequences, as perf_analyzer sends them
        sums: dict[Any, int] = {}
        for cid, v, first, last in [(3001, 1, True, False), ("stream-b", 10, True, False),
                                    (3001, 2, False, True), ("stream-b", 20, False, True)]:
            result, error = s.call("accum", inputs=tensors("grpc", X=np.array([[v]], np.int32)),
                                   sequence_id=cid, sequence_start=first, sequence_end=last)
            assert error is None, error
            sums[cid] = sums.get(cid, 0) + v
            assert int(result.as_numpy("SUM").reshape(-1)[0]) == sums[cid]
        result, error = s.call("ens", inputs=tensors("grpc", IN0=a, IN1=a))
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy("DIFF"), 0 * a)
    finally:
        s.close()


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_sequence_without_start_is_refused(proto: str, http, grpc) -> None:
    c = client(proto, http, grpc)
    with pytest.raises(InferenceServerException, match="START") as e:
        c.infer("accum", tensors(proto, X=np.array([[1]], dtype=np.int32)),
                sequence_id=f"{proto}-never-started")
    assert e.value.status() == ("400" if proto == "http" else "StatusCode.INVALID_ARGUMENT")


def test_cancelled_decoupled_stream_leaves_the_server_serving(server: Running) -> None:
    s = Stream(server)
    values = np.arange(200, dtype=np.int32)
    s.client.async_stream_infer("repeat", tensors("grpc", IN=values,
                                                  DELAY=np.array([5], dtype=np.uint32)))
    result, error = s.got.get(timeout=WAIT)  # the first response: the request runs
    assert error is None and int(result.as_numpy("OUT")[0]) == 0, error
    s.client.stop_stream(cancel_requests=True)
    s.client.close()
    s = Stream(server)  # a new stream on the same server works, to the end
    try:
        s.client.async_stream_infer("repeat", tensors("grpc", IN=np.array([4, 5], np.int32)),
                                    enable_empty_final_response=True)
        out = []
        while True:
            result, error = s.got.get(timeout=WAIT)
            assert error is None, error
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
            out.append(int(result.as_numpy("OUT")[0]))
        assert out == [4, 5]
    finally:
        s.close()


def test_sigterm_with_an_open_grpc_stream_exits(tmp_path: Path) -> None:
    # An open stream used to hold the exit for --exit-timeout-secs (then stop_server kills: -9)
    r = start_server(tmp_path, "--model-repository", str(EXAMPLES))
    c = grpcclient.InferenceServerClient(r.grpc_url)
    got: queue.Queue = queue.Queue()
    try:
        c.start_stream(callback=lambda result, error: got.put((result, error)))
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        c.async_stream_infer("simple", tensors("grpc", INPUT0=a, INPUT1=a))
        result, error = got.get(timeout=WAIT)
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * a)
        assert stop_server(r) == 0, r.log.read_text()
    finally:
        if r.proc.poll() is None:
            stop_server(r)
        c.close()
