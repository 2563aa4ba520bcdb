"""The paper's losses (section 2, eqs. 3-9) on 3-D torch cores (see tt.py for the layout).

Conventions: losses are means, not sums (the paper's eqs. 3, 7, 8 sum; a mean keeps step sizes
independent of batch sizes). Nearest TT points are found outside autograd (C++ beam search through
`nearest_tt`), then the chosen points are reconstructed differentiably from the cores.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from . import tt


def random_directions(n: int, d: int, generator: torch.Generator, dtype=torch.float32,
                      device="cpu") -> torch.Tensor:
    """n directions uniform on the unit sphere S^{d-1}: (n, d)."""
    u = torch.randn(n, d, generator=generator, dtype=dtype).to(device)
    return u / u.norm(dim=1, keepdim=True)


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor, p: int = 1) -> torch.Tensor:
    """W_p^p between the empirical distributions of each row of a (L, n) and b (L, m), exactly.

    Unequal counts are handled through quantile functions: both are step functions of the level t in
    (0, 1], constant between the merged breakpoints {i/n} U {j/m}; the integral of |Fa^-1 - Fb^-1|^p
    over t is a finite weighted sum. Returns (L,). For n == m this is mean(|sort(a) - sort(b)|^p)."""
    if a.dim() == 1:
        a = a.unsqueeze(0)
        b = b.unsqueeze(0)
    n, m = a.shape[1], b.shape[1]
    sa, _ = torch.sort(a, dim=1)
    sb, _ = torch.sort(b, dim=1)
    if n == m:
        return (sa - sb).abs().pow(p).mean(1)
    dt = torch.float64
    t = torch.cat([torch.arange(1, n + 1, dtype=dt) / n, torch.arange(1, m + 1, dtype=dt) / m])
    t, _ = torch.sort(t)
    w = torch.diff(t, prepend=t.new_zeros(1))
    mid = t - w / 2
    ia = torch.clamp((mid * n).floor().long(), 0, n - 1).to(a.device)
    ib = torch.clamp((mid * m).floor().long(), 0, m - 1).to(a.device)
    w = w.to(device=a.device, dtype=a.dtype)
    return ((sa[:, ia] - sb[:, ib]).abs().pow(p) * w).sum(1)


def sliced_wasserstein(x: torch.Tensor, cores: tt.Cores, u: torch.Tensor,
                       tt_ids: Optional[torch.Tensor] = None, p: int = 1) -> torch.Tensor:
    """Sliced Wasserstein loss (eqs. 5-6) between data x (n, D) and the TT cloud, Monte Carlo over the
    given unit directions u (L, D).

    The TT side is projected through the cores (tt.project): with tt_ids=None all N points are used
    (O(L*N) memory, never O(N*D)); with tt_ids (m,) only those TT points (for clouds of 2^22+)."""
    px = u @ x.T
    pt = tt.project(cores, u) if tt_ids is None else tt.project_ids(cores, u, tt_ids)
    return wasserstein_1d(px, pt, p).mean()


def nn_loss(x: torch.Tensor, cores: tt.Cores, ids: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour loss (eq. 7) as a mean: ids (n,) are the nearest TT points of x (n, D)."""
    return (x - tt.reconstruct(cores, ids)).pow(2).sum(1).mean()


def inverse_nn_loss(cores: tt.Cores, tt_ids: torch.Tensor, x: torch.Tensor,
                    nn_of_tt: torch.Tensor) -> torch.Tensor:
    """Inverse nearest-neighbour loss (eq. 8) as a mean over TT points tt_ids (m,), whose nearest
    data rows in x are nn_of_tt (m,)."""
    return (tt.reconstruct(cores, tt_ids) - x[nn_of_tt]).pow(2).sum(1).mean()


def nn_total(l_nn: torch.Tensor, l_inv: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 9: alpha * L_NN + (1 - alpha) * L_NN^inv."""
    return alpha * l_nn + (1.0 - alpha) * l_inv


def nearest_data(points: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Exact nearest row of x (n, D) for each of points (m, D) (faiss brute force): (m,) int64."""
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    _, I = index.search(np.ascontiguousarray(points, dtype=np.float32), 1)
    return I[:, 0].astype(np.int64)


def nearest_tt(cores: tt.Cores, x: np.ndarray, beam: Optional[int] = None) -> np.ndarray:
    """Nearest TT point of each row of x (n, D) by the C++ beam search: (n,) int64 flat ids."""
    from tt_faiss.cloud import TTPointCloud

    return np.asarray(TTPointCloud(tt.to_public(cores)).assign(np.ascontiguousarray(x, dtype=np.float32),
                                                              beam=beam), dtype=np.int64)
