"""The CUDA shared-memory registry: Triton's checks and words, bounds, leases and the
one namespace with system shared memory. CUDA is faked at the CudaRuntime boundary with
host memory (what the registry does with CUDA's answers); the real calls run in
core/tests/gpu (marked gpu)."""

from __future__ import annotations

import gc

import pytest
from fake_cuda import ONE_GPU, HostCuda

from triton_core.devices import Gpus
from triton_core.errors import ErrorCode, TritonError
from triton_core.memory.cuda_shm import CudaSharedMemoryRegistry


@pytest.fixture
def cuda() -> HostCuda:
    return HostCuda()


@pytest.fixture
def reg(cuda: HostCuda) -> CudaSharedMemoryRegistry:
    return CudaSharedMemoryRegistry(ONE_GPU, cuda, taken=lambda n: n == "sys_region")


def test_register_status_unregister(reg: CudaSharedMemoryRegistry, cuda: HostCuda) -> None:
    h = cuda.allocate(64)
    reg.register("r", h, 0, 64)
    assert reg.status() == [{"name": "r", "device_id": 0, "byte_size": 64}]
    assert reg.status("r") == [{"name": "r", "device_id": 0, "byte_size": 64}]
    ptr = next(iter(cuda.open))
    reg.unregister("r")
    assert reg.status() == [] and cuda.closed == [ptr]
    reg.unregister("r")  # unknown: fine, as Triton
    reg.unregister_all()


def test_status_of_an_unknown_region(reg: CudaSharedMemoryRegistry) -> None:
    with pytest.raises(TritonError) as e:
        reg.status("nope")
    assert e.value.code is ErrorCode.NOT_FOUND
    assert e.value.message == "Unable to find cuda shared memory region: 'nope'"
    with pytest.raises(TritonError, match="registered as system shared memory, not CUDA"):
        reg.status("sys_region")


def test_one_namespace_with_system_shared_memory(reg: CudaSharedMemoryRegistry,
                                                 cuda: HostCuda) -> None:
    h = cuda.allocate(64)
    reg.register("r", h, 0, 64)
    for name in ("r", "sys_region"):
        with pytest.raises(TritonError) as e:
            reg.register(name, cuda.allocate(8), 0, 8)
        assert e.value.code is ErrorCode.ALREADY_EXISTS
        assert e.value.message == f"shared memory region '{name}' already in manager"


@pytest.mark.parametrize(("handle", "device", "size", "why"), [
    (b"", 0, 8, "raw_handle holds 0 bytes"),
    (b"\0" * 64, 0, 8, "invalid argument"),  # no allocation behind it
    (None, 1, 8, "device 1 is not a GPU of this server (GPUs: 0)"),
    (None, 0, 65, "byte_size 65 is larger than the 64 bytes allocated"),
    (None, -1, 8, "must be non-negative"),
])
def test_register_refused_with_tritons_words(reg: CudaSharedMemoryRegistry, cuda: HostCuda,
                                             handle, device, size, why) -> None:
    h = cuda.allocate(64) if handle is None else handle
    with pytest.raises(TritonError) as e:
        reg.register("r", h, device, size)
    assert e.value.code is ErrorCode.INVALID_ARG
    # the words Triton's QA tests match on, then ours
    assert e.value.message.startswith("failed to register shared memory region 'r': invalid args")
    assert why in e.value.message
    assert reg.status() == [] and cuda.open == set()  # a refused handle is not left open


def test_without_a_gpu(cuda: HostCuda) -> None:
    reg = CudaSharedMemoryRegistry(Gpus([]), cuda)
    assert reg.status() == []
    reg.unregister_all()
    reg.unregister("anything")
    with pytest.raises(TritonError, match=r"failed to register shared memory region 'r': "
                                          r"invalid args: device 0 is not a GPU of this server "
                                          r"\(GPUs: none\)"):
        reg.register("r", cuda.allocate(8), 0, 8)


def test_bounds_read_and_write(reg: CudaSharedMemoryRegistry, cuda: HostCuda) -> None:
    reg.register("r", cuda.allocate(64), 0, 32)  # registered window smaller than allocation
    reg.write("r", 4, b"abcd")
    assert bytes(reg.read("r", 4, 4)) == b"abcd"
    with pytest.raises(TritonError, match="^Invalid offset for shared memory region: 'r'$"):
        reg.read("r", 33, 0)
    with pytest.raises(TritonError, match="^Invalid offset for shared memory region: 'r'$"):
        reg.read("r", 32, 0)  # the end is out, as Triton counts it
    with pytest.raises(TritonError,
                       match=r"^Invalid offset \+ byte size for shared memory region: 'r'$"):
        reg.read("r", 30, 4)
    with pytest.raises(TritonError, match=r"^Invalid offset \+ byte size"):
        reg.write("r", 30, b"abcd")
    with pytest.raises(TritonError, match="^Unable to find shared memory region: 'x'$"):
        reg.read("x", 0, 1)


def test_unregister_while_leased_closes_after_the_request(reg: CudaSharedMemoryRegistry,
                                                          cuda: HostCuda) -> None:
    reg.register("r", cuda.allocate(16), 0, 16)
    lease = reg.acquire("r")
    reg.unregister("r")
    assert "r" not in reg and cuda.closed == []  # the name is free, the mapping is not
    lease.write(0, b"ok")  # the request still writes where it was bound
    lease.release()
    assert len(cuda.closed) == 1
    lease.release()  # idempotent
    assert len(cuda.closed) == 1


def test_a_dropped_lease_releases_itself(reg: CudaSharedMemoryRegistry, cuda: HostCuda) -> None:
    reg.register("r", cuda.allocate(16), 0, 16)
    reg.acquire("r")  # dropped at once
    gc.collect()
    reg.unregister_all()
    assert len(cuda.closed) == 1


def test_max_regions(cuda: HostCuda) -> None:
    reg = CudaSharedMemoryRegistry(ONE_GPU, cuda, max_regions=1)
    reg.register("a", cuda.allocate(8), 0, 8)
    with pytest.raises(TritonError) as e:
        reg.register("b", cuda.allocate(8), 0, 8)
    assert e.value.code is ErrorCode.UNAVAILABLE
