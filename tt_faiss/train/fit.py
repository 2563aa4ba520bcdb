"""fit(): train a TT point cloud on data (paper section 2 and appendix D, recipe measured on CPU).

Stages (recipe key `stages`, run in order after the initialisation):
  "als": TT-constrained Lloyd iterations (als.py): each assigns a fresh subsample with the C++ beam
         search, accumulates per-bucket counts and sums, and does one exact ALS sweep. With
         als_alpha < 1 the inverse NN loss (eq. 8) joins as pseudo-counts on TT points.
  "sgd": gradient steps on sw_weight * SW + nn_weight * (alpha * NN + (1 - alpha) * NN_inv)
         (eqs. 5-9) with Adam or the paper's Riemannian SGD (optimizer="adam" | "rsgd").
Only subsamples of x are ever copied (rows gathered per step), so x may be a 10^7 x 96 array or a
read-only memory map.
"""
from __future__ import annotations

import math
import numbers
import time
from typing import Optional, Sequence

import numpy as np

DEFAULT_RECIPE = dict(
    init="rvq",              # "rvq" (residual VQ / PCA, data-driven), "random", or a TTPointCloud
                             # / list of public-layout cores to warm-start from
    init_sample=100_000,     # rows used by the initialisation (k-means, PCA)
    kmeans_iters=20,
    stages=("als",),
    # Lloyd-ALS
    als_iters=12,
    als_sample=100_000,      # fresh rows assigned per iteration
    als_beam=16,             # beam of the assignment (final iterations use als_final_beam)
    als_final_beam=32,
    als_final_iters=3,
    ridge=1e-4,              # proximal ridge, relative to each system's mean diagonal
    als_alpha=0.9,           # weight of the NN term; 1 - als_alpha goes to the inverse NN term
                             # (GloVe r16: 0.9 cut empties 12% -> 7% and raised recall; 0.5 collapsed)
    als_inv_points=16384,    # TT points per iteration for the inverse term (<= npoints)
    als_inv_target="empty",  # "empty": TT points with no row of this subsample; "random": any
    als_inv_pool=20000,      # data rows searched for the TT points' nearest neighbours
    # gradient stage
    optimizer="adam",        # "adam" or "rsgd"
    sgd_iters=100,
    lr=None,                 # adam: 1e-3 x data RMS; rsgd: relative to ||X||_F (paper: 0.1 ~ 100/1024)
    lr_decay=1.0 / 3.0,      # rsgd schedule: multiply lr by lr_decay every decay_every steps
    decay_every=None,        # default sgd_iters // 4 (paper: 2^11 of 2^13)
    batch=8192,              # data rows per step (NN loss and SW data side)
    sw_weight=1.0,
    sw_dirs=32,
    sw_tt_points=None,       # None: project all TT points; int: a random subset per step
    nn_weight=0.1,
    alpha=0.1,               # eq. 9
    inv_points=4096,         # TT points per step for the inverse NN loss
    nn_beam=16,
)


class _Log:
    """Per-stage loss log: printed (tqdm.write) when verbose, appended to `history` if given."""

    def __init__(self, verbose: bool, history: Optional[list], t0: float):
        self.verbose = verbose
        self.history = history
        self.t0 = t0

    def record(self, stage: str, it: int, **vals):
        entry = dict(stage=stage, iter=it, seconds=round(time.time() - self.t0, 3), **vals)
        if self.history is not None:
            self.history.append(entry)
        return entry

    def say(self, msg: str):
        if self.verbose:
            from tqdm.auto import tqdm

            tqdm.write(msg)


def _check_data(x):
    """Validate x without copying it whole: (n, D) floating, finite (checked in row chunks)."""
    try:
        import torch

        if torch.is_tensor(x):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency of this subpackage
        pass
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)):
            x = np.asarray(x)
        else:
            raise TypeError(f"x must be a numpy array of shape (n, d), got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must have a floating dtype, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D with shape (n, d), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x is empty (shape {x.shape})")
    step = max(1, (1 << 22) // x.shape[1])
    for i in range(0, x.shape[0], step):
        blk = x[i:i + step]
        if not np.isfinite(blk).all():
            bad = i + int(np.argwhere(~np.isfinite(blk))[0, 0])
            raise ValueError(f"x contains NaN or Inf (first at row {bad})")
    return x


def _check_shape_rank(shape, rank, d):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of positive ints, got {shape!r}") from None
    if len(shape) == 0:
        raise ValueError("shape must have at least one mode")
    for s in shape:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"shape entries must be positive ints, got {shape!r}")
    shape = tuple(int(s) for s in shape)
    k = len(shape)
    if isinstance(rank, numbers.Integral) and not isinstance(rank, (bool, np.bool_)):
        ranks = [int(rank)] * (k - 1)
        if int(rank) < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
    else:
        try:
            ranks = [int(r) for r in rank]
        except TypeError:
            raise TypeError(f"rank must be an int or a sequence of {k - 1} ints, got {rank!r}") from None
        if len(ranks) != k - 1:
            raise ValueError(f"rank: expected {k - 1} ranks for shape {shape}, got {len(ranks)}")
        if ranks and min(ranks) < 1:
            raise ValueError(f"rank must be >= 1, got {rank!r}")
    # bond a can carry at most min(left size, right size) independent directions
    feasible = [min(d * math.prod(shape[:a + 1]), math.prod(shape[a + 1:])) for a in range(k - 1)]
    return shape, ranks, [min(r, f) for r, f in zip(ranks, feasible)]


