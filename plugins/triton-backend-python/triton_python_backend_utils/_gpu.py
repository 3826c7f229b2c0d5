"""GPU tensors in the worker: DLPack capsules read and made with ctypes, CUDA calls through
cuda-python (``cuda.bindings``), imported at the first GPU tensor.

Runs inside worker processes (the standard library and numpy only, as the rest of
pb_utils): no torch or CuPy is needed to hold, pass on or copy a GPU tensor; a model uses
its own framework to compute on it (``torch.from_dlpack(tensor)``).

- ``GpuTensor.from_dlpack``: the memory of a DLPack capsule (or of an object with
  ``__dlpack__``), kept alive by holding the capsule (its producer frees it when the
  capsule goes, as DLPack's unconsumed-capsule rule says).
- ``GpuTensor.__dlpack__``: a new capsule over the same memory for each consumer, which
  keeps the GpuTensor alive until the consumer calls its deleter.
- ``GpuTensor.open_ipc``: the memory another process shared by cudaIpcMemHandle_t (a
  client's CUDA shared-memory region, passed on by the server), mapped once per handle.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from typing import Any

import numpy as np

KDL_CPU = 1
KDL_CUDA = 2
_NAME = b"dltensor"

NOT_CONTIGUOUS = ("DLPack tensor is not contiguous. Only contiguous DLPack tensors that are "
                  "stored in C-Order are supported.")  # Triton's words


class GpuError(Exception):
    """A DLPack or CUDA failure (pb_utils turns it into TritonModelException)."""


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))
_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                             ("deleter", _DELETER)]

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_cap_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_IsValid", _api))
_cap_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api))

# numpy dtype <-> DLPack (code, bits); BF16 travels as uint16 in numpy, as Triton's wire does
_CODES = {"i": 0, "u": 1, "f": 2, "b": 6}
_KINDS = {0: "i", 1: "u", 2: "f", 6: "b"}
KDL_BFLOAT = 4


def _dtype_of(dt: _DLDataType) -> tuple[np.dtype, bool]:
    """(numpy dtype, is bf16)."""
    if dt.lanes != 1:
        raise GpuError(f"DLPack tensors of {dt.lanes} lanes are not supported")
    if dt.code == KDL_BFLOAT and dt.bits == 16:
        return np.dtype("<u2"), True
    kind = _KINDS.get(dt.code)
    if kind is None or dt.bits % 8:
        raise GpuError(f"DLPack data type (code {dt.code}, {dt.bits} bits) is not supported")
    return np.dtype("?" if kind == "b" else f"<{kind}{dt.bits // 8}"), False


def _c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, step = [], 1
    for d in reversed(shape):
        out.append(step)
        step *= d
    return tuple(reversed(out))


def _contiguous(shape: tuple[int, ...], strides: tuple[int, ...] | None) -> bool:
    if strides is None:
        return True
    # zip without strict=: workers may run on Python < 3.10 (the lengths match)
    return all(s == c for d, s, c in zip(shape, strides, _c_strides(shape)) if d > 1)  # noqa: B905


# -- producing capsules ------------------------------------------------------------------

_live: dict[int, tuple[Any, Any]] = {}  # DLManagedTensor address -> (struct, owner)
_live_lock = threading.Lock()


@_DELETER
def _delete(managed: Any) -> None:
    with _live_lock:
        _live.pop(ctypes.addressof(managed.contents), None)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _capsule_destructor(capsule: int) -> None:
    # a capsule no consumer took: its memory is ours to give back (DLPack's rule)
    try:
        if _cap_is_valid(capsule, _NAME):
            address = _cap_pointer(capsule, _NAME)
            with _live_lock:
                _live.pop(address, None)
    except Exception:  # noqa: BLE001, S110 - interpreter shutdown: nothing left to free
        pass


def make_capsule(ptr: int, shape: tuple[int, ...], dtype: np.dtype, bf16: bool,
                 device_type: int, device_id: int, owner: Any) -> Any:
    """A 'dltensor' capsule over ``ptr`` that keeps ``owner`` alive until it is deleted."""
    managed = _DLManagedTensor()
    dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
    t = managed.dl_tensor
    t.data = ptr or None
    t.device = _DLDevice(device_type, device_id)
    t.ndim = len(shape)
    if bf16:
        t.dtype = _DLDataType(KDL_BFLOAT, 16, 1)
    else:
        t.dtype = _DLDataType(_CODES[dtype.kind], dtype.itemsize * 8, 1)
    t.shape = ctypes.cast(dims, ctypes.POINTER(ctypes.c_int64))
    t.strides = None  # row-major
    t.byte_offset = 0
    managed.deleter = _delete
    address = ctypes.addressof(managed)
    with _live_lock:
        _live[address] = (managed, (dims, owner))
    return _api.PyCapsule_New(address, _NAME, ctypes.cast(_capsule_destructor, ctypes.c_void_p))


# -- reading capsules --------------------------------------------------------------------


def read_capsule(capsule: Any) -> tuple[int, tuple[int, ...], np.dtype, bool, int, int]:
    """(data pointer, shape, numpy dtype, is bf16, device type, device id) of an unconsumed
    'dltensor' capsule (left unconsumed: whoever holds it keeps the memory)."""
    if not _api.PyCapsule_IsValid(capsule, _NAME):
        raise GpuError("expected an unconsumed DLPack capsule ('dltensor'): a capsule is "
                       "consumed once")
    managed = ctypes.cast(_api.PyCapsule_GetPointer(capsule, _NAME),
                          ctypes.POINTER(_DLManagedTensor)).contents
    t = managed.dl_tensor
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    strides = tuple(int(t.strides[i]) for i in range(t.ndim)) if t.strides else None
    if not _contiguous(shape, strides):
        raise GpuError(NOT_CONTIGUOUS)
    dtype, bf16 = _dtype_of(t.dtype)
    return ((t.data or 0) + int(t.byte_offset), shape, dtype, bf16, int(t.device.device_type),
            int(t.device.device_id))


def capsule_device(capsule: Any) -> tuple[int, int]:
    return read_capsule(capsule)[4:6]


# -- CUDA ----------------------------------------------------------------------------------


def _cuda() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError as e:
        raise GpuError(f"GPU tensors need cuda-python in the model's Python environment ({e}): "
                       "pip install cuda-python") from None
    return runtime


def _check(result: tuple, what: str) -> tuple:
    rt = _cuda()
    err = result[0]
    if err != rt.cudaError_t.cudaSuccess:
        text = rt.cudaGetErrorString(err)[1]
        raise GpuError(f"{what}: {text.decode() if isinstance(text, bytes) else text}")
    return result[1:]


class _OnDevice:
    """Make ``device`` current for a block, then restore the previous one."""

    def __init__(self, device: int) -> None:
        self.device = device

    def __enter__(self) -> None:
        rt = _cuda()
        (self.prev,) = _check(rt.cudaGetDevice(), "cudaGetDevice")
        if self.prev != self.device:
            _check(rt.cudaSetDevice(self.device), f"cudaSetDevice({self.device})")

    def __exit__(self, *exc: object) -> None:
        if self.prev != self.device:
            _cuda().cudaSetDevice(self.prev)


class _IpcMapping:
    """Another process's allocation mapped here; unmapped when the last tensor over it goes."""

    def __init__(self, handle: bytes, device: int) -> None:
        rt = _cuda()
        h = rt.cudaIpcMemHandle_t()
        ctypes.memmove(h.getPtr(), handle, 64)
        self.device = device
        with _OnDevice(device):
            (ptr,) = _check(rt.cudaIpcOpenMemHandle(h, rt.cudaIpcMemLazyEnablePeerAccess),
                            "cudaIpcOpenMemHandle")
        self.ptr = int(ptr)

    def __del__(self) -> None:
        try:
            with _OnDevice(self.device):
                _cuda().cudaIpcCloseMemHandle(self.ptr)
        except Exception:  # noqa: BLE001, S110 - at exit CUDA may be gone already
            pass


