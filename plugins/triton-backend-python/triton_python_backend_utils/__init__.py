"""triton_python_backend_utils: the module Triton's Python models import as ``pb_utils``.

It runs inside the worker process (standard library and numpy only), so that
model.py files written for Triton run unmodified. The worker's runtime
(``_stub``) plugs itself in as ``_runtime``: BLS, logging, metrics and the
model-control calls go through it to the server.
"""

from __future__ import annotations

import json
import struct
import threading
from typing import Any

import numpy as np

from . import _gpu

__all__ = [
    "InferenceRequest", "InferenceResponse", "InferenceResponseSender", "InferenceTrace", "Logger",
    "LogLevel",
    "Metric", "MetricFamily", "ModelConfig", "Tensor", "TritonError", "TritonModelException",
    "deserialize_bytes_tensor", "get_input_config_by_name", "get_input_tensor_by_name",
    "get_output_config_by_name", "get_output_tensor_by_name", "is_model_ready", "load_model",
    "numpy_to_triton_type", "serialize_byte_tensor", "triton_string_to_numpy",
    "triton_to_numpy_type", "unload_model", "using_decoupled_model_transaction_policy",
]

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2

# Set by the worker runtime (triton_python_backend_utils._stub) when it starts.
_runtime: Any = None


def _rt() -> Any:
    if _runtime is None:
        raise TritonModelException(
            "this call needs the Triton python backend worker (it only works inside a model "
            "served by the server)")
    return _runtime


# ---------------------------------------------------------------- data types

# TRITONSERVER_DataType numbers, v2 names, numpy types.
_TYPES = [
    (1, "BOOL", np.bool_), (2, "UINT8", np.uint8), (3, "UINT16", np.uint16),
    (4, "UINT32", np.uint32), (5, "UINT64", np.uint64), (6, "INT8", np.int8),
    (7, "INT16", np.int16), (8, "INT32", np.int32), (9, "INT64", np.int64),
    (10, "FP16", np.float16), (11, "FP32", np.float32), (12, "FP64", np.float64),
    (13, "BYTES", np.object_), (14, "BF16", np.uint16),
]
_CODE_TO_WIRE = {c: w for c, w, _ in _TYPES}
_WIRE_TO_CODE = {w: c for c, w, _ in _TYPES}
_WIRE_TO_NP = {w: np.dtype(t) for _, w, t in _TYPES}
_NP_TO_WIRE = {np.dtype(t): w for _, w, t in _TYPES if w not in ("BF16",)}

TYPE_INVALID = 0
for _c, _w, _ in _TYPES:
    globals()["TYPE_" + ("STRING" if _w == "BYTES" else _w)] = _c


def triton_to_numpy_type(data_type: int) -> Any:
    """A TRITONSERVER_DataType number -> numpy type (BYTES: np.object_)."""
    w = _CODE_TO_WIRE.get(int(data_type))
    return None if w is None else _WIRE_TO_NP[w].type


def numpy_to_triton_type(data_type: Any) -> int | None:
    dt = np.dtype(data_type)
    if dt.kind in ("O", "S", "U"):
        return 13
    w = _NP_TO_WIRE.get(dt)
    return None if w is None else _WIRE_TO_CODE[w]


def triton_string_to_numpy(triton_type_string: str) -> Any:
    """'TYPE_FP32' -> np.float32; 'TYPE_STRING' -> np.object_."""
    s = triton_type_string
    if s.startswith("TYPE_"):
        s = s[5:]
    if s == "STRING":
        s = "BYTES"
    return _WIRE_TO_NP[s].type


def _wire_of(arr: np.ndarray) -> str:
    if arr.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return _NP_TO_WIRE[arr.dtype.newbyteorder("=") if arr.dtype.byteorder == ">" else arr.dtype]
    except KeyError:
        raise TritonModelException(f"numpy dtype {arr.dtype} has no Triton data type") from None


# ------------------------------------------------------------- BYTES codec

_LEN = struct.Struct("<I")


def _as_bytes(x: Any) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (bytearray, memoryview, np.bytes_)):
        return bytes(x)
    return str(x).encode("utf-8")


