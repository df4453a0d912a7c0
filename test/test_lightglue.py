"""LightGlue (kornia's, the published weights by path) and DISK: matches that agree with a known
homography, refusal of features LightGlue was not trained on, no network access when loading,
DISK as kornia computes it, and the aliked-lightglue preset localizing temple views."""
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="LightGlue and DISK need PyTorch")
pytest.importorskip("kornia", reason="LightGlue and DISK come from kornia")

import cv2  # noqa: E402

from global_loc.config import load_preset  # noqa: E402
from global_loc.errors import ConfigError  # noqa: E402
from global_loc.features import create_extractor  # noqa: E402
from global_loc.io.images import read_image  # noqa: E402
from global_loc.matching.lightglue import LightGlueMatcher  # noqa: E402
from global_loc.runtime.weights import WeightsError  # noqa: E402

#: a homography that shears, scales and tilts the view (the pair's ground truth)
H = np.array([[0.9, 0.1, 30.0], [-0.08, 0.95, 20.0], [1e-4, 0.0, 1.0]])


@pytest.fixture(scope="module")
def aliked_pair(temple_dir, weights_dir):
    conf = load_preset("aliked-lightglue")
    ex = create_extractor(conf.features, device="cpu", models_dir=weights_dir)
    image = read_image(temple_dir / "images" / "templeR0001.png")
    warped = cv2.warpPerspective(image, H, (image.shape[1], image.shape[0]))
    return conf, ex.extract(image), ex.extract(warped)


def _homography_errors(f0, f1, i0, i1):
    projected = cv2.perspectiveTransform(f0.keypoints[i0][None].astype(np.float64), H)[0]
    return np.linalg.norm(projected - f1.keypoints[i1], axis=1)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection and kornia's / torch.hub's downloaders fail loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    import kornia.core.download as kd

    monkeypatch.setattr(kd, "load_state_dict_from_url", refuse, raising=False)


def test_lightglue_matches_agree_with_a_known_homography(aliked_pair, weights_dir, no_network, capsys):
    """ALIKED on a temple view and on the view warped by a known homography: LightGlue's matches
    land within 1 px of where the homography puts them (median), 95 % within 3 px (the keypoints
    are detected anew in the warped image, so they carry the detector's own noise)."""
    conf, f0, f1 = aliked_pair
    lg = LightGlueMatcher(conf.features, conf.matching, device="cpu", models_dir=weights_dir)
    i0, i1, scores = lg.match(f0.keypoints, f0.descriptors, f0.image_size, f1.keypoints, f1.descriptors,
                              f1.image_size)
    err = _homography_errors(f0, f1, i0, i1)
    with capsys.disabled():
        print(f"\nLightGlue (ALIKED, {len(f0)} x {len(f1)} keypoints): {len(i0)} matches, median error "
              f"{np.median(err):.2f} px, {np.mean(err < 1):.0%} within 1 px, {np.mean(err < 3):.1%} within 3 px, "
              f"{lg.last_stats.get('layers')} layers")
    assert len(i0) >= 0.5 * min(len(f0), len(f1))
    assert np.median(err) < 1.0
    assert np.mean(err < 3.0) >= 0.95
    assert np.all((scores > conf.matching.filter_threshold) & (scores <= 1.0))
    assert len(np.unique(i0)) == len(i0) and len(np.unique(i1)) == len(i1)  # one to one


def test_lightglue_refuses_features_it_was_not_trained_on(weights_dir):
    conf = load_preset("aliked-lightglue")
    with pytest.raises(ConfigError, match="published weights for aliked and disk features only, not 'sift'"):
        LightGlueMatcher({"name": "sift"}, conf.matching, device="cpu", models_dir=weights_dir)
    with pytest.raises(ConfigError, match="128-d descriptors"):
        LightGlueMatcher({"name": "aliked", "variant": "aliked-t16"}, conf.matching, device="cpu",
                         models_dir=weights_dir)
    # the map builder refuses before any keyframe is extracted
    from global_loc.map.builder import MapBuilder

    sift = load_preset("sift", ["matching.name=lightglue"])
    sift.models_dir = str(weights_dir)
    with pytest.raises(ConfigError, match="not 'sift'"):
        MapBuilder(sift)


