"""The system shared-memory registry: Triton's errors, edges, leases and leaks."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triton_core.errors import ErrorCode, TritonError
from triton_core.memory import shm
from triton_core.memory.registry import SystemSharedMemoryRegistry

SIZE = 4096


@pytest.fixture
def region(shm_key: str) -> Iterator[shm.SharedMemoryRegion]:
    # Created like tritonclient >= 2.52 (Python's SharedMemory): OS name "/" + key.
    with shm.SharedMemoryRegion.create("/" + shm_key, SIZE, own=False) as r:
        yield r


@pytest.fixture
def registry() -> Iterator[SystemSharedMemoryRegistry]:
    reg = SystemSharedMemoryRegistry()
    yield reg
    reg.close()


def _code(fn, *args) -> ErrorCode:  # type: ignore[no-untyped-def]
    with pytest.raises(TritonError) as info:
        fn(*args)
    return info.value.code


def test_register_status_view_unregister(registry, region, shm_key) -> None:  # type: ignore[no-untyped-def]
    registry.register("in", shm_key, 16, 64)
    assert registry.status() == [
        {"name": "in", "key": shm_key, "offset": 16, "byte_size": 64}
    ]
    assert registry.status("in") == registry.status()
    region.buffer(16, 8)[:] = np.arange(2, dtype=np.float32).tobytes()
    view = registry.view("in", 0, 8)
    np.testing.assert_array_equal(np.frombuffer(view, np.float32), [0.0, 1.0])
    registry.view("in", 8, 4)[:] = b"out!"  # outputs are written in place
    assert bytes(region.buffer(24, 4)) == b"out!"
    del view
    registry.unregister("in")
    assert registry.status() == []
    registry.unregister("in")  # unknown names are not an error (as Triton)


def test_errors_carry_triton_codes_and_messages(registry, region, shm_key) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TritonError) as info:
        registry.status("nope")
    assert info.value.code is ErrorCode.NOT_FOUND
    assert info.value.message == "Unable to find system shared memory region: 'nope'"
    assert _code(registry.view, "nope", 0, 1) is ErrorCode.NOT_FOUND

    registry.register("r", shm_key, 0, 128)
    with pytest.raises(TritonError) as info:
        registry.register("r", shm_key, 0, 128)
    assert info.value.code is ErrorCode.ALREADY_EXISTS
    assert info.value.message == "shared memory region 'r' already in manager"

    with pytest.raises(TritonError) as info:
        registry.register("missing", "tc_no_such_key_x", 0, 8)
    assert info.value.code is ErrorCode.INTERNAL
    assert (
        "Unable to open shared memory region: 'tc_no_such_key_x'" in info.value.message
    )
    assert "No such file or directory" in info.value.message

    with pytest.raises(TritonError) as info:
        registry.register("big", shm_key, 0, region.size + 1)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert (
        info.value.message
        == "failed to register shared memory region 'big': invalid args"
    )
    assert "big" not in registry


@pytest.mark.parametrize(
    "key",
    [
        "triton_python_backend_shm_region_1",
        "/triton_python_backend_shm_region_x",
        "tritoncore_arena",
    ],
)
def test_reserved_keys_are_refused(registry, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TritonError) as info:
        registry.register("r", key, 0, 8)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert "reserved prefix" in info.value.message


@pytest.mark.parametrize(
    ("offset", "size"),
    [
        (-1, 8),
        (0, -1),
        (SIZE, 1),
        (SIZE + 1, 0),
        (1, SIZE),
        (2**63, 2**63),
        (2**64, 0),
        (True, 1),
        (0.5, 1),
    ],
)
def test_register_bad_offsets_and_sizes(
    registry, region, shm_key, offset, size
) -> None:  # type: ignore[no-untyped-def]
    assert _code(registry.register, "r", shm_key, offset, size) is ErrorCode.INVALID_ARG
    assert registry.status() == []


def test_register_at_the_edges(registry, region, shm_key) -> None:  # type: ignore[no-untyped-def]
    n = region.size
    registry.register("all", shm_key, 0, n)
    registry.register("tail", shm_key, n - 1, 1)
    registry.register("empty", shm_key, n, 0)
    assert len(registry.view("all", 0, n)) == n
    assert len(registry.view("tail", 0, 1)) == 1
    assert len(registry.view("empty", 0, 0)) == 0


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    reg_off=st.integers(0, 64),
    reg_size=st.integers(0, 64),
    off=st.integers(-2, 140),
    size=st.integers(-2, 140),
)
def test_view_bounds_property(
    registry, region, shm_key, reg_off, reg_size, off, size
) -> None:  # type: ignore[no-untyped-def]
    registry.unregister("p")
    registry.register("p", shm_key, reg_off, reg_size)
    region.buffer(0, 128)[:] = bytes(range(128))
    inside = 0 <= off and 0 <= size and off + size <= reg_size
    if inside:
        assert bytes(registry.view("p", off, size)) == bytes(
            range(reg_off + off, reg_off + off + size)
        )
    else:
        with pytest.raises(TritonError) as info:
            registry.view("p", off, size)
        assert info.value.code is ErrorCode.INVALID_ARG
        assert "for shared memory region: 'p'" in info.value.message


def test_unregister_while_leased_defers_unmap(registry, region, shm_key) -> None:  # type: ignore[no-untyped-def]
    registry.register("r", shm_key, 0, 64)
    internal = registry._regions["r"]
    with registry.lease("r") as lease:
        view = lease.view(0, 4)
        registry.unregister("r")
        assert "r" not in registry and registry.status() == []
        assert _code(registry.view, "r", 0, 1) is ErrorCode.NOT_FOUND
        assert internal.shm.mapped  # still mapped for the in-flight request
        view[:] = b"late"  # and usable
        lease.view(4, 4)[:] = b"ok!!"
        registry.register("r", shm_key, 0, 64)  # the name is free again
    assert not internal.shm.mapped  # the last lease unmapped it
    assert bytes(region.buffer(0, 8)) == b"lateok!!"
    del view


def test_lease_of_unknown_region(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TritonError) as info, registry.lease("nope"):
        pass
    assert info.value.code is ErrorCode.NOT_FOUND


def test_region_unlinked_by_client_while_registered(registry, shm_key) -> None:  # type: ignore[no-untyped-def]
    r = shm.SharedMemoryRegion.create(shm_key, 64, own=False)
    r.buffer(0, 2)[:] = b"hi"
    registry.register("r", shm_key, 0, 64)
    r.unlink()
    r.unmap()
    assert bytes(registry.view("r", 0, 2)) == b"hi"  # the mapping outlives the name
    registry.unregister("r")


def test_unregister_all(registry, region, shm_key) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        registry.register(f"r{i}", shm_key, 0, 8)
    registry.unregister_all()
    assert registry.status() == []


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc (Linux)")
def test_register_unregister_does_not_leak(registry, region, shm_key) -> None:  # type: ignore[no-untyped-def]
    def cycle(i: int) -> None:
        registry.register("leak", shm_key, 0, 64)
        with registry.lease("leak") as lease:
            lease.view(0, 4)[:] = i.to_bytes(4, "little")
        assert bytes(registry.view("leak", 0, 4)) == i.to_bytes(4, "little")
        with registry.lease("leak"):
            registry.unregister("leak")
        # failures must not leak either
        with pytest.raises(TritonError):
            registry.register("bad", shm_key, 0, SIZE * 2)

    cycle(0)  # warm up lazily created objects
    gc.collect()
    fds, maps = _fds(), _maps()
    for i in range(200):
        cycle(i)
    gc.collect()
    assert _fds() == fds
    assert _maps() == maps


def test_the_servers_own_segments_are_refused_whatever_their_name(registry, shm_key) -> None:  # type: ignore[no-untyped-def]
    """Refused by identity (the object's st_dev/st_ino), not by a reserved prefix: a
    client watching /dev/shm must not map the python backend's arenas, whatever their name."""
    own = shm.SharedMemoryRegion.create(shm_key, 64)  # a segment the server made
    try:
        assert shm.is_server_segment(own)
        for key in (shm_key, "/" + shm_key):
            with pytest.raises(TritonError, match="server's own shared memory segments") as info:
                registry.register("steal", key, 0, 64)
            assert info.value.code is ErrorCode.INVALID_ARG
        assert registry.status() == []
    finally:
        own.unlink()
        own.unmap()
    assert not shm.is_server_segment(own)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="truncates through /dev/shm")
