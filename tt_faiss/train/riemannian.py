"""Riemannian SGD on the manifold of fixed-TT-rank point clouds (paper D.2/D.3; Novikov et al. 2022).

Written here in plain torch (about 100 lines) rather than with a TT library: our first core carries
the feature dimension as its left rank, the losses need custom gather-based reconstruction, and the
one trick that matters (the Riemannian gradient by automatic differentiation through a rank-2r
tangent-space parametrisation, as in t3f) is short.

The tangent space at X = U1..U_{k-1} S_k (left-orthogonal U, right-orthogonal V from the other
sweep) is {sum_a U_<a dG_a V_>a} with the gauge U_a^T dG_a = 0 for a < k. Writing X + dX as one
TT of rank 2r whose blocks hold the dG_a, the gradient of the loss with respect to the dG_a at
dG = 0 is exactly the projection of the Euclidean gradient onto that parametrisation.
"""
from __future__ import annotations

from typing import Callable, List

import torch

from . import tt


def _tangent_cores(U: tt.Cores, V: tt.Cores, S_last: torch.Tensor, dG: tt.Cores) -> tt.Cores:
    """Cores of X + sum_a U_<a dG_a V_>a, ranks 2r (first core: [dG_1, U_1]; middle [[V, 0], [dG, U]];
    last [V_k; S_k + dG_k])."""
    k = len(U)
    out = [torch.cat([dG[0], U[0]], 2)]
    for a in range(1, k - 1):
        rl, n, rr = U[a].shape
        top = torch.cat([V[a], V[a].new_zeros(V[a].shape[0], n, rr)], 2)
        bot = torch.cat([dG[a], U[a]], 2)
        out.append(torch.cat([top, bot], 0))
    out.append(torch.cat([V[-1], S_last + dG[-1]], 0))
    return out


def riemannian_gradient(loss_fn: Callable[[tt.Cores], torch.Tensor], cores: tt.Cores):
    """Tangent components (dG_1..dG_k) of the Riemannian gradient of loss_fn at `cores`, plus the loss
    value, the left-orthogonal cores U (U[-1] = S_k, so U is X itself) and the right-orthogonal V.

    The components satisfy the gauge, so the Riemannian gradient's norm is sqrt(sum ||dG_a||^2)."""
    k = len(cores)
    if k == 1:  # a single core is an unconstrained (D, N1) matrix: Riemannian = Euclidean
        c = cores[0].detach().requires_grad_(True)
        loss = loss_fn([c])
        (g,) = torch.autograd.grad(loss, [c])
        return [g], loss.detach(), [cores[0].detach()], [cores[0].detach()]
    with torch.no_grad():
        # rounding without truncation drops infeasible bond dimensions (r_a > min(left, right
        # sizes)), so that the left- and right-orthogonal forms have the same ranks
        X = tt.round_tt([c.detach() for c in cores], max(c.shape[2] for c in cores))
        U = tt.left_orthogonalize(X)
        V = tt.right_orthogonalize(X, 0)
    dG = [torch.zeros_like(u, requires_grad=True) for u in U]
    loss = loss_fn(_tangent_cores(U, V, U[-1], dG))
    grads = list(torch.autograd.grad(loss, dG))
    with torch.no_grad():
        for a in range(k - 1):  # gauge: remove the part along the left-orthogonal core
            rl, n, rr = U[a].shape
            u = U[a].reshape(rl * n, rr)
            g = grads[a].reshape(rl * n, rr)
            grads[a] = (g - u @ (u.T @ g)).reshape(rl, n, rr)
    return grads, loss.detach(), U, V


def retract(U: tt.Cores, V: tt.Cores, step: tt.Cores, ranks) -> tt.Cores:
    """X + (tangent vector with components `step`), rounded back to `ranks` (TT-SVD retraction)."""
    if len(U) == 1:
        return [U[0] + step[0]]
    return tt.pad_ranks(tt.round_tt(_tangent_cores(U, V, U[-1], step), ranks), ranks)


class RiemannianSGD:
    """The paper's RSGD: gradient normalised to unit norm, times a learning rate that decays by
    `decay` every `decay_every` steps; retraction by TT rounding, so ranks stay fixed.

    lr is absolute (in the units of the Frobenius norm of the (N, D) point matrix); fit() scales it."""

    def __init__(self, lr: float, decay: float = 1.0 / 3.0, decay_every: int = 2048):
        self.lr0 = float(lr)
        self.decay = float(decay)
        self.decay_every = int(decay_every)
        self.t = 0

    @property
    def lr(self) -> float:
        return self.lr0 * self.decay ** (self.t // self.decay_every)

    def step(self, loss_fn: Callable[[tt.Cores], torch.Tensor], cores: tt.Cores):
        """One step; returns (new cores, loss before the step, Riemannian gradient norm)."""
        ranks = [c.shape[2] for c in cores[:-1]]
        grads, loss, U, V = riemannian_gradient(loss_fn, cores)
        gnorm = torch.sqrt(sum((g * g).sum() for g in grads))
        scale = -self.lr / max(float(gnorm), 1e-30)
        with torch.no_grad():
            new = retract(U, V, [g * scale for g in grads], ranks)
        self.t += 1
        return new, float(loss), float(gnorm)