def test_lightglue_refuses_a_file_that_is_not_its_weights(tmp_path, weights_dir):
    """DISK's checkpoint given as LightGlue's weights: named as such, with the tensors it lacks."""
    conf = load_preset("aliked-lightglue")
    wrong = tmp_path / "my_lightglue.pth"
    wrong.write_bytes((weights_dir / "disk" / "disk-depth-save.pth").read_bytes())
    conf.matching.lightglue_weights = str(wrong)
    with pytest.raises(WeightsError, match="does not hold LightGlue"):
        LightGlueMatcher(conf.features, conf.matching, device="cpu", models_dir=weights_dir)


def test_disk_is_kornias_disk_from_the_file(temple_dir, weights_dir, no_network):
    """Our DISK extractor gives kornia's DISK keypoints and descriptors with the same weights."""
    from kornia.feature import DISK as KorniaDISK

    ex = create_extractor(load_preset("disk-lightglue").features, device="cpu", models_dir=weights_dir)
    image = read_image(temple_dir / "images" / "templeR0001.png")
    ours = ex.extract(image)
    ref = KorniaDISK()
    ref.load_state_dict(torch.load(weights_dir / "disk" / "disk-depth-save.pth", map_location="cpu",
                                   weights_only=True)["extractor"])
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0
    with torch.inference_mode():
        theirs = ref.eval()(x, n=1024, window_size=5, score_threshold=0.0, pad_if_not_divisible=True)[0]
    k_ours = {tuple(k) for k in ours.keypoints.astype(int)}
    k_theirs = {tuple(k) for k in theirs.keypoints.numpy().astype(int)}
    assert len(ours) == 1024 and k_ours == k_theirs
    order = np.lexsort(ours.keypoints.T)
    order_t = np.lexsort(theirs.keypoints.numpy().T)
    np.testing.assert_allclose(ours.descriptors[order], theirs.descriptors.numpy()[order_t], atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (the GPU check runs it)")
def test_lightglue_gives_the_same_matches_on_cuda(aliked_pair, weights_dir):
    conf, f0, f1 = aliked_pair
    out = []
    for device in ("cpu", "cuda"):
        lg = LightGlueMatcher(conf.features, conf.matching, device=device, models_dir=weights_dir)
        i0, i1, _ = lg.match(f0.keypoints, f0.descriptors, f0.image_size, f1.keypoints, f1.descriptors,
                             f1.image_size)
        out.append({(int(a), int(b)) for a, b in zip(i0, i1)})
    assert len(out[0] & out[1]) >= 0.98 * max(len(out[0]), len(out[1]))


@pytest.mark.slow
def test_aliked_lightglue_localizes_temple_views(temple_dir, weights_dir, capsys):
    """The preset end to end on a part of the temple ring (keyframes 20-34 even, queries 23, 27,
    31; the whole ring is benchmarks/lightglue.py's): maps with LightGlue-matched pairs, queries
    matched keyframe by keyframe and lifted to 3D, every query within (1 cm, 1 deg)."""
    from global_loc.geometry.transforms import pose_error
    from global_loc.io.text import read_cameras, read_poses
    from global_loc.localizer import Localizer
    from global_loc.pipeline import index_image_folder

    poses = read_poses(temple_dir / "poses_cam_from_world.txt")
    cams = read_cameras(temple_dir / "cameras.txt")
    conf = load_preset("aliked-lightglue")
    conf.models_dir, conf.device = str(weights_dir), "cpu"
    mapping = {f"templeR{n:04d}.png": poses[f"templeR{n:04d}.png"] for n in range(20, 35, 2)}
    m = index_image_folder(temple_dir / "images", mapping, cams, conf)
    assert m.metadata["preset"]["matching"]["name"] == "lightglue"
    loc = Localizer(m, conf)
    errors = []
    for n in (23, 27, 31):
        name = f"templeR{n:04d}.png"
        r = loc.localize(read_image(temple_dir / "images" / name), cams[name])
        assert r.success, r.reason
        errors.append(pose_error(r.cam_from_world, poses[name]))
    errors = np.array(errors)
    with capsys.disabled():
        print(f"\naliked-lightglue on temple views 23/27/31: worst {1e3 * errors[:, 0].max():.2f} mm / "
              f"{errors[:, 1].max():.3f} deg")
    assert np.all((errors[:, 0] < 0.01) & (errors[:, 1] < 1.0))
