"""MLServer's twin of bench/models_ours/add_py: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class AddModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        by_name = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        a = by_name["INPUT0"].astype(np.float32)
        b = by_name["INPUT1"].astype(np.float32)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output("OUTPUT0", a + b),
                     NumpyCodec.encode_output("OUTPUT1", a - b)],
        )
