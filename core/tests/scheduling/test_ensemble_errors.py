# ruff: noqa: E501  (model configs read best on one line each)
"""An ensemble's error names the ensemble, as Triton words it: "in ensemble '<name>', "
before the failing step's own message (once per level for nested ensembles)."""

import numpy as np
import pytest
from test_sequence_ensemble_cache import DAG_IN, DAG_OUT, DAG_STEPS, SCALE, ens_cfg

from expr_backend import ADD_SUB, make_server, write_model
from triton_core import TritonError

OUTER_STEPS = """
{ model_name: "a_ens" model_version: -1 input_map [{ key: "IN0" value: "X0" }, { key: "IN1" value: "X1" }]
  output_map [{ key: "SUM" value: "TOTAL" }, { key: "DIFF" value: "REST" }] }
"""
OUTER_IN = '{ name: "X0" data_type: TYPE_INT32 dims: [16] }, { name: "X1" data_type: TYPE_INT32 dims: [16] }'
OUTER_OUT = '{ name: "TOTAL" data_type: TYPE_INT32 dims: [16] }, { name: "REST" data_type: TYPE_INT32 dims: [16] }'


def test_a_failing_step_names_each_ensemble_around_it(tmp_path):
    write_model(tmp_path, "add", ADD_SUB)
    write_model(tmp_path, "scale", SCALE)
    write_model(tmp_path, "a_ens", ens_cfg(DAG_STEPS, DAG_IN, DAG_OUT))
    write_model(tmp_path, "outer", ens_cfg(OUTER_STEPS, OUTER_IN, OUTER_OUT))
    bad = np.full((1, 16), -1, np.int32)  # scale's fail_on value
    good = np.ones((1, 16), np.int32)
    with make_server(tmp_path) as s:
        with pytest.raises(TritonError) as step:
            s.model("scale").infer({"A": bad})
        with pytest.raises(TritonError) as ens:
            s.model("a_ens").infer({"IN0": bad, "IN1": good})
        assert ens.value.code is step.value.code
        assert ens.value.message == f"in ensemble 'a_ens', {step.value.message}"
        with pytest.raises(TritonError) as outer:
            s.model("outer").infer({"X0": good, "X1": bad})
        assert outer.value.message == (
            f"in ensemble 'outer', in ensemble 'a_ens', {step.value.message}")
        # the server goes on serving
        out = s.model("outer").infer({"X0": good, "X1": good})
        np.testing.assert_array_equal(out["TOTAL"], good * 20)
