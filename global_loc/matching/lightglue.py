"""LightGlue: "LightGlue: Local Feature Matching at Light Speed", Lindenberger, Sarlin and
Pollefeys, ICCV 2023 (https://github.com/cvg/LightGlue; weights Apache-2.0).

The network is kornia's implementation (:class:`kornia.feature.LightGlue`), built without its
downloader (``features=None``) and loaded from the published release file by path
(``aliked_lightglue.pth``, ``disk_lightglue.pth``: cvg/LightGlue's key layout, which kornia
uses). Only the features a published model was trained on are matched with it; others are
refused (:class:`~global_loc.errors.ConfigError`), since a LightGlue model on another
detector's keypoints and descriptors gives matches without meaning.

Adaptive depth and width (the paper's early stopping, ``depth_confidence``, and point pruning,
``width_confidence``) are on by default with the paper's values; ``filter_threshold`` is the
matchability-times-assignment score a match must reach.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import ConfigError

#: the published LightGlue weights by the local features they were trained on
TRAINED_ON = {"aliked": "aliked_lightglue.pth", "disk": "disk_lightglue.pth"}

#: descriptor dimension of the published ALIKED and DISK models
INPUT_DIM = 128


def check_lightglue_features(features: dict | str, descriptor_dim: int | None = None) -> str:
    """The weight file name for these local features, or why LightGlue cannot match them.

    Args:
        features: the local feature configuration (``{"name": ..., "variant": ...}``) or its name.
        descriptor_dim: their descriptor dimension, where known (ALIKED t16 has 64).
    Raises:
        ConfigError: features no published LightGlue model was trained on.
    """
    name = features if isinstance(features, str) else str(features.get("name", ""))
    if name not in TRAINED_ON:
        raise ConfigError(
            f"LightGlue has published weights for {' and '.join(TRAINED_ON)} features only, not '{name}': "
            "use matching.name: nn, or the preset aliked-lightglue or disk-lightglue")
    variant = "" if isinstance(features, str) else str(features.get("variant", ""))
    if descriptor_dim is not None and descriptor_dim != INPUT_DIM or variant == "aliked-t16":
        raise ConfigError(
            f"LightGlue for {name} was trained on {INPUT_DIM}-d descriptors; these have "
            f"{descriptor_dim if descriptor_dim is not None else 64} ({variant or name}): use aliked-n16 or "
            "aliked-n32 (or matching.name: nn)")
    return TRAINED_ON[name]


class LightGlueMatcher:
    """Pairwise matching of two images' keypoints and descriptors with LightGlue.

    Args:
        features: the local feature configuration of both images (must be ALIKED or DISK).
        conf: a :class:`~global_loc.config.MatchingConf` (``lightglue_weights``,
            ``depth_confidence``, ``width_confidence``, ``filter_threshold``).
        device: ``auto``, ``cpu`` or ``cuda``.
        models_dir: where to look for the weights (also ``$GLOBAL_LOC_MODELS``).
    Raises:
        ConfigError: other features; WeightsError: a missing, truncated or foreign file.
    """

    def __init__(self, features: dict | str, conf, device: str = "auto", models_dir=None,
                 descriptor_dim: int | None = None):
        from ..runtime.backends import require_torch, select_device
        from ..runtime.weights import check_file, check_state_dict, find_weights, load_torch_checkpoint

        default = check_lightglue_features(features, descriptor_dim)
        torch = require_torch()
        try:
            from kornia.feature import LightGlue
        except ImportError as e:  # pragma: no cover - kornia is in the `learned` extra
            raise ConfigError(f"LightGlue needs kornia ({e}); pip install 'global_loc[learned]'") from None
        self.torch = torch
        self.conf = conf
        self.device = select_device(device)
        self.weights_path = find_weights(getattr(conf, "lightglue_weights", "") or default, models_dir)
        check_file(self.weights_path)
        net = LightGlue(features=None, input_dim=INPUT_DIM, depth_confidence=float(conf.depth_confidence),
                        width_confidence=float(conf.width_confidence), filter_threshold=float(conf.filter_threshold),
                        flash=True)  # SDPA kernels (FlashAttention on CUDA, its CPU kernel here)
        state = load_torch_checkpoint(self.weights_path, "LightGlue")
        if not isinstance(state, dict):
            from ..runtime.weights import WeightsError

            raise WeightsError(f"{self.weights_path} holds a {type(state).__name__}, not a LightGlue state dict")
        state = {k[len("matcher."):] if k.startswith("matcher.") else k: v for k, v in state.items()}
        for i in range(net.conf.n_layers):  # the layout of the first release
            state = {k.replace(f"self_attn.{i}.", f"transformers.{i}.self_attn.")
                      .replace(f"cross_attn.{i}.", f"transformers.{i}.cross_attn."): v for k, v in state.items()}
        expected = {k: v for k, v in net.state_dict().items() if k != "confidence_thresholds"}  # derived buffer
        # the DISK release also holds a tensor per assignment layer that the network no longer has
        # (log_assignment.N.r); kornia's loader ignores them too
        state = {k: v for k, v in state.items() if k in expected or not re.fullmatch(r"log_assignment\.\d+\.r", k)}
        check_state_dict(state, expected, self.weights_path, f"LightGlue ({default.split('_')[0]})")
        net.load_state_dict(state, strict=False)
        self.network = net.eval().to(self.device)
        #: layers the last pair ran (early stopping), and the keypoints it kept (pruning)
        self.last_stats: dict[str, float] = {}

    def match(self, keypoints0: np.ndarray, descriptors0: np.ndarray, size0: tuple[int, int],
              keypoints1: np.ndarray, descriptors1: np.ndarray, size1: tuple[int, int]):
        """Matches between image 0 and image 1.

        Args:
            keypoints0, keypoints1: (N, 2), (M, 2) float pixels (x, y), OpenCV convention.
            descriptors0, descriptors1: (N, 128), (M, 128) float, L2-normalised.
            size0, size1: each image's (width, height), pixels.
        Returns:
            ``(idx0 (K,) int64, idx1 (K,) int64, scores (K,) float32)``: row indices of the
            matched keypoints and LightGlue's match scores in (filter_threshold, 1].
        """
        torch = self.torch
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        if len(keypoints0) == 0 or len(keypoints1) == 0:
            return empty
        dev = self.device

        def side(k, d, size):
            k = np.asarray(k, np.float32).reshape(-1, 2)
            w, h = size
            # kornia raises for a keypoint outside [-1, 1] after normalisation: keep them in the image
            k = np.clip(k, [0.0, 0.0], [max(w - 1, 0), max(h - 1, 0)]).astype(np.float32)
            return {"keypoints": torch.from_numpy(k)[None].to(dev),
                    "descriptors": torch.from_numpy(np.ascontiguousarray(d, np.float32))[None].to(dev),
                    "image_size": torch.tensor([[float(w), float(h)]], device=dev)}

        with torch.inference_mode():
            out = self.network({"image0": side(keypoints0, descriptors0, size0),
                                "image1": side(keypoints1, descriptors1, size1)})
        m = out["matches"][0].cpu().numpy().astype(np.int64)
        s = out["scores"][0].float().cpu().numpy().astype(np.float32)
        self.last_stats = {"layers": float(out.get("stop", np.nan))}
        if len(m) == 0:
            return empty
        return m[:, 0], m[:, 1], s

