"""Torch tensor-train primitives for point clouds.

Internal layout: every core is 3-D. The first core is (D, N1, r1), so the feature dimension plays the
role of the first core's left rank; middle cores are (r_{a-1}, N_a, r_a); the last core is
(r_{k-1}, N_k, 1). Point (i1..ik) is G1[:, i1, :] @ G2[:, i2, :] @ ... @ Gk[:, ik, :] -> (D, 1).
The public TTPointCloud layout differs only in the last core, which is (r_{k-1}, N_k) there (and a
single core is (D, N1)); `to_internal` / `to_public` convert.
"""
from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np
import torch

Cores = List[torch.Tensor]


def to_internal(cores: Sequence, device="cpu", dtype=torch.float32) -> Cores:
    """Public cores (numpy or torch; last core (r, Nk) or single (D, N1)) -> 3-D torch cores."""
    out = [(c if torch.is_tensor(c) else torch.from_numpy(np.array(c))).to(device=device, dtype=dtype)
           for c in cores]
    if out[-1].dim() == 2:
        out[-1] = out[-1].unsqueeze(-1)
    for c in out:
        if c.dim() != 3:
            raise ValueError(f"cores: expected 3-D cores (last may be 2-D), got shape {tuple(c.shape)}")
    return out


def to_public(cores: Cores) -> List[np.ndarray]:
    """3-D torch cores -> float32 C-contiguous numpy cores in the TTPointCloud layout."""
    out = [np.ascontiguousarray(c.detach().cpu().to(torch.float32).numpy()) for c in cores]
    out[-1] = np.ascontiguousarray(out[-1][:, :, 0])
    return out


def shape_of(cores: Cores):
    return tuple(int(c.shape[1]) for c in cores)


def unravel(ids: torch.Tensor, shape: Sequence[int]) -> List[torch.Tensor]:
    """Flat ids (row-major, i1 slowest) -> list of k index tensors."""
    out = []
    rem = ids
    for n in reversed(shape):
        out.append(rem % n)
        rem = torch.div(rem, n, rounding_mode="floor")
    return out[::-1]


def reconstruct(cores: Cores, ids: torch.Tensor) -> torch.Tensor:
    """Points at flat ids: (m,) int64 -> (m, D). Right-to-left mat-vecs, cost m * sum(r^2) + m*D*r."""
    idx = unravel(ids, shape_of(cores))
    v = cores[-1][:, idx[-1], 0].T  # (m, r)
    for a in range(len(cores) - 2, -1, -1):
        g = cores[a][:, idx[a], :].permute(1, 0, 2)  # (m, rl, rr)
        v = torch.bmm(g, v.unsqueeze(-1)).squeeze(-1)
    return v


def suffix_vectors(cores: Cores, start: int) -> torch.Tensor:
    """Products G_start ... G_k for all suffix multi-indices: (N_start*...*N_k, r_{start-1})."""
    v = cores[-1][:, :, 0].T  # (Nk, r)
    for a in range(len(cores) - 2, start - 1, -1):
        g = cores[a]  # (rl, n, rr)
        # (n, rl, rr) x (S, rr) -> (n, S, rl)
        v = torch.einsum("inj,sj->nsi", g, v).reshape(-1, g.shape[0])
    return v


def full(cores: Cores) -> torch.Tensor:
    """Materialise all points (N, D). Only for small clouds (tests, toys)."""
    return suffix_vectors(cores, 0)


def prefix_matrices(cores: Cores, stop: int) -> torch.Tensor:
    """Products G_1 ... G_{stop-1} for all prefixes: (N_1*...*N_{stop-1}, D, r_{stop-1}).

    stop=0 gives the identity (1, D, D)."""
    D = cores[0].shape[0]
    L = torch.eye(D, dtype=cores[0].dtype, device=cores[0].device).unsqueeze(0)
    for a in range(stop):
        g = cores[a]
        L = torch.einsum("pdi,inj->pndj", L, g).reshape(-1, D, g.shape[2])
    return L


def project(cores: Cores, u: torch.Tensor) -> torch.Tensor:
    """1-D projections of every TT point onto directions u (L, D) -> (L, N), without forming points.

    u^T G1 gives (L, N1, r1); the suffix products (N2*..*Nk, r1) are formed once (a (S, r) table,
    S = N/N1), so memory is O(L*N + S*r), never O(N*D)."""
    P1 = torch.einsum("ld,dnr->lnr", u, cores[0])
    if len(cores) == 1:
        return P1[:, :, 0]
    V = suffix_vectors(cores, 1)  # (S, r1)
    return torch.einsum("lnr,sr->lns", P1, V).reshape(u.shape[0], -1)


