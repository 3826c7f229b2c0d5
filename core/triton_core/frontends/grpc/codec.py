"""Conversions between inference.* protobuf messages and the core's protocol-neutral types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...dtypes import DataType
from ...errors import TritonError
from ...model_version import model_version
from ...protos import service_pb2 as pb
from ...request import InferenceRequest, InferenceResponse, RequestedOutput
from ...tensor import Tensor, element_count

# Request flags (TRITONSERVER_RequestFlag).
SEQUENCE_START = 1
SEQUENCE_END = 2

_UINT64_MIN = 1 << 63

# ---------------------------------------------------------------------------------
# InferParameter <-> python values


def param_value(p: pb.InferParameter) -> Any:
    which = p.WhichOneof("parameter_choice")
    if which is None:
        return None
    return getattr(p, which)


def params_to_dict(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    return {k: param_value(v) for k, v in params.items()}


def set_param(dst: pb.InferParameter, value: Any) -> None:
    if isinstance(value, (bool, np.bool_)):
        dst.bool_param = bool(value)
    elif isinstance(value, (int, np.integer)):
        v = int(value)
        if v >= _UINT64_MIN:
            dst.uint64_param = v
        else:
            dst.int64_param = v
    elif isinstance(value, (float, np.floating)):
        dst.double_param = float(value)
    elif isinstance(value, bytes):
        dst.string_param = value.decode("utf-8", errors="replace")
    else:
        dst.string_param = str(value)


def fill_params(dst: Any, params: Mapping[str, Any]) -> None:
    for k, v in params.items():
        set_param(dst[k], v)


# ---------------------------------------------------------------------------------
# typed contents (InferTensorContents)

_CONTENTS_FIELD = {
    DataType.BOOL: "bool_contents",
    DataType.INT8: "int_contents",
    DataType.INT16: "int_contents",
    DataType.INT32: "int_contents",
    DataType.INT64: "int64_contents",
    DataType.UINT8: "uint_contents",
    DataType.UINT16: "uint_contents",
    DataType.UINT32: "uint_contents",
    DataType.UINT64: "uint64_contents",
    DataType.FP32: "fp32_contents",
    DataType.FP64: "fp64_contents",
    DataType.BYTES: "bytes_contents",
}


def _has_contents(t: pb.ModelInferRequest.InferInputTensor) -> bool:
    if not t.HasField("contents"):
        return False
    c = t.contents
    return any(len(getattr(c, f)) for f in _CONTENTS_FIELD.values())


def _tensor_from_contents(
    t: pb.ModelInferRequest.InferInputTensor, dt: DataType, shape: tuple[int, ...], model: str
) -> Tensor:
    field = _CONTENTS_FIELD.get(dt)
    if field is None:
        raise TritonError.invalid_arg(
            f"{dt.value} input '{t.name}' for model '{model}' cannot be sent in the typed contents "
            "fields: use raw_input_contents")
    values = getattr(t.contents, field)
    if any(d < 0 for d in shape):
        raise TritonError.invalid_arg(f"input '{t.name}' has a negative dimension in {list(shape)}")
    n = element_count(shape)
    if len(values) != n:
        raise TritonError.invalid_arg(
            f"unexpected number of elements for input '{t.name}' for model '{model}': "
            f"expected {n} for shape {list(shape)}, got {len(values)} in {field}")
    for other in _CONTENTS_FIELD.values():
        if other != field and len(getattr(t.contents, other)):
            raise TritonError.invalid_arg(
                f"unexpected contents field '{other}' for {dt.value} input '{t.name}' for model "
                f"'{model}': expected '{field}'")
    if dt is DataType.BYTES:
        arr = np.empty(n, dtype=object)
        arr[:] = list(values)
        arr = arr.reshape(shape)
    else:
        try:
            arr = np.array(values, dtype=dt.numpy).reshape(shape)
        except OverflowError:
            raise TritonError.invalid_arg(
                f"a value of input '{t.name}' for model '{model}' is out of range for {dt.value}") from None
    return Tensor(t.name, dt, shape, array=arr)


# ---------------------------------------------------------------------------------
# ModelInferRequest -> InferenceRequest


def _request_params(req: InferenceRequest, params: dict[str, Any]) -> None:
    """Move the parameters Triton gives meaning to into the request's fields."""
    for key in ("sequence_id", "sequence_start", "sequence_end", "priority", "timeout"):
        if key not in params:
            continue
        v = params.pop(key)
        if key == "sequence_id":
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise TritonError.invalid_arg("invalid value type for 'sequence_id' parameter, "
                                              "expected int64_param, uint64_param or string_param")
            req.correlation_id = v
        elif key in ("sequence_start", "sequence_end"):
            if not isinstance(v, bool):
                raise TritonError.invalid_arg(
                    f"invalid value type for '{key}' parameter, expected bool_param")
            if v:
                req.flags |= SEQUENCE_START if key == "sequence_start" else SEQUENCE_END
        else:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise TritonError.invalid_arg(
                    f"invalid value for '{key}' parameter, expected a non-negative int64_param")
            if key == "priority":
                req.priority = v
            else:
                req.timeout_us = v


