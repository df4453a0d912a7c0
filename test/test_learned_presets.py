"""Issue criterion: presets aliked-n16, r2d2 and xfeat on the temple ring (even views map, odd
views query): all 24 queries within (1 cm, 1 deg)."""
import numpy as np
import pytest

pytest.importorskip("torch", reason="learned models need PyTorch")
pytest.importorskip("onnxruntime", reason="XFeat needs onnxruntime")

from global_loc.config import load_preset  # noqa: E402
from global_loc.geometry.transforms import pose_error  # noqa: E402
from global_loc.io.text import read_cameras, read_poses  # noqa: E402
from global_loc.localizer import Localizer  # noqa: E402
from global_loc.pipeline import index_image_folder, localize_image_folder  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("preset", ["aliked-n16", "r2d2", "xfeat"])
def test_learned_preset_on_the_temple(preset, temple_split, weights_dir, capsys):
    conf = load_preset(preset)
    conf.models_dir, conf.device = str(weights_dir), "cpu"
    gt = read_poses(temple_split["gt"])
    mapping = read_poses(temple_split["map_poses"])
    cams = read_cameras(temple_split["cameras"])
    m = index_image_folder(temple_split["images"], mapping, cams, conf)
    assert m.local_features["name"] == conf.features["name"]
    run = localize_image_folder(Localizer(m, conf), temple_split["images"], read_cameras(temple_split["queries"]))
    errors = np.array([pose_error(o.result.cam_from_world, gt[o.name]) if o.result.success else (np.inf, np.inf)
                       for o in run.outcomes])
    assert len(errors) == 24
    with capsys.disabled():
        print(f"\n{preset} on the temple: {np.sum(np.isfinite(errors[:, 0]))}/24 localized, median "
              f"{1e3 * np.median(errors[:, 0]):.3f} mm / {np.median(errors[:, 1]):.4f} deg, worst "
              f"{1e3 * errors[:, 0].max():.2f} mm / {errors[:, 1].max():.3f} deg")
    assert np.all((errors[:, 0] < 0.01) & (errors[:, 1] < 1.0))
