"""A test backend: each output is a numpy expression of the inputs, from config parameters.

`parameters { key: "OUTPUT0" value { string_value: "INPUT0 + INPUT1" } }`
Extra knobs (parameters): `sleep_ms` (per execute), `fail_on` (raise when an
input holds this value), `auto_complete` (JSON config merged in when enabled),
`rendezvous` (N: each execute waits until N executes of the model run at once).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import select
import threading
import time
from pathlib import Path

import numpy as np

from triton_core import abi, testing
from triton_core.config import parse_config_json
from triton_core.dtypes import DataType
from triton_core.errors import ErrorCode, TritonError
from triton_core.gather import batch_sizes, gather_input, scatter_output
from triton_core.request import RESPONSE_COMPLETE_FINAL, InferenceResponse
from triton_core.tensor import Tensor

NAME = "expr"
# Executes holding an input equal to the `block_value` parameter wait for this (tests).
GATE = threading.Event()
GATE.set()


def _outputs(cfg):
    """(name, datatype) of every output to compute: config outputs, then implicit state outputs."""
    out = [(o.name, o.datatype) for o in cfg.output]
    for st in (cfg.sequence_batching or {}).get("state", []) or []:
        out.append((st["output_name"], DataType.from_config(st.get("data_type", "TYPE_FP32"))))
    return out


class ExprInstance(abi.Instance):
    def __init__(self, model: ExprModel, ctx: abi.InstanceContext) -> None:
        self.model = model
        self.ctx = ctx
        self.active = 0
        self.max_active = 0
        self.calls: list[int] = []  # batch sizes seen by execute
        self.batches: list[int] = []  # requests per execute
        self.saw_cancel = False
        self.blocked = 0  # executes that waited on GATE
        self.order: list = []  # requests in execution order

    def execute(self, requests, timer):
        cfg = self.model.config
        if cfg.decoupled:
            return self._execute_decoupled(requests)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            sleep_ms = float(cfg.parameter("sleep_ms", "0") or 0)
            fail_on = cfg.parameter("fail_on")
            names = list(requests[0].inputs)
            outputs = _outputs(cfg)
            self.batches.append(len(requests))
            same = all({n: t.shape[1:] for n, t in r.inputs.items()}
                       == {n: t.shape[1:] for n, t in requests[0].inputs.items()} for r in requests)
            batched = cfg.max_batch_size > 0 and len(requests) > 1 and same
            timer.compute_start()
            if sleep_ms:
                time.sleep(sleep_ms / 1000)
            if self.model.rendezvous is not None:
                self.model.rendezvous.wait()
            block = cfg.parameter("block_value")
            if block is not None and any(
                    np.any(t.as_numpy() == float(block)) for r in requests for t in r.inputs.values()
                    if t.as_numpy().dtype != object):
                self.blocked += 1
                GATE.wait(10)
            self.order.extend(requests)
            wait_ms = float(cfg.parameter("cancel_wait_ms", "0") or 0)
            if wait_ms:
                end = time.monotonic() + wait_ms / 1000
                while time.monotonic() < end and not all(r.is_cancelled() for r in requests):
                    time.sleep(0.002)
                if all(r.is_cancelled() for r in requests):
                    self.saw_cancel = True
                    return [InferenceResponse(error=TritonError(ErrorCode.CANCELLED, "cancelled"))
                            for _ in requests]
            if batched:
                sizes = batch_sizes(requests, names[0])
                env = {n: gather_input(requests, n) for n in names}
                env["instance"] = self.model.instances.index(self)
                self.calls.append(sum(sizes))
                outs = {n: np.asarray(eval(cfg.parameter(n), {"np": np}, env))  # noqa: S307
                        for n, _ in outputs}
                timer.compute_end()
                split = {n: scatter_output(a, sizes) for n, a in outs.items()}
                return [InferenceResponse(outputs=[
                    Tensor.from_numpy(n, split[n][i], dt) for n, dt in outputs])
                    for i in range(len(requests))]
            responses = []
            for r in requests:
                env = {n: t.as_numpy() for n, t in r.inputs.items()}
                env["instance"] = self.model.instances.index(self)
                self.calls.append(1)
                if fail_on is not None and any(
                    isinstance(a, np.ndarray) and a.dtype != object and np.any(a == float(fail_on))
                    for a in env.values()
                ):
                    raise ValueError(f"input holds the failing value {fail_on}")
                res = []
                for n, dt in outputs:
                    arr = np.asarray(eval(cfg.parameter(n), {"np": np}, env))  # noqa: S307
                    res.append(Tensor.from_numpy(n, arr, dt))
                responses.append(InferenceResponse(outputs=res))
            timer.compute_end()
            return responses
        finally:
            self.active -= 1


    def _execute_decoupled(self, requests):
        """Decoupled: `repeat` responses per request from a thread, then an empty FINAL."""
        cfg = self.model.config
        n = int(cfg.parameter("repeat", "2") or 2)
        self.order.extend(requests)

        def run(req):
            sender = req.response_sender()
            env = {k: t.as_numpy() for k, t in req.inputs.items()}
            if req.is_cancelled():
                sender.send(InferenceResponse(error=TritonError(ErrorCode.CANCELLED, "cancelled")),
                            RESPONSE_COMPLETE_FINAL)
                return
            for i in range(n):
                env["i"] = i
                outs = [Tensor.from_numpy(o.name, np.asarray(eval(cfg.parameter(o.name), {"np": np}, env)),
                                          o.datatype) for o in cfg.output]
                sender.send(InferenceResponse(outputs=outs))
            sender.send(None, RESPONSE_COMPLETE_FINAL)

        for r in requests:
            threading.Thread(target=run, args=(r,), daemon=True).start()
        return None


class ExprModel(abi.Model):
    def __init__(self, ctx: abi.ModelContext) -> None:
        cfg = ctx.config
        extra = cfg.parameter("auto_complete")
        if extra and ctx.auto_complete:
            merged = cfg.model_dump(mode="json", exclude_none=True)
            merged.update(json.loads(extra))
            cfg = parse_config_json(merged)
        model_file = ctx.version_path / (cfg.default_model_filename or "model.expr")
        if not model_file.exists():
            raise FileNotFoundError(f"missing model file {model_file}")
        if model_file.read_text().strip() == "corrupt":
            raise ValueError(f"corrupt model file {model_file}")
        self.config = cfg
        self.instances: list[ExprInstance] = []
        self.closed = False
        parties = int(cfg.parameter("rendezvous", "0") or 0)
        # proves executes overlap: a barrier they can only pass together (broken after 30 s)
        self.rendezvous = threading.Barrier(parties, timeout=30) if parties else None

    def create_instance(self, ctx):
        remote = self.config.parameter("remote") == "1"
        inst = RemoteExprInstance(self, ctx) if remote else ExprInstance(self, ctx)
        self.instances.append(inst)
        return inst

    def close(self):
        self.closed = True


class _Remote:
    """abi.PendingExecute over a future (the "other process" is a thread here)."""

    def __init__(self, fut: concurrent.futures.Future, inst: RemoteExprInstance) -> None:
        self.fut = fut
        self.inst = inst

    def wait(self, timeout: float) -> bool:
        try:
            self.fut.exception(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def fileno(self) -> int:
        return self.inst.done_r  # one byte per finished execute, in order

    def result(self):
        try:
            return self.fut.result()
        finally:
            _take_byte(self.inst.done_r)
            with self.inst.lock:
                self.inst.outstanding -= 1


def _take_byte(fd: int) -> None:
    while True:
        select.select([fd], [], [])  # an event loop may have left it non-blocking
        try:
            os.read(fd, 1)
            return
        except BlockingIOError:
            continue


class RemoteExprInstance(ExprInstance):
    """parameters { key: "remote" ... "1" }: execute runs elsewhere (like the python
    backend's worker process); the core may start it from the event loop with
    begin_execute."""

    pipeline_depth = 2  # the remote side runs one at a time, in order

    def __init__(self, model: ExprModel, ctx: abi.InstanceContext) -> None:
        super().__init__(model, ctx)
        self.remote = concurrent.futures.ThreadPoolExecutor(1)
        self.begun_on: list[int] = []  # thread ids begin_execute was called on
        self.begun_b: list[int] = []  # each request's first INPUT1 value, in begin order
        self.lock = threading.Lock()
        self.outstanding = 0
        self.max_outstanding = 0
        self.done_r, self.done_w = os.pipe()

    def begin_execute(self, requests, timer):
        self.begun_on.append(threading.get_ident())
        self.begun_b.extend(int(r.inputs["INPUT1"].as_numpy().flat[0]) for r in requests)
        with self.lock:
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)
        fut = self.remote.submit(self.execute, requests, timer)
        fut.add_done_callback(lambda _: os.write(self.done_w, b"x"))
        return _Remote(fut, self)

    def close(self):
        self.remote.shutdown()
        os.close(self.done_r)
        os.close(self.done_w)


class ExprBackend(abi.Backend):
    created = 0

    def __init__(self, ctx: abi.BackendContext) -> None:
        ExprBackend.created += 1
        self.ctx = ctx
        self.models: list[ExprModel] = []
        self.lock = threading.Lock()

    def load_model(self, ctx):
        m = ExprModel(ctx)
        with self.lock:
            self.models.append(m)
        return m


class _Plugin:
    @abi.hookimpl
    def triton_backends(self):
        return [abi.BackendSpec(name=NAME, factory=ExprBackend, platforms=("expr_platform",),
                                default_model_filename="model.expr")]


plugin = _Plugin()


def write_model(repo: Path, name: str, config: str, versions=(1,), content: str = "ok") -> Path:
    d = repo / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(config)
    for v in versions:
        (d / str(v)).mkdir(exist_ok=True)
        (d / str(v) / "model.expr").write_text(content)
    return d


ADD_SUB = """
backend: "expr"
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [16] },
       { name: "INPUT1" data_type: TYPE_INT32 dims: [16] }]
output [{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [16] },
        { name: "OUTPUT1" data_type: TYPE_INT32 dims: [16] }]
parameters { key: "OUTPUT0" value { string_value: "INPUT0 + INPUT1" } }
parameters { key: "OUTPUT1" value { string_value: "INPUT0 - INPUT1" } }
"""

IDENTITY_BYTES = """
backend: "expr"
max_batch_size: 0
input [{ name: "INPUT0" data_type: TYPE_STRING dims: [-1] }]
output [{ name: "OUTPUT0" data_type: TYPE_STRING dims: [-1] }]
parameters { key: "OUTPUT0" value { string_value: "INPUT0" } }
"""


def make_server(repo: Path, **kwargs):
    """A Server with the expr backend registered (no entry points loaded)."""
    return testing.make_server(repo, plugin, **kwargs)

REPEAT_DECOUPLED = """
backend: "expr"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [{ name: "IN" data_type: TYPE_INT32 dims: [-1] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [-1] }]
parameters { key: "OUT" value { string_value: "IN * i" } }
parameters { key: "repeat" value { string_value: "3" } }
"""
