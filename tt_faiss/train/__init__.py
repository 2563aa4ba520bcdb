"""tt_faiss.train: the torch trainer for TT point clouds (imports torch; never imported by
`import tt_faiss` itself, only by `tt_faiss.fit`).

fit(x, shape, rank, ...)  the driver (fit.py; recipe in DEFAULT_RECIPE)
tt                        torch TT primitives (reconstruct, projections, orthogonalisation, rounding)
losses                    sliced Wasserstein, NN and inverse NN losses (eqs. 3-9)
riemannian                Riemannian SGD on the fixed-rank TT manifold
als                       TT-constrained Lloyd / ALS core updates
init                      residual-VQ/PCA and random initialisations
"""
from .fit import DEFAULT_RECIPE, fit

__all__ = ["fit", "DEFAULT_RECIPE"]
