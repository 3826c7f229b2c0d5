"""Server replicas on a local Ray Serve: Triton's HTTP API through Ray's proxy.

Runs where ray[serve] is installed (pip install 'triton-core[ray]'); CI does not install it
yet (it would move protobuf to 7: see docs/scaling-out.md). The backend is the tutorial's
numpyexpr, found by its entry point in each replica's process.
"""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from triton_core.testing import free_port, wait_until

serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed (the triton-core[ray] extra)")
ray = pytest.importorskip("ray")
pytest.importorskip("triton_backend_numpyexpr", reason="the numpyexpr example backend is not installed")

from triton_core.frontends.ray_serve import GRPC_SERVICER_FUNCTION, triton_app  # noqa: E402

CONFIG = """
backend: "numpyexpr"
max_batch_size: 8
input [{ name: "A" data_type: TYPE_FP32 dims: [4] }, { name: "B" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "SUM" data_type: TYPE_FP32 dims: [4] }]
parameters { key: "SUM" value { string_value: "A + B" } }
"""


@pytest.fixture(scope="module")
def ray_url(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    (repo / "add" / "1").mkdir(parents=True)
    (repo / "add" / "config.pbtxt").write_text(CONFIG)
    (repo / "add" / "1" / "model.expr").write_text("# in config.pbtxt\n")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port, grpc_port = free_port(), free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port},
                    grpc_options={"port": grpc_port, "grpc_servicer_functions": [GRPC_SERVICER_FUNCTION]})
        serve.run(triton_app(2, num_cpus=0.5, model_repository=[repo]), name="triton", route_prefix="/")
        yield f"127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def _infer(client, module=httpclient):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    inputs = [module.InferInput("A", [2, 4], "FP32"), module.InferInput("B", [2, 4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    np.testing.assert_array_equal(client.infer("add", inputs).as_numpy("SUM"), 2 * a)


def _replica_actors():
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::triton#")}


def _running_replicas():
    status = serve.status().applications["triton"].deployments["triton"]
    return status.replica_states.get("RUNNING", 0)


def test_infers_through_ray_proxy_on_both_replicas(ray_url):
    client = httpclient.InferenceServerClient(ray_url[0])
    assert client.is_server_ready() and client.is_model_ready("add")
    for _ in range(40):
        _infer(client)
    # Each replica answers statistics for itself: both must have served (2 items a request).
    seen = set()

    def both_seen():
        seen.add(client.get_inference_statistics("add")["model_stats"][0]["inference_count"])
        return any(a + b == 80 and a and b for a in seen for b in seen)

    wait_until(both_seen, "statistics from two replicas that together counted every request")


def test_grpc_through_ray_grpc_proxy(ray_url):
    client = grpcclient.InferenceServerClient(ray_url[1])
    assert client.is_server_live() and client.is_model_ready("add")
    assert client.get_model_metadata("add").inputs[0].name == "A"
    _infer(client, grpcclient)
    with pytest.raises(InferenceServerException) as e:  # our status and words, through Ray
        client.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert "Request for unknown model: 'nope' is not found" in e.value.message()


def test_killed_replica_is_replaced(ray_url):
    client = httpclient.InferenceServerClient(ray_url[0])
    before = _replica_actors()
    assert len(before) == 2
    victim = sorted(before)[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    wait_until(lambda: victim not in _replica_actors() and len(_replica_actors()) == 2
               and _running_replicas() == 2, "Ray to replace the killed replica", timeout=120)
    _infer(client)
