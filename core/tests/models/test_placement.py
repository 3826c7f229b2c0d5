"""Instance placement: Triton's instance-group rules (KIND_AUTO, KIND_GPU, gpu ids, names),
as plain functions and through a server whose GPUs are given (no NVML needed)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from triton_core import abi, testing
from triton_core.config import parse_pbtxt
from triton_core.devices import GpuDevice, Gpus
from triton_core.errors import TritonError
from triton_core.models.defaults import complete_config
from triton_core.models.placement import (
    instance_count,
    normalize_instance_groups,
    plan_instances,
    validate_instance_groups,
)

IO = """
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def _normalized(groups: str, gpus: list[int], uses: bool = True):
    raw = parse_pbtxt(f'name: "m"\n{groups}\n{IO}')
    return complete_config(raw, "m", "b", (), "", gpus, uses)


def _plan(cfg) -> list[tuple[str, str, int]]:
    return [(p.name, p.kind, p.device_id) for p in plan_instances(cfg)]


def test_no_group_is_one_instance_named_after_the_model() -> None:
    assert _plan(_normalized("", [])) == [("m_0", "KIND_CPU", 0)]
    assert _plan(_normalized("", [0, 1])) == [("m_0", "KIND_GPU", 0), ("m_0", "KIND_GPU", 1)]


def test_unnamed_groups_are_named_by_position() -> None:
    cfg = _normalized("instance_group [ { kind: KIND_CPU count: 2 }, { name: \"g\" kind: KIND_CPU } ]",
                      [])
    assert [g.name for g in cfg.instance_group] == ["m_0", "g"]
    assert _plan(cfg) == [("m_0_0", "KIND_CPU", 0), ("m_0_1", "KIND_CPU", 0), ("g_0", "KIND_CPU", 0)]


def test_kind_gpu_count_per_listed_gpu_in_tritons_order() -> None:
    cfg = _normalized('instance_group [ { name: "g" kind: KIND_GPU count: 2 gpus: [ 1, 3 ] } ]',
                      [0, 1, 2, 3])
    # as Triton: for each index, one instance per GPU, all named <group>_<index>
    assert _plan(cfg) == [("g_0", "KIND_GPU", 1), ("g_0", "KIND_GPU", 3),
                          ("g_1", "KIND_GPU", 1), ("g_1", "KIND_GPU", 3)]
    assert instance_count(cfg) == 4


def test_kind_gpu_without_gpus_takes_every_supported_gpu() -> None:
    cfg = _normalized('instance_group [ { kind: KIND_GPU } ]', [2, 0])
    assert cfg.instance_group[0].gpus == [0, 2]
    assert _plan(cfg) == [("m_0_0", "KIND_GPU", 0), ("m_0_0", "KIND_GPU", 2)]


@pytest.mark.parametrize(("gpus", "uses", "listed", "kind"), [
    ([0], True, "", "KIND_GPU"),
    ([], True, "", "KIND_CPU"),  # no GPU here
    ([0], False, "", "KIND_CPU"),  # the backend runs on the CPU only
    ([0, 1], True, "gpus: [ 1 ]", "KIND_GPU"),
])
def test_kind_auto(gpus: list[int], uses: bool, listed: str, kind: str) -> None:
    cfg = _normalized(f"instance_group [ {{ kind: KIND_AUTO {listed} }} ]", gpus, uses)
    assert cfg.instance_group[0].kind == kind
    validate_instance_groups(cfg, gpus)  # whatever it became is valid


def test_kind_auto_listing_an_absent_gpu_becomes_cpu_and_fails_like_triton() -> None:
    cfg = _normalized("instance_group [ { kind: KIND_AUTO gpus: [ 1 ] } ]", [0], True)
    with pytest.raises(TritonError) as e:
        validate_instance_groups(cfg, [0])
    assert e.value.message == "instance group m_0 of model m has kind KIND_CPU but specifies one or more GPUs"


def test_a_gpu_id_that_does_not_exist_gets_tritons_words() -> None:
    cfg = _normalized('instance_group [ { name: "g" kind: KIND_GPU gpus: [ 0, 5 ] } ]', [0, 1])
    with pytest.raises(TritonError) as e:
        validate_instance_groups(cfg, [0, 1])
    assert e.value.code.name == "INVALID_ARG"
    assert e.value.message == (
        "instance group g of model m specifies invalid or unsupported gpu id 5. GPUs with at "
        "least the minimum required CUDA compute compatibility of 6.000000 are: 0, 1")


def test_kind_gpu_on_a_machine_without_gpus() -> None:
    cfg = _normalized('instance_group [ { kind: KIND_GPU } ]', [])
    with pytest.raises(TritonError) as e:
        validate_instance_groups(cfg, [])
    assert e.value.message == "instance group m_0 of model m has kind KIND_GPU but no GPUs are available"
    cfg = _normalized('instance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]', [])
    with pytest.raises(TritonError, match="invalid or unsupported gpu id 0.*are: $"):
        validate_instance_groups(cfg, [], 7.5)


def test_kind_gpu_with_no_gpus_listed_where_gpus_exist() -> None:
    cfg = _normalized('instance_group [ { kind: KIND_GPU } ]', [])  # normalized without GPUs
    with pytest.raises(TritonError, match="has kind KIND_GPU but specifies no GPUs"):
        validate_instance_groups(cfg, [0])