def _sample_rows(x: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m distinct random rows of x as a float32 (m, D) copy (all rows, in order, if m >= n)."""
    n = x.shape[0]
    if m >= n:
        return np.array(x, dtype=np.float32, order="C")  # a writable copy (x may be a read-only map)
    idx = np.sort(rng.choice(n, size=m, replace=False))
    return np.ascontiguousarray(x[idx], dtype=np.float32)


def fit(x, shape, rank, *, seed: int = 0, device="cpu", time_budget: Optional[float] = None,
        verbose: bool = True, history: Optional[list] = None, **recipe):
    """Fit a TT point cloud to data x.

    Parameters
    ----------
    x : (n, D) float array (numpy, memmap or torch); never copied whole. n must be >= the number
        of TT points N1*...*Nk (as faiss requires >= nlist training points).
    shape : (N1, ..., Nk) mode sizes; rank : int (all bonds) or k-1 ints. Ranks above what a bond
        can carry (min of its left and right sizes) are trained at that maximum and zero-padded.
    seed : all randomness (subsamples, k-means, directions) follows it.
    device : "cpu" or "cuda" for the torch parts (assignment runs in the C++ core on the CPU).
    time_budget : seconds; iterations stop when it is spent (the initialisation always completes).
    verbose : tqdm progress bars and a per-stage loss summary.
    history : optional list that receives one dict per iteration (stage, iter, seconds, losses).
    **recipe : overrides of DEFAULT_RECIPE (see its comments); unknown keys raise TypeError.

    Returns
    -------
    tt_faiss.TTPointCloud with float32 cores.
    """
    import torch

    from tt_faiss.cloud import TTPointCloud

    from . import init as _init
    from . import tt

    unknown = sorted(set(recipe) - set(DEFAULT_RECIPE))
    if unknown:
        raise TypeError(f"unknown recipe keys {unknown}; known: {sorted(DEFAULT_RECIPE)}")
    cfg = dict(DEFAULT_RECIPE, **recipe)
    x = _check_data(x)
    n, D = x.shape
    shape, ranks_req, ranks = _check_shape_rank(shape, rank, D)
    npoints = math.prod(shape)
    if n < npoints:
        raise ValueError(f"x has {n} rows, fewer than the {npoints} TT points of shape {shape}; "
                         f"need at least one training row per point")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    if time_budget is not None and not (time_budget > 0):
        raise ValueError(f"time_budget must be > 0 seconds, got {time_budget}")
    warm = None
    if isinstance(cfg["init"], TTPointCloud) or isinstance(cfg["init"], (list, tuple)):
        warm = cfg["init"] if isinstance(cfg["init"], TTPointCloud) else TTPointCloud(list(cfg["init"]))
        if warm.d != D or warm.shape != shape:
            raise ValueError(f"init cloud has d={warm.d}, shape={warm.shape}; expected d={D}, shape={shape}")
    elif cfg["init"] not in ("rvq", "random"):
        raise ValueError(f"init must be 'rvq', 'random' or a TTPointCloud, got {cfg['init']!r}")
    stages = (cfg["stages"],) if isinstance(cfg["stages"], str) else tuple(cfg["stages"])
    for s in stages:
        if s not in ("als", "sgd"):
            raise ValueError(f"stages entries must be 'als' or 'sgd', got {s!r}")
    if cfg["als_inv_target"] not in ("empty", "random"):
        raise ValueError(f"als_inv_target must be 'empty' or 'random', got {cfg['als_inv_target']!r}")
    if not 0.0 <= cfg["alpha"] <= 1.0 or not 0.0 <= cfg["als_alpha"] <= 1.0:
        raise ValueError("alpha and als_alpha must lie in [0, 1]")

    t0 = time.time()
    log = _Log(verbose, history, t0)
    rng = np.random.default_rng(seed)
    torch_gen = torch.Generator().manual_seed(int(seed))

    def out_of_time() -> bool:
        return time_budget is not None and time.time() - t0 > time_budget

    # ---- initialisation (float64 cores on the CPU; moved to the device per stage)
    xs = _sample_rows(x, int(cfg["init_sample"]), rng)
    if warm is not None:
        cores = tt.to_internal(warm.cores, dtype=torch.float64)
        if len(shape) > 1:
            cores = tt.pad_ranks(tt.round_tt(cores, ranks), ranks)
    elif cfg["init"] == "rvq":
        cores = _init.rvq_pca(xs, shape, max(ranks, default=1), seed=seed, niter=int(cfg["kmeans_iters"]))
        if len(shape) > 1:
            cores = tt.pad_ranks(tt.round_tt(cores, ranks), ranks)
    else:
        cores = _init.random_init(xs, shape, max(ranks, default=1), seed=seed)
        if len(shape) > 1:
            cores = tt.pad_ranks(tt.round_tt(cores, ranks), ranks)
    del xs
    init_name = "warm" if warm is not None else cfg["init"]
    log.record("init", 0, method=init_name)
    log.say(f"[tt_faiss.fit] init={init_name} shape={shape} ranks={ranks} "
            f"({time.time() - t0:.1f}s)")

    for stage in stages:
        if out_of_time():
            break
        if stage == "als":
            from .stages import run_als

            cores = run_als(x, cores, cfg, rng, dev, log, out_of_time)
        else:
            from .stages import run_sgd

            cores = run_sgd(x, cores, cfg, rng, torch_gen, dev, log, out_of_time)

    cores = [c.detach().to("cpu", torch.float64) for c in cores]
    if len(shape) > 1 and ranks != ranks_req:
        cores = tt.pad_ranks(cores, ranks_req)
    cloud = TTPointCloud(tt.to_public(cores))
    log.say(f"[tt_faiss.fit] done in {time.time() - t0:.1f}s: {cloud}")
    return cloud
