"""Learned local features: architectures load the published weights, ONNX Runtime agrees
with PyTorch, and loaders refuse wrong files with a clear message."""
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="learned models need PyTorch (pip install torch)")

from global_loc.features import create_extractor  # noqa: E402
from global_loc.io.images import read_image  # noqa: E402
from global_loc.runtime.weights import WeightsError, find_weights  # noqa: E402

ALIKED_VARIANTS = ["aliked-t16", "aliked-n16", "aliked-n16rot", "aliked-n32"]
R2D2_WEIGHTS = ["r2d2_WASF_N16.pt", "r2d2_WAF_N16.pt", "r2d2_WASF_N8_big.pt", "faster2d2_WASF_N16.pt"]


@pytest.fixture(scope="module")
def image(temple_dir):
    return read_image(temple_dir / "images" / "templeR0010.png")


def _naive_deform_conv(x, offset, weight, bias, pad=1):
    """An independent, loop-based deformable convolution (bilinear, zero outside)."""
    b_, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    out = torch.zeros(b_, o, ho, wo)

    def sample(img, y, xx):
        if y <= -1 or y >= h or xx <= -1 or xx >= w:
            return torch.zeros(c)
        y0, x0 = int(np.floor(y)), int(np.floor(xx))
        v = torch.zeros(c)
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xc, wx in ((x0, 1 - (xx - x0)), (x0 + 1, xx - x0)):
                if 0 <= yy < h and 0 <= xc < w:
                    v += wy * wx * img[:, yy, xc]
        return v

    for bi in range(b_):
        for i in range(ho):
            for j in range(wo):
                cols = []
                for a in range(kh):
                    for d in range(kw):
                        k = a * kw + d
                        cols.append(sample(x[bi], i - pad + a + float(offset[bi, 2 * k, i, j]),
                                           j - pad + d + float(offset[bi, 2 * k + 1, i, j])))
                out[bi, :, i, j] = weight.reshape(o, -1, kh * kw).mul(torch.stack(cols, 1)).sum((1, 2))
    return out + bias.view(1, -1, 1, 1)


def test_deformable_convolution_matches_a_naive_implementation():
    from global_loc.runtime.ops import deform_conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 7, generator=g)
    off = torch.randn(2, 18, 6, 7, generator=g) * 2.5  # reaches outside the image too
    w, b = torch.randn(4, 3, 3, 3, generator=g), torch.randn(4, generator=g)
    assert (deform_conv2d(x, off, w, b) - _naive_deform_conv(x, off, w, b)).abs().max() < 1e-4


@pytest.mark.parametrize("variant", ALIKED_VARIANTS)
def test_aliked_variants_load_and_extract(variant, image, weights_dir):
    ex = create_extractor({"name": "aliked", "variant": variant, "max_keypoints": 1024}, device="cpu",
                          models_dir=weights_dir)
    f = ex.extract(image)
    assert len(f) == 1024 and f.dim == (64 if variant == "aliked-t16" else 128)
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-4)
    assert np.all((f.keypoints >= 0) & (f.keypoints <= [639, 479]))
    assert f.scores.min() > 0 and ex.info()["conf"]["weights"] == f"{variant}.pth"  # top-k: no threshold


@pytest.mark.parametrize("weights", R2D2_WEIGHTS)
def test_r2d2_checkpoints_load_and_extract(weights, image, weights_dir):
    ex = create_extractor({"name": "r2d2", "weights": weights, "multiscale": False, "max_keypoints": 500},
                          device="cpu", models_dir=weights_dir)
    f = ex.extract(image)
    assert 100 < len(f) <= 500 and f.dim == 128
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-4)
    assert f.scores.min() >= 0.49  # reliability and repeatability both >= 0.7


def test_xfeat_onnx_extracts(image, weights_dir):
    ex = create_extractor({"name": "xfeat", "max_keypoints": 1000}, device="cpu", models_dir=weights_dir)
    f = ex.extract(image)
    assert len(f) == 1000 and f.dim == 64
    assert np.all((f.keypoints >= -0.5) & (f.keypoints <= [639.5, 479.5]))
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-4)


