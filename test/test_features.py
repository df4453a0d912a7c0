import numpy as np
import pytest

from global_loc.errors import InputError
from global_loc.features import create_extractor
from global_loc.io.images import read_image


def test_sift_on_a_real_image(temple_dir):
    img = read_image(temple_dir / "images" / "templeR0010.png")
    f = create_extractor({"name": "sift", "max_keypoints": 500}).extract(img)
    assert 100 < len(f) <= 500
    assert f.keypoints.dtype == np.float32 and f.keypoints.shape == (len(f), 2)
    assert f.descriptors.shape == (len(f), 128) and f.descriptors.dtype == np.float32
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-5)
    assert np.all(f.descriptors >= 0)  # RootSIFT
    assert f.colors.shape == (len(f), 3) and f.image_size == (640, 480)
    assert np.all((f.keypoints >= -0.5) & (f.keypoints < [640, 480]))
    # strongest first selection: scores of the kept ones are the largest ones
    full = create_extractor({"name": "sift", "max_keypoints": 0}).extract(img)
    assert len(full) > len(f)
    assert f.scores.min() >= np.sort(full.scores)[::-1][len(f) - 1] - 1e-6


def test_resize_max_maps_keypoints_back_to_the_original(temple_dir):
    img = read_image(temple_dir / "images" / "templeR0010.png")
    full = create_extractor({"name": "sift", "resize_max": 0}).extract(img)
    half = create_extractor({"name": "sift", "resize_max": 320}).extract(img)
    # each keypoint of the half-size image lies near a keypoint of the full image
    d = np.linalg.norm(half.keypoints[:, None] - full.keypoints[None], axis=2).min(axis=1)
    assert np.median(d) < 1.5
    assert half.image_size == (640, 480)


def test_blank_image_gives_no_features():
    f = create_extractor({"name": "sift"}).extract(np.zeros((100, 120), np.uint8))
    assert len(f) == 0 and f.descriptors.shape == (0, 128)


def test_bad_image_array():
    with pytest.raises(InputError, match="uint8"):
        create_extractor({"name": "sift"}).extract(np.zeros((10, 10), np.float32))