def project_ids(cores: Cores, u: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Projections of the TT points at flat ids onto u (L, D) -> (L, m)."""
    return u @ reconstruct(cores, ids).T


def left_orthogonalize(cores: Cores, upto: int | None = None) -> Cores:
    """QR sweep left to right: cores 0..upto-1 left-orthogonal, the rest carried into core `upto`."""
    cores = list(cores)
    k = len(cores)
    upto = k - 1 if upto is None else upto
    for a in range(upto):
        rl, n, rr = cores[a].shape
        q, r = torch.linalg.qr(cores[a].reshape(rl * n, rr))
        cores[a] = q.reshape(rl, n, q.shape[1])
        cores[a + 1] = torch.einsum("ij,jnk->ink", r, cores[a + 1])
    return cores


def right_orthogonalize(cores: Cores, downto: int = 0) -> Cores:
    """RQ sweep right to left: cores downto+1..k-1 right-orthogonal (rows of unfoldings orthonormal)."""
    cores = list(cores)
    for a in range(len(cores) - 1, downto, -1):
        rl, n, rr = cores[a].shape
        q, r = torch.linalg.qr(cores[a].reshape(rl, n * rr).T)  # M^T = QR -> M = R^T Q^T
        cores[a] = q.T.reshape(q.shape[1], n, rr)
        cores[a - 1] = torch.einsum("inj,jk->ink", cores[a - 1], r.T)
    return cores


def norm(cores: Cores) -> torch.Tensor:
    """Frobenius norm of the (N, D) point matrix."""
    return torch.linalg.norm(left_orthogonalize(cores)[-1])


def round_tt(cores: Cores, rank: int | Sequence[int]) -> Cores:
    """TT rounding (TT-SVD of an orthogonalised TT) to ranks <= rank; the retraction of RSGD.

    Ranks are never raised: if a truncated SVD has fewer singular values the rank shrinks, so callers
    that need fixed ranks pad with `pad_ranks`."""
    k = len(cores)
    ranks = [rank] * (k - 1) if isinstance(rank, int) else list(rank)
    cores = right_orthogonalize(cores, 0)
    for a in range(k - 1):
        rl, n, rr = cores[a].shape
        u, s, vh = torch.linalg.svd(cores[a].reshape(rl * n, rr), full_matrices=False)
        t = min(ranks[a], s.shape[0])
        cores[a] = u[:, :t].reshape(rl, n, t)
        cores[a + 1] = torch.einsum("j,jk,knl->jnl", s[:t], vh[:t], cores[a + 1])
    return cores


def pad_ranks(cores: Cores, rank: int | Sequence[int]) -> Cores:
    """Zero-pad bond dimensions up to `rank` (keeps the tensor unchanged)."""
    k = len(cores)
    ranks = [rank] * (k - 1) if isinstance(rank, int) else list(rank)
    cores = list(cores)
    for a in range(k - 1):
        cur = cores[a].shape[2]
        if cur < ranks[a]:
            extra = ranks[a] - cur
            cores[a] = torch.cat([cores[a], cores[a].new_zeros(cores[a].shape[0], cores[a].shape[1], extra)], 2)
            cores[a + 1] = torch.cat(
                [cores[a + 1], cores[a + 1].new_zeros(extra, cores[a + 1].shape[1], cores[a + 1].shape[2])], 0)
    return cores


def add(a: Cores, b: Cores) -> Cores:
    """TT sum (ranks add): points of the result are a(i) + b(i)."""
    k = len(a)
    if k == 1:
        return [a[0] + b[0]]
    out = [torch.cat([a[0], b[0]], 2)]
    for i in range(1, k - 1):
        ra, n, sa = a[i].shape
        rb, _, sb = b[i].shape
        c = a[i].new_zeros(ra + rb, n, sa + sb)
        c[:ra, :, :sa] = a[i]
        c[ra:, :, sa:] = b[i]
        out.append(c)
    out.append(torch.cat([a[-1], b[-1]], 0))
    return out


def constant(v: torch.Tensor, shape: Sequence[int]) -> Cores:
    """Rank-1 TT whose every point is v (D,)."""
    k = len(shape)
    first = v.reshape(-1, 1, 1).expand(-1, shape[0], 1).clone()
    return [first] + [v.new_ones(1, n, 1) for n in shape[1:]]


def nparams(cores: Cores) -> int:
    return sum(int(c.numel()) for c in cores)


def random_cores(d: int, shape: Sequence[int], rank: int, generator: torch.Generator,
                 dtype=torch.float64) -> Cores:
    """Gaussian cores scaled so every point has expected squared norm d."""
    k = len(shape)
    ranks = [d] + [rank] * (k - 1) + [1]
    cores = []
    for a in range(k):
        g = torch.randn(ranks[a], shape[a], ranks[a + 1], generator=generator, dtype=dtype)
        # each bond multiplies the expected squared norm by ranks[a+1] * var; keep it at 1 per core
        g /= math.sqrt(ranks[a + 1]) if a < k - 1 else 1.0
        cores.append(g)
    return cores
