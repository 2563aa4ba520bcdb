#!/usr/bin/env python3
"""Summarise bench_ivf.py JSON results: a markdown table and matplotlib PNGs.

  python bench/summarize.py bench/results/glove --baseline "IMI2x8,Flat" --out bench/results/glove

Writes into --out:
  table.md             one row per run (quantizer floats, buckets, empties, sum N_i^2/N, Recall@R,
                       train/add seconds, index MB, QPS at recall targets)
  recall_at_R.png      Recall@R curves (paper fig. 3b)
  recall_at_R_diff.png Recall@R minus the baseline's (fig. 3c)
  buckets_vs_rank.png  empty buckets and sum N_i^2/N versus TT rank, baselines as lines (fig. 3a, 3d)
  pca.png              2-D PCA of the data vs TT points (fig. 3e, 3f), for runs with a PCA sample
  recall_vs_qps.png    1-recall@1 and 10-recall@10 versus queries per second
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import sys

TT_RE = re.compile(r"TT(\d+(?:x\d+)*)r(\d+)")
TABLE_RS = (16, 128, 1024, 16384)
TARGETS = (("recall1_at1=0.9", "QPS R1@1=.9"), ("recall1_at1=0.95", "QPS R1@1=.95"),
           ("recall10_at10=0.9", "QPS 10R@10=.9"))


def load_runs(paths):
    """List of result dicts from JSON files or directories of them (sorted by file name)."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(glob.glob(os.path.join(p, "*.json")))
        elif os.path.exists(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"no such result file or directory: {p}")
    runs = []
    for f in files:
        with open(f) as fh:
            try:
                r = json.load(fh)
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}: not valid JSON ({e})") from None
        if not isinstance(r, dict) or "key" not in r or "sweep" not in r:
            continue  # not a bench_ivf result (e.g. another tool's JSON in the same folder)
        r["_path"] = f
        runs.append(r)
    if not runs:
        raise ValueError(f"no bench_ivf results found in {', '.join(paths)}")
    return runs


def _fmt_int(v):
    return "" if v is None else f"{int(v):,}"


def _fmt(v, nd=3):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{nd}f}"


def _fmt_qps(v):
    return "not reached" if v is None else f"{v:,.0f}"


def label(r):
    return r.get("label") or r["key"]


def tt_rank(r):
    m = TT_RE.search(r["key"])
    return (m.group(1), int(m.group(2))) if m else (None, None)


QPS_MODE = {"mode": "cpu"}


def _qps_at(r):
    if QPS_MODE["mode"] == "cpu" and r.get("qps_cpu_at"):
        return r["qps_cpu_at"]
    return r.get("qps_at") or {}


def _qps(s):
    return s.get("qps_cpu", s["qps"]) if QPS_MODE["mode"] == "cpu" else s["qps"]


