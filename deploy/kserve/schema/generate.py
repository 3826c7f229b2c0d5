"""Writes kserve.schema.json: JSON Schemas of KServe's ServingRuntime and InferenceService,
taken from KServe's own published Python SDK (its models are generated from KServe's OpenAPI
spec) and, for the Kubernetes types they embed (V1Container, V1ObjectMeta, ...), from the
Kubernetes Python client (generated from Kubernetes' OpenAPI spec).

The wheels are read as files (their generated model sources are parsed, not imported), so
neither package needs installing:

    pip download --no-deps -d /tmp/wheels kserve==0.21.0 kubernetes==37.0.3
    python deploy/kserve/schema/generate.py /tmp/wheels/kserve-0.21.0-*.whl \\
        /tmp/wheels/kubernetes-37.0.3-*.whl > deploy/kserve/schema/kserve.schema.json

Each model class becomes an object schema: its properties from `attribute_map` (JSON names)
typed from `openapi_types`, no other property allowed, and as required the attributes its
constructor sets without an `is not None` guard (how openapi-generator marks required ones
in KServe's models) or, in the Kubernetes client's pydantic models, the fields with no default.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from pathlib import Path

ROOTS = {"ServingRuntime": "V1alpha1ServingRuntime", "InferenceService": "V1beta1InferenceService"}
PRIMITIVES = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
              "float": {"type": "number"}, "object": {}, "datetime": {"type": "string"},
              "date": {"type": "string"}}


def model_classes(wheel: Path, folder: str) -> dict[str, ast.ClassDef]:
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(folder) and name.endswith(".py"):
                for node in ast.parse(z.read(name)).body:
                    if isinstance(node, ast.ClassDef):
                        out[node.name] = node
    return out


def _dict_attr(cls: ast.ClassDef, attr: str) -> dict[str, str]:
    for node in cls.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []  # `x: ClassVar[...] = {...}`
        if any(isinstance(t, ast.Name) and t.id == attr for t in targets) and node.value is not None:
            return ast.literal_eval(node.value)
    return {}


def _required_fields(cls: ast.ClassDef) -> list[str]:
    """Pydantic-style models (the Kubernetes client): `name: T = Field(...)` with no default."""
    out = []
    for node in cls.body:
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "Field"
                and not any(k.arg in ("default", "default_factory") for k in node.value.keywords)
                and not ast.unparse(node.annotation).startswith("Optional[")):
            out.append(node.target.id)
    return out


def _required(cls: ast.ClassDef) -> list[str]:
    """Attributes the constructor assigns unguarded: `self.x = x` directly in __init__'s body
    (openapi-generator's classic models, KServe's), or pydantic fields without a default."""
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    out: list[str] = []
    if init is None:
        return _required_fields(cls)
    for stmt in init.body:
        if (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Attribute)
                and isinstance(stmt.value, ast.Name) and stmt.targets[0].attr == stmt.value.id
                and isinstance(stmt.targets[0].value, ast.Name) and stmt.targets[0].value.id == "self"):
            out.append(stmt.value.id)
    return out


def type_schema(t: str, pending: list[str]) -> dict:
    t = t.strip()
    if t in PRIMITIVES:
        return dict(PRIMITIVES[t])
    m = re.fullmatch(r"[lL]ist\[(.+)\]", t)
    if m:
        return {"type": "array", "items": type_schema(m.group(1), pending)}
    m = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", t)
    if m:
        return {"type": "object", "additionalProperties": type_schema(m.group(1) or m.group(2), pending)}
    pending.append(t)
    return {"$ref": f"#/$defs/{t}"}


def build(kserve_wheel: Path, kubernetes_wheel: Path) -> dict:
    classes = model_classes(kubernetes_wheel, "kubernetes/client/models/")
    classes.update(model_classes(kserve_wheel, "kserve/models/"))
    defs: dict[str, dict] = {}
    missing: set[str] = set()
    pending = list(ROOTS.values())
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        cls = classes.get(name)
        if cls is None:  # named by the SDK but not shipped in it: left unconstrained, and listed
            missing.add(name)
            defs[name] = {}
            continue
        types, json_names = _dict_attr(cls, "openapi_types"), _dict_attr(cls, "attribute_map")
        props = {json_names[attr]: type_schema(t, pending) for attr, t in types.items()}
        schema = {"type": "object", "properties": props, "additionalProperties": False}
        required = [json_names[a] for a in _required(cls) if a in json_names]
        if required:
            schema["required"] = required
        defs[name] = schema
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": f"generated by generate.py from {kserve_wheel.name} and {kubernetes_wheel.name}; "
                        f"types not in either, left unconstrained: {', '.join(sorted(missing)) or 'none'}",
            "roots": {kind: {"$ref": f"#/$defs/{name}"} for kind, name in ROOTS.items()},
            "$defs": dict(sorted(defs.items()))}


if __name__ == "__main__":
    json.dump(build(Path(sys.argv[1]), Path(sys.argv[2])), sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
