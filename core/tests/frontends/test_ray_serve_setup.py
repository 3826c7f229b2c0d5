"""What `triton serve --ray` decides before Ray is involved (Ray need not be installed)."""

import sys

import pytest

from triton_core import TritonError
from triton_core.frontends.ray_serve import autoscaling_of, gpus_per_replica, ray_parser, triton_app
from triton_core.options import ServerOptions

GPU_MODEL = """
backend: "expr"
max_batch_size: 8
instance_group [{ count: 2 kind: KIND_GPU gpus: [0, 1] }, { count: 1 kind: KIND_CPU }]
"""
ONE_GPU_MODEL = """
backend: "expr"
instance_group [{ count: 3 kind: KIND_GPU gpus: [1] }]
"""


def test_gpus_per_replica_counts_kind_gpu_instances(tmp_path):
    def repo(*configs):
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        for i, config in enumerate(configs):
            (root / f"m{i}" / "1").mkdir(parents=True)
            (root / f"m{i}" / "config.pbtxt").write_text(config)
        return ServerOptions(model_repository=[root])

    assert gpus_per_replica(repo('backend: "expr"\n')) == 0.0
    assert gpus_per_replica(repo(ONE_GPU_MODEL)) == 1.0  # 3 instances share device 1
    assert gpus_per_replica(repo(GPU_MODEL, ONE_GPU_MODEL)) == 2.0  # devices 0 and 1


def test_autoscaling_flags():
    parse = ray_parser().parse_known_args
    assert autoscaling_of(parse(["--ray", "--replicas", "3"])[0]) is None
    assert autoscaling_of(parse(["--min-replicas", "1", "--max-replicas", "4"])[0]) == {
        "min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2.0}
    with pytest.raises(TritonError, match="need 0 <= min <= max"):
        autoscaling_of(parse(["--min-replicas", "5", "--max-replicas", "2"])[0])


def test_without_ray_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(TritonError, match=r"pip install 'triton-core\[ray\]'"):
        triton_app(2, model_repository=[tmp_path])
