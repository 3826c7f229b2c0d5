"""KServe v2 inference over HTTP: JSON and the binary tensor extension, both ways."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from ...config import ModelConfig
from ...conversion import lossless_array
from ...dtypes import DataType
from ...errors import TritonError
from ...request import InferenceRequest, InferenceResponse, RequestedOutput
from ...tensor import MAX_ELEMENTS, Tensor, element_count
from .json_codec import encode_json

_RESERVED_INPUT_PARAMS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def _bad(msg: str) -> TritonError:
    return TritonError.invalid_arg(msg)


_INT = frozenset((int,))  # JSON's integers (bool, a subclass of int, is not one here)


def _shape(value: Any, name: str) -> list[int]:
    if type(value) is not list or not _INT.issuperset(map(type, value)):
        raise _bad(f"Unable to parse 'shape' for input '{name}': expected an array of integers")
    if value and max(value) > MAX_ELEMENTS:
        raise _bad(f"Unable to parse 'shape' for input '{name}': a dimension exceeds int64")
    return value


# Triton's bound on the nesting of JSON 'data' (HTTP_MAX_JSON_NESTING_DEPTH): deeper data
# is refused before anything walks it
MAX_DATA_DEPTH = 100
# data nested deeper than this is flattened before numpy sees it (numpy 1.x's NPY_MAXDIMS)
_NUMPY_DIMS = 32


def _data_shape(name: str, data: Any) -> list[int]:
    """The shape of (possibly nested) JSON data, read along its first elements: O(depth).

    Regular data has exactly this shape; ragged data is refused when converted.
    """
    dims: list[int] = []
    x = data
    while isinstance(x, list):
        if len(dims) >= MAX_DATA_DEPTH - 1 and x:  # its elements would be at depth 100
            raise _bad(f"JSON nesting depth exceeds maximum allowed limit ({MAX_DATA_DEPTH}) "
                       f"in 'data' of input '{name}'")
        dims.append(len(x))
        if not x:
            break
        x = x[0]
    return dims or [1]  # a scalar is one element


def _flat(data: list, dims: list[int]) -> list:
    """Regular nested lists flattened level by level (C-speed joins, no per-element work)."""
    flat = data
    for _ in dims[1:]:
        if not all(isinstance(x, list) for x in flat):
            raise ValueError("ragged data")
        flat = [y for x in flat for y in x]
    if len(flat) != element_count(dims):
        raise ValueError("ragged data")
    return flat


def json_array(name: str, dt: DataType, data: Any) -> np.ndarray:
    """JSON data (a scalar or nested arrays) as an array of `dt`, keeping the nesting.

    Strict: integers must be integers in the datatype's range (no truncation of 1.5, no
    wrap-around), booleans booleans; BYTES elements strings (numbers become their text).
    """
    if dt in (DataType.FP16, DataType.BF16):
        raise _bad(f"datatype {dt.value} of input '{name}' must be sent as binary data")
    return _converted(name, dt, data, _data_shape(name, data) if isinstance(data, list) else [])


def _converted(name: str, dt: DataType, data: Any, dims: list[int]) -> np.ndarray:
    """json_array once the data's shape along its first elements is known."""
    try:
        if dt is DataType.BYTES:
            return _bytes_array(name, data, dims)
        if len(dims) > _NUMPY_DIMS:  # Triton reads any nesting in order: so do we
            data = _flat(data, dims)
        return lossless_array(dt, data)
    except TritonError:
        raise
    except (ValueError, TypeError, OverflowError) as e:
        raise _bad(f"unable to parse 'data' of input '{name}': {e}") from None


def _bytes_array(name: str, data: Any, dims: list[int]) -> np.ndarray:
    """An object array of bytes with the data's (regular) nesting."""
    flat: list[Any] = [data] if not dims else _flat(data, dims)
    kinds = set(map(type, flat))
    if kinds <= {str}:
        items = [x.encode("utf-8") for x in flat]
    elif kinds <= {str, int, float, bool}:
        items = [x.encode("utf-8") if type(x) is str else str(x).encode("utf-8") for x in flat]
    else:
        raise _bad(f"unable to parse 'data' of input '{name}': expected strings")
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr.reshape(dims) if len(dims) <= _NUMPY_DIMS else arr