_mappings: weakref.WeakValueDictionary[bytes, _IpcMapping] = weakref.WeakValueDictionary()
_mappings_lock = threading.Lock()


class GpuTensor:
    """Row-major device memory: ``ptr``, ``shape``, ``dtype`` on GPU ``device_id``."""

    __slots__ = ("ptr", "shape", "dtype", "bf16", "device_id", "_owner", "__weakref__")

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype, bf16: bool,
                 device_id: int, owner: Any) -> None:
        self.ptr, self.shape, self.dtype, self.bf16 = ptr, shape, dtype, bf16
        self.device_id, self._owner = device_id, owner

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @classmethod
    def from_capsule(cls, capsule: Any, holder: Any = None) -> GpuTensor | None:
        """The GPU memory a capsule describes (None when it lies in host memory)."""
        ptr, shape, dtype, bf16, dev_type, dev_id = read_capsule(capsule)
        if dev_type == KDL_CPU:
            return None
        if dev_type != KDL_CUDA:
            raise GpuError(f"DLPack device type {dev_type} is not supported (CPU and CUDA are)")
        return cls(ptr, shape, dtype, bf16, dev_id, (capsule, holder))

    @classmethod
    def from_object(cls, obj: Any) -> GpuTensor | None:
        """The GPU memory of an object with ``__dlpack__`` (None when it is on the host).

        Work the producer still has queued on its streams is waited for here, as Triton's
        from_dlpack does: the tensor is ready for any stream of any process afterwards."""
        dev_type, dev_id = obj.__dlpack_device__()
        if dev_type == KDL_CPU:
            return None
        if dev_type != KDL_CUDA:
            raise GpuError(f"DLPack device type {dev_type} is not supported (CPU and CUDA are)")
        # stream 1 (the legacy default stream) for the producer to order its work before;
        # then every stream of the device is waited for: a producer may have written the
        # tensor on a stream other than its current one (a non-blocking stream)
        capsule = obj.__dlpack__(stream=1)
        with _OnDevice(int(dev_id)):
            _check(_cuda().cudaDeviceSynchronize(), "cudaDeviceSynchronize")
        return cls.from_capsule(capsule, obj)

    @classmethod
    def open_ipc(cls, handle: bytes, offset: int, shape: tuple[int, ...], dtype: np.dtype,
                 bf16: bool, device_id: int) -> GpuTensor:
        with _mappings_lock:
            mapping = _mappings.get(handle)
            if mapping is None:
                mapping = _IpcMapping(handle, device_id)
                _mappings[handle] = mapping
        return cls(mapping.ptr + offset, shape, dtype, bf16, device_id, mapping)

    def __dlpack__(self, stream: Any = None, **kwargs: Any) -> Any:
        # ready already (see from_object): no stream to wait on
        return make_capsule(self.ptr, self.shape, self.dtype, self.bf16, KDL_CUDA,
                            self.device_id, self)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (KDL_CUDA, self.device_id)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "strides": None, "version": 3, "stream": None}

    def to_host(self) -> np.ndarray:
        """A host copy (cudaMemcpy)."""
        out = np.empty(self.shape, dtype=self.dtype)
        if out.nbytes:
            rt = _cuda()
            with _OnDevice(self.device_id):
                _check(rt.cudaMemcpy(out.ctypes.data, self.ptr, out.nbytes,
                                     rt.cudaMemcpyKind.cudaMemcpyDeviceToHost),
                       "cudaMemcpy (device to host)")
        return out

    def __repr__(self) -> str:
        return f"GpuTensor(0x{self.ptr:x}, {list(self.shape)}, {self.dtype}, cuda:{self.device_id})"


__all__ = ["KDL_CPU", "KDL_CUDA", "NOT_CONTIGUOUS", "GpuError", "GpuTensor", "capsule_device",
           "make_capsule", "read_capsule"]