def decode_request(msg: pb.ModelInferRequest, shm: Any = None) -> InferenceRequest:
    """Build the core request; raw contents are wrapped without a copy.

    ``shm`` is the server's SharedMemoryIO (None while client shared memory is off).
    """
    model = msg.model_name
    params = params_to_dict(msg.parameters) if msg.parameters else {}
    req = InferenceRequest(model_name=model, model_version=model_version(msg.model_version), id=msg.id)
    if params:
        params.pop("triton_enable_empty_final_response", None)
        _request_params(req, params)
        req.parameters = params
    raw = msg.raw_input_contents
    n_raw = len(raw)
    if n_raw > len(msg.inputs):
        raise TritonError.invalid_arg(
            f"expected {len(msg.inputs)} raw_input_contents, one per input, but got {n_raw} "
            f"for model '{model}'")
    inputs = req.inputs
    for i, t in enumerate(msg.inputs):
        dt = DataType.from_wire(t.datatype)
        shape = tuple(t.shape)
        tparams = params_to_dict(t.parameters) if t.parameters else None
        region = tparams.get("shared_memory_region") if tparams else None
        if region is not None:
            if n_raw or _has_contents(t):
                raise TritonError.invalid_arg(
                    f"input '{t.name}' for model '{model}' has data in the request and "
                    "shared_memory_region: give one of them")
            if shm is None:
                raise _no_shm(region)
            tensor = shm.input_tensor(t.name, dt, list(shape), tparams, model)
        elif i < n_raw:
            if _has_contents(t):
                raise TritonError.invalid_arg(
                    f"contents field must not be specified when using raw_input_contents for "
                    f"'{t.name}' for model '{model}'")
            tensor = Tensor.from_raw(t.name, dt, shape, memoryview(raw[i]))
        elif _has_contents(t):
            tensor = _tensor_from_contents(t, dt, shape, model)
        else:
            raise TritonError.invalid_arg(
                f"unable to find data for input tensor '{t.name}' for model '{model}' in request.")
        if tparams:
            tensor.parameters = tparams
        if t.name in inputs:
            raise TritonError.invalid_arg(f"input '{t.name}' for model '{model}' is given twice")
        inputs[t.name] = tensor
    if msg.outputs:
        req.outputs = [
            RequestedOutput(o.name, params_to_dict(o.parameters) if o.parameters else {})
            for o in msg.outputs
        ]
        if shm is not None:  # output regions are resolved (leased) now, not at completion
            shm.bind_outputs(req)
    return req


# ---------------------------------------------------------------------------------
# shared memory: server.shm_io (triton_core.memory.io.SharedMemoryIO) when --allow-client-shm


