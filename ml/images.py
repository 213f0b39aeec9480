"""Decoding images and masks into normalised arrays, with errors that name the file.

Every image becomes ``uint8`` RGB ``(H, W, 3)``: grayscale is replicated, alpha is dropped,
16-bit (and 32-bit integer / float) data is scaled by its dtype's range, never by the
image's own range, so two images of one line stay comparable. A file that cannot be fully
decoded (missing, truncated, not an image) raises :class:`~ml.errors.DataError`; it never
turns into a silent zero image.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from ml.errors import DataError

if TYPE_CHECKING:  # torch is imported where a tensor is made, so reading an image does not load it
    import torch

#: Images with more pixels than this are refused from their header, before any decoding
#: (a small file can claim 30000x30000 pixels and cost gigabytes once decoded).
DEFAULT_MAX_PIXELS = 100_000_000
_LIMIT = {"max_pixels": DEFAULT_MAX_PIXELS}
Image.MAX_IMAGE_PIXELS = None  # the check below replaces PIL's (which warns, then raises a non-OSError)


def set_max_pixels(max_pixels: int) -> None:
    """Set the pixel-count limit every decode in this process checks (entry points call it once)."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    _LIMIT["max_pixels"] = int(max_pixels)


def max_pixels() -> int:
    """The pixel-count limit in force."""
    return _LIMIT["max_pixels"]


def _check_size(img: Image.Image, name: str) -> None:
    w, h = img.size
    if w * h > _LIMIT["max_pixels"]:
        raise DataError(
            f"{name}: {w}x{h} pixels ({w * h / 1e6:.0f} MP) exceed the limit of {_LIMIT['max_pixels'] / 1e6:g} MP"
            " (max_image_pixels)"
        )


def _decode(source: Path | bytes, name: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        _check_size(img, name)  # from the header: nothing decoded yet
        img.load()  # forces a full decode: truncated files raise here
    except FileNotFoundError as e:
        raise DataError(f"{name}: file not found") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{name}: cannot decode image ({e})") from e
    return img


def _to_float01(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype in (np.int32, np.uint32):
        # PIL decodes 16-bit grayscale PNGs as mode "I" (int32 holding 0..65535).
        return np.clip(arr.astype(np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{name}: image holds NaN or infinite values")
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    raise DataError(f"{name}: unsupported pixel type {arr.dtype}")


def pil_to_rgb_uint8(img: Image.Image, name: str) -> np.ndarray:
    """Convert a decoded PIL image of any mode/bit depth to ``uint8`` RGB ``(H, W, 3)``."""
    if img.mode in ("RGB", "L"):
        arr = np.asarray(img)
    elif img.mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1", "LAB", "HSV"):
        arr = np.asarray(img.convert("RGB"))
    else:  # I, I;16, I;16B, F ... : high bit depth grayscale
        arr = (_to_float01(np.asarray(img), name) * 255.0 + 0.5).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{name}: unexpected image shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_image(source: Path | bytes, name: str | None = None) -> np.ndarray:
    """Decode an image file (or its bytes) to ``uint8`` RGB ``(H, W, 3)``.

    Raises:
        DataError: the file is missing, truncated, or not a decodable image.
    """
    label = name or (str(source) if isinstance(source, Path) else "<bytes>")
    return pil_to_rgb_uint8(_decode(source, label), label)


def read_mask(source: Path | bytes, name: str | None = None) -> np.ndarray:
    """Decode a mask to ``bool`` ``(H, W)``.

    Masks are 0/255 (binarised at > half of the dtype range) or 0/1 (binarised at > 0).
    Colour masks count a pixel as defective when any channel is set.
    """
    label = name or (str(source) if isinstance(source, Path) else "<bytes>")
    img = _decode(source, label)
    if img.mode == "P":
        img = img.convert("L")
    arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[:, :, :3].max(axis=2) if arr.shape[2] >= 3 else arr[:, :, 0]
    if arr.dtype == bool:
        return arr.copy()
    if np.issubdtype(arr.dtype, np.integer):
        if arr.max(initial=0) <= 1:
            return arr > 0
        half = 127 if arr.dtype == np.uint8 else 32767
        return arr > half
    return _to_float01(arr, label) > 0.5


def read_mask_values(source: Path | bytes, name: str | None = None) -> np.ndarray:
    """The distinct values of a mask file (sorted ``int64``), over all channels, before any
    binarisation; a colour mask whose channels differ is a DataError."""
    label = name or (str(source) if isinstance(source, Path) else "<bytes>")
    img = _decode(source, label)
    if img.mode == "P":
        img = img.convert("L")
    arr = np.asarray(img)
    if arr.ndim == 3:
        rgb = arr[:, :, :3]
        if rgb.shape[2] == 3 and not ((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()):
            raise DataError(f"{label}: colour mask with differing channels (save it as one gray channel)")
        arr = rgb[:, :, 0]
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        raise DataError(f"{label}: mask pixels must be integers, got {arr.dtype}")
    return np.unique(arr.astype(np.int64))


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding pixels; DataError beyond the pixel limit."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            _check_size(img, str(path))
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from e
    return h, w


def resize_rgb(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``uint8 (H, W, 3)`` to ``size`` = (height, width); area filter when shrinking."""
    import cv2

    h, w = size
    if img.shape[:2] == (h, w):
        return img
    shrink = img.shape[0] > h or img.shape[1] > w
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_tensor_batch(images: list[np.ndarray]) -> torch.Tensor:
    """Stack ``uint8 (H, W, 3)`` arrays of one size into ``float32 (B, 3, H, W)`` in [0, 1]."""
    import torch

    arr = np.stack(images).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
