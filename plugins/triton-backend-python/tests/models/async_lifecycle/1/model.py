"""initialize, execute and finalize all coroutines: OUT = IN + what initialize awaited."""

import asyncio

import numpy as np

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def initialize(self, args: dict[str, str]) -> None:
        await asyncio.sleep(0)
        self.offset = np.float32(1.0)

    async def execute(self, requests: list) -> list:
        await asyncio.sleep(0)
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() + self.offset)])
            for r in requests]

    async def finalize(self) -> None:
        await asyncio.sleep(0)