def _serialize(arr: np.ndarray) -> bytes:
    parts = []
    for x in arr.reshape(-1) if arr.ndim else arr.reshape(1):
        b = _as_bytes(x)
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def _deserialize(buf: Any, count: int | None = None) -> np.ndarray:
    mv = memoryview(buf)
    n = len(mv)
    out = []
    pos = 0
    while pos < n and (count is None or len(out) < count):
        if pos + 4 > n:
            raise TritonModelException("BYTES tensor: truncated length prefix")
        (ln,) = _LEN.unpack_from(mv, pos)
        pos += 4
        if pos + ln > n:
            raise TritonModelException("BYTES tensor: an element runs past the end of the buffer")
        out.append(bytes(mv[pos:pos + ln]))
        pos += ln
    arr = np.empty(len(out), dtype=np.object_)
    arr[:] = out
    return arr


def serialize_byte_tensor(input_tensor: np.ndarray) -> np.ndarray | None:
    """Triton's BYTES wire form (4-byte LE length, then the bytes) as a uint8 array."""
    if input_tensor.size == 0:
        return np.empty([0], dtype=np.uint8)
    if input_tensor.dtype.kind not in ("O", "S", "U"):
        raise TritonModelException("cannot serialize bytes tensor: invalid datatype")
    return np.frombuffer(_serialize(input_tensor), dtype=np.uint8)


def deserialize_bytes_tensor(encoded_tensor: Any) -> np.ndarray:
    """The reverse of serialize_byte_tensor: a 1-D object array of bytes."""
    return _deserialize(encoded_tensor)


# ------------------------------------------------------------------ errors

class TritonModelException(Exception):
    """Raised by pb_utils calls that fail (Triton's pb_utils.TritonModelException)."""


