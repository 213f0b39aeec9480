"""Conversions against payloads recorded from a real Label Studio 1.23.2, and a property test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labelstudio.conversions import (
    PayloadError,
    brush_result,
    choice_result,
    mask_to_rle,
    parse_result,
    prediction_result,
    rle_to_mask,
    validate_result,
)

# recorded from a real Label Studio 1.23.2 (tokens replaced), kept here so every clone runs these tests
PAYLOADS = Path(__file__).resolve().parent / "payloads"


def _payload(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text())


def test_recorded_webhook_annotation_parses_to_a_defect_with_its_mask() -> None:
    body = _payload("webhook_ANNOTATION_CREATED.json")["body"]
    ann = body["annotation"]
    answer = parse_result(ann["result"], 96, 128)
    assert answer.is_defective is True and answer.review_reason is None
    assert answer.mask.shape == (96, 128) and answer.mask.any()
    sent = _payload("annotation_create_request_result.json")  # what the annotator submitted
    assert np.array_equal(parse_result(sent, 96, 128).mask, answer.mask)


def test_recorded_task_read_back_matches_the_submitted_mask() -> None:
    task = _payload("task_get_after_annotation.json")
    sent = parse_result(_payload("annotation_create_request_result.json"), 96, 128)
    back = parse_result(task["annotations"][0]["result"], 96, 128)
    assert back.is_defective is sent.is_defective and np.array_equal(back.mask, sent.mask)


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_random_masks_survive_mask_rle_mask_exactly(mask: np.ndarray) -> None:
    h, w = mask.shape
    assert np.array_equal(rle_to_mask(mask_to_rle(mask), h, w), mask)


def _mask(h: int = 12, w: int = 16) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[2:5, 3:9] = True
    return m


def test_answer_rules() -> None:
    m, m2 = _mask(), np.zeros((12, 16), bool)
    m2[8:10, 1:4] = True
    defect_only = parse_result([choice_result(True)], 12, 16)
    assert defect_only.is_defective is True and defect_only.mask is None  # image-level label
    two_strokes = parse_result([choice_result(True), brush_result(m), brush_result(m2)], 12, 16)
    assert np.array_equal(two_strokes.mask, m | m2)  # union of strokes
    brush_only = parse_result([brush_result(m)], 12, 16)
    assert brush_only.is_defective is True and brush_only.review_reason is None
    ok = parse_result([choice_result(False)], 12, 16)
    assert ok.is_defective is False and ok.mask is None
    ok_brush = parse_result([choice_result(False), brush_result(m)], 12, 16)
    assert ok_brush.review_reason and ok_brush.mask is not None  # kept, flagged
    unknown = parse_result([{"type": "choices", "value": {"choices": ["Scratch?"]}}], 12, 16)
    assert unknown.review_reason and "Scratch?" in unknown.review_reason
    empty = parse_result([], 12, 16)
    assert empty.is_defective is None and empty.review_reason


def test_bad_payloads_are_rejected_with_a_reason() -> None:
    with pytest.raises(PayloadError, match="image is 16x12"):
        parse_result([brush_result(np.ones((5, 5), bool))], 12, 16)
    corrupt = brush_result(_mask())
    corrupt["value"]["rle"] = corrupt["value"]["rle"][:7]
    with pytest.raises(PayloadError, match="RLE"):
        parse_result([corrupt], 12, 16)
    with pytest.raises(PayloadError, match="must be a list"):
        parse_result({"type": "choices"}, 12, 16)  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="labeling config"):
        validate_result(
            [{"from_name": "verdict", "to_name": "image", "type": "choices", "value": {"choices": ["Maybe"]}}]
        )


def test_predictions_are_valid_and_carry_the_mask_only_for_defects() -> None:
    m = _mask()
    assert len(prediction_result(True, m)) == 2
    assert len(prediction_result(False, m)) == 1
    assert len(prediction_result(True, np.zeros_like(m))) == 1
