"""Compressed memory banks for nearest-neighbour anomaly detection: TT vs coreset vs random vs full.

The paper's PatchCore experiment (section 3.2) on data that ships offline:

* ``synthetic`` -- patch-feature generator (:func:`make_patch_features`): normal features lie
  near a union of curved low-dimensional manifolds in R^d, anomalies lie off them. Scored
  per feature (the analogue of PatchCore's pixel-level metrics).
* ``digits`` / ``digits-rp`` -- scikit-learn's bundled 8x8 digits: one digit is normal, the
  others are anomalous; raw pixels (64-d) or a fixed random ReLU feature map (256-d). One
  score per image (image-level metrics), averaged over the ten choices of the normal digit.

For each compression ``c`` every bank gets ``floor(N*d/c)`` float32 parameters (TT: shape and
rank from ``tt_faiss.anomaly.tt_shape_for_budget``). Reported: AUROC, AUPRC, P@R90, fit
seconds, scoring throughput (features/s) and bytes. TT rows need the torch trainer
``tt_faiss.fit``; when it is missing they are skipped and the JSON says so.

    OMP_NUM_THREADS=2 python bench/anomaly.py                    # default: 1e5 x 256 + digits
    python bench/anomaly.py --dataset synthetic --n-train 1000000 --d 512   # big run
    python bench/anomaly.py --coreset-timing 1000000x512            # 1% coreset of 1e6 x 512

Writes bench/results/anomaly.json, anomaly.md and anomaly.png (``--out`` changes the stem).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tt_faiss.anomaly import (  # noqa: E402
    CoresetMemoryBank, FullMemoryBank, RandomMemoryBank, TTMemoryBank, anomaly_metrics,
    budget_nparams, greedy_coreset_indices, tt_shape_for_budget)


# ----------------------------------------------------------------------------- data

def make_patch_features(n_train=100_000, n_test=20_000, d=256, n_manifolds=24, intrinsic_dim=4,
                        anomaly_fraction=0.1, noise=0.05, seed=0):
    """Synthetic patch features: normal = union of curved manifolds, anomalies off them.

    Manifold ``k`` (of ``n_manifolds``) is ``mu_k + s_k * U_k tanh(W_k z + b_k)`` with
    ``z ~ N(0, I_m)``, ``m = intrinsic_dim``, a random ``W_k`` (2m x m, gain 1.5, so the
    surface is visibly curved), ``U_k`` (d x 2m) with orthonormal columns, scale ``s_k`` in
    [1, 2] and centres ``mu_k ~ N(0, 1.5^2 I_d)`` (far apart compared with a manifold's
    extent, roughly ``s_k * 0.6 * sqrt(2m)``). Mixture weights follow a Zipf law (``1/(k+1)^0.8``), so some
    parts of the normal distribution are rare, as rare textures are in images. Every feature
    gets isotropic Gaussian noise ``noise`` per coordinate (like CNN feature jitter).

    Anomalies (``anomaly_fraction`` of the test set) come in three equally frequent kinds:

    * ``offset``: a normal feature moved by ``delta ~ U[0.6, 1.6]`` in a random direction;
    * ``novel``: a feature of an unseen manifold centred between two normal ones;
    * ``mixed``: the latent code of one manifold mapped through another's map (``U_j`` with
      ``W_k``, ``b_k``) -- a wrong combination of known parts.

    Returns ``(train (n_train, d), test (n_test, d), labels (n_test,) int 0/1)``, float32.
    """
    rng = np.random.default_rng(seed)
    m, h = intrinsic_dim, 2 * intrinsic_dim
    K = n_manifolds

    def make_manifold():
        W = rng.standard_normal((h, m)) * 1.5 / np.sqrt(m)
        b = rng.standard_normal(h) * 0.5
        U, _ = np.linalg.qr(rng.standard_normal((d, h)))
        return W, b, U, rng.uniform(1.0, 2.0)

    mus = rng.standard_normal((K, d)) * 1.5
    mans = [make_manifold() for _ in range(K)]
    w = 1.0 / np.arange(1, K + 1) ** 0.8
    w /= w.sum()

    def sample(n, comp_mu, comp_man, map_man=None):
        z = rng.standard_normal((n, m))
        W, b, U, s = comp_man
        if map_man is not None:  # latent code of one manifold through another manifold's map
            U, s = map_man[2], map_man[3]
        return comp_mu + s * np.tanh(z @ W.T + b) @ U.T

    def normal(n, chunk=1 << 16):
        out = np.empty((n, d), np.float32)  # chunked: float64 temporaries stay small at 1e6 x 512
        for i0 in range(0, n, chunk):
            c = min(chunk, n - i0)
            comp = rng.choice(K, size=c, p=w)
            block = np.empty((c, d))
            for k in range(K):
                sel = np.flatnonzero(comp == k)
                if sel.size:
                    block[sel] = sample(sel.size, mus[k], mans[k])
            block += rng.standard_normal(block.shape) * noise
            out[i0:i0 + c] = block
        return out

    def anomalies(n):
        kinds = rng.integers(0, 3, size=n)
        out = np.empty((n, d))
        i0 = np.flatnonzero(kinds == 0)
        u = rng.standard_normal((i0.size, d))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        out[i0] = normal(i0.size) + u * rng.uniform(0.6, 1.6, size=(i0.size, 1))  # already noisy
        for i in np.flatnonzero(kinds == 1):
            a, c = rng.choice(K, size=2, replace=False)
            out[i] = sample(1, 0.5 * (mus[a] + mus[c]), make_manifold())[0]
        for i in np.flatnonzero(kinds == 2):
            a, c = rng.choice(K, size=2, replace=False)
            out[i] = sample(1, mus[a], mans[a], map_man=mans[c])[0]
        i12 = np.flatnonzero(kinds > 0)
        out[i12] += rng.standard_normal((i12.size, d)) * noise
        return out.astype(np.float32)

    n_anom = int(round(n_test * anomaly_fraction))
    train = normal(n_train)
    test = np.concatenate([normal(n_test - n_anom), anomalies(n_anom)])
    labels = np.r_[np.zeros(n_test - n_anom, np.int64), np.ones(n_anom, np.int64)]
    perm = rng.permutation(n_test)
    return train, np.ascontiguousarray(test[perm]), labels[perm]


def digits_task(normal_digit, feature="pixels", seed=0):
    """sklearn digits: half of ``normal_digit`` trains; the test set is the other half plus as
    many images of other digits. ``feature``: ``pixels`` (64-d, /16) or ``random``: a fixed
    random ReLU layer ``relu(x W + b)`` to 256-d (W ~ N(0, 1/64), b ~ N(0, 0.1), seed 1234),
    standing in for a frozen network's features. Returns ``(train, test, labels)``."""
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32) / 16.0
    if feature == "random":
        r = np.random.default_rng(1234)
        W = r.standard_normal((64, 256)).astype(np.float32) / 8.0
        b = (r.standard_normal(256) * 0.1).astype(np.float32)
        X = np.maximum(X @ W + b, 0)
    elif feature != "pixels":
        raise ValueError(f"feature must be 'pixels' or 'random', got {feature!r}")
    rng = np.random.default_rng(seed + normal_digit)
    pos = rng.permutation(np.flatnonzero(y == normal_digit))
    neg = np.flatnonzero(y != normal_digit)
    half = len(pos) // 2
    test_neg = rng.choice(neg, size=len(pos) - half, replace=False)
    test = np.r_[pos[half:], test_neg]
    labels = np.r_[np.zeros(len(pos) - half, np.int64), np.ones(len(test_neg), np.int64)]
    return np.ascontiguousarray(X[pos[:half]]), np.ascontiguousarray(X[test]), labels


