"""Image features: served as UINT8 HWC tensors, handed to Core ML as PIL images.

Core ML's Python bridge takes a PIL image for an image feature and converts it to the
model's pixel format itself (an RGB PIL image feeds an RGB or a BGR model; mode "L" a
GRAYSCALE one; mode "F" a GRAYSCALE_FLOAT16 one). What arrives here is a tensor:

- dims [H, W, C] (``format: FORMAT_NHWC``, the default) or [C, H, W] (``FORMAT_NCHW``);
- C is 3 for RGB and BGR models and 1 for grayscale ones;
- channels in RGB order, or in BGR order when the model parameter
  ``image_channel_order`` is ``BGR`` (OpenCV's order): they are swapped to RGB here;
- UINT8, or FP32 / FP16 for GRAYSCALE_FLOAT16 models (values as the model expects them).

The height and width must be one of the model's sizes (fixed, enumerated, or within its
ranges); Core ML would otherwise resize or refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from .shapes import UNBOUNDED

COLOR_SPACES = ("GRAYSCALE", "RGB", "BGR", "GRAYSCALE_FLOAT16")
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class ImageInfo:
    color_space: str
    height: int
    width: int
    sizes: tuple[tuple[int, int], ...] = ()
    """Enumerated (height, width) pairs, if any."""
    height_range: tuple[int, int] | None = None
    width_range: tuple[int, int] | None = None

    @property
    def channels(self) -> int:
        return 3 if self.color_space in ("RGB", "BGR") else 1

    @property
    def datatype(self) -> DataType:
        return DataType.FP32 if self.color_space == "GRAYSCALE_FLOAT16" else DataType.UINT8

    @property
    def hw_dims(self) -> tuple[int, int]:
        """(H, W) for the config: -1 where the size may vary."""
        if self.sizes:
            hs = {h for h, _ in self.sizes}
            ws = {w for _, w in self.sizes}
            return (hs.pop() if len(hs) == 1 else -1, ws.pop() if len(ws) == 1 else -1)
        h = -1 if self.height_range and self.height_range[0] != self.height_range[1] else self.height
        w = -1 if self.width_range and self.width_range[0] != self.width_range[1] else self.width
        return (h, w)

    def dims(self, channels_first: bool) -> tuple[int, int, int]:
        h, w = self.hw_dims
        return (self.channels, h, w) if channels_first else (h, w, self.channels)

    def size_violation(self, h: int, w: int) -> str | None:
        if self.sizes:
            if (h, w) in self.sizes:
                return None
            allowed = ", ".join(f"{a}x{b}" for a, b in self.sizes)
            return f"image size {h}x{w} (HxW) is not one of {allowed}"
        for what, v, rng, fixed in (("height", h, self.height_range, self.height),
                                    ("width", w, self.width_range, self.width)):
            lo, hi = rng if rng else (fixed, fixed)
            if v < lo or (hi != UNBOUNDED and v > hi):
                span = str(lo) if lo == hi else f"{lo}..{'' if hi == UNBOUNDED else hi}"
                return f"image {what} {v} is outside {span}"
        return None


def channel_order(value: str | None, model: str) -> str:
    order = (value or "RGB").strip().upper()
    if order not in CHANNEL_ORDERS:
        raise TritonError.invalid_arg(
            f"model '{model}', parameter 'image_channel_order': expected RGB or BGR, got '{value}'"
        )
    return order


def to_hwc(name: str, array: np.ndarray, info: ImageInfo, channels_first: bool, order: str) -> np.ndarray:
    """One image tensor (no batch dimension) as an HWC array in RGB (or single-channel) order."""
    if array.ndim != 3:
        raise TritonError.invalid_arg(
            f"input '{name}': an image is a 3-dimensional tensor "
            f"({'CHW' if channels_first else 'HWC'}), got shape {list(array.shape)}"
        )
    hwc = np.moveaxis(array, 0, -1) if channels_first else array
    h, w, c = hwc.shape
    if c != info.channels:
        raise TritonError.invalid_arg(
            f"input '{name}': the model's {info.color_space} image takes {info.channels} "
            f"channel{'s' if info.channels > 1 else ''}, got {c}"
        )
    problem = info.size_violation(h, w)
    if problem:
        raise TritonError.invalid_arg(f"input '{name}': {problem}")
    if c == 3 and order == "BGR":
        hwc = hwc[..., ::-1]
    return np.ascontiguousarray(hwc)


def to_pil(name: str, hwc: np.ndarray, info: ImageInfo):  # -> PIL.Image.Image
    """The PIL image Core ML's bridge takes for this feature."""
    from PIL import Image

    if info.color_space == "GRAYSCALE_FLOAT16":
        # mode "F", "L" and "RGB" follow from float32 HxW, uint8 HxW and uint8 HxWx3 arrays
        return Image.fromarray(np.ascontiguousarray(hwc[..., 0], dtype=np.float32))
    if hwc.dtype != np.uint8:
        raise TritonError.invalid_arg(f"input '{name}': image pixels are UINT8, got numpy {hwc.dtype}")
    if info.channels == 1:
        return Image.fromarray(np.ascontiguousarray(hwc[..., 0]))
    return Image.fromarray(hwc)


def from_pil(image) -> np.ndarray:
    """An image output as an HWC array (RGB order; one channel for grayscale)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 4:  # Core ML hands BGRA/RGBA buffers back as RGBA images
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)