def test_normalize_is_idempotent() -> None:
    cfg = _normalized('instance_group [ { kind: KIND_AUTO count: 2 } ]', [0, 1])
    before = cfg.model_dump()
    normalize_instance_groups(cfg, [0, 1], True)
    assert cfg.model_dump() == before


# -- through a server: the manager's GPUs, the backend's flag, the InstanceContexts -------

def _recording_plugin(gpu: bool) -> tuple[types.ModuleType, list[abi.InstanceContext]]:
    seen: list[abi.InstanceContext] = []

    class Instance(abi.Instance):
        def execute(self, requests, timer):  # never called here
            raise AssertionError

    class Model(abi.Model):
        def __init__(self, ctx: abi.ModelContext) -> None:
            self.config = ctx.config

        def create_instance(self, ctx: abi.InstanceContext) -> abi.Instance:
            seen.append(ctx)
            return Instance()

    class Backend(abi.Backend):
        def load_model(self, ctx: abi.ModelContext) -> abi.Model:
            return Model(ctx)

    @abi.hookimpl
    def triton_backends():
        yield abi.BackendSpec(name="rec", factory=lambda ctx: Backend(), gpu=gpu)

    mod = types.ModuleType(f"rec_plugin_{gpu}")
    mod.triton_backends = triton_backends  # type: ignore[attr-defined]
    return mod, seen


def _gpu(i: int, cc: tuple[int, int] = (9, 0)) -> GpuDevice:
    return GpuDevice(i, i, f"GPU-{i}", "test GPU", cc, 1 << 30, f"0000:0{i}:00.0")


def _serve(tmp_path: Path, groups: str, gpus: list[GpuDevice], backend_gpu: bool = True,
           **options: object):
    d = tmp_path / "m"
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text(f'backend: "rec"\n{groups}\n{IO}')
    plugin, seen = _recording_plugin(backend_gpu)
    server = testing.make_server(tmp_path, plugin, model_control_mode="explicit", **options)
    server.manager.gpus = Gpus(gpus)
    server.start()
    return server, seen


def test_server_places_kind_auto_on_every_gpu(tmp_path: Path) -> None:
    server, seen = _serve(tmp_path, "", [_gpu(0), _gpu(1)])
    try:
        server.load_model("m")
        assert [(c.name, c.kind, c.device_id) for c in seen] == [
            ("m_0", "KIND_GPU", 0), ("m_0", "KIND_GPU", 1)]
        group = server.model_config_json("m")["instance_group"][0]
        assert group["kind"] == "KIND_GPU" and group["gpus"] == [0, 1]
    finally:
        server.stop()


def test_server_keeps_cpu_backends_on_the_cpu(tmp_path: Path) -> None:
    server, seen = _serve(tmp_path, "instance_group [ { count: 2 } ]", [_gpu(0)], backend_gpu=False)
    try:
        server.load_model("m")
        assert [(c.name, c.kind, c.device_id) for c in seen] == [
            ("m_0_0", "KIND_CPU", 0), ("m_0_1", "KIND_CPU", 0)]
    finally:
        server.stop()


def test_server_refuses_an_absent_gpu_and_keeps_serving(tmp_path: Path) -> None:
    server, seen = _serve(tmp_path, "instance_group [ { kind: KIND_GPU gpus: [ 1 ] } ]", [_gpu(0)])
    try:
        with pytest.raises(TritonError) as e:
            server.load_model("m")
        assert "instance group m_0 of model m specifies invalid or unsupported gpu id 1. " \
               "GPUs with at least the minimum required CUDA compute compatibility of " \
               "6.000000 are: 0" in e.value.message
        assert seen == [] and server.is_live()
    finally:
        server.stop()


def test_min_compute_capability_hides_older_gpus(tmp_path: Path) -> None:
    server, seen = _serve(tmp_path, "instance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]",
                          [_gpu(0, (7, 0)), _gpu(1, (9, 0))], min_supported_compute_capability=8.0)
    try:
        with pytest.raises(TritonError, match="compatibility of 8.000000 are: 1$"):
            server.load_model("m")
    finally:
        server.stop()


def test_a_mac_serves_kind_gpu_on_its_apple_gpu(tmp_path: Path, monkeypatch) -> None:
    """KIND_GPU and KIND_AUTO mean the Mac's GPU (MPS, Metal, Core ML), which NVML cannot
    see: before, such groups failed with 'no GPUs are available' on every Mac."""
    import sys

    from triton_core import devices

    monkeypatch.setattr(devices.sys, "platform", "darwin")
    monkeypatch.setattr(devices.platform, "machine", lambda: "arm64")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    d = tmp_path / "m"
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text(f'backend: "rec"\ninstance_group [ {{ kind: KIND_GPU }} ]\n{IO}')
    plugin, seen = _recording_plugin(True)
    server = testing.make_server(tmp_path, plugin, model_control_mode="explicit")
    server.manager.gpus = Gpus()
    server.start()
    try:
        server.load_model("m")
        assert [(c.kind, c.device_id) for c in seen] == [("KIND_GPU", 0)]
    finally:
        server.stop()