# ----------------------------------------------------------------------------- runner

def have_tt_fit():
    try:
        import tt_faiss
        return callable(getattr(tt_faiss, "fit", None))
    except Exception:
        return False


def make_bank(method, args):
    if method == "tt":
        return TTMemoryBank(beam=args.beam, seed=args.seed, verbose=args.verbose,
                            balance=args.balance, **json.loads(args.tt_fit))
    if method == "tt-plain":  # ablation: the trainer sees the raw features
        return TTMemoryBank(beam=args.beam, seed=args.seed, verbose=args.verbose, balance=0,
                            **json.loads(args.tt_fit))
    if method == "coreset":
        return CoresetMemoryBank(seed=args.seed, verbose=args.verbose)
    if method == "random":
        return RandomMemoryBank(seed=args.seed)
    if method == "full":
        return FullMemoryBank()
    raise ValueError(method)


def evaluate(method, compression, train, test, labels, args):
    """Fit one bank, score the test set; returns a result row (dict)."""
    bank = make_bank(method, args)
    t0 = time.perf_counter()
    if method == "full":
        bank.fit(train)
    else:
        bank.fit(train, compression=compression)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = bank.score(test, k=args.k)
    score_s = time.perf_counter() - t0
    row = {"method": method, "compression": 1 if method == "full" else compression,
           "nparams": bank.nparams, "bytes": bank.nbytes, "npoints": bank.npoints,
           "fit_s": fit_s, "score_per_s": len(test) / score_s,
           **anomaly_metrics(labels, scores)}
    if method.startswith("tt"):
        row["shape"] = list(bank.cloud.shape)
        row["rank"] = int(bank.cloud.rank)
    return row


