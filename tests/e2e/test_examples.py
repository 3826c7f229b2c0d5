import json
import os
import subprocess

import numpy as np
import pytest
import tritonclient.http as httpclient

from e2e_server import BIN, EXAMPLES, start_server, stop_server


@pytest.mark.parametrize("binary", [True, False])
def test_simple_sum_and_difference(examples_server, binary):
    c = httpclient.InferenceServerClient(examples_server.http_url)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 2, dtype=np.int32)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"),
              httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
    r = c.infer("simple", inputs, outputs=outputs)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)


def test_auto_completed_model(examples_server):
    c = httpclient.InferenceServerClient(examples_server.http_url)
    cfg = c.get_model_config("identity_fp32")
    assert cfg["max_batch_size"] == 4 and "dynamic_batching" in cfg
    x = np.random.default_rng(1).random((3, 5), dtype=np.float32)
    i = httpclient.InferInput("INPUT0", [3, 5], "FP32")
    i.set_data_from_numpy(x)
    r = c.infer("identity_fp32", [i])
    out = r.as_numpy(cfg["output"][0]["name"])
    assert out.shape == (3, 5)


def test_string_model(examples_server):
    c = httpclient.InferenceServerClient(examples_server.http_url)
    cfg = c.get_model_config("simple_string")
    a = np.array([[str(i).encode() for i in range(16)]], dtype=object)
    b = np.array([[b"1"] * 16], dtype=object)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "BYTES"),
              httpclient.InferInput("INPUT1", [1, 16], "BYTES")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    r = c.infer("simple_string", inputs)
    out0 = r.as_numpy(cfg["output"][0]["name"])
    assert [int(x) for x in out0.reshape(-1)] == [i + 1 for i in range(16)]


def test_classification(examples_server):
    c = httpclient.InferenceServerClient(examples_server.http_url)
    cfg = c.get_model_config("classifier")
    inp, out = cfg["input"][0], cfg["output"][0]
    shape = ([1] if cfg["max_batch_size"] else []) + inp["dims"]
    x = np.array([0.1, 3.0, 0.2, 1.0], dtype=np.float32).reshape(shape)
    i = httpclient.InferInput(inp["name"], shape, "FP32")
    i.set_data_from_numpy(x)
    r = c.infer("classifier", [i], outputs=[httpclient.InferRequestedOutput(out["name"], class_count=2)])
    top = [s.decode() for s in r.as_numpy(out["name"]).reshape(-1)]
    assert top[0].split(":")[1] == "1" and top[1].split(":")[1] == "3"
    assert len(top[0].split(":")) == 3  # value:index:label


def test_metadata_ready_stats(examples_server):
    c = httpclient.InferenceServerClient(examples_server.http_url)
    assert c.is_server_ready()
    md = c.get_model_metadata("simple")
    assert md["platform"] == "onnxruntime_onnx"
    assert md["inputs"][0]["shape"] == [-1, 16]
    stats = c.get_inference_statistics("simple")["model_stats"][0]
    assert stats["name"] == "simple"


def _env():
    env = dict(os.environ)
    env.pop("TRITON_CORE_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


def test_triton_backends_lists_onnxruntime():
    out = subprocess.run([str(BIN / "triton"), "backends", "--json"], capture_output=True, text=True,
                         check=True, env=_env())
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["onnxruntime"]["status"] == "available"
    assert rows["onnxruntime"]["distribution"] == "triton-backend-onnx"


def test_triton_check(tmp_path):
    ok = subprocess.run([str(BIN / "triton"), "check", str(EXAMPLES)], capture_output=True, text=True,
                        env=_env())
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "repo" / "broken"
    (bad / "1").mkdir(parents=True)
    (bad / "1" / "model.onnx").write_bytes(b"not an onnx file")
    (bad / "config.pbtxt").write_text('platform: "onnxruntime_onnx" max_batch_size: -2')
    res = subprocess.run([str(BIN / "triton"), "check", str(tmp_path / "repo")], capture_output=True,
                         text=True, env=_env())
    assert res.returncode == 1 and "FAIL broken" in res.stdout


def test_refused_flag(tmp_path):
    res = subprocess.run([str(BIN / "tritonserver"), "--model-repository", str(EXAMPLES),
                          "--repoagent-directory", "/tmp"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0 and "--repoagent-directory is not supported" in res.stderr


def test_exit_on_error_and_keep_serving(tmp_path):
    repo = tmp_path / "repo"
    import shutil
    shutil.copytree(EXAMPLES / "simple", repo / "simple")
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"garbage")
    r = start_server(tmp_path, "--model-repository", str(repo), wait_ready=False)
    assert r.proc.wait(60) != 0
    r = start_server(tmp_path, "--model-repository", str(repo), "--exit-on-error=false",
                     "--strict-readiness=false")
    try:
        c = httpclient.InferenceServerClient(r.http_url)
        assert c.is_model_ready("simple") and not c.is_model_ready("broken")
        idx = {m["name"]: m for m in c.get_model_repository_index()}
        assert idx["broken"]["state"] == "UNAVAILABLE" and idx["broken"]["reason"]
    finally:
        assert stop_server(r) == 0


def test_grpc_and_metrics(examples_server):
    import urllib.request

    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(examples_server.grpc_url)
    assert c.is_server_live() and c.is_model_ready("simple")
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
              grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    r = c.infer("simple", inputs)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a * 2)
    text = urllib.request.urlopen(f"http://127.0.0.1:{examples_server.metrics}/metrics").read().decode()
    assert 'nv_inference_request_success{model="simple",version="1"}' in text
    assert "nv_cpu_utilization" in text
