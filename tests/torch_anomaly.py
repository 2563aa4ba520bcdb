"""TTMemoryBank and TTSampler fitted through tt_faiss.fit (needs torch)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tt_faiss.anomaly import (  # noqa: E402
    RandomMemoryBank, TTMemoryBank, TTSampler, anomaly_metrics, budget_nparams,
    load_memory_bank, tt_nparams)

FAST = dict(als_iters=3, als_sample=4000, init_sample=4000, kmeans_iters=8)


def manifold_data(n=4000, n_test=1000, d=16, seed=0):
    """Normal: 4 curved 2-D sheets; anomalies: normal points pushed 1.0 off in a random direction."""
    rng = np.random.default_rng(seed)
    mus = rng.standard_normal((4, d)) * 3
    Us = [np.linalg.qr(rng.standard_normal((d, 4)))[0] for _ in range(4)]
    Ws = [rng.standard_normal((4, 2)) for _ in range(4)]

    def normal(m):
        comp = rng.integers(0, 4, m)
        z = rng.standard_normal((m, 2))
        out = np.stack([mus[c] + 1.5 * np.tanh(Ws[c] @ zz) @ Us[c].T for c, zz in zip(comp, z)])
        return out + rng.standard_normal((m, d)) * 0.02

    train = normal(n)
    na = n_test // 5
    u = rng.standard_normal((na, d))
    anom = normal(na) + u / np.linalg.norm(u, axis=1, keepdims=True)
    test = np.concatenate([normal(n_test - na), anom]).astype(np.float32)
    labels = np.r_[np.zeros(n_test - na, int), np.ones(na, int)]
    return train.astype(np.float32), test, labels


@pytest.fixture(scope="module")
def data():
    return manifold_data()


@pytest.fixture(scope="module")
def bank(data):
    train, _, _ = data
    return TTMemoryBank(beam=64, seed=0, **FAST).fit(train, compression=50)


def test_fit_respects_budget_and_rule(bank, data):
    train, _, _ = data
    budget = budget_nparams(len(train), 16, 50)
    assert bank.nparams <= budget
    assert bank.nparams == tt_nparams(16, bank.cloud.shape, bank.cloud.rank)
    assert bank.cloud.ncores == 2 and bank.npoints <= len(train)
    assert bank.compression_ratio >= 50


def test_tt_bank_detects_and_beats_random_at_equal_memory(bank, data):
    train, test, labels = data
    s_tt = bank.score(test)
    s_rand = RandomMemoryBank(seed=0).fit(train, compression=50).score(test)
    m_tt, m_rand = anomaly_metrics(labels, s_tt), anomaly_metrics(labels, s_rand)
    assert m_tt["auroc"] > 0.95
    assert m_tt["auprc"] > m_rand["auprc"]
    # the TT cloud covers the normal data more tightly than a random subsample of equal memory
    assert np.median(s_tt[labels == 0]) < np.median(s_rand[labels == 0])


def test_fitted_bank_roundtrip(bank, data, tmp_path):
    _, test, _ = data
    bank.save(tmp_path / "tt.npz")
    again = load_memory_bank(tmp_path / "tt.npz")
    np.testing.assert_array_equal(again.score(test, k=3), bank.score(test, k=3))


def test_explicit_shape_rank(data):
    train, test, _ = data
    b = TTMemoryBank(**FAST).fit(train, shape=(8, 32), rank=3)
    assert b.cloud.shape == (8, 32) and b.cloud.rank == 3
    assert b.score(test[:10]).shape == (10,)


def test_unknown_fit_option_raises(data):
    train, _, _ = data
    with pytest.raises(TypeError, match="unknown recipe"):
        TTMemoryBank(no_such_option=1).fit(train, compression=50)


def test_sampler_returns_materialised_points(data):
    train, _, _ = data
    sampler = TTSampler(percentage=0.02, **FAST)
    pts = sampler.run(train)
    assert isinstance(pts, np.ndarray) and pts.shape == (sampler.bank.npoints, 16)
    np.testing.assert_allclose(sampler.bank.score(pts[:50]), 0, atol=1e-3)
    out = TTSampler(percentage=0.02, **FAST).run(torch.from_numpy(train))
    assert isinstance(out, torch.Tensor) and out.shape == pts.shape
    np.testing.assert_allclose(out.numpy(), pts, rtol=1e-5, atol=1e-6)  # same seed, same fit