def test_r2d2_network_string_is_parsed_not_evaluated():
    from global_loc.features.r2d2 import parse_net_string

    assert parse_net_string("Quad_L2Net_ConfCFS()") == ("Quad_L2Net_ConfCFS", {})
    assert parse_net_string(" Quad_L2Net_ConfCFS(mchan=6) ") == ("Quad_L2Net_ConfCFS", {"mchan": 6})
    for bad, msg in [("__import__('os').system('true')", "not of the form"), ("os.system('x')", "not of the form"),
                     ("Evil_Net()", "not one of"), ("Quad_L2Net_ConfCFS(mchan=open('x'))", "must be a literal"),
                     ("Quad_L2Net_ConfCFS(hack=1)", "does not take 'hack'"), ("1 +", "not a constructor")]:
        with pytest.raises(WeightsError, match=msg):
            parse_net_string(bad)


# --- ONNX Runtime agrees with PyTorch ----------------------------------------------------------
ONNX_ATOL = 1e-4


@pytest.mark.parametrize("conf", [
    {"name": "aliked", "variant": "aliked-n16"}, {"name": "aliked", "variant": "aliked-t16"},
    {"name": "aliked", "variant": "aliked-n32"},
    {"name": "r2d2", "weights": "r2d2_WASF_N16.pt", "multiscale": False},
    {"name": "r2d2", "weights": "faster2d2_WASF_N16.pt", "multiscale": False},
], ids=lambda c: c.get("variant") or c.get("weights"))
def test_onnx_export_matches_pytorch(conf, image, weights_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    monkeypatch.setenv("GLOBAL_LOC_CACHE", str(tmp_path))
    pt = create_extractor(conf, device="cpu", models_dir=weights_dir)
    ox = create_extractor(dict(conf, backend="onnxruntime"), device="cpu", models_dir=weights_dir)
    assert list(tmp_path.rglob("*.onnx")), "the dense network was exported"
    x, _ = pt.preprocess(image)  # 640 x 480: another size than the export's example
    worst = 0.0
    for name, a, b in zip(pt.output_names, pt.runner(x), ox.runner(x)):
        assert a.shape == b.shape
        worst = max(worst, float((a - b).abs().max()))
    with capsys.disabled():
        print(f"\nONNX vs PyTorch {conf}: worst abs error {worst:.2e} (tolerance {ONNX_ATOL})")
    assert worst < ONNX_ATOL
    fa, fb = pt.extract(image), ox.extract(image)
    # the same keypoints, up to a few swapped at equal scores
    d = np.linalg.norm(fa.keypoints[:, None] - fb.keypoints[None], axis=2).min(axis=1)
    assert np.mean(d < 1e-2) > 0.99


# --- wrong files ------------------------------------------------------------------------------
def test_loaders_refuse_other_models_and_truncated_files(weights_dir, tmp_path):
    other = tmp_path / "aliked-n16.pth"
    shutil.copy(weights_dir / "r2d2" / "r2d2_WASF_N16.pt", other)  # another model's checkpoint
    with pytest.raises(WeightsError, match="published aliked-n16.pth has 2738091"):
        create_extractor({"name": "aliked", "weights": str(other)}, device="cpu")
    renamed = tmp_path / "mine.pth"  # not in the manifest: the tensors are checked
    shutil.copy(weights_dir / "r2d2" / "r2d2_WASF_N16.pt", renamed)
    with pytest.raises(WeightsError, match=r"mine.pth does not hold ALIKED \(aliked-n16\) weights: 76 missing "
                                           r"tensors .*unexpected tensors \(e.g. net, state_dict\)"):
        create_extractor({"name": "aliked", "weights": str(renamed)}, device="cpu")
    a = tmp_path / "aliked_as_r2d2.pt"
    shutil.copy(weights_dir / "aliked" / "aliked-n16.pth", a)
    with pytest.raises(WeightsError, match="not an R2D2 checkpoint: expected a dict with 'net' and 'state_dict'"):
        create_extractor({"name": "r2d2", "weights": str(a)}, device="cpu")
    t = tmp_path / "cut.pt"
    t.write_bytes((weights_dir / "r2d2" / "r2d2_WASF_N16.pt").read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="cannot read R2D2 weights from .*cut.pt .*truncated"):
        create_extractor({"name": "r2d2", "weights": str(t)}, device="cpu")
    cut = tmp_path / "r2d2_WASF_N16.pt"  # a published name, truncated: the manifest says so
    cut.write_bytes((weights_dir / "r2d2" / "r2d2_WASF_N16.pt").read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="is 100000 bytes, the published r2d2_WASF_N16.pt has 1950677: it is truncated"):
        create_extractor({"name": "r2d2", "weights": str(cut)}, device="cpu")
    onnx = tmp_path / "fake.onnx"
    shutil.copy(weights_dir / "aliked" / "aliked-n16.pth", onnx)
    with pytest.raises(Exception, match="cannot load ONNX model"):
        create_extractor({"name": "xfeat", "weights": str(onnx)}, device="cpu")


def test_missing_weights_say_where_they_were_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOBAL_LOC_MODELS", str(tmp_path / "env"))
    with pytest.raises(WeightsError, match=r"'aliked-n32.pth' not found \(looked in .*models, .*env\).*"
                                           r"github.com/Shiaoming/ALIKED"):
        create_extractor({"name": "aliked", "variant": "aliked-n32"}, device="cpu", models_dir=tmp_path / "models")


def test_weights_are_found_recursively_and_by_environment(weights_dir, monkeypatch):
    assert find_weights("xfeat.onnx", weights_dir).name == "xfeat.onnx"
    monkeypatch.setenv("GLOBAL_LOC_MODELS", str(weights_dir))
    assert find_weights("aliked-t16.pth").parent.name == "aliked"


def test_rotated_query_keypoints_map_back():
    """Keypoints found in a query turned by k quarter turns map back to the pixels they came
    from in the original image."""
    from global_loc.localizer import _unrotate
    from global_loc.types import LocalFeatures

    h, w = 5, 7
    index = np.arange(h * w).reshape(h, w)  # each pixel holds its own original index
    for turns in (1, 2, 3):
        rot = np.rot90(index, turns)
        ys, xs = np.mgrid[: rot.shape[0], : rot.shape[1]]
        feats = LocalFeatures(np.stack([xs.ravel(), ys.ravel()], 1), np.zeros((rot.size, 2)), np.zeros(rot.size),
                              (rot.shape[1], rot.shape[0]))
        back = _unrotate(feats, turns, w, h).keypoints
        expected = np.stack([rot.ravel() % w, rot.ravel() // w], 1)
        assert np.array_equal(back, expected), turns


def test_batched_extraction_gives_the_same_features(temple_dir, weights_dir):
    ims = [read_image(temple_dir / "images" / f"templeR{n:04d}.png") for n in (2, 4, 6)]
    ex = create_extractor({"name": "aliked", "variant": "aliked-t16", "max_keypoints": 512}, device="cpu",
                          models_dir=weights_dir)
    single = [ex.extract(i) for i in ims]
    batch = ex.extract_batch(ims)
    for a, b in zip(single, batch):
        assert len(a) == len(b)
        # the same keypoints (their order among equal scores may differ) and descriptors
        d = np.linalg.norm(a.keypoints[:, None] - b.keypoints[None], axis=2)
        nn = d.argmin(axis=1)
        assert d.min(axis=1).max() < 1e-3
        assert np.abs(a.descriptors - b.descriptors[nn]).max() < 1e-4


def test_export_command_checks_onnx_against_pytorch(weights_dir, tmp_path, capsys):
    from global_loc.cli.main import main

    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    assert main(["-q", "export", "--preset", "xfeat", "--models-dir", str(weights_dir), "--out", str(tmp_path)]) == 0
    assert "no learned network to export" in capsys.readouterr().out  # XFeat is an ONNX file already
    assert main(["-q", "export", "--preset", "aliked-n16", "--set", "features.variant=aliked-t16",
                 "--set", "features.weights=aliked-t16.pth", "--models-dir", str(weights_dir),
                 "--out", str(tmp_path), "--check"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "aliked-aliked-t16.onnx").exists()
    diff = float(out.split("largest difference ")[1].split(")")[0])
    assert diff < ONNX_ATOL