def _json_tensor(name: str, dt: DataType, shape: list[int], data: Any) -> Tensor:
    """A tensor from JSON data (nested or flat), its element count checked against the
    shape's before any element is converted."""
    n = element_count(shape, name)
    size = dt.itemsize  # 0 for BYTES
    if size > 1 and n > MAX_ELEMENTS // size:
        raise _bad(  # Triton's words
            f"byte size overflow for input '{name}': element count ({n}) * data type size "
            f"({size}) exceeds maximum allowed size ({MAX_ELEMENTS})")
    if dt is DataType.FP16 or dt is DataType.BF16:
        raise _bad(f"datatype {dt.value} of input '{name}' must be sent as binary data")
    if type(data) is list and data and type(data[0]) is not list:
        dims = [len(data)]  # flat data, the common case: _data_shape's answer without the walk
    else:
        dims = _data_shape(name, data)
    got = element_count(dims)
    if got != n:
        raise _bad(
            f"unexpected number of elements for input '{name}': shape {shape} holds {n} "
            f"elements, the data has {got} (data shape {dims})"
        )
    arr = _converted(name, dt, data, dims if type(data) is list else [])
    if arr.size != n:  # ragged data that passed the count along its first elements
        raise _bad(
            f"unexpected number of elements for input '{name}': shape {shape} holds {n} "
            f"elements, the data has {arr.size}"
        )
    return Tensor(name, dt, shape, array=arr.reshape(shape))


def parse_request(
    model: str, version: int | None, header: dict[str, Any], binary: memoryview,
    shm: Any = None,
) -> tuple[InferenceRequest, bool]:
    """An InferenceRequest from the JSON header and the binary section.

    Returns the request and the request-level binary_data_output default.
    """
    if not isinstance(header, dict):
        raise _bad("the request body must be a JSON object")
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise _bad("'parameters' must be a JSON object")
    inputs_json = header.get("inputs")
    if not isinstance(inputs_json, list):
        raise _bad("Unable to parse 'inputs': expected an array")
    offset = 0
    inputs: dict[str, Tensor] = {}
    for inp in inputs_json:
        name = inp.get("name") if type(inp) is dict else None
        if type(name) is not str:
            raise _bad("Unable to parse 'name' of an input")
        if name in inputs:
            raise _bad(f"input '{name}' given more than once")
        wire = inp.get("datatype")
        if type(wire) is not str:
            raise _bad(f"Unable to parse 'datatype' for input '{name}'")
        dt = DataType.from_wire(wire)
        shape = _shape(inp.get("shape"), name)
        if shape and min(shape) < 0:
            raise _bad(f"input '{name}' has a negative dimension in {shape}")
        iparams = inp.get("parameters")
        if not iparams:  # none, or an empty value of any kind (as before: read as {})
            if "data" not in inp:
                raise _bad(f"input '{name}' has no 'data', 'binary_data_size' or shared memory")
            inputs[name] = _json_tensor(name, dt, shape, inp["data"])  # JSON's common case
            continue
        if not isinstance(iparams, dict):
            raise _bad(f"'parameters' of input '{name}' must be a JSON object")
        region = iparams.get("shared_memory_region")
        bsize = iparams.get("binary_data_size")
        has_data = "data" in inp
        if region is not None:
            if has_data or bsize is not None:
                raise _bad(f"input '{name}' cannot have both shared memory and data")
            if shm is None:
                raise TritonError.invalid_arg(
                    f"Unable to find system shared memory region: '{region}'")
            inputs[name] = shm.input_tensor(name, dt, shape, iparams, model)
            continue
        if bsize is not None:
            if has_data:
                raise _bad(f"input '{name}' cannot have both 'binary_data_size' and 'data'")
            if isinstance(bsize, bool) or not isinstance(bsize, int) or bsize < 0:
                raise _bad(f"invalid 'binary_data_size' for input '{name}'")
            if offset + bsize > len(binary):
                raise _bad(
                    f"unexpected size for input '{name}': binary_data_size {bsize} runs past "
                    f"the {len(binary) - offset} bytes left in the request body"
                )
            raw = binary[offset : offset + bsize]
            offset += bsize
            inputs[name] = Tensor.from_raw(name, dt, shape, raw)
        elif has_data:
            inputs[name] = _json_tensor(name, dt, shape, inp["data"])
        else:
            raise _bad(f"input '{name}' has no 'data', 'binary_data_size' or shared memory")
    if offset != len(binary):
        raise _bad(
            f"unexpected additional input data: {len(binary) - offset} bytes after the last "
            "binary input"
        )
    outputs = None
    if "outputs" in header:
        outs_json = header["outputs"]
        if not isinstance(outs_json, list):
            raise _bad("Unable to parse 'outputs': expected an array")
        outputs = []
        for o in outs_json:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise _bad("Unable to parse 'name' of a requested output")
            op = o.get("parameters") or {}
            if not isinstance(op, dict):
                raise _bad(f"'parameters' of output '{o['name']}' must be a JSON object")
            if not isinstance(op.get("binary_data", False), bool):
                raise _bad(f"'binary_data' of output '{o['name']}' must be a boolean")
            cc = op.get("classification", 0)
            if isinstance(cc, bool) or not isinstance(cc, int) or cc < 0:
                raise _bad(f"'classification' of output '{o['name']}' must be a non-negative integer")
            outputs.append(RequestedOutput(o["name"], op))
    binary_default = params.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise _bad("'binary_data_output' must be a boolean")
    req_params = {k: v for k, v in params.items() if k != "binary_data_output"}
    rid = header.get("id", "")
    if not isinstance(rid, str):
        raise _bad("'id' must be a string")
    req = InferenceRequest(model_name=model, model_version=version, id=rid, inputs=inputs,
                           outputs=outputs, parameters=req_params)
    apply_request_parameters(req)
    return req, binary_default


