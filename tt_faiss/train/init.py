"""Initialisations: a data-driven residual-VQ/PCA start and a random one.

Residual VQ / PCA (what FINDINGS measured to decide the outcome): k-means with N1 centroids c1; PCA
of the residuals to q = min(r - 1, D) directions P (D, q); then, for each later mode a, k-means with
N_a centroids c_a on the current projected residuals z (z <- z - c_a[assign]). The point
(i1..ik) = c1[i1] + P (c2[i2] + ... + ck[ik]) is exactly a rank-r TT:
    G1[:, i, :] = [c1[i] | P],   G_a[:, i, :] = [[1, 0], [c_a[i], I_q]],   G_k[:, i, :] = [1; c_k[i]].
Bond slots beyond q + 1 (rank > D + 1) carry small noise so ALS can bring them to life.
"""
from __future__ import annotations

import numpy as np
import torch

from . import tt


def kmeans(x: np.ndarray, k: int, seed: int, niter: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """faiss k-means: centroids (k, d) float32 and the assignment (n,) of x."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    if k == 1:
        return x.mean(0, keepdims=True), np.zeros(len(x), dtype=np.int64)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=int(seed) + 1, verbose=False,
                      max_points_per_centroid=max(256, (len(x) + k - 1) // k),
                      min_points_per_centroid=1)  # small samples are fine here; no warnings
    km.train(x)
    _, a = km.index.search(x, 1)
    return km.centroids.copy(), a[:, 0].astype(np.int64)


def rvq_pca(x: np.ndarray, shape, rank: int, seed: int = 0, niter: int = 20,
            noise: float = 1e-3) -> tt.Cores:
    """Residual-VQ/PCA initial cores (3-D float64 torch layout, ranks exactly `rank`) from sample x."""
    x = np.asarray(x, dtype=np.float64)
    n, D = x.shape
    k = len(shape)
    rng = np.random.default_rng(seed)
    c1, a1 = kmeans(x, shape[0], seed, niter)
    if k == 1:
        return [torch.from_numpy(c1.T.astype(np.float64)).unsqueeze(-1).contiguous()]
    res = x - c1[a1]
    q = min(rank - 1, D)
    cov = res.T @ res / max(n - 1, 1)
    evals, evecs = np.linalg.eigh(cov)
    P = evecs[:, ::-1][:, :q]  # (D, q), leading directions first
    z = res @ P
    cs = []
    for a in range(1, k):
        ca, aa = kmeans(z, shape[a], seed + a, niter)
        cs.append(ca.astype(np.float64))
        z = z - ca[aa]
    scale = float(np.sqrt(max(evals.max(), 1e-30)))
    G1 = np.zeros((D, shape[0], rank))
    G1[:, :, 0] = c1.T
    G1[:, :, 1:1 + q] = P[:, None, :]
    if rank > q + 1:
        G1[:, :, 1 + q:] = noise * scale * rng.standard_normal((D, shape[0], rank - 1 - q))
    cores = [G1]
    for a in range(1, k):
        last = a == k - 1
        G = np.zeros((rank, shape[a], 1 if last else rank))
        G[0, :, 0] = 1.0
        G[1:1 + q, :, 0] = cs[a - 1].T
        if not last:
            G[1:1 + q, :, 1:1 + q] = np.eye(q)[:, None, :]
            if rank > q + 1:
                G[1 + q:, :, 1 + q:] = np.eye(rank - 1 - q)[:, None, :]
        cores.append(G)
    return [torch.from_numpy(np.ascontiguousarray(g)) for g in cores]


def random_init(x: np.ndarray, shape, rank: int, seed: int = 0) -> tt.Cores:
    """Gaussian cores with the data's mean and total variance (mean added as a rank-1 TT, then the
    sum rounded back to `rank`)."""
    x = np.asarray(x, dtype=np.float64)
    D = x.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    cores = tt.random_cores(D, shape, rank, gen)
    mean = torch.from_numpy(x.mean(0))
    sigma = float(np.sqrt(x.var(0).sum() / D))
    cores[0] = cores[0] * sigma
    if len(shape) == 1:
        return [cores[0] + mean.reshape(-1, 1, 1)]
    summed = tt.add(cores, tt.constant(mean, shape))
    return tt.pad_ranks(tt.round_tt(summed, rank), rank)
