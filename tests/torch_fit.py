"""tt_faiss.fit: ALS monotonicity, recovery of exact TT clouds, toy-data quality, input errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import tt_faiss
from tt_faiss.examples import toy
from tt_faiss.train import als, init, losses, tt


def _nn_loss(cloud, x):
    d, _ = cloud.search(x, 1, beam=max(cloud.shape))  # beam >= every level's size: exact
    return float(d.mean())


def test_als_sweep_and_reassignment_never_increase_nn_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1500, 5)).astype(np.float32)
    cores = init.random_init(x, (6, 8, 5), 4, seed=0)
    xt = torch.from_numpy(x)
    prev = None
    for it in range(4):
        ids = torch.from_numpy(losses.nearest_tt(cores, x, beam=64))  # exact nearest points
        cur = float(losses.nn_loss(xt.double(), cores, ids))
        if prev is not None:
            assert cur <= prev + 1e-9  # re-assignment after a sweep
        counts, sums = als.accumulate(ids, xt, 240)
        before = als.objective(cores, counts, sums)
        cores = als.sweep(cores, counts, sums, ridge=1e-4)
        after = als.objective(cores, counts, sums)
        assert after <= before + 1e-9 * abs(before)  # the sweep, assignments fixed
        prev = float(losses.nn_loss(xt.double(), cores, ids))
        assert prev <= cur + 1e-9


def test_solve_core_is_the_exact_minimiser():
    g = torch.Generator().manual_seed(1)
    cores = tt.random_cores(4, (3, 5, 4), 3, g)
    x = 2 * torch.randn(400, 4, dtype=torch.float64, generator=g)
    ids = torch.cdist(x, tt.full(cores)).argmin(1)
    counts, sums = als.accumulate(ids, x, 60)
    def grad_at(cs, a):
        cs = list(cs)
        cs[a] = cs[a].clone().requires_grad_(True)
        y = tt.full(cs)
        obj = (counts * y.pow(2).sum(1)).sum() - 2 * (sums * y).sum()
        return torch.autograd.grad(obj, cs[a])[0]

    for a in range(3):
        new = list(cores)
        new[a] = als.solve_core(cores, a, counts, sums, ridge=0.0)
        # the gradient in core a vanishes (up to the 1e-9 relative floor of the proximal ridge)
        assert float(grad_at(new, a).abs().max()) < 1e-6 * float(grad_at(cores, a).abs().max())


def test_warm_start_near_an_exact_tt_cloud_recovers_it():
    true = tt_faiss.TTPointCloud.random(4, (6, 8), 3, seed=3)
    pts = true.reconstruct(np.arange(true.npoints))
    x = np.repeat(pts, 3, axis=0)
    rng = np.random.default_rng(0)
    noisy = [c + 0.2 * np.abs(c).mean() * rng.standard_normal(c.shape).astype(np.float32) for c in true.cores]
    start = tt_faiss.TTPointCloud(noisy)
    assert _nn_loss(start, x) > 1e-2 * x.var(0).sum()
    # plain Lloyd (als_alpha=1): the inverse term is a density prior, not an exact-recovery device
    fitted = tt_faiss.fit(x, (6, 8), 3, init=start, als_iters=15, als_alpha=1.0, verbose=False)
    assert _nn_loss(fitted, x) < 1e-6 * x.var(0).sum()


def test_rvq_init_recovers_a_separated_additive_tt_cloud():
    # point(i1, i2) = c1[i1] + P c2[i2]: an exact rank-3 TT whose clusters k-means can find
    rng = np.random.default_rng(1)
    c1 = 20 * np.stack(np.meshgrid(np.arange(3), np.arange(2)), -1).reshape(-1, 2)
    c1 = np.concatenate([c1, np.zeros((6, 2))], 1)  # 6 well-separated centres in R^4
    P = np.linalg.qr(rng.standard_normal((4, 2)))[0]
    c2 = 3 * rng.standard_normal((5, 2))
    pts = (c1[:, None, :] + (c2 @ P.T)[None, :, :]).reshape(-1, 4).astype(np.float32)
    x = np.repeat(pts, 8, axis=0)
    fitted = tt_faiss.fit(x, (6, 5), 3, verbose=False, als_iters=5)
    assert _nn_loss(fitted, x) < 1e-6 * x.var(0).sum()


def test_fit_on_toy_beats_random_init_by_10x():
    x = toy.make("circles", 2048, seed=0)
    shape, rank = (16, 32), 4
    fitted = tt_faiss.fit(x, shape, rank, seed=0, verbose=False, als_iters=5)
    rand = tt_faiss.TTPointCloud(tt.to_public(init.random_init(x, shape, rank, seed=0)))
    assert _nn_loss(fitted, x) * 10 < _nn_loss(rand, x)


def test_fit_returns_requested_layout_history_and_is_deterministic():
    x = toy.make("half_circle", 1024, seed=1)
    hist = []
    a = tt_faiss.fit(x, (8, 16), 4, seed=5, verbose=False, als_iters=3, history=hist)
    b = tt_faiss.fit(x, (8, 16), 4, seed=5, verbose=False, als_iters=3)
    assert isinstance(a, tt_faiss.TTPointCloud)
    assert a.shape == (8, 16) and a.ranks == (4,) and a.d == 2
    assert all(c.dtype == np.float32 for c in a.cores)
    for ca, cb in zip(a.cores, b.cores):
        np.testing.assert_array_equal(ca, cb)
    stages = [h["stage"] for h in hist]
    assert stages == ["init", "als", "als", "als"]
    assert all(np.isfinite(h["nn_loss"]) for h in hist[1:])


@pytest.mark.parametrize("optimizer", ["adam", "rsgd"])
def test_gradient_stage_lowers_the_loss_on_toy_data(optimizer):
    x = toy.make("mixture", 1024, seed=2)
    hist = []
    tt_faiss.fit(x, (8, 16), 4, seed=0, verbose=False, init="random", stages=("sgd",),
                 optimizer=optimizer, sgd_iters=20, batch=512, history=hist,
                 lr=0.05)
    losses_ = [h["loss"] for h in hist if h["stage"] == "sgd"]
    assert np.mean(losses_[-5:]) < 0.7 * np.mean(losses_[:5])


def test_single_core_fit_is_kmeans_like():
    x = toy.make("circles", 1024, seed=3)
    c = tt_faiss.fit(x, (32,), 1, verbose=False, als_iters=3)
    assert c.shape == (32,) and c.ncores == 1
    assert _nn_loss(c, x) < 0.5 * float(x.var(0).sum())


@pytest.mark.parametrize("bad,kw,exc,msg", [
    ("nan", {}, ValueError, "NaN"),
    ("1d", {}, ValueError, "2-D"),
    ("int", {}, TypeError, "floating"),
    ("few", {}, ValueError, "fewer than"),
    ("ok", {"rank": 0}, ValueError, "rank"),
    ("ok", {"shape": (8, 0)}, ValueError, "shape"),
    ("ok", {"shape": ()}, ValueError, "shape"),
    ("ok", {"recipe": {"als_itres": 3}}, TypeError, "unknown recipe"),
    ("ok", {"recipe": {"init": "zeros"}}, ValueError, "init"),
    ("ok", {"recipe": {"alpha": 1.5}}, ValueError, "alpha"),
    ("ok", {"recipe": {"stages": ("lbfgs",)}}, ValueError, "stages"),
    ("ok", {"time_budget": -1}, ValueError, "time_budget"),
])
def test_bad_input_raises_clear_errors(bad, kw, exc, msg):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3)).astype(np.float32)
    if bad == "nan":
        x[17, 1] = np.nan
    elif bad == "1d":
        x = x[:, 0]
    elif bad == "int":
        x = (x * 10).astype(np.int32)
    elif bad == "few":
        x = x[:50]
    shape = kw.get("shape", (8, 8))
    rank = kw.get("rank", 2)
    with pytest.raises(exc, match=msg):
        tt_faiss.fit(x, shape, rank, verbose=False, time_budget=kw.get("time_budget"), **kw.get("recipe", {}))


def test_time_budget_stops_iterations():
    x = toy.make("circles", 4096, seed=0)
    hist = []
    tt_faiss.fit(x, (16, 32), 4, verbose=False, als_iters=10_000, time_budget=1.0, history=hist)
    assert len([h for h in hist if h["stage"] == "als"]) < 10_000


def test_import_tt_faiss_does_not_import_torch_but_fit_does():
    code = ("import sys, tt_faiss; assert 'torch' not in sys.modules; "
            "import numpy as np; tt_faiss.fit(np.random.rand(64, 2).astype('float32'), (4, 4), 2, "
            "verbose=False, als_iters=1); assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fit_accepts_a_read_only_memmap_and_float64(tmp_path):
    x = toy.make("half_circle", 2048, seed=4)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")  # rows are gathered per subsample, never copied whole
    a = tt_faiss.fit(mm, (8, 16), 3, seed=1, verbose=False, als_iters=2)
    b = tt_faiss.fit(x.astype(np.float64), (8, 16), 3, seed=1, verbose=False, als_iters=2)
    for ca, cb in zip(a.cores, b.cores):
        np.testing.assert_allclose(ca, cb, rtol=1e-4, atol=1e-5)