def _no_shm(region: object) -> TritonError:
    return TritonError.invalid_arg(f"Unable to find system shared memory region: '{region}'")


# ---------------------------------------------------------------------------------
# InferenceResponse -> ModelInferResponse


def _raw_bytes(t: Tensor) -> bytes:
    arr = t._array  # noqa: SLF001 - the fast path: one copy from the backend's array
    if arr is not None and t.datatype is not DataType.BYTES and t.datatype is not DataType.BF16:
        if arr.dtype != t.datatype.numpy:
            arr = arr.astype(t.datatype.numpy)
        return arr.tobytes()
    data = t.to_bytes()
    return data if isinstance(data, bytes) else bytes(data)


def encode_response(
    resp: InferenceResponse,
    requested: list[RequestedOutput] | None = None,
    shm: Any = None,
    classify: Any = None,
) -> pb.ModelInferResponse:
    """Outputs always go raw (as Triton); ``classify(tensor, top_n)`` for classification."""
    msg = pb.ModelInferResponse(model_name=resp.model_name, model_version=str(resp.model_version),
                                id=resp.id)
    if resp.parameters:
        fill_params(msg.parameters, resp.parameters)
    wanted = {o.name: o for o in requested} if requested else None
    raws = []
    for t in resp.outputs:
        ro = wanted.get(t.name) if wanted else None
        if ro is not None and ro.parameters:
            if ro.classification and classify is not None:
                t = classify(t, ro.classification)
            if "shared_memory_region" in ro.parameters:
                if shm is None:
                    raise _no_shm(ro.parameters["shared_memory_region"])
                o = msg.outputs.add(name=t.name, datatype=t.datatype.value, shape=t.shape)
                fill_params(o.parameters, shm.write_output(t, ro.parameters, ro.shm))
                raws.append(b"")  # keeps raw_output_contents aligned with outputs
                continue
        o = msg.outputs.add(name=t.name, datatype=t.datatype.value, shape=t.shape)
        if t.parameters:
            fill_params(o.parameters, {k: v for k, v in t.parameters.items()
                                       if isinstance(v, (bool, int, float, str))})
        raws.append(_raw_bytes(t))
    msg.raw_output_contents.extend(raws)
    return msg


# ---------------------------------------------------------------------------------
# statistics dict -> ModelStatisticsResponse


def _dur(dst: pb.StatisticDuration, d: Mapping[str, int] | None) -> None:
    if d:
        dst.count = int(d.get("count", 0))
        dst.ns = int(d.get("ns", 0))


def statistics_to_proto(stats: dict) -> pb.ModelStatisticsResponse:
    out = pb.ModelStatisticsResponse()
    for m in stats.get("model_stats", []):
        ms = out.model_stats.add(
            name=m["name"], version=str(m["version"]),
            last_inference=int(m.get("last_inference", 0)),
            inference_count=int(m.get("inference_count", 0)),
            execution_count=int(m.get("execution_count", 0)),
        )
        inf = m.get("inference_stats", {})
        for key in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                    "cache_hit", "cache_miss"):
            _dur(getattr(ms.inference_stats, key), inf.get(key))
        for b in m.get("batch_stats", []):
            bs = ms.batch_stats.add(batch_size=int(b["batch_size"]))
            for key in ("compute_input", "compute_infer", "compute_output"):
                _dur(getattr(bs, key), b.get(key))
        for mu in m.get("memory_usage", []):
            ms.memory_usage.add(type=str(mu.get("type", "")), id=int(mu.get("id", 0)),
                                byte_size=int(mu.get("byte_size", 0)))
        for key, rs in (m.get("response_stats") or {}).items():
            dst = ms.response_stats[key]
            for f in ("compute_infer", "compute_output", "success", "fail", "empty_response", "cancel"):
                _dur(getattr(dst, f), rs.get(f))
    return out
