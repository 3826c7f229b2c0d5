"""The tutorial's model, served over HTTP by the backend registered directly."""

import numpy as np
import triton_backend_numpyexpr.plugin as plugin
import tritonclient.http as httpclient

from triton_core.testing import make_server, serving_http, wait_until

CONFIG = """
backend: "numpyexpr"
max_batch_size: 8
input [{ name: "A" data_type: TYPE_FP32 dims: [4] }, { name: "B" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "SUM" data_type: TYPE_FP32 dims: [4] }]
parameters { key: "SUM" value { string_value: "A + B" } }
dynamic_batching { }
"""


def write_models(repo):
    (repo / "add" / "1").mkdir(parents=True)
    (repo / "add" / "config.pbtxt").write_text(CONFIG)
    (repo / "add" / "1" / "model.expr").write_text("# the expressions are in config.pbtxt\n")


def test_add(tmp_path):
    write_models(tmp_path)
    server = make_server(tmp_path, plugin, model_control_mode="explicit", load_model=["*"])
    server.start()
    try:
        with serving_http(server) as url:  # "127.0.0.1:<port>"
            client = httpclient.InferenceServerClient(url)
            wait_until(lambda: client.is_model_ready("add"), "the model ready", 10)
            a = np.arange(4, dtype=np.float32).reshape(1, 4)
            b = np.full((1, 4), 0.5, dtype=np.float32)
            inputs = [httpclient.InferInput("A", [1, 4], "FP32"), httpclient.InferInput("B", [1, 4], "FP32")]
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(b)
            result = client.infer("add", inputs)
            np.testing.assert_array_equal(result.as_numpy("SUM"), a + b)
    finally:
        server.stop()
