"""Triton's GPU flags: accepted with Triton's meaning and syntax."""

from __future__ import annotations

import pytest

from triton_core.cli import build_parser, options_from_args

REPO = ["--model-repository", "/nonexistent"]


def _opts(*args: str):
    return options_from_args(build_parser().parse_args([*REPO, *args]))


def test_defaults_are_tritons() -> None:
    o = _opts()
    assert o.min_supported_compute_capability == 6.0
    assert o.cuda_memory_pool_byte_size == {}
    assert o.pinned_memory_pool_byte_size == 256 * 1024 * 1024
    assert build_parser().parse_args(REPO).allow_gpu_metrics is True


def test_gpu_flags_parse() -> None:
    o = _opts("--min-supported-compute-capability", "8.0",
              "--cuda-memory-pool-byte-size", "0:1024", "--cuda-memory-pool-byte-size", "1:2048",
              "--pinned-memory-pool-byte-size", "0", "--allow-gpu-metrics", "false")
    assert o.min_supported_compute_capability == 8.0
    assert o.cuda_memory_pool_byte_size == {0: 1024, 1: 2048}
    assert o.pinned_memory_pool_byte_size == 0


@pytest.mark.parametrize("bad", ["1024", "a:1", "0:-1", "0:"])
def test_a_bad_cuda_pool_is_refused_with_the_syntax(bad: str) -> None:
    with pytest.raises(SystemExit, match="<GPU device ID>:<pool byte size>"):
        _opts("--cuda-memory-pool-byte-size", bad)