def apply_request_parameters(req: InferenceRequest, params: dict[str, Any] | None = None) -> None:
    """Request parameters with meaning (sequence, priority, timeout), from `params` or else
    the request's own."""
    p = req.parameters if params is None else params
    seq = p.get("sequence_id")
    if seq is not None:
        if isinstance(seq, bool) or not isinstance(seq, (int, str)) or (
                isinstance(seq, int) and not 0 <= seq < 2**64):
            raise _bad("'sequence_id' must be an unsigned integer or a string")
        req.correlation_id = seq
    if p.get("sequence_start"):
        req.flags |= 1
    if p.get("sequence_end"):
        req.flags |= 2
    if "priority" in p:
        pr = p["priority"]
        if isinstance(pr, bool) or not isinstance(pr, int) or pr < 0:
            raise _bad("'priority' must be a non-negative integer")
        req.priority = pr
    if "timeout" in p:
        t = p["timeout"]
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise _bad("'timeout' must be a non-negative integer (microseconds)")
        req.timeout_us = t


def raw_request(model: str, version: int | None, body: memoryview, cfg: ModelConfig) -> InferenceRequest:
    """Header length 0: the body is the one input's data, batch 1."""
    if len(cfg.input) != 1:
        # Triton's words (clients match on them), then ours
        raise _bad(
            f"Raw request must only have 1 input (found 1) to be deduced but got "
            f"{len(cfg.input)} inputs in '{model}' model configuration (a raw binary request, "
            "Inference-Header-Content-Length 0, carries the data of a model's one input)")
    inp = cfg.input[0]
    dt = inp.datatype
    dims = list(inp.dims)
    # Triton's checks, order and words (InferenceRequest::Normalize), then our detail
    if dims.count(-1) > 1:
        raise _bad(f"The shape of the raw input '{inp.name}' can not be deduced because there "
                   f"are more than one variable-sized dimension (model '{model}', dims {dims})")
    if dt is DataType.BYTES:
        if -1 in dims or element_count(dims) != 1:
            raise _bad(f"For BYTE datatype raw input '{inp.name}', the model must have input "
                       f"shape [1] (model '{model}', dims {dims}): the whole body is one element")
        # the body is the one element: Triton's layout gives it its 4-byte length first
        body = memoryview(struct.pack("<I", len(body)) + body)
        shape = dims
    elif -1 in dims:
        known = element_count([d for d in dims if d != -1])
        elems = len(body) // dt.itemsize
        if known == 0 or elems % known:
            raise _bad(f"raw binary request for '{model}': {len(body)} bytes do not fit input "
                       f"'{inp.name}' dims {dims}")
        shape = [elems // known if d == -1 else d for d in dims]
    else:
        shape = dims
    if cfg.max_batch_size > 0:
        shape = [1] + shape
    return InferenceRequest(model_name=model, model_version=version,
                            inputs={inp.name: Tensor.from_raw(inp.name, dt, shape, body)})


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_data(t: Tensor) -> list:
    arr = t.as_numpy().reshape(-1)
    if t.datatype is DataType.BYTES:
        try:
            return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr]
        except UnicodeDecodeError:
            # never altered silently: Triton writes the raw bytes (JSON its clients refuse)
            i = next(i for i, x in enumerate(arr)
                     if isinstance(x, bytes) and not _is_utf8(x))
            raise _bad(f"output '{t.name}': element {i} is not valid UTF-8, so it cannot be "
                       "sent as JSON; request the output with \"binary_data\": true") from None
    if t.datatype in (DataType.FP16, DataType.BF16):
        if t.datatype is DataType.BF16:
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(np.float32).tolist()
    return arr.tolist()


