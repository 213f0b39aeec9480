from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.errors import DataError
from ml.images import read_image, read_mask, resize_rgb


def test_gray8_rgb_rgba_and_16bit_are_normalised(tmp_path: Path) -> None:
    gray = (np.arange(64 * 48) % 256).astype(np.uint8).reshape(48, 64)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 7)]), "RGBA").save(tmp_path / "a.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    for name in ("g.png", "a.png", "g16.png"):
        img = read_image(tmp_path / name)
        assert img.dtype == np.uint8 and img.shape == (48, 64, 3)
        assert np.array_equal(img[:, :, 0], gray), name  # 16-bit scaled by the dtype range
        assert np.array_equal(img[:, :, 0], img[:, :, 2])


def test_truncated_and_non_images_raise_naming_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((200, 200, 3), np.uint8) + 90).save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.jpg", "text.png", "missing.png"):
        with pytest.raises(DataError, match=name):
            read_image(tmp_path / name)


def test_masks_binarise_0_255_and_0_1(tmp_path: Path) -> None:
    m = np.zeros((10, 10), np.uint8)
    m[2:4, 2:4] = 255
    m[5, 5] = 100  # anti-aliased edge below half: background
    Image.fromarray(m).save(tmp_path / "m255.png")
    Image.fromarray((m == 255).astype(np.uint8)).save(tmp_path / "m01.png")
    a, b = read_mask(tmp_path / "m255.png"), read_mask(tmp_path / "m01.png")
    assert a.dtype == bool and a.sum() == 4 and np.array_equal(a, b)


def test_resize_keeps_dtype_and_shape() -> None:
    img = np.zeros((100, 300, 3), np.uint8)
    assert resize_rgb(img, (64, 128)).shape == (64, 128, 3)
    assert resize_rgb(img, (200, 400)).dtype == np.uint8
