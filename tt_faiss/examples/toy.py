"""The paper's 2-D toy clouds (figure 2, appendix D.1), fitted with tt_faiss.fit and drawn.

    python -m tt_faiss.examples.toy --out DIR [--n 8192] [--shape 64 128] [--rank 8] [--seed 0]

writes DIR/toy_<name>.png for each cloud (columns: data with level-1 centroids, data with level-2
centroids (the TT points for a 2-core TT), data density, TT cloud density) and prints the NN
loss of the fit and of a random TT of the same size. Needs matplotlib and torch.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def circles_grid(n: int, rng: np.random.Generator) -> np.ndarray:
    """16 uniform distributions over circles on a 4x4 grid, each circle equally likely."""
    c = rng.integers(0, 16, n)
    centres = np.stack([c % 4, c // 4], 1).astype(np.float64) * 3.0
    t = rng.uniform(0, 2 * np.pi, n)
    return (centres + np.stack([np.cos(t), np.sin(t)], 1)).astype(np.float32)


def half_circle(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform distribution over one half of the unit circle."""
    t = rng.uniform(0, np.pi, n)
    return np.stack([np.cos(t), np.sin(t)], 1).astype(np.float32)


def mixture(n: int, rng: np.random.Generator) -> np.ndarray:
    """Equal-weight mixture: a non-uniform density on a closed loop, a uniform disc inside the loop,
    and a normal blob above the loop."""
    comp = rng.integers(0, 3, n)
    out = np.empty((n, 2))
    m = comp == 0  # loop r(t) = 2 + 0.5 cos 3t, angle density proportional to 1 + 0.9 sin t
    k = int(m.sum())
    t = np.empty(0)
    while t.size < k:
        cand = rng.uniform(0, 2 * np.pi, 2 * k)
        keep = rng.uniform(0, 1.9, 2 * k) < 1 + 0.9 * np.sin(cand)
        t = np.concatenate([t, cand[keep]])
    t = t[:k]
    r = 2 + 0.5 * np.cos(3 * t)
    out[m] = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    m = comp == 1  # uniform disc of radius 0.8 at the origin
    k = int(m.sum())
    rad = 0.8 * np.sqrt(rng.uniform(0, 1, k))
    a = rng.uniform(0, 2 * np.pi, k)
    out[m] = np.stack([rad * np.cos(a), rad * np.sin(a)], 1)
    m = comp == 2  # normal blob above the loop
    out[m] = rng.normal(0, 0.35, (int(m.sum()), 2)) + np.array([0.0, 3.6])
    return out.astype(np.float32)


TOYS = {"circles": circles_grid, "half_circle": half_circle, "mixture": mixture}


def make(name: str, n: int = 8192, seed: int = 0) -> np.ndarray:
    """Toy cloud `name` (one of TOYS) as (n, 2) float32."""
    if name not in TOYS:
        raise ValueError(f"unknown toy {name!r}; choose from {sorted(TOYS)}")
    return TOYS[name](int(n), np.random.default_rng(seed))


def nn_loss(cloud, x: np.ndarray) -> float:
    """Mean squared distance from each row of x to its nearest TT point (exact beam)."""
    beam = max(cloud.shape) if cloud.ncores > 1 else None
    d, _ = cloud.search(x, 1, beam=beam)
    return float(d.mean())


def draw(name: str, x: np.ndarray, cloud, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = cloud.reconstruct(np.arange(cloud.npoints))
    lo, hi = x.min(0) - 0.3, x.max(0) + 0.3
    fig, ax = plt.subplots(1, 4, figsize=(16, 4))
    for a, level in zip(ax[:2], (1, min(2, cloud.ncores))):
        c = cloud.centroids(level)
        a.scatter(x[:, 0], x[:, 1], s=1, c="tab:blue", alpha=0.3, label="data")
        a.scatter(c[:, 0], c[:, 1], s=3 if level > 1 else 12, c="tab:orange", label=f"level-{level} centroids")
        a.set_title(f"level-{level} centroids ({len(c)})")
    bins = 120
    rng = [[lo[0], hi[0]], [lo[1], hi[1]]]
    ax[2].hist2d(x[:, 0], x[:, 1], bins=bins, range=rng, cmap="Blues")
    ax[2].set_title("data density")
    ax[3].hist2d(pts[:, 0], pts[:, 1], bins=bins, range=rng, cmap="Oranges")
    ax[3].set_title(f"TT cloud density ({cloud.npoints} points)")
    for a in ax:
        a.set_xlim(lo[0], hi[0])
        a.set_ylim(lo[1], hi[1])
        a.set_aspect("equal")
    fig.suptitle(f"{name}: TT {'x'.join(map(str, cloud.shape))}, rank {cloud.rank}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Fit and draw the paper's toy TT point clouds.")
    ap.add_argument("--out", required=True, help="output directory for the PNGs")
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--shape", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--toys", nargs="+", default=list(TOYS), choices=list(TOYS))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    import tt_faiss

    os.makedirs(args.out, exist_ok=True)
    for name in args.toys:
        x = make(name, args.n, args.seed)
        t = time.time()
        cloud = tt_faiss.fit(x, tuple(args.shape), args.rank, seed=args.seed, verbose=not args.quiet)
        secs = time.time() - t
        scale = float(x.std())
        rand = tt_faiss.TTPointCloud.random(2, tuple(args.shape), args.rank, seed=args.seed, scale=scale)
        path = os.path.join(args.out, f"toy_{name}.png")
        draw(name, x, cloud, path)
        print(f"{name}: NN loss fit {nn_loss(cloud, x):.3g} vs random TT {nn_loss(rand, x):.3g}, "
              f"train {secs:.1f}s -> {path}")


if __name__ == "__main__":
    main()
