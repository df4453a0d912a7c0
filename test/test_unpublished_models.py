"""Models whose official weights are not available here (SuperPoint, NetVLAD, GeM,
MobileNetVLAD, HF-Net), tested with checkpoints written by the tests in the published formats:
tensor names, layouts and shapes of the releases (with a smaller whitening / projection where
the published one would take hundreds of megabytes)."""
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="learned models need PyTorch")

from global_loc.cli.main import main  # noqa: E402
from global_loc.convert import torch_checkpoint_from_tf  # noqa: E402
from global_loc.features import create_extractor  # noqa: E402
from global_loc.io.images import read_image  # noqa: E402
from global_loc.nets.hfnet import HFNetNet, MobileNetVLADNet, tf_name_map  # noqa: E402
from global_loc.retrieval import create_global_model  # noqa: E402
from global_loc.runtime.weights import WeightsError  # noqa: E402

ONNX_ATOL = 1e-4


def random_state(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in module.state_dict().items():
        if v.dtype.is_floating_point:
            t = torch.randn(v.shape, generator=g) * 0.1
            if k.endswith("running_var"):
                t = t.abs() + 0.5
            out[k] = t
        else:
            out[k] = v.clone()
    return out


def tf_variables(net, scope="") -> dict:
    """The variables of ``net`` as the TF-1 release names and lays them out."""
    state = net.state_dict()
    out = {}
    for tf_name, name in tf_name_map(net).items():
        if name not in state:
            continue
        t = state[name].numpy()
        if t.ndim == 4 and tf_name.endswith("depthwise_weights"):
            a = t.transpose(2, 3, 0, 1)
        elif t.ndim == 4:
            a = t.transpose(2, 3, 1, 0)
        elif tf_name.endswith("clusters"):
            a = t.reshape(1, 1, 1, *t.shape)
        elif t.ndim == 2:
            a = t.T
        else:
            a = t
        out[scope + tf_name] = np.ascontiguousarray(a)
        out[scope + tf_name + "/Adam"] = np.zeros_like(a)  # optimizer slots are ignored
    return out


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    from scipy.io import savemat

    from global_loc.features.superpoint import SuperPointNet
    from global_loc.retrieval.gem import GeMNet
    from global_loc.retrieval.netvlad import NetVLADNet

    d = tmp_path_factory.mktemp("weights")
    torch.save(random_state(SuperPointNet(), 1), d / "superpoint_v1.pth")
    # NetVLAD: the MatConvNet struct (VGG16 conv layers, NetVLAD at 31, whitening at 34)
    nv = NetVLADNet(clusters=64, whiten=256)
    nv.load_state_dict(random_state(nv, 2) | {"mean": torch.tensor([122.7, 114.9, 101.9])})
    layers = []
    for m in nv.backbone:
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach().numpy().transpose(2, 3, 1, 0)  # S x S x IN x OUT
            layers.append({"weights": np.array([w, m.bias.detach().numpy()], dtype=object)})
        else:
            layers.append({"weights": np.zeros((0,))})
    while len(layers) < 34:
        layers.append({"weights": np.zeros((0,))})
    layers[30] = {"weights": np.array([nv.netvlad.score_proj.weight.detach().numpy()[:, :, 0].T,
                                       -nv.netvlad.centers.detach().numpy()], dtype=object)}
    layers[33] = {"weights": np.array([nv.whiten.weight.detach().numpy().T[None, None],
                                       nv.whiten.bias.detach().numpy()], dtype=object)}
    layers_cell = np.empty(len(layers), dtype=object)
    layers_cell[:] = layers
    savemat(d / "Pitts30K_struct.mat", {"net": {"layers": layers_cell, "meta": {
        "normalization": {"averageImage": np.array([[[122.7, 114.9, 101.9]]], np.float32)}}}})
    torch.save(nv.state_dict(), d / "netvlad_reference.pt")
    gem = GeMNet()
    torch.save({"meta": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                "state_dict": {k: v for k, v in random_state(gem, 3).items() if k not in ("mean", "std")}},
               d / "retrievalSfM120k-vgg16-gem-b4dcdc6.pth")
    # MobileNetVLAD and HF-Net: TF-1 variables, converted
    mv = MobileNetVLADNet(0.35, 64, 256)
    mv.load_state_dict(random_state(mv, 4))
    torch.save(torch_checkpoint_from_tf("mobilenetvlad", tf_variables(mv)), d / "mobilenetvlad_depth-0.35.pth")
    hf = HFNetNet(0.75, 32, 256)
    hf.load_state_dict(random_state(hf, 5))
    torch.save(torch_checkpoint_from_tf("hfnet", tf_variables(hf, "hfnet/")), d / "hfnet.pth")
    return {"dir": d, "netvlad": nv, "mobilenetvlad": mv, "hfnet": hf}


@pytest.fixture(scope="module")
def image(temple_dir):
    return read_image(temple_dir / "images" / "templeR0010.png")


def test_tf_conversion_is_exact_and_infers_the_architecture(fake_weights):
    from global_loc.convert import load_converted

    for model in ("mobilenetvlad", "hfnet"):
        net, conf = load_converted(fake_weights["dir"] / ("hfnet.pth" if model == "hfnet" else
                                                          "mobilenetvlad_depth-0.35.pth"), model)
        ref = fake_weights[model]
        assert conf["depth_multiplier"] == (0.75 if model == "hfnet" else 0.35)
        assert conf["clusters"] == (32 if model == "hfnet" else 64) and conf["reduction"] == 256
        for k, v in ref.state_dict().items():
            assert torch.equal(net.state_dict()[k], v), k


def test_converter_names_a_missing_variable(fake_weights):
    variables = tf_variables(fake_weights["hfnet"])
    del variables["local_head/detector/Conv_1/biases"]
    with pytest.raises(WeightsError, match="no variable 'local_head/detector/Conv_1/biases'"):
        torch_checkpoint_from_tf("hfnet", variables, "release")


def test_convert_command_needs_tensorflow(tmp_path, capsys):
    try:
        import tensorflow  # noqa: F401
        pytest.skip("TensorFlow is installed: the message for its absence cannot be shown")
    except ImportError:
        pass
    rc = main(["convert", "--model", "hfnet", "--tf", str(tmp_path), "--out", str(tmp_path / "h.pth")])
    assert rc == 2 and "pip install tensorflow" in capsys.readouterr().err


def test_netvlad_mat_file_loads_exactly(fake_weights, image):
    gm = create_global_model({"name": "netvlad", "whiten": 256}, device="cpu", models_dir=fake_weights["dir"])
    ref = fake_weights["netvlad"].state_dict()
    for k, v in ref.items():
        assert torch.allclose(gm.network.state_dict()[k], v), k
    d = gm(image, None)
    assert d.shape == (256,) and abs(np.linalg.norm(d) - 1) < 1e-5


def test_netvlad_rejects_other_mat_files(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "other.mat", {"x": np.zeros(3)})
    with pytest.raises(WeightsError, match="not the NetVLAD MatConvNet struct file"):
        create_global_model({"name": "netvlad", "weights": str(tmp_path / "other.mat")}, device="cpu")


@pytest.mark.parametrize("conf", [
    {"name": "netvlad", "whiten": 256}, {"name": "gem"}, {"name": "mobilenetvlad"}, {"name": "hfnet"},
], ids=lambda c: c["name"])
def test_global_models_onnx_matches_pytorch(conf, fake_weights, image, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    monkeypatch.setenv("GLOBAL_LOC_CACHE", str(tmp_path))
    pt = create_global_model(conf, device="cpu", models_dir=fake_weights["dir"])
    ox = create_global_model(dict(conf, backend="onnxruntime"), device="cpu", models_dir=fake_weights["dir"])
    a, b = pt(image, None), ox(image, None)
    worst = float(np.abs(a - b).max())
    with capsys.disabled():
        print(f"\nONNX vs PyTorch {conf['name']}: worst abs error {worst:.2e} (tolerance {ONNX_ATOL})")
    assert a.shape == b.shape == (pt.dim,) and worst < ONNX_ATOL


@pytest.mark.parametrize("name", ["superpoint", "hfnet"])
def test_local_models_onnx_matches_pytorch(name, fake_weights, image, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    monkeypatch.setenv("GLOBAL_LOC_CACHE", str(tmp_path))
    pt = create_extractor({"name": name}, device="cpu", models_dir=fake_weights["dir"])
    ox = create_extractor({"name": name, "backend": "onnxruntime"}, device="cpu", models_dir=fake_weights["dir"])
    x, _ = pt.preprocess(image if name == "superpoint" else image[:, :, 0])
    worst = max(float((u - v).abs().max()) for u, v in zip(pt.runner(x), ox.runner(x)))
    with capsys.disabled():
        print(f"\nONNX vs PyTorch {name}: worst abs error {worst:.2e} (tolerance {ONNX_ATOL})")
    assert worst < ONNX_ATOL
    f = pt.extract(image)
    assert len(f) > 0 and f.dim == 256
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-4)


def test_hfnet_runs_once_per_image_for_local_and_global(fake_weights, image):
    ex = create_extractor({"name": "hfnet"}, device="cpu", models_dir=fake_weights["dir"])
    gm = create_global_model({"name": "hfnet"}, device="cpu", models_dir=fake_weights["dir"])
    calls = []
    gm.runner.module.register_forward_hook(lambda *a: calls.append("global network"))
    f = ex.extract(image)
    g = gm(image, f)
    assert calls == [] and g.shape == (256,)
    assert np.allclose(g, f.extras["global_descriptor"])
    alone = gm(image, None)  # without the local features, the network runs
    assert calls == ["global network"] and np.allclose(alone, g, atol=1e-5)


def test_converted_loaders_refuse_other_files(fake_weights, tmp_path, weights_dir):
    import shutil

    bad = tmp_path / "hfnet.pth"
    shutil.copy(weights_dir / "aliked" / "aliked-n16.pth", bad)
    with pytest.raises(WeightsError, match="not a converted hfnet model .*global-loc convert --model hfnet"):
        create_extractor({"name": "hfnet", "weights": str(bad)}, device="cpu")
    with pytest.raises(WeightsError, match="does not hold SuperPoint weights"):
        create_extractor({"name": "superpoint", "weights": str(bad)}, device="cpu")
    with pytest.raises(WeightsError, match="does not hold GeM \\(VGG16\\) weights"):
        create_global_model({"name": "gem", "weights": str(bad)}, device="cpu")
    with pytest.raises(WeightsError, match="not a converted mobilenetvlad model .*global-loc convert --model "
                                           "mobilenetvlad"):
        create_global_model({"name": "mobilenetvlad", "weights": str(bad)}, device="cpu")


# (kind, name, source file: in fake_weights or under ../shared/weights, what the error says)
TRUNCATED = [
    ("local", "superpoint", "superpoint_v1.pth", "cannot read SuperPoint weights from .*truncated"),
    ("local", "hfnet", "hfnet.pth", "cannot read hfnet weights from .*truncated"),
    ("global", "gem", "retrievalSfM120k-vgg16-gem-b4dcdc6.pth", "cannot read GeM weights from .*truncated"),
    ("global", "mobilenetvlad", "mobilenetvlad_depth-0.35.pth", "cannot read mobilenetvlad weights from .*truncated"),
    ("global", "netvlad", "Pitts30K_struct.mat", "cannot read the NetVLAD file .*truncated"),
    ("local", "aliked", "aliked/aliked-n16.pth", "cannot read ALIKED weights from .*truncated"),
    ("local", "xfeat", "xfeat_onnx/xfeat.onnx", "cannot load ONNX model .*truncated or not an ONNX file"),
]


@pytest.mark.parametrize("kind,name,source,message", TRUNCATED, ids=[t[1] for t in TRUNCATED])
def test_loaders_refuse_truncated_files(kind, name, source, message, fake_weights, weights_dir, tmp_path):
    # R2D2's truncated checkpoints are tested in test_learned_features.py. A name that is not
    # in the manifest, so that the loader itself (not the manifest's size check) must notice.
    full = fake_weights["dir"] / source if "/" not in source else weights_dir / source
    cut = tmp_path / ("mine_" + Path(source).name)
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    create = create_extractor if kind == "local" else create_global_model
    with pytest.raises(WeightsError, match=message):
        create({"name": name, "weights": str(cut)}, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["hfnet", "superpoint-mobilenetvlad"])
def test_presets_run_end_to_end(preset, fake_weights, temple_split):
    """With random weights nothing is expected to localize well; the pipeline must run through
    (map with the models' descriptor sizes, localization with a status for every query)."""
    from global_loc.config import load_preset
    from global_loc.errors import EmptyMapError
    from global_loc.io.text import read_cameras, read_poses
    from global_loc.localizer import Localizer
    from global_loc.pipeline import index_image_folder, localize_image_folder

    conf = load_preset(preset, ["global_descriptor.pca_dims=0"])
    conf.models_dir, conf.device = str(fake_weights["dir"]), "cpu"
    poses = dict(list(read_poses(temple_split["map_poses"]).items())[:6])
    m = index_image_folder(temple_split["images"], poses, read_cameras(temple_split["cameras"]), conf)
    assert m.global_descriptors.shape == (6, 256) and m.local_features["dim"] == 256
    queries = dict(list(read_cameras(temple_split["queries"]).items())[:3])
    if m.num_points3D == 0:  # random descriptors may match nothing: the map then says so
        with pytest.raises(EmptyMapError, match="no triangulated 3D points"):
            Localizer(m, conf)
        return
    run = localize_image_folder(Localizer(m, conf), temple_split["images"], queries)
    assert len(run.outcomes) == 3 and all(o.result.status.value in ("localized", "not_localized") for o in run.outcomes)