class TritonError:
    """An error carried by a response (or raised from BLS helpers)."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message = str(message)
        self._code = int(code)

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def __repr__(self) -> str:
        return f"TritonError({self._message!r}, code={self._code})"

    __str__ = message


# ------------------------------------------------------------------ tensors

class Tensor:
    """A named tensor: a numpy array in host memory (inputs view the shared-memory arena),
    or GPU memory (``is_cpu()`` False: from_dlpack of a GPU tensor, an input from a CUDA
    shared-memory region), which models read through DLPack."""

    __slots__ = ("_name", "_array", "_wire", "_gpu", "__weakref__")

    def __init__(self, name: str, data: Any, dtype: str | None = None) -> None:
        gpu = None
        if not isinstance(data, np.ndarray):
            if hasattr(data, "__dlpack__"):
                gpu = _gpu_call(lambda: _gpu.GpuTensor.from_object(data))
                if gpu is None:
                    data = np.from_dlpack(data)
            else:
                raise TritonModelException(
                    f"Tensor '{name}': data must be a numpy array (got {type(data).__name__})")
        self._name = str(name)
        self._gpu = gpu
        if gpu is not None:
            self._array = None
            self._wire = dtype or ("BF16" if gpu.bf16 else _NP_TO_WIRE[gpu.dtype])
        else:
            self._array = data
            self._wire = dtype or _wire_of(data)

    @classmethod
    def _view(cls, name: str, wire: str, array: np.ndarray) -> Tensor:
        t = cls.__new__(cls)
        t._name, t._array, t._wire, t._gpu = name, array, wire, None
        return t

    @classmethod
    def _on_gpu(cls, name: str, wire: str, gpu: _gpu.GpuTensor) -> Tensor:
        t = cls.__new__(cls)
        t._name, t._array, t._wire, t._gpu = name, None, wire, gpu
        return t

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        if self._gpu is not None:
            raise TritonModelException("Tensor is stored in GPU and cannot be converted to NumPy.")
        return self._array

    def triton_dtype(self) -> int:
        return _WIRE_TO_CODE[self._wire]

    def shape(self) -> list[int]:
        return list(self._gpu.shape if self._gpu is not None else self._array.shape)

    def is_cpu(self) -> bool:
        return self._gpu is None

    def to_dlpack(self) -> Any:
        """A DLPack capsule of the data (consumed once, as DLPack capsules are)."""
        return self.__dlpack__()

    def __dlpack__(self, stream: Any = None, **kwargs: Any) -> Any:
        if self._wire == "BYTES":
            raise TritonModelException("DLPack does not have support for string tensors.")
        if self._gpu is not None:
            return self._gpu.__dlpack__(stream)
        return self._array.__dlpack__(**kwargs) if kwargs else self._array.__dlpack__()

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._gpu.__dlpack_device__() if self._gpu is not None else (1, 0)  # kDLCPU

    @staticmethod
    def from_dlpack(name: str, dlpack_tensor: Any) -> Tensor:
        """A Tensor from a DLPack capsule or any object with __dlpack__ (torch, CuPy, jax,
        numpy): host memory as a numpy view, GPU memory as it is (no copy either way)."""
        if hasattr(dlpack_tensor, "__dlpack__"):
            return Tensor(name, dlpack_tensor)
        gpu = _gpu_call(lambda: _gpu.GpuTensor.from_capsule(dlpack_tensor))
        if gpu is not None:
            return Tensor._on_gpu(name, "BF16" if gpu.bf16 else _NP_TO_WIRE[gpu.dtype], gpu)
        return Tensor(name, np.from_dlpack(_Capsule(dlpack_tensor)))

    def _host_array(self) -> np.ndarray:
        """The data in host memory (a GPU tensor copied down: what goes to the server)."""
        if self._gpu is None:
            return self._array
        return _gpu_call(self._gpu.to_host)

    def __repr__(self) -> str:
        where = "" if self._gpu is None else f", cuda:{self._gpu.device_id}"
        return f"Tensor({self._name!r}, {self._wire}, {self.shape()}{where})"


def _gpu_call(fn: Any) -> Any:
    try:
        return fn()
    except _gpu.GpuError as e:
        raise TritonModelException(str(e)) from None


class _Capsule:
    """Wraps a bare DLPack capsule so np.from_dlpack takes it (CPU memory only)."""

    def __init__(self, capsule: Any) -> None:
        self.capsule = capsule

    def __dlpack__(self, stream: Any = None, **kwargs: Any) -> Any:
        return self.capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)


# ---------------------------------------------------------------- responses

def _params_json(parameters: Any) -> str:
    if parameters is None or parameters == "":
        return ""
    if isinstance(parameters, str):
        json.loads(parameters)  # must be valid
        return parameters
    if isinstance(parameters, dict):
        for k, v in parameters.items():
            if not isinstance(k, str) or not isinstance(v, (str, int, float, bool)):
                raise TritonModelException(
                    "parameters must map strings to str, int, float or bool values")
        return json.dumps(parameters)
    raise TritonModelException("parameters must be a dict or a JSON string")


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None,
                 parameters: Any = None) -> None:
        self._outputs = list(output_tensors) if output_tensors else []
        for t in self._outputs:
            if not isinstance(t, Tensor):
                raise TritonModelException("output_tensors must hold pb_utils.Tensor objects")
        if error is not None and not isinstance(error, TritonError):
            error = TritonError(str(error))
        self._error = error
        self._params = _params_json(parameters)

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return self._params or "{}"


def get_output_tensor_by_name(inference_response: InferenceResponse, name: str) -> Tensor | None:
    for t in inference_response.output_tensors():
        if t.name() == name:
            return t
    return None


# ----------------------------------------------------------------- requests

class InferenceResponseSender:
    """Sends a decoupled model's responses for one request; the last with the FINAL flag."""

    def __init__(self, token: int, wanted: list[str] | None = None) -> None:
        self._token = token
        self._wanted = wanted  # the request's requested output names (None: all)
        self._closed = False
        self._lock = threading.Lock()

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        with self._lock:
            if self._closed:
                raise TritonModelException(
                    "Unable to send response. Response sender has been closed.")
            if response is None and not flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
                raise TritonModelException(
                    "Inference Response object must be provided when the response flags is not "
                    "TRITONSERVER_RESPONSE_COMPLETE_FINAL.")
            if response is not None and not isinstance(response, InferenceResponse):
                raise TritonModelException("send() takes a pb_utils.InferenceResponse")
            if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
                self._closed = True
        _rt().send_response(self._token, response, int(flags), self._wanted)

    def is_cancelled(self) -> bool:
        return bool(_rt().ctrl("cancelled", self._token))


class InferenceTrace:
    """The trace of a request given to execute (what ``request.trace()`` returns)."""

    def __init__(self, token: int) -> None:
        self.token = token