def build_response(
    resp: InferenceResponse, req: InferenceRequest, binary_default: bool, shm: Any = None,
    classify: Any = None,
) -> tuple[bytes, list[bytes | memoryview]]:
    """The JSON header and the binary chunks that follow it (empty for pure JSON)."""
    if not resp.parameters and _all_binary(req, binary_default, shm):  # no classification asked
        return _binary_response(resp, req, shm)
    chunks: list[bytes | memoryview] = []
    if req.outputs is None and not binary_default:  # every output as JSON data: plain JSON
        outs = [{"name": t.name, "datatype": t.datatype.value, "shape": list(t.shape),
                 "data": _json_data(t)} for t in resp.outputs]
        return _json_body(resp, outs), chunks
    wanted = {o.name: o for o in req.outputs} if req.outputs is not None else None
    outs = []
    for t in resp.outputs:
        ro = wanted.get(t.name) if wanted is not None else None
        if wanted is not None and ro is None:
            continue
        op = ro.parameters if ro is not None else {}
        if ro is not None and ro.classification and classify is not None:
            t = classify(t, ro.classification)
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype.value, "shape": list(t.shape)}
        if op.get("shared_memory_region") is not None:
            if shm is None:
                raise TritonError.invalid_arg(
                    f"Unable to find system shared memory region: '{op['shared_memory_region']}'")
            # Triton's response names no parameters for an output written to shared
            # memory: its C++ client reads "parameters" as the binary extension's.
            shm.write_output(t, op, ro.shm if ro is not None else None)
        elif op.get("binary_data", binary_default):
            raw = t.to_bytes()
            chunks.append(raw)
            entry["parameters"] = {"binary_data_size": len(raw)}
        else:
            entry["data"] = _json_data(t)
        outs.append(entry)
    return _json_body(resp, outs), chunks


def _json_body(resp: InferenceResponse, outs: list[dict[str, Any]]) -> bytes:
    body: dict[str, Any] = {"model_name": resp.model_name, "model_version": str(resp.model_version)}
    if resp.id:
        body["id"] = resp.id
    if resp.parameters:
        body["parameters"] = resp.parameters
    body["outputs"] = outs
    return encode_json(body)


_BINARY = {"binary_data": True}
SHM_KEYS = frozenset(("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"))
# JSON headers of responses whose outputs are all binary or in shared memory, by their
# content: the same model answering the same client repeats the same header (bounded:
# cleared when full)
_HEADERS: dict[tuple, bytes] = {}
_MAX_HEADERS = 1024


def _plain_output(params: dict[str, Any], shm: Any) -> bool:
    if params == _BINARY:
        return True
    return ("shared_memory_region" in params and shm is not None
            and params.keys() <= SHM_KEYS | {"binary_data"})


def _all_binary(req: InferenceRequest, binary_default: bool, shm: Any) -> bool:
    """Every output goes as binary data or into shared memory (no JSON, no classification)."""
    if req.outputs is None:
        return binary_default
    return all(_plain_output(o.parameters, shm) for o in req.outputs)


def _binary_response(resp: InferenceResponse, req: InferenceRequest, shm: Any
                     ) -> tuple[bytes, list[bytes | memoryview]]:
    wanted = None if req.outputs is None else {o.name: o for o in req.outputs}
    chunks: list[bytes | memoryview] = []
    sig = []
    for t in resp.outputs:
        if wanted is None:
            op = None
        else:
            ro = wanted.get(t.name)
            if ro is None:
                continue
            op = ro.parameters
        if op is not None and "shared_memory_region" in op:
            shm.write_output(t, op, ro.shm)
            sig.append((t.name, t.datatype, t.shape, -1))
            continue
        raw = t.to_bytes()
        chunks.append(raw)
        sig.append((t.name, t.datatype, t.shape, len(raw)))
    key = (resp.model_name, resp.model_version, resp.id, tuple(sig))
    header = _HEADERS.get(key)
    if header is None:
        body: dict[str, Any] = {"model_name": resp.model_name,
                                "model_version": str(resp.model_version)}
        if resp.id:
            body["id"] = resp.id
        outs = []
        for n, dt, shape, size in sig:
            entry: dict[str, Any] = {"name": n, "datatype": dt.value, "shape": list(shape)}
            if size >= 0:  # an output in shared memory names no parameters (see above)
                entry["parameters"] = {"binary_data_size": size}
            outs.append(entry)
        body["outputs"] = outs
        header = encode_json(body)
        if len(_HEADERS) >= _MAX_HEADERS:
            _HEADERS.clear()
        _HEADERS[key] = header
    return header, chunks
