import numpy as np
import pytest

from global_loc.errors import ConfigError, EmptyMapError, MapMismatchError
from global_loc.retrieval import create_global_model
from global_loc.retrieval.index import RetrievalIndex
from global_loc.retrieval.pca import PCAWhitening
from global_loc.types import LocalFeatures


def feats(rng, n, centers, dim=16):
    c = centers[rng.integers(0, len(centers), n)]
    d = c + 0.1 * rng.normal(size=(n, dim))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return LocalFeatures(rng.uniform(0, 100, (n, 2)), d, np.ones(n), (100, 100))


def test_vlad_shape_norm_and_state_round_trip():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(8, 16))
    train = [feats(rng, 200, centers) for _ in range(5)]
    vlad = create_global_model({"name": "vlad", "num_clusters": 8})
    vlad.fit(train)
    d = vlad(None, train[0])
    assert d.shape == (8 * 16,) and d.dtype == np.float32
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
    other = create_global_model({"name": "vlad", "num_clusters": 8})
    other.load_state(vlad.state())
    assert np.allclose(other(None, train[1]), vlad(None, train[1]))
    # an image without features gives the zero vector
    empty = LocalFeatures(np.zeros((0, 2)), np.zeros((0, 16)), np.zeros(0), (1, 1))
    assert not np.any(vlad(None, empty))


def test_vlad_retrieves_the_same_place():
    """Images of one place (same local descriptors, re-noised) retrieve each other first."""
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(32, 16))
    places = [centers[rng.choice(32, 6, replace=False)] for _ in range(10)]
    db = [feats(rng, 150, p) for p in places]
    q = [feats(rng, 150, p) for p in places]
    vlad = create_global_model({"name": "vlad", "num_clusters": 16})
    vlad.fit(db)
    index = RetrievalIndex(np.stack([vlad(None, f) for f in db]), device="cpu")
    _, idx = index.search(np.stack([vlad(None, f) for f in q]), 1)
    assert np.mean(idx[:, 0] == np.arange(10)) >= 0.9


def test_vlad_needs_enough_descriptors_and_matching_state():
    rng = np.random.default_rng(2)
    vlad = create_global_model({"name": "vlad", "num_clusters": 64})
    with pytest.raises(EmptyMapError, match="at least 64 local descriptors"):
        vlad.fit([feats(rng, 10, rng.normal(size=(2, 16)))])
    v8 = create_global_model({"name": "vlad", "num_clusters": 8})
    with pytest.raises(MapMismatchError, match="8"):
        v8.load_state({"vlad_centroids": np.zeros((4, 16), np.float32)})


def test_pca_whitening():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 40)).astype(np.float32) * np.linspace(5, 0.1, 40)
    pca = PCAWhitening.fit(X, 10)
    Y = pca.transform(X)
    assert Y.shape == (100, 10)
    assert np.allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="between 1 and the descriptor size 39"):
        PCAWhitening.fit(X, 40)
    with pytest.raises(ConfigError, match="needs more than 30 keyframes"):
        PCAWhitening.fit(X[:20], 30)


def test_retrieval_index_k_larger_than_database():
    x = np.eye(3, dtype=np.float32)
    scores, idx = RetrievalIndex(x, device="cpu").search(x[1], 10)
    assert idx.shape == (1, 3) and idx[0, 0] == 1 and scores[0, 0] == pytest.approx(1.0)
