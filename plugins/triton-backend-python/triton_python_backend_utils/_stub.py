"""The worker process: runs one instance of a user's model.py for the server.

Started by the python backend with two stream sockets (file descriptors in
argv): the execute channel (server asks, worker answers, strictly in turn)
and the async channel (everything the model starts: decoupled responses,
BLS calls, model control, logs, metrics). Tensors lie in two shared-memory
arenas: the server's (request inputs, BLS responses; the worker only reads)
and the worker's own (response outputs, BLS inputs; the worker allocates).

Standard library and numpy only: this runs under EXECUTION_ENV_PATH
interpreters that lack the server's packages.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import os
import queue
import select
import socket
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import numpy as np

import triton_python_backend_utils as pb

from . import _arena, _wire

if TYPE_CHECKING:
    import asyncio  # imported when a model is async: 6 MB of the worker (with ssl) otherwise

_SMALL = 1 << 16  # BLS outputs below this size are copied out of the arena at once


def _prod(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class _Call:
    __slots__ = ("q", "loop", "fut", "items")

    def __init__(self) -> None:
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fut: asyncio.Future | None = None
        self.items: list = []


class Runtime:
    def __init__(self, exec_sock: socket.socket, async_sock: socket.socket) -> None:
        self.exec_sock = exec_sock
        self.async_sock = async_sock
        self.exec_reader = _wire.Reader(exec_sock)
        self.async_reader = _wire.Reader(async_sock)
        self.async_lock = threading.Lock()
        self.calls: dict[int, _Call] = {}
        self.ids = itertools.count(1)
        self.decoupled = False
        self.model: Any = None
        self.module: Any = None
        self.model_name = ""
        self.spin_s = 0.0
        self.prefix = ""
        self.s_segs: dict[int, memoryview] = {}
        self.s_lock = threading.Lock()
        self.arena: _arena.Arena | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_lock = threading.Lock()
        self.async_execute = False
        self.closed = False

    # channel -------------------------------------------------------------
    def post(self, msg: tuple) -> None:
        data = _wire.encode(msg)
        with self.async_lock:
            try:
                self.async_sock.sendall(data)
            except OSError:
                os._exit(0)  # the server is gone

    def _call(self, msg_factory: Any) -> Any:
        cid = next(self.ids)
        call = _Call()
        self.calls[cid] = call
        self.post(msg_factory(cid))
        return cid, call

    def ctrl(self, op: str, args: Any) -> Any:
        cid, call = self._call(lambda cid: (_wire.CTRL, cid, op, args))
        ok, value = call.q.get()
        self.calls.pop(cid, None)
        if not ok:
            raise pb.TritonModelException(value[1])
        return value

    def log(self, level: int, msg: str) -> None:
        self.post((_wire.LOG, level, msg))

    def metric_update(self, mid: int, op: str, value: float) -> None:
        self.post((_wire.METRIC, mid, op, value))

    def async_loop(self) -> None:
        while True:
            try:
                msg = self.async_reader.read()
            except _wire.ChannelClosed:
                os._exit(0)
            kind = msg[0]
            if kind == _wire.BLS_RESP:
                call = self.calls.get(msg[1])
                if call is None:
                    continue
                resp = self._decode_bls_response(msg[3]) if msg[3] is not None else None
                final = msg[2]
                if call.fut is not None:
                    call.items.append(resp)
                    if final:
                        self.calls.pop(msg[1], None)
                        call.loop.call_soon_threadsafe(_resolve, call.fut, call.items)
                else:
                    call.q.put((resp, final))
                    if final:
                        self.calls.pop(msg[1], None)
            elif kind == _wire.CTRL_RESP:
                call = self.calls.get(msg[1])
                if call is not None:
                    call.q.put((msg[2], msg[3]))
            elif kind == _wire.IS_READY_Q:
                threading.Thread(target=self._is_ready, args=(msg[1],), daemon=True).start()

    def _is_ready(self, cid: int) -> None:
        try:
            ok = bool(self.model.is_ready())
        except Exception as e:  # noqa: BLE001 - a failing check means not ready
            print(f"is_ready() raised {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            ok = False
        self.post((_wire.CTRL_RESP, cid, True, ok))

    # arenas --------------------------------------------------------------
    def s_seg(self, seg: int) -> memoryview:
        mv = self.s_segs.get(seg)
        if mv is None:
            with self.s_lock:
                mv = self.s_segs.get(seg)
                if mv is None:
                    mv = _arena.map_segment(f"{self.prefix}s{seg}")
                    self.s_segs[seg] = mv
                    self.post((_wire.MAPPED, "s", seg))
        return mv

    def _new_w_segment(self, seg_id: int, min_size: int) -> memoryview:
        if seg_id == 0:
            return _arena.map_segment(f"{self.prefix}w0")
        cid, call = self._call(lambda cid: (_wire.GROW, cid, (seg_id, min_size)))
        ok, value = call.q.get()
        self.calls.pop(cid, None)
        if not ok:
            raise MemoryError(value[1])
        mv = _arena.map_segment(value)
        self.post((_wire.MAPPED, "w", seg_id))
        return mv

    def input_tensor(self, meta: tuple) -> pb.Tensor:
        if len(meta) == 8:  # in GPU memory: a client's CUDA region, opened here by its handle
            name, wire, shape, _, off, size, handle, device = meta
            dt = pb._WIRE_TO_NP[wire]
            gpu = pb._gpu_call(lambda: pb._gpu.GpuTensor.open_ipc(
                handle, off, tuple(shape), dt, wire == "BF16", device))
            return pb.Tensor._on_gpu(name, wire, gpu)
        name, wire, shape, seg, off, size = meta
        mv = self.s_seg(seg)
        if wire == "BYTES":
            arr = pb._deserialize(mv[off:off + size], _prod(shape)).reshape(shape)
        else:
            dt = pb._WIRE_TO_NP[wire]
            n = _prod(shape)
            arr = np.frombuffer(mv, dtype=dt, count=n, offset=off).reshape(shape) if n else \
                np.empty(shape, dtype=dt)
        return pb.Tensor._view(name, wire, arr)

    def write_tensor(self, t: pb.Tensor) -> tuple:
        arr = t._host_array()  # a GPU tensor is copied to the host into the arena
        wire = t._wire
        if wire == "BYTES":
            data: Any = pb._serialize(arr)
            n = len(data)
        else:
            if arr.dtype.kind in ("O", "S", "U"):
                raise pb.TritonModelException(f"output '{t._name}': {wire} data in a BYTES array")
            if not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr)
            if arr.dtype.byteorder == ">":
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            n = arr.nbytes
            # small: tobytes() is the cheapest way in; large: no extra copy
            data = arr.tobytes() if n < 65536 else memoryview(arr).cast("B")
        arena = self.arena
        seg, off = arena.alloc(n)
        if n:
            arena.segs[seg][off:off + n] = data
        return (t._name, wire, arr.shape, seg, off, n)

    def encode_response(self, resp: Any, wanted: list[str] | None = None) -> tuple:
        """``wanted``: the request's requested output names; others are left out (as Triton)."""
        if not isinstance(resp, pb.InferenceResponse):
            return ((), "", (1, f"expected a pb_utils.InferenceResponse, got {type(resp).__name__}"))
        if resp._error is not None:
            return ((), resp._params, (resp._error.code(), resp._error.message()))
        try:
            outs = tuple(self.write_tensor(t) for t in resp._outputs
                         if wanted is None or t._name in wanted)
        except Exception as e:  # noqa: BLE001 - the error goes to this response
            return ((), "", (1, f"{type(e).__name__}: {e}"))
        return (outs, resp._params, None)

    # decoupled -------------------------------------------------------------
    def send_response(self, token: int, resp: Any, flags: int,
                      wanted: list[str] | None = None) -> None:
        meta = None if resp is None else self.encode_response(resp, wanted)
        self.post((_wire.SEND, token, flags, meta))

    # BLS -------------------------------------------------------------------
    def _bls_message(self, req: pb.InferenceRequest, decoupled: bool) -> Any:
        metas = []
        for t in req._inputs:
            if not isinstance(t, pb.Tensor):
                raise pb.TritonModelException("BLS inputs must be pb_utils.Tensor objects")
            metas.append(self.write_tensor(t))
        body = (req._model_name, req._version, req._id, req._corr, req._flags, req._timeout,
                req._params, tuple(metas), None if req._outputs is None else tuple(req._outputs),
                req._parent)
        return lambda cid: (_wire.BLS, cid, body, decoupled)

    def _decode_bls_response(self, meta: tuple) -> pb.InferenceResponse:
        outs, params, err = meta
        tensors = []
        for m in outs:
            t = self.input_tensor(m)
            if t._wire != "BYTES":
                t._array = t._array.copy()
            _arena.release(self.s_seg(m[3]), m[4])
            tensors.append(t)
        r = pb.InferenceResponse.__new__(pb.InferenceResponse)
        r._outputs = tensors
        r._error = None if err is None else pb.TritonError(err[1], err[0])
        r._params = params
        return r

    def bls(self, req: pb.InferenceRequest, decoupled: bool) -> Any:
        cid, call = self._call(self._bls_message(req, decoupled))
        if not decoupled:
            last = None
            while True:
                resp, final = call.q.get()
                if resp is not None:
                    last = resp
                if final:
                    return last if last is not None else pb.InferenceResponse()
        return self._iterate(call)

    @staticmethod
    def _iterate(call: _Call) -> Any:
        while True:
            resp, final = call.q.get()
            if resp is not None:
                yield resp
            elif final:
                yield pb.InferenceResponse()  # Triton's empty final response
            if final:
                return

    async def bls_async(self, req: pb.InferenceRequest, decoupled: bool) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        cid = next(self.ids)
        call = _Call()
        call.loop, call.fut = loop, fut
        self.calls[cid] = call
        self.post(self._bls_message(req, decoupled)(cid))
        items = await fut
        if not decoupled:
            last = [r for r in items if r is not None]
            return last[-1] if last else pb.InferenceResponse()
        return iter([r if r is not None else pb.InferenceResponse() for r in items])

    # execute -----------------------------------------------------------------
    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop of async models (started on first use)."""
        import asyncio

        with self.loop_lock:
            if self.loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="pb-asyncio", daemon=True).start()
                self.loop = loop
            return self.loop

    def execute(self, metas: tuple) -> tuple:
        requests = []
        name = self.model_name
        for token, rid, corr, flags, timeout, params, inputs, outs in metas:
            tensors = [self.input_tensor(m) for m in inputs]
            requests.append(pb.InferenceRequest._incoming(
                token, name, rid, corr, flags, timeout, params, tensors,
                None if outs is None else list(outs)))
        if self.async_execute:
            import asyncio

            coro = self.model.execute(requests)
            if self.decoupled:
                fut = asyncio.run_coroutine_threadsafe(coro, self.get_loop())
                fut.add_done_callback(lambda f: self._async_done(f, requests))
                return (_wire.OK, None)
            result = asyncio.run_coroutine_threadsafe(coro, self.get_loop()).result()
        else:
            result = self.model.execute(requests)
        if self.decoupled:
            return (_wire.OK, None)
        if result is None or len(result) != len(requests):
            got = "None" if result is None else f"{len(result)} responses"
            return (_wire.ERR, 1, f"execute of model '{name}' returned {got} for "
                                  f"{len(requests)} requests")
        enc = self.encode_response
        # zip without strict=: workers may run on Python < 3.10; the lengths match (checked above)
        return (_wire.OK, tuple(enc(r, q._outputs) for r, q in zip(result, requests)))  # noqa: B905

    def _async_done(self, fut: Any, requests: list) -> None:
        exc = fut.exception()
        if exc is None:
            return
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        err = pb.TritonError(_failure(self.model_name, exc))
        for r in requests:
            try:
                r.get_response_sender().send(pb.InferenceResponse(error=err),
                                             pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            except pb.TritonModelException:
                pass  # already closed by the model

    # start-up ----------------------------------------------------------------
    def init(self, s: dict) -> tuple:
        if "cwd" in s:  # a worker started before its model was known waits in "/"
            os.chdir(s["cwd"])
        self.prefix = s["prefix"]
        self.model_name = s["model_name"]
        self.spin_s = float(s.get("spin_us", 0)) / 1e6
        self.decoupled = bool(s["decoupled"])
        self.s_segs[0] = _arena.map_segment(f"{self.prefix}s0")
        self.arena = _arena.Arena(self._new_w_segment, s["w_size"], s["growth"])
        model_file = s["model_file"]
        sys.path.insert(0, os.path.dirname(model_file))
        spec = importlib.util.spec_from_file_location("model", model_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {model_file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["model"] = module
        spec.loader.exec_module(module)
        self.module = module
        cls = getattr(module, "TritonPythonModel", None)
        if cls is None:
            raise AttributeError(f"{model_file} defines no class TritonPythonModel")
        self.cls = cls
        return (_wire.OK, hasattr(cls, "is_ready"), sys.version.split()[0])

    def autocomplete(self, config: dict) -> tuple:
        fn = getattr(self.cls, "auto_complete_config", None)
        if fn is None:
            return (_wire.OK, None)
        cfg = pb.ModelConfig(config)
        out = fn(cfg)
        if out is None:
            out = cfg
        return (_wire.OK, out.as_dict())

    def initialize(self, args: dict) -> tuple:
        self.decoupled = args.pop("_decoupled", self.decoupled)
        self.model = self.cls()
        self.async_execute = inspect.iscoroutinefunction(getattr(self.model, "execute", None))
        if not hasattr(self.model, "execute"):
            raise AttributeError("TritonPythonModel has no execute method")
        init = getattr(self.model, "initialize", None)
        if init is not None:
            if inspect.iscoroutinefunction(init):
                import asyncio

                asyncio.run_coroutine_threadsafe(init(args), self.get_loop()).result()
            else:
                init(args)
        return (_wire.OK,)

    def finalize(self) -> tuple:
        fin = getattr(self.model, "finalize", None) if self.model is not None else None
        if fin is not None:
            if inspect.iscoroutinefunction(fin):
                import asyncio

                asyncio.run_coroutine_threadsafe(fin(), self.get_loop()).result()
            else:
                fin()
        return (_wire.OK,)

    def serve(self) -> None:
        handlers = {_wire.INIT: self.init, _wire.AUTOCOMPLETE: self.autocomplete,
                    _wire.INITIALIZE: self.initialize, _wire.EXEC: self.execute,
                    _wire.FINALIZE: self.finalize}
        reader = self.exec_reader
        sock = self.exec_sock
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        clock = time.perf_counter
        recent = True  # the last request came within the spin window: worth spinning for
        lone = True  # the server had no other request outstanding when it sent the last one
        calm_at = 0.0  # no spinning before this time
        cpu = time.thread_time
        while True:
            spin = self.spin_s  # poll a while before sleeping: see the server's spin-microseconds
            idle_from = clock()
            # Under load (requests sent while others were outstanding) the cores are
            # better left to the server: the next request then waits here anyway.
            if spin and recent and lone and idle_from > calm_at and len(reader.buf) == reader.pos:
                end = idle_from + spin
                cpu0 = cpu()
                while not poller.poll(0) and clock() < end:
                    pass
                # Preempted while spinning (less CPU than wall time): the cores are
                # wanted elsewhere, so sleep instead of spinning for a while.
                waited = clock() - idle_from
                if waited > 50e-6 and cpu() - cpu0 < 0.5 * waited:
                    calm_at = clock() + _CALM_S
            try:
                msg = reader.read()
            except _wire.ChannelClosed:
                os._exit(0)
            recent = clock() - idle_from <= spin
            kind = msg[0]
            try:
                if kind == _wire.EXEC:
                    # Accepted: from here on the server must not retry the batch elsewhere.
                    seg, off = msg[2]
                    self.s_seg(seg)[off - _arena.ACCEPTED_AT] = 1
                    lone = len(msg) < 4 or bool(msg[3])
                reply = handlers[kind](msg[1]) if len(msg) > 1 else handlers[kind]()
            except BaseException as e:  # noqa: BLE001 - every failure goes back to the server
                traceback.print_exc()
                if kind == _wire.EXEC:
                    reply = (_wire.ERR, 1, _failure(self.model_name, e))
                else:
                    reply = (_wire.ERR, 1, f"{type(e).__name__}: {e}")
            try:
                sock.sendall(_wire.encode(reply))
            except OSError:
                os._exit(0)
            if kind == _wire.FINALIZE:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)


# After a preempted spin, how long the worker sleeps in the kernel instead of spinning.
_CALM_S = 0.01


def _failure(model: str, e: BaseException) -> str:
    return f"Failed to process the request(s) for model '{model}', message: {type(e).__name__}: {e}"


def _resolve(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv if argv is None else argv
    exec_sock = socket.socket(fileno=int(argv[1]))
    async_sock = socket.socket(fileno=int(argv[2]))
    rt = Runtime(exec_sock, async_sock)
    pb._runtime = rt
    threading.Thread(target=rt.async_loop, name="pb-async", daemon=True).start()
    rt.serve()


if __name__ == "__main__":
    main()
