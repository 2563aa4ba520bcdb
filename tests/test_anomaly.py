"""Memory banks, coreset and metrics of tt_faiss.anomaly (no torch: TT banks wrap given clouds)."""
import numpy as np
import pytest

import tt_faiss
from tt_faiss.anomaly import (
    CoresetMemoryBank, FullMemoryBank, RandomMemoryBank, TTMemoryBank, TTSampler,
    anomaly_metrics, average_precision, budget_nparams, coverage_resample, greedy_coreset_indices,
    load_memory_bank, precision_at_recall, roc_auc, sparse_random_projection, tt_nparams,
    tt_shape_for_budget)


def blobs(n=600, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((5, d)) * 4
    return (centers[rng.integers(0, 5, n)] + rng.standard_normal((n, d))).astype(np.float32)


def brute_sqdist(x, pts):
    x = x.astype(np.float64)
    pts = pts.astype(np.float64)
    return ((x[:, None, :] - pts[None, :, :]) ** 2).sum(-1)


# ----------------------------------------------------------------------------- metrics

def test_metrics_hand_computed():
    # scores descending: 0.9(1) 0.8(0) 0.7(1) 0.6(1) 0.5(0) 0.4(0)
    y = np.array([1, 0, 1, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    # positive-negative pairs ranked correctly: 3 + 2 + 2 = 7 of 9
    assert roc_auc(y, s) == pytest.approx(7 / 9)
    # AP = (1/3)*1 + (1/3)*(2/3) + (1/3)*(3/4)
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # recall reaches 0.9 only at the 4th feature: precision 3/4
    assert precision_at_recall(y, s, 0.9) == pytest.approx(0.75)
    assert precision_at_recall(y, s, 1 / 3) == pytest.approx(1.0)
    perfect = anomaly_metrics(y, y.astype(float))
    assert perfect == {"auroc": 1.0, "auprc": 1.0, "p_at_r90": 1.0}


def test_metrics_ties_count_half():
    y = np.array([0, 1, 0, 1])
    s = np.zeros(4)
    assert roc_auc(y, s) == 0.5
    assert average_precision(y, s) == 0.5
    assert precision_at_recall(y, s) == 0.5


def test_metrics_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(5):
        y = rng.integers(0, 2, 400)
        s = np.round(rng.standard_normal(400) + 1.2 * y, 1)  # rounding makes ties
        assert roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
        assert average_precision(y, s) == pytest.approx(
            metrics.average_precision_score(y, s), abs=1e-12)
        p, r, _ = metrics.precision_recall_curve(y, s)
        ok = r >= 0.9
        assert precision_at_recall(y, s, 0.9) == pytest.approx(p[ok][np.argmin(r[ok])], abs=1e-12)


@pytest.mark.parametrize("labels, scores, msg", [
    ([0, 0, 0], [1, 2, 3], "both"),
    ([0, 1, 2], [1, 2, 3], "0 \\(normal\\) or 1"),
    ([0, 1], [1, 2, 3], "differ in length"),
    ([0, 1], [1, np.nan], "NaN"),
    ([[0, 1]], [[1, 2]], "1-D"),
])
def test_metrics_bad_input(labels, scores, msg):
    with pytest.raises(ValueError, match=msg):
        anomaly_metrics(labels, scores)


def test_precision_at_recall_bad_recall():
    with pytest.raises(ValueError, match="recall"):
        precision_at_recall([0, 1], [0, 1], recall=0)


# ----------------------------------------------------------------------------- budget rule

def test_budget_arithmetic():
    assert budget_nparams(1000, 64, 10) == 6400
    assert budget_nparams(1000, 64, 3) == 21333  # floor
    assert budget_nparams(1000, 64, nparams=500) == 500
    with pytest.raises(ValueError, match="either"):
        budget_nparams(1000, 64, 10, 500)
    with pytest.raises(ValueError, match=">= 1"):
        budget_nparams(1000, 64, 0.5)
    with pytest.raises(ValueError, match="no parameters"):
        budget_nparams(10, 2, 100)
    with pytest.raises(TypeError, match="compression"):
        budget_nparams(10, 2, "100")


def test_tt_shape_rule():
    # d=256, 100x on 1e5 features: r=4, N2=256, N1 takes the rest -- exactly the budget here
    shape, rank = tt_shape_for_budget(256_000, 256)
    assert (shape, rank) == ((249, 256), 4)
    assert tt_nparams(256, shape, rank) == 256_000
    # 1000x: the second core is capped at 1/8 of the budget (r*N2 <= 3200 -> N2 <= 256)
    shape, rank = tt_shape_for_budget(25_600, 256)
    assert (shape, rank) == ((24, 256), 4)
    # tiny budget: r*N2 <= 576/8 -> N2 = 16; N1 = (576 - 64) / 256 = 2
    shape, rank = tt_shape_for_budget(576, 64)
    assert (shape, rank) == ((2, 16), 4)
    assert tt_nparams(64, shape, rank) == 576
    # rank drops until two clusters fit: r=4 leaves one cluster of d=200
    assert tt_shape_for_budget(1200, 200) == ((2, 64), 2)
    # at most one TT point per training feature: 10x on 1e5 x 256 would give 2499 x 256 points
    shape, rank = tt_shape_for_budget(2_560_000, 256, max_points=100_000)
    assert (shape, rank) == ((2499, 32), 4) and 2499 * 32 <= 100_000
    for budget in (700, 5_000, 123_457, 10**6):
        for d in (16, 64, 512):
            if budget < d + 1:
                continue
            shape, rank = tt_shape_for_budget(budget, d)
            assert tt_nparams(d, shape, rank) <= budget
    # overrides
    assert tt_shape_for_budget(10_000, 32, rank=2)[1] == 2
    shape, rank = tt_shape_for_budget(10_000, 32, shape=(8, 8, 16))
    assert tt_nparams(32, shape, rank) <= 10_000 < tt_nparams(32, shape, rank + 1)
    with pytest.raises(ValueError, match="too small"):
        tt_shape_for_budget(10, 64)
    with pytest.raises(ValueError, match="does not fit"):
        tt_shape_for_budget(100, 64, shape=(4, 4))


def test_tt_nparams_matches_cloud():
    for shape, rank in (((4, 8), 3), ((3, 5, 7), 2), ((6,), 1)):
        c = tt_faiss.TTPointCloud.random(10, shape, rank, seed=0)
        assert tt_nparams(10, shape, rank) == c.nparams


def test_subsampling_banks_keep_budget():
    x = blobs(n=1000, d=16)
    for bank in (RandomMemoryBank(), CoresetMemoryBank()):
        bank.fit(x, compression=10)
        assert bank.npoints == 100
        assert bank.nparams == 1600 and bank.nbytes == 6400
        assert bank.compression_ratio == pytest.approx(10)
        assert len(np.unique(bank.indices)) == 100
        np.testing.assert_array_equal(bank.points, x[bank.indices])
        bank.fit(x, nparams=16 * 7 + 5)
        assert bank.npoints == 7


# ----------------------------------------------------------------------------- scoring

def test_full_bank_scores():
    x = blobs()
    bank = FullMemoryBank().fit(x)
    s = bank.score(x)
    assert s.dtype == np.float32 and s.shape == (len(x),)
    assert np.all(s == 0)  # every query is a bank member
    q = blobs(n=50, seed=1)
    d2 = brute_sqdist(q, x)
    np.testing.assert_allclose(bank.score(q), np.sqrt(d2.min(1)), rtol=1e-5)
    k3 = np.sort(d2, axis=1)[:, :3]
    np.testing.assert_allclose(bank.score(q, k=3), np.sqrt(k3).mean(1), rtol=1e-5)
    np.testing.assert_allclose(bank.score(q, k=3, squared=True), k3.mean(1), rtol=1e-5)
    assert np.all(bank.score(q) >= 0)
    assert bank.compression_ratio == 1.0


def test_random_and_coreset_scores_are_distances_to_their_points():
    x = blobs()
    q = blobs(n=40, seed=2)
    for bank in (RandomMemoryBank(seed=1), CoresetMemoryBank(seed=1)):
        bank.fit(x, compression=6)
        np.testing.assert_allclose(bank.score(q), np.sqrt(brute_sqdist(q, bank.points).min(1)),
                                   rtol=1e-5)
        assert np.all(bank.score(bank.points) == 0)


def tt_cloud(d=12, shape=(6, 10), rank=3, seed=0):
    return tt_faiss.TTPointCloud.random(d, shape, rank, seed=seed)


@pytest.mark.parametrize("shape, rank", [((6, 10), 3), ((3, 4, 5), 2)])
def test_tt_bank_full_beam_equals_brute_force(shape, rank):
    cloud = tt_cloud(shape=shape, rank=rank)
    pts = cloud.reconstruct(np.arange(cloud.npoints))
    bank = TTMemoryBank.from_cloud(cloud, n_train=1000, beam=cloud.npoints)
    rng = np.random.default_rng(5)
    q = (pts[rng.integers(0, len(pts), 30)] + rng.standard_normal((30, 12)) * 0.3).astype(np.float32)
    d2 = np.sort(brute_sqdist(q, pts), axis=1)
    np.testing.assert_allclose(bank.score(q), np.sqrt(d2[:, 0]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bank.score(q, k=4), np.sqrt(d2[:, :4]).mean(1), rtol=1e-4, atol=1e-4)
    assert np.all(bank.score(q) >= 0)
    np.testing.assert_allclose(bank.score(pts[:20]), 0, atol=2e-3)
    assert bank.nparams == cloud.nparams and bank.nbytes == 4 * cloud.nparams
    assert bank.compression_ratio == pytest.approx(1000 * 12 / cloud.nparams)
    np.testing.assert_array_equal(bank.points(), pts)


def test_tt_bank_narrow_beam_is_upper_bound():
    cloud = tt_cloud(shape=(16, 16), rank=4)
    q = blobs(n=100, d=12, seed=4)
    exact = TTMemoryBank.from_cloud(cloud, beam=cloud.npoints).score(q)
    narrow = TTMemoryBank.from_cloud(cloud, beam=1).score(q)
    assert np.all(narrow >= exact - 1e-5)  # beam search only ever misses the nearest point


# ----------------------------------------------------------------------------- coreset

def reference_greedy(z, n, approximate, starts=None):
    """Textbook greedy k-center on an explicit N x N distance matrix (PatchCore's algorithm)."""
    z = z.astype(np.float64)
    D = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    cur = D[:, starts].mean(1) if approximate else np.linalg.norm(D, axis=1)
    out = []
    for _ in range(n):
        i = int(np.argmax(cur))
        out.append(i)
        cur = np.minimum(cur, D[:, i])
    return np.array(out)


@pytest.mark.parametrize("approximate", [True, False])
def test_greedy_coreset_matches_reference(approximate):
    x = blobs(n=400, d=10, seed=7)
    got = greedy_coreset_indices(x, 40, projection_dim=None, approximate=approximate, seed=3)
    starts = np.random.default_rng(3).choice(400, size=10, replace=False)
    np.testing.assert_array_equal(got, reference_greedy(x, 40, approximate, starts))


def test_greedy_coreset_with_projection_matches_reference():
    x = blobs(n=300, d=40, seed=8)
    got = greedy_coreset_indices(x, 30, projection_dim=16, seed=4)
    z = x @ sparse_random_projection(40, 16, seed=4)
    starts = np.random.default_rng(4).choice(300, size=10, replace=False)
    np.testing.assert_array_equal(got, reference_greedy(z, 30, True, starts))


def test_sparse_projection_preserves_distances_on_average():
    p = sparse_random_projection(512, 128, seed=0)
    assert p.shape == (512, 128) and p.dtype == np.float32
    assert 0.02 < np.mean(p != 0) < 0.06  # density 1/sqrt(512) = 0.044
    x = np.random.default_rng(0).standard_normal((200, 512)).astype(np.float32)
    ratio = np.linalg.norm((x[:100] - x[100:]) @ p, axis=1) / np.linalg.norm(x[:100] - x[100:], axis=1)
    assert abs(np.mean(ratio ** 2) - 1) < 0.05


def test_coreset_covers_better_than_random():
    x = blobs(n=2000, d=8, seed=9)
    cover = []
    for bank in (CoresetMemoryBank(), RandomMemoryBank()):
        bank.fit(x, compression=50)
        cover.append(bank.score(x).max())
    assert cover[0] < cover[1]  # k-center minimises the largest distance


def test_coverage_resample_upweights_rare_modes():
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((9500, 8)).astype(np.float32)
    rare = (rng.standard_normal((500, 8)) + 30).astype(np.float32)
    x = np.concatenate([dense, rare])
    frac = {}
    for power in (0.0, 0.5, 1.0):
        out = coverage_resample(x, cells=64, power=power, size=20000, seed=1)
        assert out.shape == (20000, 8) and out.dtype == np.float32
        frac[power] = np.mean(out[:, 0] > 15)
    assert abs(frac[0.0] - 0.05) < 0.01  # power 0: plain sampling
    assert frac[0.0] < frac[0.5] < frac[1.0]
    # every drawn row is a training row
    rows = {r.tobytes() for r in x}
    assert all(r.tobytes() in rows for r in out[:200])
    with pytest.raises(ValueError, match="power"):
        coverage_resample(x, power=2)


# ----------------------------------------------------------------------------- save / load

def test_save_load_roundtrip(tmp_path):
    x = blobs()
    q = blobs(n=30, seed=3)
    banks = [FullMemoryBank().fit(x), RandomMemoryBank(seed=2).fit(x, compression=5),
             CoresetMemoryBank(projection_dim=4).fit(x, compression=5),
             TTMemoryBank.from_cloud(tt_cloud(), n_train=600, beam=16)]
    for i, bank in enumerate(banks):
        path = tmp_path / f"bank{i}.npz"
        bank.save(path)
        again = load_memory_bank(path)
        assert type(again) is type(bank)
        assert again.nparams == bank.nparams and again.d == bank.d
        np.testing.assert_array_equal(again.score(q, k=2), bank.score(q, k=2))
        assert type(bank).load(path).nparams == bank.nparams
    assert load_memory_bank(tmp_path / "bank3.npz").beam == 16
    with pytest.raises(ValueError, match="not a TTMemoryBank"):
        TTMemoryBank.load(tmp_path / "bank0.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a memory bank"):
        load_memory_bank(bad)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a memory bank"):
        load_memory_bank(tmp_path / "other.npz")


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs():
    x = blobs()
    with pytest.raises(RuntimeError, match="not fitted"):
        FullMemoryBank().score(x)
    bank = FullMemoryBank().fit(x)
    with pytest.raises(ValueError, match="dimension 5, expected d=12"):
        bank.score(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        bank.score(np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        bank.score(np.full((2, 12), np.nan))
    with pytest.raises(ValueError, match="empty"):
        bank.score(np.zeros((0, 12), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        bank.score(np.array([["a"] * 12]))
    with pytest.raises(ValueError, match="exceeds"):
        bank.score(x[:2], k=601)
    with pytest.raises(ValueError, match="k must be >= 1"):
        bank.score(x[:2], k=0)
    with pytest.raises(ValueError, match="compression=1"):
        FullMemoryBank().fit(x, compression=10)
    with pytest.raises(ValueError, match="Inf"):
        RandomMemoryBank().fit(np.full((10, 3), np.inf), compression=2)
    with pytest.raises(ValueError, match="smaller than one feature"):
        CoresetMemoryBank().fit(x, nparams=5)
    with pytest.raises(ValueError, match="cannot select"):
        greedy_coreset_indices(x, 601)
    with pytest.raises(ValueError, match="Percentage"):
        TTSampler(percentage=1.5)
    with pytest.raises(TypeError, match="k must be an int"):
        bank.score(x[:2], k=1.5)
