"""The C layer: name rules (as pure functions), shm lifecycle, gather/scatter, build checks."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from triton_core.errors import ErrorCode, TritonError
from triton_core.memory import _native, shm

CORE = Path(__file__).resolve().parents[2]


def test_extension_loaded() -> None:
    assert _native.AVAILABLE, _native.IMPORT_ERROR
    assert shm.page_size() >= 4096


# -- macOS name rules, exercised as pure functions on any platform -------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("x", "/x"),
        ("/x", "/x"),
        ("a" * 30, "/" + "a" * 30),
        ("/" + "b" * 30, "/" + "b" * 30),
    ],
)
def test_apple_short_names_get_one_leading_slash(key: str, expected: str) -> None:
    assert shm.apple_name(key) == expected


def test_apple_long_names_are_hashed_to_31_bytes() -> None:
    long = "a" * 31  # 32 bytes with the slash
    name = shm.apple_name(long)
    assert len(name.encode()) == 31 and name.startswith("/aaaaaaaaaaaaa_")
    assert name == shm.apple_name(long)  # deterministic
    assert (
        shm.apple_name("/" + long) == name
    )  # the slash is part of the name either way
    assert shm.apple_name(long + "b") != name
    assert shm.apple_name("z" * 300) != shm.apple_name("z" * 301)


def test_apple_hash_never_splits_utf8() -> None:
    key = "é" * 40
    name = shm.apple_name(key)
    assert len(name.encode()) <= 31
    name.encode("utf-8").decode("utf-8")  # valid UTF-8
    assert name.startswith("/" + "é" * 6 + "_")


def test_linux_names_pass_through() -> None:
    for key in ("x", "/x", "a" * 200):
        assert shm.os_name(key, apple=False) == key


@pytest.mark.parametrize("bad", ["", "a\0b"])
def test_bad_keys(bad: str) -> None:
    with pytest.raises(ValueError):
        shm.os_name(bad, apple=True)


def test_client_key_candidates() -> None:
    assert shm.client_key_candidates("x", apple=True) == ["/x"]
    assert shm.client_key_candidates("/x", apple=True) == ["/x", "//x"]
    assert shm.client_key_candidates("x", apple=False) == ["x", "/x"]


# -- shared memory lifecycle ------------------------------------------------------


def test_create_map_reopen_unlink(shm_key: str) -> None:
    with shm.SharedMemoryRegion.create(shm_key, 1000) as region:
        assert region.size >= 1000
        region.buffer(100, 5)[:] = b"hello"
        with shm.SharedMemoryRegion.open(shm_key) as again:
            assert bytes(again.buffer(100, 5)) == b"hello"
        with shm.SharedMemoryRegion.open(shm_key, writable=False) as ro:
            view = ro.buffer()
            assert view.readonly and bytes(view[100:105]) == b"hello"
            del view
        region.unlink()
    with pytest.raises(shm.SharedMemoryError) as info:
        shm.SharedMemoryRegion.open(shm_key)
    assert info.value.errno == errno.ENOENT
    assert shm_key in str(info.value) and os.strerror(errno.ENOENT) in str(info.value)
    assert isinstance(info.value, OSError)


def test_create_exclusive_refuses_existing(shm_key: str) -> None:
    with shm.SharedMemoryRegion.create(shm_key, 64):
        with pytest.raises(shm.SharedMemoryError) as info:
            shm.SharedMemoryRegion.create(shm_key, 64)
        assert info.value.errno == errno.EEXIST
        with shm.SharedMemoryRegion.create(shm_key, 64, exclusive=False) as same:
            assert same.size >= 64


def test_attach_client_by_slash_key(shm_key: str) -> None:
    # tritonclient >= 2.52 creates "/" + key; an older client creates key itself.
    with shm.SharedMemoryRegion.create("/" + shm_key, 32) as region:
        region.buffer()[:3] = b"abc"
        with shm.SharedMemoryRegion.attach_client(shm_key) as attached:
            assert bytes(attached.buffer(0, 3)) == b"abc"


def test_attach_client_checks_size_before_mapping(shm_key: str) -> None:
    with (
        shm.SharedMemoryRegion.create(shm_key, 4096) as region,
        pytest.raises(shm.RegionTooSmall),
    ):
        shm.SharedMemoryRegion.attach_client(shm_key, min_size=region.size + 1)


def test_buffer_bounds(shm_key: str) -> None:
    with shm.SharedMemoryRegion.create(shm_key, 4096) as region:
        n = region.size
        assert len(region.buffer(n, 0)) == 0
        assert len(region.buffer(0, n)) == n
        for off, size in [
            (-1, 1),
            (0, n + 1),
            (n, 1),
            (n + 1, 0),
            (0, -1),
            (2**63, 2**63),
        ]:
            with pytest.raises(ValueError):
                region.buffer(off, size)


def test_view_outlives_unmap(shm_key: str) -> None:
    region = shm.SharedMemoryRegion.create(shm_key, 64)
    view = region.buffer(0, 4)
    view[:] = b"keep"
    region.unmap()
    assert not region.mapped
    assert bytes(view) == b"keep"  # the view holds the pages; no dangling pointer
    with pytest.raises(ValueError):
        region.buffer()


def test_create_rejects_non_positive_size(shm_key: str) -> None:
    with pytest.raises(ValueError):
        shm.SharedMemoryRegion.create(shm_key, 0)


def test_multiprocessing_attach_is_refused() -> None:
    with pytest.raises(TritonError) as info:
        shm.refuse_multiprocessing_attach("client_region")
    assert info.value.code is ErrorCode.UNSUPPORTED


def test_shm_module_never_uses_multiprocessing_shared_memory() -> None:
    for mod in ("shm.py", "registry.py"):
        text = (CORE / "triton_core" / "memory" / mod).read_text()
        assert (
            "import multiprocessing" not in text and "from multiprocessing" not in text
        )


# -- gather / scatter -----------------------------------------------------------


def test_gather_into_and_scatter_from() -> None:
    parts = [b"ab", bytearray(b"cde"), np.arange(3, dtype=np.uint8), memoryview(b"")]
    dst = bytearray(10)
    assert _native.gather_into(dst, parts) == 8
    assert bytes(dst[:8]) == b"abcde\x00\x01\x02"
    outs = [bytearray(2), np.zeros(3, np.uint8), bytearray(3)]
    assert _native.scatter_from(bytes(dst[:8]), outs) == 8
    assert (
        bytes(outs[0]) == b"ab"
        and outs[1].tobytes() == b"cde"
        and bytes(outs[2]) == b"\0\1\2"
    )


def test_gather_overflow_writes_nothing() -> None:
    dst = bytearray(4)
    with pytest.raises(ValueError):
        _native.gather_into(dst, [b"abc", b"de"])
    assert dst == bytearray(4)
    with pytest.raises(ValueError):
        _native.scatter_from(b"abc", [bytearray(2), bytearray(2)])
    with pytest.raises((TypeError, BufferError)):
        _native.gather_into(b"readonly", [b"x"])


def test_gather_float_arrays_and_threads() -> None:
    srcs = [np.full(1 << 16, i, dtype=np.float32) for i in range(8)]
    out = np.empty(8 << 16, dtype=np.float32)

    def work() -> None:
        for _ in range(20):
            _native.gather_into(out, srcs)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(out, np.concatenate(srcs))


# -- build ------------------------------------------------------------------------


def test_build_fails_clearly_without_compiler() -> None:
    env = dict(os.environ, CC="/nonexistent/cc", PYTHONPATH=str(CORE))
    proc = subprocess.run(
        [sys.executable, "-c", "import triton_core.memory._native.build"],
        check=False,
        cwd=CORE,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "no working C compiler found" in proc.stderr


def test_setup_py_names_the_ffibuilder() -> None:
    assert "triton_core/memory/_native/build.py:ffibuilder" in (CORE / "setup.py").read_text()