def run_dataset(name, tasks, compressions, methods, args):
    """``tasks``: list of (train, test, labels); metrics are averaged over tasks."""
    rows = []
    for method in methods:
        for c in ([1] if method == "full" else compressions):
            per = []
            for train, test, labels in tasks:
                try:
                    budget_nparams(len(train), train.shape[1], c)
                    if method.startswith("tt"):
                        tt_shape_for_budget(budget_nparams(len(train), train.shape[1], c),
                                            train.shape[1], max_points=len(train))
                    elif budget_nparams(len(train), train.shape[1], c) < train.shape[1]:
                        raise ValueError("budget below one feature")
                except ValueError as e:
                    per = None
                    print(f"  {name} {method} {c}x: skipped ({e})", flush=True)
                    break
                per.append(evaluate(method, c, train, test, labels, args))
            if not per:
                continue
            row = dict(per[0])
            for key in ("nparams", "bytes", "npoints", "fit_s", "score_per_s", "auroc", "auprc",
                        "p_at_r90"):
                row[key] = float(np.mean([p[key] for p in per]))
            row["dataset"] = name
            row["tasks"] = len(per)
            rows.append(row)
            print(f"  {name:10s} {method:8s} {row['compression']:>5}x  AUROC {row['auroc']:.4f}  "
                  f"AUPRC {row['auprc']:.4f}  P@R90 {row['p_at_r90']:.4f}  fit {row['fit_s']:.2f}s  "
                  f"{row['score_per_s']:.0f}/s  {row['bytes'] / 1e3:.1f} kB", flush=True)
    return rows