def test_a_truncated_region_reads_as_an_error_not_sigbus(registry, region, shm_key) -> None:  # type: ignore[no-untyped-def]
    registry.register("r", shm_key, 8, 64)
    assert bytes(registry.view("r", 0, 4)) == b"\0" * 4
    with registry.lease("r") as held:
        _truncate(region, 16)  # the client shrinks its object: [8, 72) is gone
        with pytest.raises(TritonError, match="truncated to 16 bytes") as info:
            registry.view("r", 0, 64)
        assert info.value.code is ErrorCode.INVALID_ARG
        with pytest.raises(TritonError, match="truncated"):
            held.view(4, 8)
        assert bytes(registry.view("r", 0, 8)) == b"\0" * 8  # what is left still reads


def test_registrations_are_capped(region, shm_key) -> None:  # type: ignore[no-untyped-def]
    reg = SystemSharedMemoryRegistry(max_regions=2)
    try:
        reg.register("a", shm_key, 0, 8)
        reg.register("b", shm_key, 0, 8)
        with pytest.raises(TritonError, match="maximum of 2 registered regions") as info:
            reg.register("c", shm_key, 0, 8)
        assert info.value.code is ErrorCode.UNAVAILABLE
        reg.unregister("a")
        reg.register("c", shm_key, 0, 8)
    finally:
        reg.close()


def _truncate(region: shm.SharedMemoryRegion, size: int) -> None:
    os.truncate("/dev/shm/" + region.name.lstrip("/"), size)


@pytest.mark.parametrize("key", ["/", "///"])
def test_a_key_of_slashes_only_is_refused_with_tritons_words(key):
    reg = SystemSharedMemoryRegistry()
    with pytest.raises(TritonError) as e:
        reg.register("r", key, 0, 8)
    assert e.value.code is ErrorCode.INVALID_ARG
    assert e.value.message == f"cannot register shared memory region 'r' - invalid shm key '{key}'"


def test_offset_checks_in_tritons_order_and_words(registry, region, shm_key) -> None:  # type: ignore[no-untyped-def]
    # Triton's shared_memory_test.py (test_infer_offset_out_of_bound,
    # test_infer_integer_overflow) matches on these words
    registry.register("w", shm_key, 0, 64)
    for offset, size in ((64, 64), (65, 0), (2**64 - 32, 64)):
        with pytest.raises(TritonError) as info:
            registry.view("w", offset, size)
        assert info.value.message == "Invalid offset for shared memory region: 'w'"
    with pytest.raises(TritonError) as info:
        registry.view("w", 32, 2**64 - 32)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == (
        "Integer overflow detected: byte_size (18446744073709551584) + offset (32) exceeds "
        "maximum value (18446744073709551615) for region 'w'")
    with pytest.raises(TritonError) as info:
        registry.view("w", 32, 33)
    assert info.value.message == "Invalid offset + byte size for shared memory region: 'w'"
    assert len(registry.view("w", 64, 0)) == 0
