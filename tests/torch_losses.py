"""Trainer primitives against brute-force references: TT ops, SW / NN / inverse NN losses, RSGD."""
import numpy as np
import pytest
import torch

scipy_stats = pytest.importorskip("scipy.stats")

import tt_faiss
from tt_faiss.train import losses, riemannian, tt


def _cores(d=4, shape=(3, 5, 4), rank=3, seed=0):
    return tt.random_cores(d, shape, rank, torch.Generator().manual_seed(seed))


def _full_ref(cores):
    """Materialise with one einsum per core count (independent of tt.full's right-to-left code)."""
    c = cores
    if len(c) == 2:
        return torch.einsum("dai,ib->abd", c[0], c[1][:, :, 0]).reshape(-1, c[0].shape[0])
    return torch.einsum("dai,ibj,jc->abcd", c[0], c[1], c[2][:, :, 0]).reshape(-1, c[0].shape[0])


def test_full_reconstruct_project_match_reference():
    c = _cores()
    ref = _full_ref(c)
    assert torch.allclose(tt.full(c), ref, atol=1e-12)
    ids = torch.tensor([0, 7, 59, 31])
    assert torch.allclose(tt.reconstruct(c, ids), ref[ids], atol=1e-12)
    u = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(tt.project(c, u), u @ ref.T, atol=1e-12)
    assert torch.allclose(tt.project_ids(c, u, ids), u @ ref[ids].T, atol=1e-12)


def test_public_layout_roundtrip_matches_cpp_reconstruct():
    c = _cores()
    cloud = tt_faiss.TTPointCloud(tt.to_public(c))
    assert cloud.shape == (3, 5, 4) and cloud.ranks == (3, 3)
    np.testing.assert_allclose(cloud.reconstruct(np.arange(60)), _full_ref(c).numpy(), rtol=1e-5, atol=1e-5)
    back = tt.to_internal(cloud.cores, dtype=torch.float64)
    assert torch.allclose(tt.full(back), _full_ref(c), atol=1e-5)


def test_orthogonalize_and_round_keep_tensor():
    c = _cores()
    ref = _full_ref(c)
    L = tt.left_orthogonalize(c)
    for g in L[:-1]:
        m = g.reshape(-1, g.shape[2])
        assert torch.allclose(m.T @ m, torch.eye(m.shape[1], dtype=m.dtype), atol=1e-10)
    assert torch.allclose(tt.full(L), ref, atol=1e-10)
    R = tt.right_orthogonalize(c)
    assert torch.allclose(tt.full(R), ref, atol=1e-10)
    doubled = tt.round_tt(tt.add(c, c), 3)  # rank 6 sum of a rank-3 TT is exactly rank 3
    assert [g.shape[2] for g in doubled[:-1]] == [3, 3]
    assert torch.allclose(tt.full(doubled), 2 * ref, atol=1e-10)
    assert torch.allclose(tt.norm(c), ref.norm(), atol=1e-10)


@pytest.mark.parametrize("n,m", [(40, 40), (37, 101), (256, 60)])
def test_wasserstein_1d_matches_scipy(n, m):
    g = torch.Generator().manual_seed(n + m)
    a = torch.randn(3, n, dtype=torch.float64, generator=g)
    b = 2 * torch.randn(3, m, dtype=torch.float64, generator=g) + 0.5
    got = losses.wasserstein_1d(a, b)
    ref = [scipy_stats.wasserstein_distance(a[i].numpy(), b[i].numpy()) for i in range(3)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)


def test_sliced_wasserstein_matches_materialised_reference():
    c = _cores()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 4, dtype=torch.float64, generator=g)
    u = losses.random_directions(8, 4, g, dtype=torch.float64)
    assert torch.allclose(u.norm(dim=1), torch.ones(8, dtype=torch.float64))
    pts = _full_ref(c)
    ref = np.mean([scipy_stats.wasserstein_distance((x @ u[i]).numpy(), (pts @ u[i]).numpy()) for i in range(8)])
    assert abs(float(losses.sliced_wasserstein(x, c, u)) - ref) < 1e-10
    ids = torch.tensor([1, 4, 9, 33, 50])
    ref_s = np.mean([scipy_stats.wasserstein_distance((x @ u[i]).numpy(), (pts[ids] @ u[i]).numpy())
                     for i in range(8)])
    assert abs(float(losses.sliced_wasserstein(x, c, u, tt_ids=ids)) - ref_s) < 1e-10


def test_nn_and_inverse_losses_match_brute_force():
    c = _cores()
    pts = _full_ref(c)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((200, 4)) * 2)
    # nearest TT points by the C++ beam search with a full beam are the exact nearest points
    ids = losses.nearest_tt(c, x.numpy(), beam=64)
    d = torch.cdist(x, pts) ** 2
    np.testing.assert_array_equal(ids, d.argmin(1).numpy())
    ref_nn = d.min(1).values.mean()
    assert abs(float(losses.nn_loss(x, c, torch.from_numpy(ids))) - float(ref_nn)) < 1e-5
    tt_ids = torch.arange(60)
    nn_of_tt = losses.nearest_data(pts.numpy(), x.numpy())
    ref_inv = d.min(0).values.mean()
    got_inv = losses.inverse_nn_loss(c, tt_ids, x, torch.from_numpy(nn_of_tt))
    assert abs(float(got_inv) - float(ref_inv)) < 1e-4
    tot = losses.nn_total(ref_nn, ref_inv, 0.1)
    assert abs(float(tot) - (0.1 * float(ref_nn) + 0.9 * float(ref_inv))) < 1e-12


def test_riemannian_gradient_is_the_tangent_projection():
    c = _cores()
    A = torch.randn(60, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def f(cs):
        return 0.5 * (tt.full(cs) - A).pow(2).sum()

    grads, _, U, V = riemannian.riemannian_gradient(f, c)
    zero = torch.zeros_like(U[-1])
    T = tt.full(riemannian._tangent_cores(U, V, zero, grads))
    Z = tt.full(c) - A  # Euclidean gradient
    # P(Z) is an orthogonal projection: <P Z, Z> = ||P Z||^2 = sum of squared components
    assert abs(float((T * Z).sum()) - float((T * T).sum())) < 1e-8
    assert abs(float((T * T).sum()) - float(sum((g * g).sum() for g in grads))) < 1e-8
    # Z - P(Z) is orthogonal to any tangent vector
    g = torch.Generator().manual_seed(6)
    W = []
    for a, u in enumerate(U):
        w = torch.randn(u.shape, dtype=u.dtype, generator=g)
        if a < len(U) - 1:
            m, wm = u.reshape(-1, u.shape[2]), w.reshape(-1, u.shape[2])
            w = (wm - m @ (m.T @ wm)).reshape(u.shape)
        W.append(w)
    Wf = tt.full(riemannian._tangent_cores(U, V, zero, W))
    assert abs(float(((Z - T) * Wf).sum())) < 1e-8


def test_one_rsgd_step_keeps_rank_and_decreases_loss():
    c = _cores(d=3, shape=(4, 6, 5), rank=3, seed=2)
    target = _cores(d=3, shape=(4, 6, 5), rank=3, seed=9)
    A = tt.full(target)

    def f(cs):
        return (tt.full(cs) - A).pow(2).mean()

    opt = riemannian.RiemannianSGD(lr=0.05 * float(tt.norm(c)))
    new, before, gnorm = opt.step(f, c)
    assert gnorm > 0
    assert [g.shape for g in new] == [g.shape for g in c]
    assert float(f(new)) < before