def coreset_timing(spec, args):
    n, d = (int(float(v)) for v in spec.lower().split("x"))
    train, _, _ = make_patch_features(n_train=n, n_test=10, d=d, seed=args.seed)
    t0 = time.perf_counter()
    idx = greedy_coreset_indices(train, n // 100, seed=args.seed, verbose=True)
    sec = time.perf_counter() - t0
    print(f"coreset 1% of {n} x {d}: {len(idx)} features in {sec:.1f} s", flush=True)
    return {"n": n, "d": d, "selected": int(len(idx)), "seconds": sec,
            "projection_dim": 128, "approximate": True,
            "command": "python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:]),
            "machine": f"{os.cpu_count()} cpus, OMP_NUM_THREADS="
                       f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"}


def write_outputs(result, stem):
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    lines = [f"# Anomaly detection with compressed memory banks", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine']}", ""]
    notes = list(result.get("notes", [])) + [
        "synthetic: one score per feature (PatchCore's pixel-level analogue); digits: one score "
        "per image, metrics/params/points averaged over the 10 choices of the normal digit (the "
        "TT shape shown is the first task's); scored/s on digits is dominated by call overhead.",
        "tt = TTMemoryBank defaults (rank-4 rule, coverage resampling from 10k features); "
        "tt-plain = the same without coverage resampling; tt_faiss.fit options "
        f"{result.get('args', {}).get('tt_fit', '{}')}, beam {result.get('args', {}).get('beam')}."]
    lines += [f"- {n}" for n in notes] + [""]
    head = ("| dataset | method | compression | params | kB | points | AUROC | AUPRC | P@R90 | "
            "fit s | scored/s |")
    for ds in dict.fromkeys(r["dataset"] for r in result["rows"]):
        lines += [f"## {ds}", "", head, "|" + "---|" * 11]
        for r in result["rows"]:
            if r["dataset"] != ds:
                continue
            extra = f" {tuple(r['shape'])} r{r['rank']}" if r["method"].startswith("tt") else ""
            lines.append(
                f"| {ds} | {r['method']}{extra} | {r['compression']}x | {r['nparams']:.0f} | "
                f"{r['bytes'] / 1e3:.1f} | {r['npoints']:.0f} | {r['auroc']:.4f} | {r['auprc']:.4f} | "
                f"{r['p_at_r90']:.4f} | {r['fit_s']:.2f} | {r['score_per_s']:.0f} |")
        lines.append("")
    lines += target_summary(result["rows"])
    if result.get("coreset_timing"):
        t = result["coreset_timing"]
        lines += [f"Coreset timing: 1% of {t['n']} x {t['d']} synthetic features "
                  f"({t['selected']} selected, projection to {t['projection_dim']} dims, "
                  f"approximate start) in {t['seconds']:.1f} s; command `{t.get('command', '')}`, "
                  f"{t.get('machine', '')}.", ""]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines))
    plot(result, stem + ".png")


def target_summary(rows):
    """The issue's targets on the synthetic data: at 100x and 1000x TT's AUPRC and P@R90 beat
    coreset and random and are within 0.02 of the full bank."""
    by = {(r["dataset"], r["method"], r["compression"]): r for r in rows}
    full = by.get(("synthetic", "full", 1))
    out = []
    for c in (100, 1000):
        tt, cs, rnd = (by.get(("synthetic", m, c)) for m in ("tt", "coreset", "random"))
        if not (tt and cs and rnd and full):
            continue
        for key, label in (("auprc", "AUPRC"), ("p_at_r90", "P@R90")):
            beats = tt[key] > cs[key] and tt[key] > rnd[key]
            gap = full[key] - tt[key]
            out.append(f"- synthetic {c}x {label}: TT {tt[key]:.4f}, coreset {cs[key]:.4f}, random "
                       f"{rnd[key]:.4f}, full {full[key]:.4f} -> TT "
                       f"{'beats both' if beats else 'does NOT beat both'}; gap to full {gap:.4f} "
                       f"({'within' if gap <= 0.02 else 'NOT within'} 0.02)")
    if out:
        out = ["## Targets (synthetic)", ""] + out + [""]
    return out


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = list(dict.fromkeys(r["dataset"] for r in result["rows"]))
    if not datasets:
        return
    metrics = [("auroc", "AUROC"), ("auprc", "AUPRC"), ("p_at_r90", "P@R90")]
    fig, axes = plt.subplots(len(datasets), 3, figsize=(12, 3.2 * len(datasets)), squeeze=False)
    colors = {"tt": "C3", "tt-plain": "C1", "coreset": "C0", "random": "C2"}
    for i, ds in enumerate(datasets):
        rows = [r for r in result["rows"] if r["dataset"] == ds]
        for j, (key, label) in enumerate(metrics):
            ax = axes[i, j]
            for method, col in colors.items():
                pts = sorted((r["compression"], r[key]) for r in rows if r["method"] == method)
                if pts:
                    ax.plot(*zip(*pts), "o-", color=col, label=method)
            full = [r[key] for r in rows if r["method"] == "full"]
            if full:
                ax.axhline(full[0], color="k", ls="--", lw=1, label="full")
            ax.set_xscale("log")
            ticks = sorted({r["compression"] for r in rows if r["method"] != "full"})
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("compression (x)")
            ax.set_title(f"{ds}: {label}")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["synthetic", "digits", "all", "none"], default="all")
    ap.add_argument("--n-train", type=int, default=100_000)
    ap.add_argument("--n-test", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--compressions", type=float, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--digits-compressions", type=float, nargs="+", default=[2, 5, 10])
    ap.add_argument("--methods", nargs="+", default=["full", "random", "coreset", "tt", "tt-plain"],
                    choices=["full", "random", "coreset", "tt", "tt-plain"],
                    help="tt-plain: TT without coverage resampling (ablation)")
    ap.add_argument("--k", type=int, default=1, help="score = mean distance to k nearest")
    ap.add_argument("--beam", type=int, default=32, help="TT beam width")
    ap.add_argument("--balance", type=float, default=0.5, help="TTMemoryBank(balance=...)")
    ap.add_argument("--tt-fit", default='{"als_iters": 6, "als_sample": 30000}',
                    help="JSON dict of tt_faiss.fit options (default: a shortened Lloyd-ALS "
                         "recipe that fits 2 shared cores; '{}' = the trainer's defaults)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="faiss/BLAS threads")
    ap.add_argument("--coreset-timing", default=None, metavar="NxD",
                    help="also time a 1%% coreset of an N x D synthetic bank (e.g. 1000000x512)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results", "anomaly"))
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--replot", action="store_true",
                    help="rebuild OUT.md/.png from OUT.json (adds --coreset-timing if given)")
    args = ap.parse_args(argv)
    if args.replot:
        with open(args.out + ".json") as f:
            result = json.load(f)
        if args.coreset_timing:
            result["coreset_timing"] = coreset_timing(args.coreset_timing, args)
        write_outputs(result, args.out)
        print(f"rewrote {args.out}.json/.md/.png")
        return result
    if args.threads:
        import faiss
        faiss.omp_set_num_threads(args.threads)

    methods = list(args.methods)
    notes = []
    if any(m.startswith("tt") for m in methods) and not have_tt_fit():
        methods = [m for m in methods if not m.startswith("tt")]
        notes.append("TT rows skipped: tt_faiss.fit (the torch trainer) is not available.")
        print(notes[-1], flush=True)
    comps = [int(c) if float(c).is_integer() else c for c in args.compressions]
    dcomps = [int(c) if float(c).is_integer() else c for c in args.digits_compressions]

    rows = []
    if args.dataset in ("synthetic", "all"):
        t0 = time.perf_counter()
        train, test, labels = make_patch_features(args.n_train, args.n_test, args.d, seed=args.seed)
        print(f"synthetic {train.shape} train, {test.shape} test ({labels.mean():.0%} anomalous), "
              f"generated in {time.perf_counter() - t0:.1f} s", flush=True)
        rows += run_dataset("synthetic", [(train, test, labels)], comps, methods, args)
        del train, test
    if args.dataset in ("digits", "all"):
        # TTMemoryBank skips coverage resampling below 10k features: tt-plain would repeat tt
        dmethods = [m for m in methods if m != "tt-plain"]
        for feat, name in (("pixels", "digits"), ("random", "digits-rp")):
            tasks = [digits_task(c, feat, seed=args.seed) for c in range(10)]
            rows += run_dataset(name, tasks, dcomps, dmethods, args)

    result = {"command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
              "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
                         f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
              "notes": notes, "args": vars(args), "rows": rows}
    if args.coreset_timing:
        result["coreset_timing"] = coreset_timing(args.coreset_timing, args)
    write_outputs(result, args.out)
    print(f"wrote {args.out}.json/.md/.png")
    return result


if __name__ == "__main__":
    main()