def markdown_table(runs):
    head = (["index", "quantizer floats", "buckets", "empty %", "ΣN²/N"] + [f"R@{R}" for R in TABLE_RS]
            + ["train s", "add s", "index MB"] + [t[1] for t in TARGETS])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        bs = r.get("bucket_stats") or {}
        rec = r.get("recall_at_R") or {}
        qa = _qps_at(r)
        mb = r.get("index_bytes")
        row = [label(r), _fmt_int(r.get("quantizer_floats")) if r.get("nlist") else "–",
               _fmt_int(r.get("nlist")) if r.get("nlist") else "–",
               _fmt(bs.get("empty_pct"), 1), _fmt(bs.get("sum_sq_over_n"), 1)]
        row += [_fmt(rec.get(str(R))) for R in TABLE_RS]
        row += [_fmt(r.get("train_s"), 1), _fmt(r.get("add_s"), 1), "" if mb is None else f"{mb / 2**20:.1f}"]
        row += [_fmt_qps(qa.get(t[0])) if r.get("sweep") else "–" for t in TARGETS]  # – : not searched
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _curve(r):
    rec = r.get("recall_at_R") or {}
    pts = sorted((int(R), v) for R, v in rec.items() if v is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_recall_at_R(runs, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        R, v = _curve(r)
        if R:
            ax.plot(R, v, marker=".", label=label(r))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("R (candidates scanned)")
    ax.set_ylabel("Recall@R")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"Recall@R on {runs[0]['dataset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def find_baseline(runs, spec):
    if spec is None:
        for r in runs:
            if r["key"].startswith("IMI") and r.get("recall_at_R"):
                return r
        return next((r for r in runs if r.get("recall_at_R")), None)
    for r in runs:
        if spec in (r["key"], label(r)):
            return r
    for r in runs:
        if spec in r["key"] or spec in label(r):
            return r
    raise ValueError(f"baseline {spec!r} matches no run (keys: {', '.join(r['key'] for r in runs)})")


def plot_recall_diff(runs, base, path):
    plt = _plt()
    bR, bv = _curve(base)
    bmap = dict(zip(bR, bv))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        if r is base:
            continue
        R, v = _curve(r)
        pts = [(x, y - bmap[x]) for x, y in zip(R, v) if x in bmap]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label(r))
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("R (candidates scanned)")
    ax.set_ylabel(f"Recall@R minus {label(base)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_buckets_vs_rank(runs, path):
    """Returns False (and draws nothing) when no run has a TT rank and bucket statistics."""
    tt = [r for r in runs if tt_rank(r)[0] and r.get("bucket_stats")]
    if not tt:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for shape in sorted({tt_rank(r)[0] for r in tt}):
        rows = sorted((r for r in tt if tt_rank(r)[0] == shape), key=lambda r: tt_rank(r)[1])
        ranks = [tt_rank(r)[1] for r in rows]
        axes[0].plot(ranks, [r["bucket_stats"]["empty_pct"] for r in rows], marker="o", label=f"TT {shape}")
        axes[1].plot(ranks, [r["bucket_stats"]["sum_sq_over_n"] for r in rows], marker="o", label=f"TT {shape}")
    others = [r for r in runs if not tt_rank(r)[0] and r.get("bucket_stats")]
    for i, r in enumerate(others):
        ls = ["--", ":", "-."][i % 3]
        axes[0].axhline(r["bucket_stats"]["empty_pct"], ls=ls, color=f"C{(i + 3) % 10}", label=label(r))
        axes[1].axhline(r["bucket_stats"]["sum_sq_over_n"], ls=ls, color=f"C{(i + 3) % 10}", label=label(r))
    axes[0].set_ylabel("empty buckets (%)")
    axes[1].set_ylabel("sum N_i^2 / N (expected bucket size)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("TT rank")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_pca(runs, path, max_panels=3):
    import numpy as np
    with_pca = [r for r in runs if r.get("pca_sample")]
    if not with_pca:
        return False
    with_pca = with_pca[:max_panels]
    plt = _plt()
    fig, axes = plt.subplots(1, len(with_pca) + 1, figsize=(4 * (len(with_pca) + 1), 4), sharex=True, sharey=True)
    for i, r in enumerate(with_pca):
        z = np.load(os.path.join(os.path.dirname(r["_path"]), r["pca_sample"]))
        if i == 0:
            axes[0].scatter(z["data"][:, 0], z["data"][:, 1], s=2, alpha=0.5)
            axes[0].set_title(f"data ({r['dataset']})")
        axes[i + 1].scatter(z["tt"][:, 0], z["tt"][:, 1], s=2, alpha=0.5, color="C1")
        axes[i + 1].set_title(f"TT points: {label(r)}", fontsize=8)
    for ax in axes:
        ax.set_xlabel("PC 1")
    axes[0].set_ylabel("PC 2")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_recall_vs_qps(runs, path):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for i, r in enumerate(runs):
        rows = r.get("sweep") or []
        if not rows:
            continue
        for ax, metric in zip(axes, ("recall1_at1", "recall10_at10")):
            ax.plot([s[metric] for s in rows], [_qps(s) for s in rows], marker=".", label=label(r),
                    color=f"C{i % 10}", ls="-" if tt_rank(r)[0] else "--")
    for ax, name in zip(axes, ("1-recall@1", "10-recall@10")):
        ax.set_xlabel(name)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"queries per second ({runs[0].get('threads', 1)} thread)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="result JSON files or directories")
    ap.add_argument("--out", default=None, help="output directory (default: the first input directory)")
    ap.add_argument("--baseline", default=None, help="key or label of the Recall@R baseline (default: first IMI run)")
    ap.add_argument("--order", default="floats", choices=("floats", "file"), help="table row order")
    ap.add_argument("--readme", default=None, help="also write a README section (table, plots, commands) here")
    ap.add_argument("--title", default=None, help="heading of the README section")
    ap.add_argument("--append", action="store_true", help="append to --readme instead of overwriting it")
    ap.add_argument("--no-plots", action="store_true", help="table (and README section) only")
    ap.add_argument("--qps", default="cpu", choices=("cpu", "wall"),
                    help="QPS from process CPU time per search thread (default; robust on a shared machine) "
                         "or from wall time; runs without CPU-time QPS fall back to wall time")
    args = ap.parse_args(argv)
    QPS_MODE["mode"] = args.qps
    runs = load_runs(args.inputs)
    if args.order == "floats":
        runs.sort(key=lambda r: (r.get("nlist") is None, r.get("quantizer_floats") or 0, r["key"]))
    out = args.out or (args.inputs[0] if os.path.isdir(args.inputs[0]) else os.path.dirname(args.inputs[0]) or ".")
    os.makedirs(out, exist_ok=True)
    table = markdown_table(runs)
    env = runs[0].get("env", {})
    note = (f"\n{runs[0]['dataset']}: nb={runs[0]['nb']:,}, nq={runs[0]['nq']:,}, d={runs[0]['d']}; "
            f"QPS ({'CPU time' if args.qps == 'cpu' else 'wall time'}) at {runs[0].get('threads', 1)} search thread(s), faiss {env.get('faiss', '?')}, "
            f"{env.get('cpus', '?')} CPUs. R@R: Recall@R (true NN among the first R candidates of the "
            f"quantizer's probe order); QPS columns: best QPS of the nprobe/ef sweep reaching the target.\n")
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table + note)
    written = ["table.md"]
    if not args.no_plots:
        if any(r.get("recall_at_R") for r in runs):
            plot_recall_at_R(runs, os.path.join(out, "recall_at_R.png"))
            written.append("recall_at_R.png")
            base = find_baseline(runs, args.baseline)
            if base is not None and len([r for r in runs if r.get("recall_at_R")]) > 1:
                plot_recall_diff(runs, base, os.path.join(out, "recall_at_R_diff.png"))
                written.append("recall_at_R_diff.png")
        if plot_buckets_vs_rank(runs, os.path.join(out, "buckets_vs_rank.png")):
            written.append("buckets_vs_rank.png")
        if plot_pca(runs, os.path.join(out, "pca.png")):
            written.append("pca.png")
        if any(r.get("sweep") for r in runs):
            plot_recall_vs_qps(runs, os.path.join(out, "recall_vs_qps.png"))
            written.append("recall_vs_qps.png")
    if args.readme:
        write_readme_section(args.readme, runs, table + note, out, written, args.title, args.append)
        written.append(args.readme)
    sys.stdout.write(table)
    print(f"wrote {', '.join(written)} to {out}")
    return table


def write_readme_section(path, runs, table, out, pngs, title=None, append=False):
    """Markdown section: the table, the plots (paths relative to the section file), the commands."""
    base = os.path.dirname(os.path.abspath(path))
    lines = [f"### {title or 'Results on ' + runs[0]['dataset']}", "", table.rstrip(), ""]
    for png in pngs:
        if png.endswith(".png"):
            rel = os.path.relpath(os.path.join(out, png), base)
            lines.append(f"![{png[:-4]}]({rel})")
    lines += ["", "Commands (one per row):", "", "```"]
    lines += [r.get("env", {}).get("command", f"python bench/bench_ivf.py --key {r['key']!r}") for r in runs]
    lines += ["```", ""]
    with open(path, "a" if append else "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
