"""Reading and writing ModelConfig: config.pbtxt (protobuf text format) and JSON.

Parsing goes through Triton's own ModelConfig protobuf message (shipped in
tritonclient), so field names, enums and nesting are checked exactly as Triton
checks them; pydantic then checks values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import FieldDescriptor
from pydantic import ValidationError

from ..errors import TritonError
from ..protos import model_config_pb2
from .hints import parse_error_hint
from .model_config import ModelConfig

_INT64_TYPES = {
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT64,
}


def _ints_from_strings(value: Any, desc: Any) -> Any:
    """proto3 JSON writes 64-bit integers as strings; Triton writes numbers."""
    if not isinstance(value, dict):
        return value
    for key, v in value.items():
        field = desc.fields_by_name.get(key)
        if field is None:
            continue
        if field.message_type is not None:
            mt = field.message_type
            if mt.GetOptions().map_entry:
                vf = mt.fields_by_name["value"]
                if vf.message_type is not None:
                    for k in v:
                        v[k] = _ints_from_strings(v[k], vf.message_type)
                elif vf.cpp_type in _INT64_TYPES:
                    for k in v:
                        v[k] = int(v[k])
            elif isinstance(v, list):
                value[key] = [_ints_from_strings(x, mt) for x in v]
            else:
                value[key] = _ints_from_strings(v, mt)
        elif field.cpp_type in _INT64_TYPES:
            value[key] = [int(x) for x in v] if isinstance(v, list) else int(v)
    return value


def _from_proto(msg: model_config_pb2.ModelConfig, where: str) -> ModelConfig:
    data = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    data = _ints_from_strings(data, model_config_pb2.ModelConfig.DESCRIPTOR)
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise TritonError.invalid_arg(f"{where}: field '{field}': {err['msg']}") from None


def parse_pbtxt(text: str, where: str = "config.pbtxt") -> ModelConfig:
    msg = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        hint = parse_error_hint(text, str(e), e.GetLine(), e.GetColumn())
        raise TritonError.invalid_arg(f"{where}: {e}" + (f" ({hint})" if hint else "")) from None
    return _from_proto(msg, where)


def parse_config_json(data: str | dict, where: str = "config JSON") -> ModelConfig:
    """A ModelConfig from JSON (load API overrides): proto JSON, checked by the message."""
    try:
        obj = json.loads(data) if isinstance(data, str) else data
    except json.JSONDecodeError as e:
        raise TritonError.invalid_arg(f"{where}: not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise TritonError.invalid_arg(f"{where}: expected a JSON object")
    msg = model_config_pb2.ModelConfig()
    try:
        json_format.ParseDict(obj, msg)
    except json_format.ParseError as e:
        hint = parse_error_hint("", str(e))
        raise TritonError.invalid_arg(f"{where}: {e}" + (f" ({hint})" if hint else "")) from None
    return _from_proto(msg, where)


def load_config_file(path: Path) -> ModelConfig:
    try:
        text = path.read_text()
    except OSError as e:
        raise TritonError.invalid_arg(f"cannot read {path}: {e.strerror}") from None
    return parse_pbtxt(text, str(path))


def config_to_proto(config: ModelConfig) -> model_config_pb2.ModelConfig:
    msg = model_config_pb2.ModelConfig()
    data = config.model_dump(mode="json", exclude_none=True)
    json_format.ParseDict(data, msg, ignore_unknown_fields=True)
    return msg


def config_to_json_dict(config: ModelConfig) -> dict[str, Any]:
    """The config as Triton's model-config endpoint returns it: every field, 64-bit ints as numbers."""
    msg = config_to_proto(config)
    data = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _ints_from_strings(data, model_config_pb2.ModelConfig.DESCRIPTOR)
