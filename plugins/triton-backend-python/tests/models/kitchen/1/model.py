"""No config.pbtxt: auto_complete_config defines it. Touches most pb_utils helpers; async execute."""

import json

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        cfg = auto_complete_model_config
        cfg.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [-1]})
        cfg.add_input({"name": "TEXT", "data_type": "TYPE_STRING", "dims": [-1], "optional": True})
        cfg.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [-1]})
        cfg.add_output({"name": "INFO", "data_type": "TYPE_STRING", "dims": [1]})
        cfg.set_max_batch_size(0)
        return cfg

    def initialize(self, args):
        self.args = args
        self.model_config = json.loads(args["model_config"])
        pb_utils.Logger.log_info("kitchen initialized")
        pb_utils.Logger.log_warn("kitchen warning")
        pb_utils.Logger.log_verbose("kitchen verbose")

    async def execute(self, requests):
        responses = []
        cfg = self.model_config
        for request in requests:
            t = pb_utils.get_input_tensor_by_name(request, "IN")
            arr = t.as_numpy()
            # DLPack both ways
            via_dlpack = pb_utils.Tensor.from_dlpack("OUT", t.to_dlpack())
            back = np.from_dlpack(via_dlpack)
            out = pb_utils.Tensor("OUT", (back * 2).astype(np.float32))
            text = pb_utils.get_input_tensor_by_name(request, "TEXT")
            ser = pb_utils.serialize_byte_tensor(np.array([b"ab", b"", b"xyz"], dtype=object))
            info = {
                "args": sorted(self.args),
                "model_name": self.args["model_name"],
                "model_version": self.args["model_version"],
                "kind": self.args["model_instance_kind"],
                "in_dtype": t.triton_dtype(),
                "in_shape": t.shape(),
                "is_cpu": t.is_cpu(),
                "name": t.name(),
                "np_type": pb_utils.triton_string_to_numpy("TYPE_FP32").__name__,
                "in_cfg": pb_utils.get_input_config_by_name(cfg, "IN")["data_type"],
                "out_cfg": pb_utils.get_output_config_by_name(cfg, "OUT")["data_type"],
                "decoupled": pb_utils.using_decoupled_model_transaction_policy(cfg),
                "roundtrip": [x.decode() for x in pb_utils.deserialize_bytes_tensor(ser)],
                "text": None if text is None else [x.decode() for x in text.as_numpy().reshape(-1)],
                "request_id": request.request_id(),
                "correlation_id": request.correlation_id(),
                "flags": request.flags(),
                "parameters": json.loads(request.parameters()),
                "requested": request.requested_output_names(),
                "cancelled": request.is_cancelled(),
                "dlpack_same": bool(np.array_equal(back, arr)),
            }
            info_t = pb_utils.Tensor("INFO", np.array([json.dumps(info).encode()], dtype=np.object_))
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[out, info_t], parameters={"answered_by": "kitchen", "n": 1}))
        return responses
