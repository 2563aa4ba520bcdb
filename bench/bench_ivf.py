#!/usr/bin/env python3
"""Benchmark one index on one dataset, in the style of faiss's bench_all_ivf.

The index is given by a factory string:
  - faiss strings:  "IVF604,Flat", "IMI2x9,Flat", "IVF65536(RCQ2x8),Flat", "IVF604_HNSW32,Flat",
                    "HNSW32,Flat" (any faiss.index_factory string)
  - tt_faiss:       "TT16x64x64r16,Flat" (tt_faiss.index_factory; the TT token replaces IVF<n>)
  - hnswlib:        "hnswlib,M=32,efC=200"

Stages (each cached under --cache-dir, keyed by dataset + factory string + train options):
  train  -> <key>.trained   add -> <key>.filled   search -> nprobe / beam / efSearch sweep.
Train and add seconds are measured once and kept in a sidecar JSON, so a cached rerun reports the
original times. Each search setting runs the whole query set repeatedly for at least --min-time
seconds at --threads threads, and reports QPS, 1-recall@1, 1-recall@10, 10-recall@10.

IVF-type indexes also get bucket statistics and Recall@R (DESIGN §5; R = 2^0..2^--max-r-exp).
Results: one JSON per run (--out, default bench/results/<dataset>/<key>.json).

Example:
  OMP_NUM_THREADS=1 python bench/bench_ivf.py --dataset glove --key "IVF604,Flat" --nprobe 1,2,4,8,16,32,64,128
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a source checkout without installing

import faiss  # noqa: E402

from tt_faiss import datasets, stats  # noqa: E402

TT_TOKEN = re.compile(r"(^|,)TT\d+(x\d+)*(r\d+)?(,|$)")


def index_kind(key):
    if key.startswith("hnswlib"):
        return "hnswlib"
    if TT_TOKEN.search(key):
        return "tt"
    return "faiss"


def safe_name(key):
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", key).strip("_")


# ------------------------------------------------------------------------------------- building

def _hnswlib_opts(key):
    opts = {"M": 32, "efC": 200}
    for part in key.split(",")[1:]:
        k, _, v = part.partition("=")
        if k not in opts or not v.isdigit():
            raise ValueError(f"hnswlib key {key!r}: unknown option {part!r} (known: M=<int>, efC=<int>)")
        opts[k] = int(v)
    return opts


def tt_module():
    try:
        import tt_faiss.factory as factory
        import tt_faiss.io as tio
    except ImportError as e:
        raise SystemExit(f"TT indexes need tt_faiss.factory and tt_faiss.io ({e})")
    return factory, tio


def build_untrained(key, d, fit_kwargs=None):
    kind = index_kind(key)
    if kind == "faiss":
        return faiss.index_factory(d, key)
    if kind == "tt":
        factory, _ = tt_module()
        return factory.index_factory(d, key)
    import hnswlib
    return hnswlib.Index(space="l2", dim=d)


def write_any(index, kind, path):
    tmp = path + ".partial"
    if kind == "faiss":
        faiss.write_index(index, tmp)
    elif kind == "tt":
        tt_module()[1].write_index(index, tmp)
    else:
        index.save_index(tmp)
    os.replace(tmp, path)


def read_any(kind, path, d=None, nb=None):
    if kind == "faiss":
        return faiss.read_index(path)
    if kind == "tt":
        return tt_module()[1].read_index(path)
    import hnswlib
    index = hnswlib.Index(space="l2", dim=d)
    index.load_index(path, max_elements=nb)
    return index


def train_and_add(key, ds, cache_dir, threads, train_threads, maxtrain, fit_kwargs, log):
    kind = index_kind(key)
    os.makedirs(cache_dir, exist_ok=True)
    tag = safe_name(key) + (f"-mt{maxtrain}" if maxtrain else "") + (
        "-" + safe_name(json.dumps(fit_kwargs, sort_keys=True)) if fit_kwargs else "")
    base = os.path.join(cache_dir, tag)
    side = base + ".times.json"
    times = json.load(open(side)) if os.path.exists(side) else {}
    filled = base + ".filled"
    if os.path.exists(filled) and "add_s" in times:
        log(f"loading cached filled index {filled}")
        return read_any(kind, filled, ds.d, ds.nb), times, filled
    _set_threads(train_threads)
    trained = base + ".trained"
    if kind == "hnswlib":
        opts = _hnswlib_opts(key)
        import hnswlib
        index = hnswlib.Index(space="l2", dim=ds.d)
        t0 = time.perf_counter()
        index.init_index(max_elements=ds.nb, ef_construction=opts["efC"], M=opts["M"], random_seed=0)
        for i0, xb in _blocks(ds):
            index.add_items(xb, np.arange(i0, i0 + xb.shape[0]), num_threads=train_threads)
        times.update(train_s=0.0, add_s=time.perf_counter() - t0)
    else:
        if os.path.exists(trained) and "train_s" in times:
            log(f"loading cached trained index {trained}")
            index = read_any(kind, trained)
        else:
            index = build_untrained(key, ds.d, fit_kwargs)
            xt = np.ascontiguousarray(ds.get_train(maxtrain), dtype=np.float32)
            log(f"training {key} on {xt.shape[0]} x {xt.shape[1]}")
            t0 = time.perf_counter()
            if kind == "tt":
                index.train(xt, **(fit_kwargs or {}))  # IndexIVFTT.train passes these to tt_faiss.fit
            else:
                index.train(xt)
            times["train_s"] = time.perf_counter() - t0
            del xt
            write_any(index, kind, trained)
            json.dump(times, open(side, "w"))
        log(f"train {times['train_s']:.1f} s; adding {ds.nb}")
        t0 = time.perf_counter()
        for i0, xb in _blocks(ds):
            index.add(xb)
        times["add_s"] = time.perf_counter() - t0
    write_any(index, kind, filled)
    json.dump(times, open(side, "w"))
    log(f"add {times['add_s']:.1f} s")
    return index, times, filled


def _blocks(ds, bs=1 << 17):
    i0 = 0
    for xb in ds.database_iterator(bs=bs):
        yield i0, xb
        i0 += xb.shape[0]


def _set_threads(n):
    faiss.omp_set_num_threads(n)
    try:
        import tt_faiss
        tt_faiss.set_num_threads(n)
    except (ImportError, AttributeError):
        pass


# ------------------------------------------------------------------------------------- sizes

def _ivf_of(index):
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):
        return None


def quantizer_info(index, kind):
    """(quantizer floats, quantizer bytes, nlist or None)."""
    if kind == "tt":
        cloud = index.quantizer.cloud
        return int(cloud.nparams), int(cloud.nparams) * 4, int(index.nlist)
    if kind == "hnswlib":
        return 0, 0, None
    ivf = _ivf_of(index)
    if ivf is None:
        return 0, 0, None
    q = faiss.downcast_index(ivf.quantizer)
    nbytes = faiss.serialize_index(q).size
    if isinstance(q, faiss.MultiIndexQuantizer):
        floats = q.pq.M * q.pq.ksub * q.pq.dsub
    elif isinstance(q, faiss.ResidualCoarseQuantizer):
        floats = int(faiss.vector_to_array(q.rq.codebooks).size)
    elif isinstance(q, faiss.IndexHNSW):
        floats = q.ntotal * q.d
    else:
        floats = q.ntotal * q.d
    return int(floats), int(nbytes), int(ivf.nlist)


def index_bytes(index, kind, path=None):
    if kind == "faiss":
        return int(faiss.serialize_index(index).size)
    if path and os.path.exists(path):
        return os.path.getsize(path)
    return None


# ------------------------------------------------------------------------------------- search

def default_sweep(key, kind, index):
    """List of parameter dicts, cheapest first."""
    if kind == "hnswlib":
        return [{"ef": e} for e in (10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768)]
    if kind == "faiss" and _ivf_of(index) is None:
        if "HNSW" in key:
            return [{"efSearch": e} for e in (10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768)]
        return [{}]
    nlist = index.nlist if kind == "tt" else _ivf_of(index).nlist
    # powers of two and 1.5x between them: "QPS at recall 0.95" is read off the measured grid
    nps = sorted({v for i in range(0, 21) for v in (1 << i, (3 << i) // 2) if 1 <= v <= nlist})
    return [{"nprobe": p} for p in nps]


def apply_params(index, kind, params, key):
    if kind == "hnswlib":
        index.set_ef(int(params["ef"]))
        return
    if kind == "tt":
        if "nprobe" in params:
            index.nprobe = int(params["nprobe"])
        if "beam" in params:
            index.quantizer.beam = int(params["beam"])
        return
    ps = faiss.ParameterSpace()
    for name, v in params.items():
        ps.set_index_parameter(index, name, v)
    if "nprobe" in params and "_HNSW" in key and "quantizer_efSearch" not in params:
        # the HNSW coarse quantizer must look at >= nprobe candidates
        ps.set_index_parameter(index, "quantizer_efSearch", max(64, int(params["nprobe"])))


def search_once(index, kind, xq, k, threads):
    if kind == "hnswlib":
        I, Dd = index.knn_query(xq, k=k, num_threads=threads)
        return Dd, I.astype(np.int64)
    return index.search(xq, k)


def timed_search(index, kind, xq, k, threads, min_time):
    """(D, I, qps_wall, qps_cpu): searches the whole query set until min_time wall seconds passed.

    qps_cpu divides by the process CPU time per search thread: on a shared, oversubscribed machine
    wall time counts the time other processes held the cores, CPU time does not.
    """
    nrun, t_wall, t_cpu = 0, 0.0, 0.0
    while True:
        c0, t0 = time.process_time(), time.perf_counter()
        Dd, I = search_once(index, kind, xq, k, threads)
        t_wall += time.perf_counter() - t0
        t_cpu += time.process_time() - c0
        nrun += 1
        if t_wall >= min_time:
            n = nrun * xq.shape[0]
            return Dd, I, n / t_wall, n / max(t_cpu / threads, 1e-9)


def sweep(index, kind, key, xq, gt, settings, threads, min_time, log, stop_at=0.99, max_pass_s=60.0):
    """Run settings in order; stop once both recalls reach stop_at or one pass over the queries
    took longer than max_pass_s (later settings are slower still)."""
    rows = []
    _set_threads(threads)
    for params in settings:
        if kind == "hnswlib" and params.get("ef", 10) < 10:
            continue
        apply_params(index, kind, params, key)
        _, I, qps, qps_cpu = timed_search(index, kind, xq, 10, threads, min_time)
        pass_s = xq.shape[0] / qps_cpu  # CPU time: what the setting costs, whatever the machine's load
        row = dict(params=params, qps=qps, qps_cpu=qps_cpu,
                   recall1_at1=stats.knn_recall(I, gt, 1),
                   recall1_at10=stats.knn_recall(I, gt, 1, at=10),
                   recall10_at10=stats.knn_recall(I, gt, 10))
        rows.append(row)
        log(f"  {params}  QPS {qps:9.1f} (CPU-time QPS {qps_cpu:9.1f})  R1@1 {row['recall1_at1']:.4f}  R1@10 {row['recall1_at10']:.4f}"
            f"  10R@10 {row['recall10_at10']:.4f}")
        if (row["recall1_at1"] >= stop_at and row["recall10_at10"] >= stop_at) or pass_s > max_pass_s:
            break
    return rows


def qps_at(rows, metric, target, field="qps"):
    """Best QPS among settings whose metric reaches target (None when none does)."""
    ok = [r[field] for r in rows if r[metric] >= target and r.get(field) is not None]
    return max(ok) if ok else None


# ------------------------------------------------------------------------------------- main

def parse_list(s, cast=int):
    return [cast(v) for v in s.split(",") if v] if s else None


def tt_pca_sample(index, ds, path, n=2000, seed=0):
    """2-D PCA (fit on data) of a data sample and of random TT points, saved as npz (paper fig. 3e/f)."""
    rng = np.random.default_rng(seed)
    xb = ds.get_database()
    x = np.ascontiguousarray(xb[np.sort(rng.choice(ds.nb, size=min(n, ds.nb), replace=False))], dtype=np.float32)
    cloud = index.quantizer.cloud
    pts = cloud.reconstruct(rng.integers(0, cloud.npoints, size=n))
    mu = x.mean(0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    np.savez(path, data=((x - mu) @ vt[:2].T).astype(np.float32), tt=((pts - mu) @ vt[:2].T).astype(np.float32))


def run(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="glove", help="glove, deeplike1M, deep10M (+ --data-dir), tiny, ...")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--key", required=True, help="factory string")
    ap.add_argument("--nprobe", default=None, help="comma list (IVF / TT)")
    ap.add_argument("--beam", default=None, help="comma list of TT quantizer beams (combined with each nprobe, beam >= nprobe)")
    ap.add_argument("--ef", default=None, help="comma list of efSearch (HNSW, hnswlib)")
    ap.add_argument("--threads", type=int, default=1, help="search threads (QPS is reported at this count)")
    ap.add_argument("--train-threads", type=int, default=2)
    ap.add_argument("--maxtrain", type=int, default=None, help="training rows (default: all the dataset offers)")
    ap.add_argument("--fit", default=None, help="JSON dict of tt_faiss.fit options for TT indexes")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per search setting")
    ap.add_argument("--stop-at", type=float, default=0.99, help="end the sweep once 1-R@1 and 10-R@10 reach this")
    ap.add_argument("--max-pass-s", type=float, default=60.0, help="end the sweep after a setting slower than this per pass")
    ap.add_argument("--nq", type=int, default=None, help="use the first nq queries")
    ap.add_argument("--max-r-exp", type=int, default=17, help="Recall@R for R = 2^0..2^this (0 disables)")
    ap.add_argument("--recall-nq", type=int, default=None, help="queries used for Recall@R (default all)")
    ap.add_argument("--cache-dir", default=os.path.join(HERE, "cache"))
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/<dataset>/<key>.json)")
    ap.add_argument("--label", default=None, help="row label in summaries (default: the key)")
    ap.add_argument("--reuse-stats", action="store_true",
                    help="take bucket statistics and Recall@R from an existing --out JSON of the same run (re-time only)")
    ap.add_argument("--stats-only", action="store_true",
                    help="recompute bucket statistics and Recall@R into an existing --out JSON, keep its sweep")
    ap.add_argument("--no-search", action="store_true", help="bucket statistics / Recall@R only, no QPS sweep")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    kind = index_kind(args.key)
    fit_kwargs = json.loads(args.fit) if args.fit else None
    ds = datasets.get_dataset(args.dataset, data_dir=args.data_dir,
                              cache_dir=os.path.join(args.cache_dir, "data"), nq=args.nq)
    log(f"dataset {ds}")
    xq = np.ascontiguousarray(ds.get_queries(), dtype=np.float32)
    gt = ds.get_groundtruth(k=100)
    cache = os.path.join(args.cache_dir, ds.name)
    index, times, filled = train_and_add(args.key, ds, cache, args.threads, args.train_threads, args.maxtrain,
                                 fit_kwargs, log)

    qfloats, qbytes, nlist = quantizer_info(index, kind)
    res = dict(
        key=args.key, label=args.label or args.key, kind=kind, dataset=ds.name, d=ds.d, nb=ds.nb, nq=int(xq.shape[0]),
        threads=args.threads, train_threads=args.train_threads, maxtrain=args.maxtrain, fit=fit_kwargs,
        train_s=times.get("train_s"), add_s=times.get("add_s"), quantizer_floats=qfloats, quantizer_bytes=qbytes,
        nlist=nlist, index_bytes=index_bytes(index, kind, filled),
    )
    out_path = args.out or _default_out(ds.name, args.key)
    prev = None
    if args.reuse_stats and os.path.exists(out_path):
        with open(out_path) as f:
            prev = json.load(f)
        if prev.get("key") != args.key or prev.get("nq") != int(xq.shape[0]) or prev.get("nb") != ds.nb:
            prev = None
    if prev is not None and nlist is not None:
        log(f"reusing bucket statistics and Recall@R from {out_path}")
        for f in ("bucket_stats", "recall_at_R", "recall_at_R_nq", "pca_sample"):
            if f in prev:
                res[f] = prev[f]
    elif nlist is not None:
        res["bucket_stats"] = stats.bucket_stats(index)
        log(f"buckets: {res['bucket_stats']}")
        if args.max_r_exp > 0:
            Rs = stats.default_Rs(args.max_r_exp)
            nrq = args.recall_nq or xq.shape[0]
            t0 = time.perf_counter()
            rec = stats.recall_at_r(index, xq[:nrq], gt[:nrq], Rs)
            res["recall_at_R"] = {str(R): (None if np.isnan(v) else float(v)) for R, v in zip(Rs, rec)}
            res["recall_at_R_nq"] = nrq
            log(f"Recall@R ({time.perf_counter() - t0:.1f} s): " +
                " ".join(f"{R}:{v:.3f}" for R, v in zip(Rs, rec)))
        if kind == "tt":
            pca_path = (args.out or _default_out(ds.name, args.key))[:-5] + ".pca.npz"
            os.makedirs(os.path.dirname(pca_path), exist_ok=True)
            tt_pca_sample(index, ds, pca_path)
            res["pca_sample"] = os.path.basename(pca_path)

    settings = default_sweep(args.key, kind, index)
    if args.nprobe:
        settings = [{"nprobe": p} for p in parse_list(args.nprobe)]
    if args.ef:
        name = "ef" if kind == "hnswlib" else "efSearch"
        settings = [{name: e} for e in parse_list(args.ef)]
    if args.beam and kind == "tt":
        settings = [dict(s, beam=b) for s in settings for b in parse_list(args.beam) if b >= s.get("nprobe", 1)]
    if args.stats_only:
        with open(out_path) as f:
            old = json.load(f)
        for fld in ("bucket_stats", "recall_at_R", "recall_at_R_nq", "pca_sample"):
            if fld in res:
                old[fld] = res[fld]
        with open(out_path + ".partial", "w") as f:
            json.dump(old, f, indent=1)
        os.replace(out_path + ".partial", out_path)
        log(f"updated statistics in {out_path}")
        return old
    if args.no_search:
        settings = []
    else:
        log(f"search sweep at {args.threads} thread(s), >= {args.min_time} s per setting")
    res["sweep"] = [] if not settings else sweep(index, kind, args.key, xq, gt, settings, args.threads, args.min_time, log,
                         stop_at=args.stop_at, max_pass_s=args.max_pass_s)
    res["qps_at"] = {
        "recall1_at1=0.9": qps_at(res["sweep"], "recall1_at1", 0.9),
        "recall1_at1=0.95": qps_at(res["sweep"], "recall1_at1", 0.95),
        "recall10_at10=0.9": qps_at(res["sweep"], "recall10_at10", 0.9),
    }
    res["qps_cpu_at"] = {k: qps_at(res["sweep"], k.split("=")[0], float(k.split("=")[1]), "qps_cpu")
                         for k in res["qps_at"]}
    res["env"] = dict(faiss=faiss.__version__, numpy=np.__version__, python=platform.python_version(),
                      machine=platform.machine(), cpus=os.cpu_count(),
                      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      command="python bench/bench_ivf.py " + " ".join(_quote(a) for a in (argv or sys.argv[1:])))
    out = args.out or _default_out(ds.name, args.key)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".partial", "w") as f:
        json.dump(res, f, indent=1)
    os.replace(out + ".partial", out)
    log(f"wrote {out}; QPS at targets: {res['qps_at']}")
    return res


def _quote(a):
    return shlex.quote(a)


def _default_out(dsname, key):
    return os.path.join(HERE, "results", dsname, safe_name(key) + ".json")


if __name__ == "__main__":
    run()
