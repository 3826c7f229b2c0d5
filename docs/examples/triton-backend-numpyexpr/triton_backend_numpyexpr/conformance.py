"""What numpyexpr claims to the conformance suite, and its conformance models."""

from __future__ import annotations

from pathlib import Path

from triton_core.conformance_spec import (
    ADD_SUB,
    ALL_DTYPES,
    DECOUPLED_REPEAT,
    IDENTITY,
    Capabilities,
    ConformanceSpec,
    ModelRole,
    role_config,
    standard_roles,
    write_config,
)

MAX_BATCH_SIZE = 8

CAPABILITIES = Capabilities(
    dtypes=ALL_DTYPES,        # numpy holds every Triton type (BF16 as raw uint16)
    batching=True,
    max_batch_size=MAX_BATCH_SIZE,
    bytes_any=True,           # BYTES stay bytes objects
    decoupled=True,           # the `responses` expression
    sequence=False,
    gpu=False,
    notes={"sequence": "numpyexpr keeps no state between requests",
           "gpu": "numpy runs on the CPU"},
)

# The expressions of each role; the suite computes the expected values itself.
EXPRESSIONS = {
    IDENTITY: {"OUTPUT0": "INPUT0"},
    ADD_SUB: {"OUTPUT0": "INPUT0 + INPUT1", "OUTPUT1": "INPUT0 - INPUT1"},
    DECOUPLED_REPEAT: {"responses": "IN.size", "OUT": "IN[i:i + 1]",
                       "IDX": "np.array([i], dtype=np.uint32)"},
}


def build_models(repo: Path) -> dict[str, ModelRole]:
    roles = standard_roles(CAPABILITIES)
    for name, role in roles.items():
        batch = MAX_BATCH_SIZE if role.role in (IDENTITY, ADD_SUB) else 0
        folder = write_config(repo, name, role_config(
            role, backend="numpyexpr", max_batch_size=batch, parameters=EXPRESSIONS[role.role]))
        (folder / "1").mkdir(exist_ok=True)
        (folder / "1" / "model.expr").write_text("# numpyexpr: the expressions are in config.pbtxt\n")
    return roles


def conformance_spec() -> ConformanceSpec:
    return ConformanceSpec(backend="numpyexpr", capabilities=CAPABILITIES, build_models=build_models)
