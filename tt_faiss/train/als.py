"""TT-constrained Lloyd iterations ("Lloyd-ALS"), the paper's second stage.

For fixed assignments b(i) of data to TT points, the NN loss sum_i ||x_i - y_b(i)||^2 equals
const + sum_b c_b ||y_b||^2 - 2 s_b . y_b, with per-bucket counts c_b and sums s_b. A TT point is
linear in each core, y_b = L_p(b) G_a[:, j(b), :] R_s(b) (prefix product L: (D, r_{a-1}), suffix
product R: (r_a,)), so with the other cores fixed the minimiser over core a is an exact weighted
least-squares problem, separable over the slices j = i_a:
    sum_{p,s} c_{p,j,s} (L_p^T L_p) W (R_s R_s^T) = sum_{p,s} L_p^T s_{p,j,s} R_s^T.
Cores are updated in a left-right-left sweep with the orthogonality centre moved by QR, so the
prefix/suffix products are orthonormal and the systems well conditioned. A small proximal ridge
(relative to each system's diagonal) keeps slices with little or no data where they are.

Any non-negative bucket weights work, which is how the inverse NN loss (eq. 8) enters: each chosen
TT point j adds a pseudo-count w and a pseudo-sum w * x_nn(j) (its nearest data point).
"""
from __future__ import annotations

import math

import torch

from . import tt

MAX_SYSTEM_BYTES = 4 << 30  # dense Kronecker systems of a middle core: n_a * (r_{a-1} r_a)^2 doubles


def accumulate(ids: torch.Tensor, x: torch.Tensor, npoints: int, weight: float = 1.0,
               counts: torch.Tensor | None = None, sums: torch.Tensor | None = None,
               dtype=torch.float64):
    """Add weight * (count, row sum) of rows x (n, D) to buckets ids (n,): dense (N,), (N, D)."""
    D = x.shape[1]
    if counts is None:
        counts = torch.zeros(npoints, dtype=dtype, device=x.device)
        sums = torch.zeros(npoints, D, dtype=dtype, device=x.device)
    counts.index_add_(0, ids, torch.full((ids.shape[0],), float(weight), dtype=dtype, device=x.device))
    sums.index_add_(0, ids, x.to(dtype) * weight)
    return counts, sums


def _regularised_solve(A: torch.Tensor, B: torch.Tensor, w_old: torch.Tensor, ridge: float) -> torch.Tensor:
    """Solve (A_j + lam_j I) w_j = B_j + lam_j w_old_j for a batch j; A (n, m, m), B/w_old (n, m, c)."""
    m = A.shape[-1]
    diag = torch.diagonal(A, dim1=1, dim2=2).mean(1)  # (n,)
    floor = diag.mean().clamp_min(1e-30) * 1e-9
    lam = ridge * diag + floor
    eye = torch.eye(m, dtype=A.dtype, device=A.device)
    return torch.linalg.solve(A + lam[:, None, None] * eye, B + lam[:, None, None] * w_old)


def solve_core(cores: tt.Cores, a: int, counts: torch.Tensor, sums: torch.Tensor, ridge: float) -> torch.Tensor:
    """Exact (ridge-regularised) weighted least-squares update of core a given the others."""
    shape = tt.shape_of(cores)
    k = len(cores)
    D = cores[0].shape[0]
    n = shape[a]
    P = math.prod(shape[:a])
    S = math.prod(shape[a + 1:])
    dt = counts.dtype
    G = cores[a].to(dt)
    rl, _, rr = G.shape
    C = counts.reshape(P, n, S)
    Sm = sums.to(dt).reshape(P, n, S, D)
    R = tt.suffix_vectors([c.to(dt) for c in cores], a + 1) if a < k - 1 else C.new_ones(1, 1)  # (S, rr)
    RR = torch.einsum("sx,sy->sxy", R, R)
    if a == 0:
        A = (C[0] @ RR.reshape(S, rr * rr)).reshape(n, rr, rr)
        B = torch.einsum("jsd,sy->jyd", Sm[0], R)  # (n, rr, D) = (W A)^T rows
        w_old = G.permute(1, 2, 0)  # (n, rr, D)
        W = _regularised_solve(A, B, w_old, ridge)  # A symmetric: A W^T = B^T
        return W.permute(2, 0, 1).contiguous().to(cores[a].dtype)
    need = n * (rl * rr) ** 2 * 8
    if need > MAX_SYSTEM_BYTES:
        raise ValueError(
            f"ALS core {a}: the normal equations need {need / 2**30:.1f} GiB ({n} systems of size "
            f"{rl * rr}); ranks this large are beyond exact ALS here. Lower the rank or train with "
            f"stages=('sgd',)")
    L = tt.prefix_matrices([c.to(dt) for c in cores], a)  # (P, D, rl)
    Gam = torch.einsum("pdi,pdj->pij", L, L)
    if P <= S:
        T = torch.einsum("pjs,scd->pjcd", C, RR)
        A = torch.einsum("pab,pjcd->jacbd", Gam, T)
    else:
        T = torch.einsum("pjs,pab->jsab", C, Gam)
        A = torch.einsum("jsab,scd->jacbd", T, RR)
    A = A.reshape(n, rl * rr, rl * rr)
    Y = torch.einsum("pjsd,pda->pjsa", Sm, L)
    B = torch.einsum("pjsa,sc->jac", Y, R).reshape(n, rl * rr, 1)
    w_old = G.permute(1, 0, 2).reshape(n, rl * rr, 1)
    w = _regularised_solve(A, B, w_old, ridge)
    return w.reshape(n, rl, rr).permute(1, 0, 2).contiguous().to(cores[a].dtype)


def _move_right(cores: tt.Cores, a: int) -> None:
    rl, n, rr = cores[a].shape
    q, r = torch.linalg.qr(cores[a].reshape(rl * n, rr))
    cores[a] = q.reshape(rl, n, q.shape[1])
    cores[a + 1] = torch.einsum("ij,jnk->ink", r, cores[a + 1])


def _move_left(cores: tt.Cores, a: int) -> None:
    rl, n, rr = cores[a].shape
    q, r = torch.linalg.qr(cores[a].reshape(rl, n * rr).T)
    cores[a] = q.T.reshape(q.shape[1], n, rr)
    cores[a - 1] = torch.einsum("inj,jk->ink", cores[a - 1], r.T)


def objective(cores: tt.Cores, counts: torch.Tensor, sums: torch.Tensor) -> float:
    """sum_b c_b ||y_b||^2 - 2 s_b . y_b (the weighted NN loss minus its constant); materialises the
    points of non-empty buckets only."""
    nz = torch.nonzero(counts).squeeze(1)
    y = tt.reconstruct([c.to(counts.dtype) for c in cores], nz)
    return float((counts[nz] * y.pow(2).sum(1)).sum() - 2 * (sums[nz].to(counts.dtype) * y).sum())


def sweep(cores: tt.Cores, counts: torch.Tensor, sums: torch.Tensor, ridge: float = 1e-4) -> tt.Cores:
    """One left-to-right-to-left ALS sweep for fixed bucket weights; never increases `objective`
    (each core update minimises the objective plus a proximal term that is zero at the old core)."""
    k = len(cores)
    cores = tt.right_orthogonalize(list(cores), 0)
    for a in range(k):
        cores[a] = solve_core(cores, a, counts, sums, ridge)
        if a < k - 1:
            _move_right(cores, a)
    for a in range(k - 2, -1, -1):
        _move_left(cores, a + 1)
        cores[a] = solve_core(cores, a, counts, sums, ridge)
    return cores