class InferenceRequest:
    """A request given to execute, or one the model builds for BLS (then call exec)."""

    def __init__(self, model_name: str = "", inputs: list[Tensor] | None = None,
                 requested_output_names: list[str] | None = None, model_version: int = -1,
                 request_id: str = "", correlation_id: int | str = 0, flags: int = 0,
                 timeout: int = 0, preferred_memory: Any = None, trace: Any = None,
                 parameters: Any = None, **kwargs: Any) -> None:
        self._model_name = model_name
        self._inputs = list(inputs or [])
        self._outputs = None if requested_output_names is None else list(requested_output_names)
        self._version = int(model_version)
        self._id = str(request_id)
        self._corr = correlation_id
        self._flags = int(flags)
        self._timeout = int(timeout)
        self._params = _params_json(parameters)
        self._token = -1
        self._sender: InferenceResponseSender | None = None
        # BLS: trace=request.trace() makes this request's trace a child of that one's
        self._parent = trace.token if isinstance(trace, InferenceTrace) else -1

    @classmethod
    def _incoming(cls, token: int, model_name: str, rid: str, corr: Any, flags: int, timeout: int,
                  params: str, inputs: list[Tensor], outputs: Any) -> InferenceRequest:
        r = cls.__new__(cls)
        r._model_name, r._inputs, r._outputs, r._version = model_name, inputs, outputs, -1
        r._id, r._corr, r._flags, r._timeout, r._params = rid, corr, flags, timeout, params
        r._token, r._sender, r._parent = token, None, -1
        return r

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def request_id(self) -> str:
        return self._id

    def correlation_id(self) -> Any:
        return self._corr

    def flags(self) -> int:
        return self._flags

    def timeout(self) -> int:
        return self._timeout

    def model_name(self) -> str:
        return self._model_name

    def model_version(self) -> int:
        return self._version

    def requested_output_names(self) -> list[str]:
        return list(self._outputs or [])

    def parameters(self) -> str:
        return self._params or "{}"

    def trace(self) -> InferenceTrace:
        """This request's trace, to pass on to BLS requests (``InferenceRequest(trace=...)``)
        so they are traced as its children."""
        return InferenceTrace(self._token)

    def set_release_flags(self, flags: int) -> None:
        if flags & TRITONSERVER_REQUEST_RELEASE_RESCHEDULE:
            raise TritonModelException("request rescheduling is not supported")

    def get_response_sender(self) -> InferenceResponseSender:
        if self._token < 0:
            raise TritonModelException("only requests given to execute have a response sender")
        if self._sender is None:
            if not _rt().decoupled:
                raise TritonModelException(
                    "get_response_sender() needs a decoupled model "
                    "(model_transaction_policy { decoupled: true })")
            self._sender = InferenceResponseSender(self._token, self._outputs)
        return self._sender

    def is_cancelled(self) -> bool:
        if self._token < 0:
            return False
        return bool(_rt().ctrl("cancelled", self._token))

    # BLS ---------------------------------------------------------------
    def exec(self, decoupled: bool = False) -> Any:
        """Run this request on a model of the same server; errors come back in the response.

        decoupled=True returns an iterator over the responses (the last may be empty).
        """
        return _rt().bls(self, bool(decoupled))

    async def async_exec(self, decoupled: bool = False) -> Any:
        return await _rt().bls_async(self, bool(decoupled))


def get_input_tensor_by_name(inference_request: InferenceRequest, name: str) -> Tensor | None:
    for t in inference_request.inputs():
        if t.name() == name:
            return t
    return None


# ------------------------------------------------------------ model config

def get_input_config_by_name(model_config: dict, name: str) -> dict | None:
    for i in model_config.get("input", []):
        if i.get("name") == name:
            return i
    return None


def get_output_config_by_name(model_config: dict, name: str) -> dict | None:
    for o in model_config.get("output", []):
        if o.get("name") == name:
            return o
    return None


def using_decoupled_model_transaction_policy(model_config: dict) -> bool:
    return bool((model_config.get("model_transaction_policy") or {}).get("decoupled", False))


class ModelConfig:
    """What auto_complete_config receives and returns."""

    def __init__(self, model_config: dict | str) -> None:
        self._config = json.loads(model_config) if isinstance(model_config, str) else model_config

    def as_dict(self) -> dict:
        return self._config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        self._config["max_batch_size"] = int(max_batch_size)

    def set_dynamic_batching(self) -> None:
        self._config.setdefault("dynamic_batching", {})

    def set_model_transaction_policy(self, transaction_policy_dict: dict) -> None:
        for k in transaction_policy_dict:
            if k != "decoupled":
                raise ValueError(f"model transaction property '{k}' is not supported")
        self._config.setdefault("model_transaction_policy", {}).update(transaction_policy_dict)

    def _add(self, kind: str, spec: dict) -> None:
        if not isinstance(spec, dict) or "name" not in spec:
            raise ValueError(f"{kind} must be a dict with a 'name'")
        lst = self._config.setdefault(kind, [])
        for existing in lst:
            if existing.get("name") == spec["name"]:
                for key in ("data_type", "dims"):
                    if key in spec and key in existing and _norm(existing[key]) != _norm(spec[key]):
                        raise ValueError(
                            f"model '{self._config.get('name', '')}', tensor '{spec['name']}': "
                            f"the model expects {key} {spec[key]} but the model configuration "
                            f"specifies {key} {existing[key]}")
                for key, v in spec.items():
                    existing.setdefault(key, v)
                return
        lst.append(dict(spec))

    def add_input(self, input: dict) -> None:  # noqa: A002 - Triton's parameter name
        self._add("input", input)

    def add_output(self, output: dict) -> None:
        self._add("output", output)


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [int(x) for x in v]
    return v


