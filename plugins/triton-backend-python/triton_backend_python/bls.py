"""Serving what a model asks of the server: BLS requests and control operations.

Both arrive on the worker's async channel (ControlChannel). A BLS request runs on the
backend's thread pool: its inputs are read in place from the worker arena, each
response goes back as a BLS_RESP frame with its outputs in the server arena. Control
operations (model ready / load / unload, request cancellation, custom metrics) answer
with one CTRL_RESP; loads and unloads also run on the pool.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from triton_core.errors import TritonError
from triton_core.request import InferenceRequest, RequestedOutput
from triton_python_backend_utils import _wire

from .codes import to_wire
from .metrics import STORE

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("triton_core.python")


class BlsServer:
    """Serves one worker's BLS requests and control operations."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def submit(self, cid: int, body: tuple, decoupled: bool) -> None:
        self.worker.model.backend.pool.submit(self.serve, cid, body, decoupled)

    def serve(self, cid: int, body: tuple, decoupled: bool) -> None:
        w = self.worker
        post, arenas = w.control_channel.post, w.arenas
        model, version, rid, corr, flags, timeout_us, params, inputs, outs, parent = body
        server = w.model.server
        blocks: list = []
        try:
            tensors = arenas.read_inputs(inputs, blocks)
            req = InferenceRequest(
                model_name=model, model_version=None if version < 0 else version, id=rid,
                inputs=tensors, outputs=None if outs is None else [RequestedOutput(o) for o in outs],
                parameters=json.loads(params) if params else {}, correlation_id=corr, flags=flags,
                timeout_us=int(timeout_us))
            if server is None:
                raise TritonError.unavailable("BLS needs the server")
            inst = w.instance
            p = inst.pending.get(parent) if inst is not None and parent >= 0 else None
            parent_trace = p.request.trace if p is not None else None
            if parent_trace is not None:  # trace=request.trace(): a child of the caller's trace
                req.trace = parent_trace.child(model, version, req.arrival_ns)
            timeout = timeout_us / 1e6 if timeout_us > 0 else None
            try:
                for resp, final in server.infer_iter(req, timeout=timeout):
                    post((_wire.BLS_RESP, cid, final, arenas.write_response(resp)))
            except TritonError as e:
                if timeout is not None and "timed out" in e.message:
                    e = TritonError.unavailable(
                        f"BLS request to model '{model}' timed out: no response within "
                        f"{timeout_us} us (Request timeout expired)")
                raise e from None
        except TritonError as e:
            post((_wire.BLS_RESP, cid, True, ((), "", to_wire(e))))
        except Exception as e:  # noqa: BLE001 - returned to the model as an error response
            log.exception("python backend: BLS call from %s failed", w.describe())
            post((_wire.BLS_RESP, cid, True, ((), "", (1, f"{type(e).__name__}: {e}"))))
        finally:
            arenas.release(blocks)

    # control operations ----------------------------------------------------------
    def control(self, cid: int, op: str, args: Any) -> None:
        handler = _OPS.get(op)
        if handler is None:
            self.worker.control_channel.post(
                (_wire.CTRL_RESP, cid, False, (5, f"unknown operation '{op}'")))
            return
        handler(self, cid, args)

    def _reply(self, cid: int, fn: Any, *args: Any) -> None:
        post = self.worker.control_channel.post
        try:
            value = fn(*args)
            post((_wire.CTRL_RESP, cid, True, value))
        except TritonError as e:
            post((_wire.CTRL_RESP, cid, False, to_wire(e)))
        except Exception as e:  # noqa: BLE001
            post((_wire.CTRL_RESP, cid, False, (1, f"{type(e).__name__}: {e}")))

    def _cancelled(self, cid: int, token: Any) -> None:
        inst = self.worker.instance
        p = inst.pending.get(token) if inst is not None else None
        self.worker.control_channel.post(
            (_wire.CTRL_RESP, cid, True, bool(p is not None and p.request.cancelled)))

    def _metric_family(self, cid: int, args: Any) -> None:
        self._reply(cid, STORE.add_family, self.worker, *args)

    def _metric(self, cid: int, args: Any) -> None:
        self._reply(cid, STORE.add_metric, self.worker, *args)

    def _metric_value(self, cid: int, args: Any) -> None:
        self._reply(cid, STORE.value, self.worker, args)

    def _ready(self, cid: int, args: Any) -> None:
        server = self.worker.model.server
        self._reply(cid, lambda n, v: server.model_ready(n, v or None), *args)

    def _load(self, cid: int, args: Any) -> None:
        server = self.worker.model.server
        name, config, files = args
        files = {k[5:] if k.startswith("file:") else k: v for k, v in files.items()}
        self.worker.model.backend.pool.submit(
            self._reply, cid, lambda: server.load_model(name, config or None, files or None))

    def _unload(self, cid: int, args: Any) -> None:
        server = self.worker.model.server
        self.worker.model.backend.pool.submit(
            self._reply, cid, lambda: server.unload_model(args))


_OPS: dict[str, Callable[[BlsServer, int, Any], None]] = {
    "cancelled": BlsServer._cancelled,
    "metric_family": BlsServer._metric_family,
    "metric": BlsServer._metric,
    "metric_value": BlsServer._metric_value,
    "ready": BlsServer._ready,
    "load": BlsServer._load,
    "unload": BlsServer._unload,
}
