"""Tensor: name, datatype, shape and the data, viewed where it already lies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .dtypes import DataType
from .errors import TritonError
from .memory import bytes_codec

if TYPE_CHECKING:
    from .memory.device_array import CudaArray

# Triton counts elements in int64: a larger count is the client's error, never an
# overflow or a huge allocation further on
MAX_ELEMENTS = 2**63 - 1


def element_count(shape: Sequence[int], name: str | None = None) -> int:
    """The element count of a shape; with `name` (an input's), a count past int64 is refused."""
    n = math.prod(shape) if shape else 1
    if name is not None and n > MAX_ELEMENTS:
        raise TritonError.invalid_arg(  # Triton's words
            f"invalid shape for input '{name}': shape [{','.join(map(str, shape))}] causes "
            f"total element count to exceed maximum size of {MAX_ELEMENTS}")
    return n


class Tensor:
    """A named tensor.

    Fixed-size types hold a numpy array (often a view of a request body or a
    shared-memory region, so nothing is copied). BYTES tensors may hold either
    the wire bytes (`raw`) or an object array; each form is derived lazily.
    A tensor in GPU memory (a CUDA shared-memory input, a backend's GPU output)
    holds a ``CudaArray`` (``device_array()``); its host forms are copied from
    the GPU when first asked for.
    """

    __slots__ = ("name", "datatype", "shape", "_array", "_raw", "parameters", "_device")

    def __init__(
        self,
        name: str,
        datatype: DataType,
        shape: Sequence[int],
        array: np.ndarray | None = None,
        raw: bytes | memoryview | None = None,
        parameters: dict | None = None,
    ) -> None:
        self.name = name
        self.datatype = datatype
        self.shape = tuple(map(int, shape))
        self._array = array
        self._raw = raw
        self.parameters = parameters or {}
        self._device: CudaArray | None = None

    @classmethod
    def from_numpy(cls, name: str, array: np.ndarray, datatype: DataType | None = None) -> Tensor:
        array = np.asarray(array)
        dt = datatype or DataType.from_numpy(array.dtype)
        if dt is not DataType.BYTES and dt is not DataType.BF16 and array.dtype != dt.numpy:
            array = array.astype(dt.numpy)
        return cls(name, dt, array.shape, array=array)

    @classmethod
    def from_raw(
        cls, name: str, datatype: DataType, shape: Sequence[int], raw: bytes | memoryview
    ) -> Tensor:
        """Wrap wire bytes, checking their length against the shape."""
        shape = tuple(map(int, shape))
        if shape and min(shape) < 0:
            raise TritonError.invalid_arg(f"input '{name}' has a negative dimension in {list(shape)}")
        n = element_count(shape, name)
        if datatype is DataType.BYTES:
            # checked now, decoded when a reader asks (many pass the wire form on as it is)
            bytes_codec.check_bytes(raw, n)
            return cls(name, datatype, shape, raw=raw)
        expected = n * datatype.itemsize
        if len(raw) != expected:
            raise TritonError.invalid_arg(
                f"input byte size mismatch for input '{name}': expected {expected} bytes "
                f"for shape {list(shape)} of {datatype.value}, got {len(raw)}"
            )
        # as_numpy() makes the array when asked; the shape is checked ints already
        t = cls.__new__(cls)
        t.name, t.datatype, t.shape, t._array, t._raw, t.parameters = name, datatype, shape, None, raw, {}
        t._device = None
        return t

    @classmethod
    def from_device(cls, name: str, datatype: DataType, array: CudaArray) -> Tensor:
        """A tensor in GPU memory (not BYTES: strings live on the host)."""
        if datatype is DataType.BYTES or array.dtype != datatype.numpy:
            raise TritonError.internal(
                f"a GPU tensor of {array.dtype} cannot hold {datatype.value} tensor '{name}'")
        t = cls(name, datatype, array.shape)
        t._device = array
        return t

    def device_array(self) -> CudaArray | None:
        """The tensor's GPU memory (``__cuda_array_interface__``), or None on the host."""
        return self._device

    def to_host(self) -> Tensor:
        """Make sure the tensor lies in host memory and let go of its GPU memory (a CUDA
        region's lease ends with it); returns self."""
        if self._device is not None:
            self._fetch()
            self._device = None
        return self

    def reshape(self, shape: Sequence[int]) -> None:
        """Give the tensor another shape of as many elements, in place (a config's
        ``reshape``; one dimension may be -1); a GPU tensor stays on its GPU."""
        if self._device is not None and self._array is None and self._raw is None:
            known = math.prod(d for d in shape if d != -1)
            n = element_count(self.shape)
            new = tuple(n // known if d == -1 and known else int(d) for d in shape)
            if element_count(new) != n:
                raise TritonError.invalid_arg(
                    f"cannot reshape tensor '{self.name}' of shape {list(self.shape)} to "
                    f"{list(shape)}")
            self._device = self._device.reshaped(new)
            self.shape = new
            return
        self._array = self.as_numpy().reshape(list(shape))
        self.shape = tuple(self._array.shape)
        self._raw = None
        self._device = None

    def _fetch(self) -> None:
        if self._array is None and self._raw is None and self._device is not None:
            self._raw = memoryview(self._device.to_host())

    def as_numpy(self) -> np.ndarray:
        if self._array is None:
            self._fetch()
            assert self._raw is not None
            if self.datatype is DataType.BYTES:
                # the count again: shared memory may have changed since from_raw checked it
                self._array = bytes_codec.deserialize_bytes(
                    self._raw, element_count(self.shape)).reshape(self.shape)
            else:
                self._array = np.frombuffer(self._raw, dtype=self.datatype.numpy).reshape(self.shape)
        return self._array

    def to_bytes(self) -> bytes | memoryview:
        """The wire form (little-endian, row-major; BYTES length-prefixed)."""
        if self._raw is None:
            self._fetch()
        if self._raw is None:
            arr = self._array
            assert arr is not None
            if self.datatype is DataType.BYTES:
                self._raw = bytes_codec.serialize_bytes(arr)
            else:
                arr = np.ascontiguousarray(arr, dtype=self.datatype.numpy)
                self._raw = memoryview(arr).cast("B")
        return self._raw

    @property
    def byte_size(self) -> int:
        if self.datatype is DataType.BYTES:
            return len(self.to_bytes())
        return element_count(self.shape) * self.datatype.itemsize

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.datatype.value}, {list(self.shape)})"
