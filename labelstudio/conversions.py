"""Label Studio JSON <-> defectloop's plain types (verdicts and masks as numpy arrays).

This package is the only one importing ``label_studio_sdk``; it does not import ``ml``.
Every result built here is validated against the labeling config before it leaves, since
the server stores whatever it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labelstudio.config import BRUSH, CHOICES, DEFECT, IMAGE, OK, label_config


class PayloadError(ValueError):
    """A Label Studio payload or result cannot be used; the message says why."""


@dataclass(frozen=True)
class Answer:
    """What an annotation says about one image.

    ``is_defective`` None means no verdict could be read; ``mask`` is bool ``(H, W)`` at the
    image's full resolution or None; ``review_reason`` is set when the answer is stored
    but needs a human look (OK with a brush, unknown choice).
    """

    is_defective: bool | None
    mask: np.ndarray | None
    review_reason: str | None = None


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """A bool/0-1/0-255 mask ``(H, W)`` as Label Studio brush RLE."""
    from label_studio_sdk.converter.brush import mask2rle

    m = np.asarray(mask)
    if m.ndim != 2:
        raise PayloadError(f"mask: expected a 2-D array, got shape {m.shape}")
    return [int(x) for x in mask2rle((m > 0).astype(np.uint8) * 255)]


def rle_to_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """Decode brush RLE to bool ``(height, width)``; PayloadError when it does not fit."""
    from label_studio_sdk.converter.brush import decode_rle

    try:
        flat = decode_rle(list(rle))
    except Exception as e:  # noqa: BLE001 - the decoder fails in many ways on bad input
        raise PayloadError(f"brush RLE cannot be decoded ({type(e).__name__}: {e})") from None
    if flat.size != height * width * 4:
        raise PayloadError(
            f"brush RLE holds {flat.size // 4} pixels but the image is {width}x{height} ({width * height} pixels)"
        )
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def brush_result(mask: np.ndarray) -> dict[str, Any]:
    h, w = mask.shape
    return {
        "from_name": BRUSH,
        "to_name": IMAGE,
        "type": "brushlabels",
        "original_width": int(w),
        "original_height": int(h),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [DEFECT]},
    }


def choice_result(is_defective: bool) -> dict[str, Any]:
    return {
        "from_name": CHOICES,
        "to_name": IMAGE,
        "type": "choices",
        "value": {"choices": [DEFECT if is_defective else OK]},
    }


def prediction_result(is_defective: bool, mask: np.ndarray | None) -> list[dict[str, Any]]:
    """A model proposal: the verdict, and (for a defect with a non-empty mask) the brush. A task
    that asks for a verdict only gets ``mask=None``: a brush there would be submitted as a mask."""
    result = [choice_result(is_defective)]
    if is_defective and mask is not None and np.asarray(mask).any():
        result.append(brush_result(np.asarray(mask)))
    validate_result(result)
    return result


def validate_result(result: list[dict[str, Any]]) -> None:
    """Check a result against the labeling config (the server does not)."""
    from label_studio_sdk.label_interface import LabelInterface

    iface = LabelInterface(label_config())
    if not iface.validate_prediction({"result": result, "score": 0.5}):
        raise PayloadError("result does not match the labeling config")


def parse_result(result: list[dict[str, Any]], height: int, width: int, *, with_mask: bool = True) -> Answer:
    """Read an annotation's result for an image of ``height`` x ``width`` pixels.

    Rules: Defect/OK choice -> the verdict; brush strokes -> their union at full resolution;
    Defect without brush -> an image-level label; brush without choice -> defective with
    mask; OK with a brush or an unknown choice -> kept, flagged for review.
    ``with_mask=False`` reads the verdict only (a task that asked for no mask): brush strokes
    are ignored, never decoded, and never make a mask.
    """
    if not isinstance(result, list):
        raise PayloadError("annotation result must be a list")
    choices: list[str] = []
    mask: np.ndarray | None = None
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise PayloadError("annotation result item without a value")
        kind = item.get("type")
        if kind == "choices":
            choices += [str(c) for c in item["value"].get("choices", [])]
        elif kind == "brushlabels" and with_mask:
            w, h = item.get("original_width"), item.get("original_height")
            if (w, h) != (width, height):
                raise PayloadError(f"brush drawn on a {w}x{h} image but the image is {width}x{height}")
            if item["value"].get("format", "rle") != "rle" or "rle" not in item["value"]:
                raise PayloadError("brush stroke without RLE data")
            stroke = rle_to_mask(item["value"]["rle"], height, width)
            mask = stroke if mask is None else (mask | stroke)
    has_brush = mask is not None and bool(mask.any())
    unknown = [c for c in choices if c not in (OK, DEFECT)]
    if unknown or len(set(choices)) > 1:
        return Answer(
            None if not has_brush else True,
            mask if has_brush else None,
            f"unexpected choice(s) {choices}: please review",
        )
    if choices == [OK]:
        if has_brush:
            return Answer(False, mask, "marked OK but a defect was brushed: please review")
        return Answer(False, None)
    if choices == [DEFECT]:
        return Answer(True, mask if has_brush else None)
    if has_brush:
        return Answer(True, mask)
    return Answer(None, None, "no verdict and no brush: please review")


@dataclass(frozen=True)
class ClickIn:
    """An annotator's click ``(x, y)`` (or box to ``(x2, y2)``) in pixels of the image."""

    x: float
    y: float
    x2: float | None = None
    y2: float | None = None


def click_from_context(context: Any, width: int, height: int) -> ClickIn:
    """The newest keypoint or rectangle of an interactive pre-annotation's ``context``
    (``{"result": [{"type": "keypointlabels" | "rectanglelabels", "value": {"x", "y", ...}}]}``,
    coordinates in percent of the image) in pixels of a ``width`` x ``height`` image."""
    items = context.get("result") if isinstance(context, dict) else None
    if not isinstance(items, list) or not items:
        raise PayloadError("context: expected {'result': [a keypoint or rectangle]}")
    for item in reversed(items):
        value = item.get("value") if isinstance(item, dict) else None
        kind = item.get("type") if isinstance(item, dict) else None
        if not isinstance(value, dict) or kind not in ("keypointlabels", "rectanglelabels"):
            continue
        try:
            x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
            if kind == "rectanglelabels":
                return ClickIn(x, y, x + float(value["width"]) * width / 100, y + float(value["height"]) * height / 100)
        except (KeyError, TypeError, ValueError):
            raise PayloadError(f"context: {kind} without numeric x/y/width/height") from None
        return ClickIn(x, y)
    raise PayloadError("context: no keypoint or rectangle in it")