# ------------------------------------------------------------ model control (BLS)

def load_model(model_name: str, config: str = "", files: dict | None = None) -> None:
    """Load or reload a model of the server (explicit model control mode)."""
    _rt().ctrl("load", (model_name, config or "", dict(files or {})))


def unload_model(model_name: str) -> None:
    _rt().ctrl("unload", model_name)


def is_model_ready(model_name: str, model_version: str = "") -> bool:
    return bool(_rt().ctrl("ready", (model_name, str(model_version or ""))))


# ------------------------------------------------------------------ logging

class LogLevel:
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


class Logger:
    """Writes into the server's log (one line per call, tagged with the model)."""

    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE

    @staticmethod
    def log(message: str, level: int = LogLevel.INFO) -> None:
        rt = _runtime
        if rt is None:
            print(message, flush=True)
        else:
            rt.log(int(level), str(message))

    @staticmethod
    def log_info(message: str) -> None:
        Logger.log(message, LogLevel.INFO)

    @staticmethod
    def log_warn(message: str) -> None:
        Logger.log(message, LogLevel.WARNING)

    @staticmethod
    def log_error(message: str) -> None:
        Logger.log(message, LogLevel.ERROR)

    @staticmethod
    def log_verbose(message: str) -> None:
        Logger.log(message, LogLevel.VERBOSE)


# ------------------------------------------------------------------ metrics

_metric_ids = iter(range(1, 1 << 62))
_metric_lock = threading.Lock()


def _next_id() -> int:
    with _metric_lock:
        return next(_metric_ids)


class MetricFamily:
    """A custom metric family, exported on the server's metrics endpoint."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        if kind not in (0, 1, 2):
            raise TritonModelException("MetricFamily kind must be COUNTER, GAUGE or HISTOGRAM")
        self.name = name
        self.description = description
        self.kind = kind
        self._id = _next_id()
        _rt().ctrl("metric_family", (self._id, name, description, kind))

    def Metric(self, labels: dict | None = None, buckets: list | None = None) -> Metric:  # noqa: N802
        return Metric(self, labels, buckets)


class Metric:
    def __init__(self, family: MetricFamily, labels: dict | None = None,
                 buckets: list | None = None) -> None:
        if family.kind == MetricFamily.HISTOGRAM:
            if not buckets:
                raise TritonModelException("a histogram metric needs buckets")
            buckets = [float(b) for b in buckets]
        elif buckets is not None:
            raise TritonModelException("only histogram metrics take buckets")
        self._family = family
        self._id = _next_id()
        lab = tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items()))
        _rt().ctrl("metric", (self._id, family._id, lab, tuple(buckets or ())))

    def _update(self, op: str, value: float) -> None:
        _rt().metric_update(self._id, op, float(value))

    def increment(self, value: float) -> None:
        if self._family.kind == MetricFamily.HISTOGRAM:
            raise TritonModelException("histograms do not support increment; use observe")
        if self._family.kind == MetricFamily.COUNTER and value < 0:
            raise TritonModelException("a counter cannot decrease")
        self._update("inc", value)

    def set(self, value: float) -> None:
        if self._family.kind != MetricFamily.GAUGE:
            raise TritonModelException("only gauges can be set")
        self._update("set", value)

    def observe(self, value: float) -> None:
        if self._family.kind != MetricFamily.HISTOGRAM:
            raise TritonModelException("only histograms observe values")
        self._update("observe", value)

    def value(self) -> float:
        if self._family.kind == MetricFamily.HISTOGRAM:
            raise TritonModelException("histograms have no single value")
        return float(_rt().ctrl("metric_value", self._id))

