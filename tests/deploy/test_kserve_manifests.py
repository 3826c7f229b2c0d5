"""The KServe manifests under deploy/kserve/ against the schemas of KServe's own SDK.

deploy/kserve/schema/kserve.schema.json is generated (generate.py) from the model classes
of the KServe Python SDK and the Kubernetes Python client, both generated from those
projects' OpenAPI specs: every field must be one the CRD declares, with its type, and
the required ones present. What it cannot check: admission webhooks, values the API
server defaults, and the six types the SDK names without shipping (listed in the
schema's $comment), which are left unconstrained.
"""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from triton_core.cli import build_parser, options_from_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kserve"
SCHEMA = json.loads((DEPLOY / "schema" / "kserve.schema.json").read_text())
KINDS = {"ServingRuntime": "serving.kserve.io/v1alpha1", "InferenceService": "serving.kserve.io/v1beta1"}


def validator(kind: str) -> jsonschema.protocols.Validator:
    schema = dict(SCHEMA, **SCHEMA["roots"][kind])
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def manifest(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.mark.parametrize("name", ["servingruntime.yaml", "inferenceservice.yaml"])
def test_manifest_matches_kserve_schema(name):
    doc = manifest(name)
    assert doc["apiVersion"] == KINDS[doc["kind"]]
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator(doc["kind"]).iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize("change, message", [
    (lambda d: d["spec"]["containers"][0].update(readinessprobe={}), "'readinessprobe' was unexpected"),
    (lambda d: d["spec"]["containers"][0].pop("name"), "'name' is a required property"),
    (lambda d: d["spec"].update(protocolVersions="v2"), "'v2' is not of type 'array'"),
    (lambda d: d["spec"]["containers"][0]["ports"][0].update(containerPort="8080"),
     "'8080' is not of type 'integer'"),
])
def test_schema_catches_mistakes(change, message):
    doc = copy.deepcopy(manifest("servingruntime.yaml"))
    change(doc)
    assert any(message in e.message for e in validator("ServingRuntime").iter_errors(doc))


def test_runtime_and_service_agree():
    runtime, service = manifest("servingruntime.yaml"), manifest("inferenceservice.yaml")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}


def test_runtime_args_are_our_command_line():
    """KServe runs the container's args as the command: each must be a flag we accept."""
    container = manifest("servingruntime.yaml")["spec"]["containers"][0]
    assert container["args"][0] == "tritonserver"
    options = options_from_args(build_parser().parse_args(container["args"][1:]))
    assert options.model_repository == [Path("/mnt/models")]  # where KServe puts storageUri
    probe_port = container["readinessProbe"]["httpGet"]["port"]
    assert f"--http-port={probe_port}" in container["args"]
