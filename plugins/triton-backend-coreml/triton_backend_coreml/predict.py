"""The Core ML call itself, shared by in-process instances and worker processes."""

from __future__ import annotations

from typing import Any


def load_compiled(path: str, compute_units: str, function_name: str, hints: dict[str, object]):
    """A CompiledMLModel (macOS). ``hints``: optimization hints by Core ML key, plain values."""
    import coremltools as ct

    kwargs: dict[str, Any] = {}
    if function_name:
        kwargs["function_name"] = function_name
    if hints:
        kwargs["optimization_hints"] = coreml_hints(hints)
    return ct.models.CompiledMLModel(path, compute_units=ct.ComputeUnit[compute_units], **kwargs)


def coreml_hints(hints: dict[str, object]) -> dict[str, object]:
    """Optimization hints as coremltools takes them (its enum types)."""
    import coremltools as ct

    out: dict[str, object] = {}
    for key, value in hints.items():
        if key == "specializationStrategy":
            out[key] = ct.SpecializationStrategy[str(value)]
        elif key == "reshapeFrequency":
            out[key] = ct.ReshapeFrequency[str(value)]
        else:
            out[key] = value
    return out


def run_call(mlmodel: Any, payload: dict | list, states: list[dict] | None) -> Any:
    """One predict call: a dict (or a list of dicts for a batch prediction); with ``states``
    (one sample), a fresh MLState is written, used and read back: (outputs, {state: value})."""
    if states is None:
        return mlmodel.predict(payload)
    (values,) = states
    state = mlmodel.make_state()
    for name, value in values.items():
        state.write_state(name, value)
    out = mlmodel.predict(payload, state=state)
    return out, {name: state.read_state(name) for name in values}
