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


# --- approximate indexes ---------------------------------------------------------------------
def _clustered(n, dim=64, seed=0, query_noise=0.05, num_queries=200):
    """Keyframe descriptors in places (clusters) and queries that are perturbed copies of known
    keyframes: the true neighbour of each query is known."""
    rng = np.random.default_rng(seed)
    places = rng.standard_normal((n // 20 + 1, dim)).astype(np.float32)
    x = places[rng.integers(0, len(places), n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = rng.choice(n, num_queries, replace=False)
    q = x[truth] + query_noise * rng.standard_normal((num_queries, dim)).astype(np.float32)
    return x, q / np.linalg.norm(q, axis=1, keepdims=True), truth


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_indexes_agree_with_exact_search(kind):
    from global_loc.retrieval.index import train_index

    x, q, truth = _clustered(6000)
    exact_scores, exact = RetrievalIndex(x, device="cpu").search(q, 10)
    trained = train_index(kind, x)
    assert trained.params["size"] == 6000 and trained.params["dim"] == 64
    approx = RetrievalIndex(x, "cpu", trained)
    assert approx.kind == kind
    scores, idx = approx.search(q, 10)
    assert idx.shape == (200, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, exact)])
    assert overlap >= 0.95
    assert np.mean(idx[:, 0] == truth) >= np.mean(exact[:, 0] == truth) - 0.01
    # scores are the exact cosines of the re-ranked rows, best first
    assert np.allclose(scores[:, 0], np.sum(x[idx[:, 0]] * q, axis=1), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-7)
    with pytest.raises(ValueError, match="holds 6000 64-d descriptors"):
        RetrievalIndex(x[:100], "cpu", trained)


def test_a_map_keeps_its_approximate_index_and_localizes_alike(tmp_path):
    from global_loc.errors import MapFormatError
    from global_loc.geometry.transforms import pose_error
    from global_loc.localizer import Localizer
    from global_loc.map.builder import MapBuilder
    from global_loc.map.storage import read_map, write_map
    from synthetic import FeatureScene, synthetic_conf

    scene = FeatureScene(num_points=4000, seed=0)
    built = {}
    for kind in ("flat", "hnsw"):
        b = MapBuilder(synthetic_conf(mapping={"retrieval_index": kind}))
        for kf, f in scene.keyframes(12):
            b.add_keyframe(kf, features=f)
        built[kind] = b.build()
    assert built["flat"].retrieval_index is None and built["hnsw"].retrieval_index.kind == "hnsw"
    path = write_map(built["hnsw"], tmp_path / "m.glmap")
    back = read_map(path)
    assert back.retrieval_index.kind == "hnsw" and back.retrieval_index.params["size"] == 12
    assert np.array_equal(back.retrieval_index.data, built["hnsw"].retrieval_index.data)
    pose = scene.pose_on_ring(2 * np.pi * 3.5 / 12)
    feats, _ = scene.observe(pose)
    import copy

    exact = copy.copy(back)
    exact.retrieval_index = None
    results = [Localizer(m, synthetic_conf()).localize(np.zeros((480, 640), np.uint8), scene.camera, features=feats)
               for m in (exact, back)]
    assert results[0].retrieved == results[1].retrieved
    assert pose_error(results[1].cam_from_world, pose)[0] < 0.01
    # an index that does not fit the map is refused when the map is read
    wrong = copy.copy(back)
    wrong.retrieval_index = copy.copy(back.retrieval_index)
    wrong.retrieval_index.params = dict(back.retrieval_index.params, size=11)
    bad = write_map(wrong, tmp_path / "bad.glmap")
    with pytest.raises(MapFormatError, match="retrieval index holds 11"):
        read_map(bad)
    with pytest.raises(ConfigError, match="retrieval_index 'annoy' is unknown"):
        synthetic_conf(mapping={"retrieval_index": "annoy"})


def test_exact_search_over_read_only_descriptors_matches_faiss():
    """A memory-mapped map's descriptors (read-only) are searched in place, with faiss's results."""
    x, q, _ = _clustered(3000, seed=4)
    ref_scores, ref = RetrievalIndex(x, device="cpu").search(q, 10)
    ro = x.copy()
    ro.flags.writeable = False
    index = RetrievalIndex(ro, device="cpu")
    assert index._matrix is ro  # not copied
    scores, idx = index.search(q, 10)
    assert np.array_equal(idx, ref) and np.allclose(scores, ref_scores, atol=1e-5)
    s1, i1 = index.search(q[0], 5000)  # k beyond the map
    assert i1.shape == (1, 3000) and np.all(np.diff(s1[0]) <= 1e-7)


def test_an_approximate_index_asked_of_a_tiny_map_falls_back_to_exact_search(caplog):
    from global_loc.map.builder import MapBuilder
    from global_loc.retrieval.index import train_index
    from synthetic import FeatureScene, synthetic_conf

    x, _, _ = _clustered(10, num_queries=5)
    with pytest.raises(ValueError, match="at least max\\(nlist=.*2\\^nbits=16\\) descriptors \\(got 10\\)"):
        train_index("ivfpq", x)
    scene = FeatureScene(num_points=3000, seed=2)
    b = MapBuilder(synthetic_conf(mapping={"retrieval_index": "ivfpq"}))
    for kf, f in scene.keyframes(6):
        b.add_keyframe(kf, features=f)
    with caplog.at_level("WARNING"):
        m = b.build()
    assert m.retrieval_index is None and "exact search instead" in caplog.text
