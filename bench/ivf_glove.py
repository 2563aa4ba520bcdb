#!/usr/bin/env python3
"""IndexIVFTT end to end on GloVe 6B 50-d against faiss IVF baselines (issue 4 targets).

Indexes (all Flat codecs, so recall differences come from the coarse quantizer only):
  TT16x64x64r16,Flat     tt_faiss.fit (default recipe, seed 0); 30,208 quantizer floats
  IVF604,Flat            faiss k-means, 604 x 50 = 30,200 quantizer floats (same budget)
  IVF65536_HNSW32,Flat   65,536 k-means centroids (3.3M floats) behind an HNSW32 graph; the
                         k-means assigns with an HNSW index (faiss's usual recipe for big nlist)
Sweeps nprobe (and the TT beam / HNSW efSearch), measures 1-thread QPS (process CPU time, robust
on a shared machine; use --threads 1) over the query set and
1-recall@1 / 10-recall@10 against exact ground truth, prints a table and the QPS at which each
index first reaches recall@1 0.95, and writes bench/results/ivf_glove.json.

Trained objects are cached under --cache-dir (train times are kept in a sidecar JSON).

  OMP_NUM_THREADS=1 python bench/ivf_glove.py                      # full run
  OMP_NUM_THREADS=1 python bench/ivf_glove.py --nq 2000 --quick    # smaller sweep
  OMP_NUM_THREADS=1 python bench/ivf_glove.py --codec PQ10x8 --out bench/results/ivf_glove_pq10x8.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import faiss
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tt_faiss  # noqa: E402
from tt_faiss.datasets import glove_split, ground_truth  # noqa: E402
from tt_faiss.ivf import IndexIVFTT  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def cached_times(cache, name):
    p = os.path.join(cache, name + ".times.json")
    return json.load(open(p)) if os.path.exists(p) else {}


def save_times(cache, name, times):
    with open(os.path.join(cache, name + ".times.json"), "w") as f:
        json.dump(times, f)


def _with_codec(quantizer, xb, codec):
    """faiss IVF index of `codec` over an already-trained coarse quantizer (codec trained on xb)."""
    nlist = quantizer.ntotal
    index = faiss.index_factory(xb.shape[1], f"IVF{nlist},{codec}")
    index.own_fields = False
    index.quantizer = quantizer
    index.referenced_objects = [quantizer]
    index.train(xb)  # the quantizer holds nlist centroids, so only the codec is trained
    return index


def build_tt(xb, cache, add_beam, fit_budget, codec="Flat"):
    path = os.path.join(cache, "tt16x64x64r16.cloud")
    times = cached_times(cache, "tt16x64x64r16")
    if os.path.exists(path):
        cloud = tt_faiss.TTPointCloud.load(path)
    else:
        cloud, t = timed(lambda: tt_faiss.fit(xb, (16, 64, 64), 16, seed=0, time_budget=fit_budget))
        cloud.save(path)
        times["train_s"] = t
    filled = os.path.join(cache, f"tt16x64x64r16_{codec}_addbeam{add_beam}.ttf")
    if codec != "Flat":
        times = {"train_s": times.get("train_s")}
    if os.path.exists(filled) and times.get("add_s"):
        return tt_faiss.read_index(filled), cloud.nparams, times
    q = tt_faiss.TTQuantizer.from_cloud(cloud)
    q.beam = add_beam
    index = IndexIVFTT(q, xb.shape[1], codec)
    # the quantizer is trained: this trains only the codec (on residuals for PQ/SQ)
    _, times["codec_train_s"] = timed(lambda: index.train(xb))
    _, times["add_s"] = timed(lambda: index.add(xb))
    tt_faiss.write_index(index, filled)
    if codec == "Flat":
        save_times(cache, "tt16x64x64r16", times)
    return index, cloud.nparams, times


def build_ivf_kmeans(xb, cache, nlist=604, codec="Flat"):
    name = f"IVF{nlist}_Flat"
    path = os.path.join(cache, name + ".centroids.npy")
    times = cached_times(cache, name)
    if os.path.exists(path):
        cent = np.load(path)
    else:
        km = faiss.Kmeans(xb.shape[1], nlist, niter=20, seed=1234)
        _, times["train_s"] = timed(lambda: km.train(xb))
        cent = km.centroids
        np.save(path, cent)
    q = faiss.IndexFlatL2(xb.shape[1])
    q.add(cent)
    if codec == "Flat":
        index = faiss.IndexIVFFlat(q, xb.shape[1], nlist)
        index.referenced_objects = [q]
    else:
        index = _with_codec(q, xb, codec)
        times = {"train_s": times.get("train_s")}
    _, times["add_s"] = timed(lambda: index.add(xb))
    if codec == "Flat":
        save_times(cache, name, times)
    return index, cent.size, times


def build_ivf_hnsw(xb, cache, nlist=65536, codec="Flat"):
    name = f"IVF{nlist}_HNSW32_Flat"
    path = os.path.join(cache, name + ".centroids.npy")
    times = cached_times(cache, name)
    d = xb.shape[1]
    if os.path.exists(path):
        cent = np.load(path)
    else:
        cl = faiss.Clustering(d, nlist)
        cl.niter = 10
        cl.seed = 1234
        assign_index = faiss.IndexHNSWFlat(d, 32)
        assign_index.hnsw.efSearch = 64
        _, times["train_s"] = timed(lambda: cl.train(xb, assign_index))
        cent = faiss.vector_to_array(cl.centroids).reshape(nlist, d)
        np.save(path, cent)
    filled = os.path.join(cache, name + ("" if codec == "Flat" else "_" + codec) + ".filled.index")
    if codec != "Flat":
        times = {"train_s": times.get("train_s")}
    if os.path.exists(filled) and times.get("add_s"):
        return faiss.read_index(filled), cent.size, times
    q = faiss.IndexHNSWFlat(d, 32)
    q.add(cent)
    if codec == "Flat":
        index = faiss.IndexIVFFlat(q, d, nlist)
        index.referenced_objects = [q]
    else:
        index = _with_codec(q, xb, codec)
    _, times["add_s"] = timed(lambda: index.add(xb))
    faiss.write_index(index, filled)
    if codec == "Flat":
        save_times(cache, name, times)
    return index, cent.size, times


def measure(search, xq, gt, min_time):
    """Run the whole query set until min_time has passed; QPS from the best run, measured in
    process CPU time (one search thread, so CPU time = compute time even on a loaded machine)."""
    best, runs, t_all = np.inf, 0, 0.0
    while runs == 0 or t_all < min_time:
        t0 = time.process_time()
        D, I = search(xq)
        t = time.process_time() - t0
        best, runs, t_all = min(best, t), runs + 1, t_all + t
    r1 = float((I[:, 0] == gt[:, 0]).mean())
    r10 = float(np.mean([len(set(I[i, :10]) & set(gt[i, :10])) / 10 for i in range(len(xq))]))
    return dict(qps=len(xq) / best, recall1=r1, recall10_10=r10)


def first_at(rows, target):
    ok = [r for r in rows if r["recall1"] >= target]
    return max(ok, key=lambda r: r["qps"]) if ok else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nq", type=int, default=10000, help="queries used for the sweeps (<= 10000)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--add-beam", type=int, default=64, help="TT beam used to assign database vectors")
    ap.add_argument("--fit-budget", type=float, default=None, help="time budget (s) for tt_faiss.fit")
    ap.add_argument("--quick", action="store_true", help="smaller sweeps")
    ap.add_argument("--codec", default="Flat", help="faiss codec for all indexes, e.g. PQ10x8 (residual)")
    ap.add_argument("--skip", default="", help="comma list of indexes to skip: tt,kmeans,hnsw")
    ap.add_argument("--cache-dir", default=os.path.join(HERE, "cache", "ivf_glove"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "ivf_glove.json"))
    args = ap.parse_args()
    os.makedirs(args.cache_dir, exist_ok=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))

    xb, xq_all = glove_split(10000, 0)
    _, gt_all = ground_truth(xb, xq_all, k=100, cache_dir=args.cache_dir, key="glove6b50-q10000-s0")
    xq, gt = xq_all[:args.nq], np.asarray(gt_all)[:args.nq]
    faiss.omp_set_num_threads(args.threads)
    tt_faiss.set_num_threads(args.threads)
    k = 10
    results = {"dataset": "glove6b50 (390k db, seed-0 split)", "nq": len(xq), "threads": args.threads,
               "argv": sys.argv, "versions": {"faiss": faiss.__version__, "tt_faiss": tt_faiss.__version__,
                                              "python": platform.python_version()},
               "indexes": {}}

    def report(name, floats, times, rows):
        results["indexes"][name] = {"quantizer_floats": int(floats), **times, "sweep": rows}
        print(f"\n== {name}  (quantizer floats {floats:,}; train {times.get('train_s') or float('nan'):.1f}s,"
              f" add {times.get('add_s') or float('nan'):.1f}s)")
        print(f"{'setting':>26} {'R@1':>7} {'10-R@10':>8} {'QPS':>9}")
        for r in rows:
            print(f"{r['setting']:>26} {r['recall1']:7.4f} {r['recall10_10']:8.4f} {r['qps']:9.0f}")
        sys.stdout.flush()

    if "tt" not in skip:
        index, floats, times = build_tt(xb, args.cache_dir, args.add_beam, args.fit_budget, args.codec)
        # beam = upper-level width (IndexIVFTT raises it to >= nprobe/8); the last level
        # always returns nprobe lists
        grid = [(16, 32), (64, 32), (128, 32), (256, 64), (512, 64), (1024, 128), (2048, 256)]
        if not args.quick:
            grid += [(512, 128), (768, 128), (1024, 256), (1536, 192), (1536, 384)]
        rows = []
        for nprobe, beam in grid:
            p = {"nprobe": nprobe, "beam": beam}
            r = measure(lambda x: index.search(x, k, params=p), xq, gt, args.min_time)
            rows.append({"setting": f"nprobe={nprobe},beam={beam}", "nprobe": nprobe, "beam": beam, **r})
        report(f"TT16x64x64r16,{args.codec}", floats, times, rows)
        del index

    if "kmeans" not in skip:
        index, floats, times = build_ivf_kmeans(xb, args.cache_dir, codec=args.codec)
        rows = []
        for nprobe in [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128]:
            index.nprobe = nprobe
            r = measure(lambda x: index.search(x, k), xq, gt, args.min_time)
            rows.append({"setting": f"nprobe={nprobe}", "nprobe": nprobe, **r})
        report(f"IVF604,{args.codec}", floats, times, rows)
        del index

    if "hnsw" not in skip:
        index, floats, times = build_ivf_hnsw(xb, args.cache_dir, codec=args.codec)
        q = faiss.downcast_index(index.quantizer)
        grid = [(16, 32), (64, 64), (128, 128), (256, 256), (512, 512), (1024, 1024)]
        if not args.quick:
            grid += [(128, 256), (256, 512), (512, 1024)]
        rows = []
        for nprobe, ef in grid:
            index.nprobe = nprobe
            q.hnsw.efSearch = ef
            r = measure(lambda x: index.search(x, k), xq, gt, args.min_time)
            rows.append({"setting": f"nprobe={nprobe},efSearch={ef}", "nprobe": nprobe, "efSearch": ef, **r})
        report(f"IVF65536_HNSW32,{args.codec}", floats, times, rows)
        del index

    print("\n== best QPS at recall@1 >= target")
    summary = {}
    for target in (0.9, 0.95):
        for name, res in results["indexes"].items():
            b = first_at(res["sweep"], target)
            summary.setdefault(str(target), {})[name] = b
            print(f"  R@1>={target}: {name:>24}: " + (f"{b['qps']:.0f} QPS ({b['setting']}, R@1 {b['recall1']:.4f})"
                                                      if b else "not reached"))
    results["summary"] = summary
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
