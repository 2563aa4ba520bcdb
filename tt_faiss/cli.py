"""The ``tt-faiss`` command.

  tt-faiss demo     [--threads 2] [--shape 16x64x64 --rank 16] [--time-budget 150]
  tt-faiss build    --data X.npy|.fvecs|.bvecs|.fbin|.u8bin --factory "TT16x64x64r16,Flat" --out index.tt
                    [--train T] [--max-train N] [--cloud cloud.tt] [--fit '{"als_iters": 8}'] [--nprobe 64]
  tt-faiss search   --index index.tt --queries Q [--k 10] [--nprobe 64] [--beam 128] [--gt GT] [--out res.npz]
  tt-faiss info     index.tt
  tt-faiss bench    --dataset glove --key "TT16x64x64r16,Flat" [bench/bench_ivf.py options]

Factory strings are faiss's, with ``TT<N1>x...x<Nk>r<rank>`` where faiss writes ``IVF<nlist>``
(see tt_faiss.factory); strings without a TT token build plain faiss indexes. Vector files may be
.npy, .fvecs, .bvecs, .ivecs, .fbin, .u8bin or .ibin; ground truth .ivecs/.ibin/.npy (nq, k) ids.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

_ADD_BLOCK = 1 << 16


class CLIError(Exception):
    """A user-facing error: printed as 'tt-faiss: error: ...', exit status 2."""


# ------------------------------------------------------------------------------------- helpers

def _read(path, what):
    from . import datasets
    if not os.path.exists(path):
        raise CLIError(f"{what} file not found: {path}")
    try:
        return datasets.read_vectors(path)
    except ValueError as e:
        raise CLIError(f"{what}: {e}") from None


def _is_tt(index):
    from .ivf import IndexIVFTT
    return isinstance(index, IndexIVFTT)


def _read_index(path):
    from .io import read_index
    if not os.path.exists(path):
        raise CLIError(f"index file not found: {path}")
    try:
        return read_index(path)
    except (ValueError, RuntimeError) as e:
        raise CLIError(f"cannot read index {path}: {e}") from None


def _set_threads(n):
    import faiss

    from . import set_num_threads
    if n is not None:
        if n < 1:
            raise CLIError(f"--threads must be >= 1, got {n}")
        faiss.omp_set_num_threads(n)
        set_num_threads(n)


def _set_search_params(index, nprobe=None, beam=None, efsearch=None):
    import faiss
    if _is_tt(index):
        if nprobe is not None:
            if not 1 <= nprobe <= index.nlist:
                raise CLIError(f"--nprobe must be in 1..nlist={index.nlist}, got {nprobe}")
            index.nprobe = nprobe
        if beam is not None:
            index.quantizer.beam = beam
        return
    if beam is not None:
        raise CLIError("--beam applies to TT indexes only")
    ps = faiss.ParameterSpace()
    for name, v in (("nprobe", nprobe), ("efSearch", efsearch)):
        if v is None:
            continue
        try:
            ps.set_index_parameter(index, name, v)
        except RuntimeError:
            raise CLIError(f"--{name.lower()} does not apply to this index ({type(index).__name__})") from None


def _progress(it, total, desc, quiet):
    if quiet:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc=desc, unit="block")


def _add(index, xb, quiet):
    nb = xb.shape[0]
    blocks = range(0, nb, _ADD_BLOCK)
    for i0 in _progress(blocks, len(blocks), "add", quiet):
        index.add(np.ascontiguousarray(xb[i0:i0 + _ADD_BLOCK], dtype=np.float32))


def _search(index, xq, k, quiet, block=4096):
    nq = xq.shape[0]
    D = np.empty((nq, k), dtype=np.float32)
    I = np.empty((nq, k), dtype=np.int64)
    t = 0.0
    blocks = range(0, nq, block)
    for i0 in _progress(blocks, len(blocks), "search", quiet or len(blocks) < 2):
        x = np.ascontiguousarray(xq[i0:i0 + block], dtype=np.float32)
        t0 = time.perf_counter()
        Db, Ib = index.search(x, k)
        t += time.perf_counter() - t0
        D[i0:i0 + x.shape[0]], I[i0:i0 + x.shape[0]] = Db, Ib
    return D, I, t


def _read_gt(path, nq):
    from . import datasets
    if not os.path.exists(path):
        raise CLIError(f"ground-truth file not found: {path}")
    try:
        if path.endswith(".ibin"):
            try:
                gt = datasets.read_bigann_groundtruth(path)[0]
            except ValueError:
                gt = datasets.ibin_read(path, mmap=False)
        else:
            gt = datasets.read_vectors(path, mmap=False)
    except ValueError as e:
        raise CLIError(f"ground truth: {e}") from None
    gt = np.asarray(gt, dtype=np.int64)
    if gt.shape[0] < nq:
        raise CLIError(f"ground truth {path} has {gt.shape[0]} rows for {nq} queries")
    return gt[:nq]


def describe(index):
    """Dict describing an index: type, sizes, quantizer, bucket statistics."""
    import faiss

    from . import stats
    info = {"type": type(index).__name__, "d": int(index.d), "ntotal": int(index.ntotal),
            "is_trained": bool(index.is_trained)}
    if _is_tt(index):
        q = index.quantizer
        info.update(nlist=int(index.nlist), codec=index.codec, by_residual=bool(index.by_residual),
                    nprobe=int(index.nprobe), beam=int(q.beam), tt_shape=list(q.shape), tt_ranks=list(q.ranks))
        if q.is_trained:
            info.update(quantizer_floats=int(q.cloud.nparams), quantizer_bytes=int(q.cloud.nparams) * 4)
    else:
        try:
            ivf = faiss.extract_index_ivf(index)
        except RuntimeError:
            ivf = None
        if ivf is not None:
            qz = faiss.downcast_index(ivf.quantizer)
            info.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe), quantizer=type(qz).__name__,
                        quantizer_bytes=int(faiss.serialize_index(qz).size))
    if "nlist" in info and info["ntotal"] > 0:
        info["bucket_stats"] = stats.bucket_stats(index)
    return info


# ------------------------------------------------------------------------------------- commands

def cmd_build(a):
    import faiss

    from .factory import index_factory
    from .io import write_index
    xb = _read(a.data, "data")
    xt = _read(a.train, "train") if a.train else xb
    if a.max_train and xt.shape[0] > a.max_train:
        sel = np.sort(np.random.default_rng(a.seed).choice(xt.shape[0], a.max_train, replace=False))
        xt = xt[sel]
    xt = np.ascontiguousarray(xt, dtype=np.float32)
    d = xb.shape[1]
    if xt.shape[1] != d:
        raise CLIError(f"train vectors have d={xt.shape[1]}, data has d={d}")
    _set_threads(a.threads)
    try:
        index = index_factory(d, a.factory)
    except (ValueError, RuntimeError) as e:
        raise CLIError(f"--factory {a.factory!r}: {e}") from None
    fit_kwargs = {}
    if a.fit:
        try:
            fit_kwargs = json.loads(a.fit)
        except json.JSONDecodeError as e:
            raise CLIError(f"--fit must be a JSON object: {e}") from None
        if not isinstance(fit_kwargs, dict):
            raise CLIError("--fit must be a JSON object such as '{\"als_iters\": 8}'")
    if a.cloud:
        if not _is_tt(index):
            raise CLIError("--cloud needs a TT factory string")
        from .cloud import TTPointCloud
        try:
            cloud = TTPointCloud.load(a.cloud)
        except (OSError, ValueError) as e:
            raise CLIError(f"--cloud {a.cloud}: {e}") from None
        q = index.quantizer
        if tuple(cloud.shape) != tuple(q.shape) or cloud.d != q.d:
            raise CLIError(f"--cloud {a.cloud} has shape {cloud.shape}, d={cloud.d}; the factory string needs "
                           f"shape {tuple(q.shape)}, d={q.d}")
        q.cloud = cloud
    t0 = time.perf_counter()
    if not index.is_trained:
        if _is_tt(index):
            if a.seed is not None and "seed" not in fit_kwargs and not index.quantizer.is_trained:
                fit_kwargs["seed"] = a.seed
            index.train(xt, **fit_kwargs)
        else:
            if fit_kwargs:
                raise CLIError("--fit applies to TT indexes only")
            index.train(xt)
    t_train = time.perf_counter() - t0
    del xt
    t0 = time.perf_counter()
    _add(index, xb, a.quiet)
    t_add = time.perf_counter() - t0
    if a.nprobe:
        _set_search_params(index, nprobe=a.nprobe)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    if _is_tt(index):
        write_index(index, a.out)
    else:
        faiss.write_index(index, a.out + ".partial")
        os.replace(a.out + ".partial", a.out)
    print(f"built {a.factory} on {xb.shape[0]} x {d}: train {t_train:.1f} s, add {t_add:.1f} s -> {a.out} "
          f"({os.path.getsize(a.out):,} bytes)")
    return 0


def cmd_search(a):
    from . import stats
    index = _read_index(a.index)
    xq = _read(a.queries, "queries")
    if xq.shape[1] != index.d:
        raise CLIError(f"queries have d={xq.shape[1]}, the index has d={index.d}")
    if a.nq:
        xq = xq[:a.nq]
    if a.k < 1:
        raise CLIError(f"--k must be >= 1, got {a.k}")
    _set_threads(a.threads)
    _set_search_params(index, a.nprobe, a.beam, a.efsearch)
    D, I, t = _search(index, xq, a.k, a.quiet)
    nq = xq.shape[0]
    line = f"{nq} queries, k={a.k}: {t:.3f} s, {nq / max(t, 1e-9):,.0f} QPS"
    if a.gt:
        gt = _read_gt(a.gt, nq)
        r = {"1-recall@1": stats.knn_recall(I, gt, 1)}
        if a.k >= 10:
            r["1-recall@10"] = stats.knn_recall(I, gt, 1, at=10)
            if gt.shape[1] >= 10:
                r["10-recall@10"] = stats.knn_recall(I, gt, 10)
        line += "; " + ", ".join(f"{k} {v:.4f}" for k, v in r.items())
    print(line)
    if a.out:
        if a.out.endswith(".npz"):
            np.savez(a.out, D=D, I=I)
        else:
            from . import datasets
            try:
                datasets.write_vectors(a.out, I.astype(np.int32) if a.out.endswith((".ivecs", ".ibin")) else I)
            except ValueError as e:
                raise CLIError(f"--out: {e}") from None
        print(f"wrote {a.out}")
    return 0


def cmd_info(a):
    index = _read_index(a.index)
    info = describe(index)
    info["file_bytes"] = os.path.getsize(a.index)
    if _is_tt(index):
        from .io import read_header
        with open(a.index, "rb") as f:
            buf = f.read()
        h = read_header(buf)
        info["format_version"] = int(np.frombuffer(buf[8:12], dtype="<u4")[0])  # after the 8 magic bytes
        info["written_by"] = h.get("versions")
    print(json.dumps(info, indent=1))
    return 0


def cmd_bench(rest):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(here, "bench", "bench_ivf.py")
    if not os.path.exists(path):
        raise CLIError("tt-faiss bench runs bench/bench_ivf.py from a source checkout "
                       "(git clone the project and pip install -e .); not found at " + path)
    import importlib.util
    spec = importlib.util.spec_from_file_location("tt_faiss_bench_ivf", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.run(rest)
    return 0


def _demo_rows(name, index, xq, gt, nprobes, target, quiet):
    """Sweep nprobe until 1-recall@1 reaches target; the first setting that does is reported."""
    from . import stats
    best = None
    for p in nprobes:
        if p > index.nlist:
            break
        index.nprobe = p
        _, I, t = _search(index, xq, 10, True)
        row = dict(nprobe=p, r1=stats.knn_recall(I, gt, 1), r10=stats.knn_recall(I, gt, 10), qps=xq.shape[0] / t)
        if not quiet:
            print(f"  {name:28s} nprobe {p:6d}  recall@1 {row['r1']:.4f}  10-recall@10 {row['r10']:.4f}"
                  f"  QPS {row['qps']:9.0f}", flush=True)
        best = row
        if row["r1"] >= target:
            break
    return best


def cmd_demo(a):
    """GloVe: a TT index vs faiss IVF k-means at equal quantizer memory (and IMI at equal buckets)."""
    import faiss

    from . import datasets
    from .factory import index_factory
    _set_threads(a.threads)
    if a.dataset == "glove":
        xb, xq_all = datasets.glove_split()
        gt_key = "glove6b50-q10000-s0"
    else:
        ds = datasets.get_dataset(a.dataset)
        xb, xq_all = np.ascontiguousarray(ds.get_database()), ds.get_queries()
        gt_key = None
    xq = np.ascontiguousarray(xq_all[:a.nq])
    d = xb.shape[1]
    print(f"tt-faiss demo: {a.dataset} database {xb.shape[0]:,} x {d}, {xq.shape[0]:,} queries, "
          f"{a.threads} thread(s)", flush=True)
    cache = os.path.join(datasets.default_cache_dir(), "gt")
    _, gt_full = datasets.ground_truth(xb, xq_all, k=10, cache_dir=cache, key=gt_key, progress=not a.quiet) \
        if gt_key else datasets.ground_truth(xb, xq_all, k=10)
    gt = gt_full[:xq.shape[0]]

    shape = tuple(int(s) for s in a.shape.lower().split("x"))
    tt_key = f"TT{'x'.join(map(str, shape))}r{a.rank},Flat"
    tt_index = index_factory(d, tt_key)
    print(f"training {tt_key} (tt_faiss.fit, time budget {a.time_budget} s) ...", flush=True)
    fit_kwargs = dict(seed=0, verbose=not a.quiet)
    if a.time_budget:
        fit_kwargs["time_budget"] = a.time_budget
    t0 = time.perf_counter()
    tt_index.train(xb, **fit_kwargs)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    _add(tt_index, xb, a.quiet)
    t_add = time.perf_counter() - t0
    tt_floats = int(tt_index.quantizer.cloud.nparams)
    nlist_tt = int(tt_index.nlist)

    methods = [(f"TT {a.shape} r{a.rank}", tt_index, tt_floats, nlist_tt, t_train, t_add, True)]
    nlist_km = max(1, round(tt_floats / d))
    keys = [(f"IVF{nlist_km},Flat", f"faiss IVF{nlist_km} k-means")]
    b = int(round(np.log2(nlist_tt) / 2))
    if 4 ** b == nlist_tt and d % 2 == 0:
        keys.append((f"IMI2x{b},Flat", f"faiss IMI2x{b}"))
    for key, name in keys:
        print(f"training {key} ...", flush=True)
        index = faiss.index_factory(d, key)
        t0 = time.perf_counter()
        index.train(xb)
        tr = time.perf_counter() - t0
        t0 = time.perf_counter()
        _add(index, xb, True)
        ad = time.perf_counter() - t0
        ivf = faiss.extract_index_ivf(index)
        qz = faiss.downcast_index(ivf.quantizer)
        floats = qz.pq.M * qz.pq.ksub * qz.pq.dsub if isinstance(qz, faiss.MultiIndexQuantizer) else qz.ntotal * d
        methods.append((name, index, int(floats), int(ivf.nlist), tr, ad, False))

    print(f"searching: nprobe doubles until recall@1 >= {a.target}", flush=True)
    nprobes = [1 << i for i in range(0, 22)]
    rows = []
    for name, index, floats, nlist, tr, ad, is_tt in methods:
        r = _demo_rows(name, index, xq, gt, nprobes, a.target, a.quiet)
        rows.append((name, floats, nlist, tr, ad, r))
    print()
    print(f"| index | quantizer bytes | buckets | train s | add s | nprobe | recall@1 | 10-recall@10 | QPS ({a.threads} thr) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, floats, nlist, tr, ad, r in rows:
        print(f"| {name} | {floats * 4:,} | {nlist:,} | {tr:.1f} | {ad:.1f} | {r['nprobe']} | {r['r1']:.4f} | "
              f"{r['r10']:.4f} | {r['qps']:,.0f} |")
    return 0


# ------------------------------------------------------------------------------------- parser

def build_parser():
    p = argparse.ArgumentParser(prog="tt-faiss", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", metavar="{demo,build,search,info,bench}")

    s = sub.add_parser("demo", help="TT index vs faiss IVF at equal quantizer memory on GloVe")
    s.add_argument("--dataset", default="glove", help="glove (default) or tiny (smoke test)")
    s.add_argument("--shape", default="16x64x64")
    s.add_argument("--rank", type=int, default=16)
    s.add_argument("--time-budget", type=float, default=150.0,
                   help="seconds for tt_faiss.fit iterations (default 150; 0 = the full default recipe)")
    s.add_argument("--nq", type=int, default=2000, help="queries timed (default 2000)")
    s.add_argument("--target", type=float, default=0.95, help="recall@1 the nprobe sweep stops at")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser("build", help="train an index from a factory string, add data, write it")
    s.add_argument("--data", required=True, help="database vectors (.npy .fvecs .bvecs .fbin .u8bin)")
    s.add_argument("--factory", required=True, help='e.g. "TT16x64x64r16,Flat" or any faiss string')
    s.add_argument("--out", required=True)
    s.add_argument("--train", default=None, help="training vectors (default: the data)")
    s.add_argument("--max-train", type=int, default=None, help="random training subsample size")
    s.add_argument("--cloud", default=None, help="use this fitted TT cloud (TTPointCloud.save) instead of fitting")
    s.add_argument("--fit", default=None, help="JSON object of tt_faiss.fit options")
    s.add_argument("--nprobe", type=int, default=None, help="default nprobe stored in the index")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser("search", help="search an index, report QPS and recall")
    s.add_argument("--index", required=True)
    s.add_argument("--queries", required=True)
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--nprobe", type=int, default=None)
    s.add_argument("--beam", type=int, default=None, help="TT quantizer beam")
    s.add_argument("--efsearch", type=int, default=None, help="HNSW efSearch")
    s.add_argument("--gt", default=None, help="ground-truth ids (.ivecs .ibin .npy)")
    s.add_argument("--nq", type=int, default=None, help="use the first nq queries")
    s.add_argument("--out", default=None, help="results: .npz (D, I) or .ivecs/.ibin/.npy (I)")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser("info", help="describe an index file")
    s.add_argument("index")

    sub.add_parser("bench", help="run bench/bench_ivf.py (source checkout); see its --help", add_help=False)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv and argv[0] == "bench":
        cmd, rest = "bench", argv[1:]
    else:
        args = parser.parse_args(argv)
        cmd = args.cmd
    if cmd is None:
        parser.print_help()
        return 2
    try:
        if cmd == "bench":
            return cmd_bench(rest)
        return {"demo": cmd_demo, "build": cmd_build, "search": cmd_search, "info": cmd_info}[cmd](args)
    except CLIError as e:
        print(f"tt-faiss: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
