"""BLS: calls other models of the same server and reports what came back as JSON."""

import asyncio
import json

import numpy as np

import triton_python_backend_utils as pb_utils


def _json(resp):
    if resp.has_error():
        return {"error": resp.error().message(), "code": resp.error().code()}
    return {t.name(): t.as_numpy().tolist() for t in resp.output_tensors()}


class TritonPythonModel:
    def execute(self, requests):
        return [self.one(r) for r in requests]

    def one(self, request):
        mode = pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0].decode()
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        b = np.ones((1, 16), dtype=np.int32)
        if mode == "onnx":
            r = pb_utils.InferenceRequest(
                model_name="simple", requested_output_names=["OUTPUT0", "OUTPUT1"],
                inputs=[pb_utils.Tensor("INPUT0", a), pb_utils.Tensor("INPUT1", b)]).exec()
            out = _json(r)
        elif mode == "traced":  # the BLS request traced as a child of this one
            r = pb_utils.InferenceRequest(
                model_name="simple", requested_output_names=["OUTPUT0"], trace=request.trace(),
                inputs=[pb_utils.Tensor("INPUT0", a), pb_utils.Tensor("INPUT1", b)]).exec()
            out = _json(r)
        elif mode == "onnx_one_output":
            r = pb_utils.InferenceRequest(
                model_name="simple", requested_output_names=["OUTPUT1"],
                inputs=[pb_utils.Tensor("INPUT0", a), pb_utils.Tensor("INPUT1", b)]).exec()
            out = _json(r)
        elif mode == "decoupled":
            got = []
            for r in pb_utils.InferenceRequest(
                    model_name="repeat", requested_output_names=["OUT", "IDX"],
                    inputs=[pb_utils.Tensor("IN", np.array([5, 6, 7], dtype=np.int32))]
            ).exec(decoupled=True):
                if r.has_error():
                    got.append("error: " + r.error().message())
                elif r.output_tensors():
                    got.append(int(pb_utils.get_output_tensor_by_name(r, "OUT").as_numpy()[0]))
                else:
                    got.append("final")
            out = got
        elif mode == "async":
            out = asyncio.run(self.two_async())
        elif mode == "missing":
            out = _json(pb_utils.InferenceRequest(
                model_name="no_such_model", requested_output_names=["X"],
                inputs=[pb_utils.Tensor("X", a)]).exec())
        elif mode == "timeout":
            out = _json(pb_utils.InferenceRequest(
                model_name="hang", requested_output_names=["Y"], timeout=300000,
                inputs=[pb_utils.Tensor("X", np.array([1.0], dtype=np.float32))]).exec())
        elif mode == "control":
            out = {"before": pb_utils.is_model_ready("strings")}
            pb_utils.unload_model("strings")
            out["unloaded"] = pb_utils.is_model_ready("strings")
            pb_utils.load_model("strings")
            out["reloaded"] = pb_utils.is_model_ready("strings")
            try:
                pb_utils.load_model("no_such_model")
            except pb_utils.TritonModelException as e:
                out["load_error"] = str(e)
        else:
            raise pb_utils.TritonModelException(f"unknown mode {mode}")
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("OUT", np.array([json.dumps(out).encode()], dtype=np.object_))])

    async def two_async(self):
        def req(v):
            x = np.full((1, 16), v, dtype=np.float32)
            return pb_utils.InferenceRequest(
                model_name="add_sub", requested_output_names=["OUTPUT0"],
                inputs=[pb_utils.Tensor("INPUT0", x), pb_utils.Tensor("INPUT1", x)])
        r1, r2 = await asyncio.gather(req(1.0).async_exec(), req(2.0).async_exec())
        return [_json(r1)["OUTPUT0"][0][0], _json(r2)["OUTPUT0"][0][0]]
