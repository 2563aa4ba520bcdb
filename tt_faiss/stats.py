"""Bucket statistics and Recall@R of coarse quantizers (DESIGN §5), for tt_faiss and faiss IVF indexes.

Definitions:
- bucket statistics over the database assignment: empty buckets (count, %), max size, expected
  bucket size sum_i N_i^2 / N (the expected number of vectors scanned in the true nearest
  neighbour's bucket, paper eq. 12), coefficient of variation std(N_i) / mean(N_i).
- Recall@R (paper, GNO-IMI): visit a query's buckets in the quantizer's order, concatenating
  their vectors in stored order; Recall@R is the fraction of queries whose true nearest
  neighbour is among the first R candidates. Where a query's probed buckets hold fewer than R
  vectors and its neighbour was not among them, Recall@R is unknown and reported as NaN (probe
  more lists).

Works on faiss IVF indexes (anything ``faiss.extract_index_ivf`` accepts, IMI included) and on
objects exposing ``nlist`` and a faiss-style ``invlists`` (``tt_faiss.IndexIVFTT``).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "list_sizes", "bucket_stats", "bucket_stats_from_sizes", "list_assignment", "probe_order",
    "recall_at_r", "recall_at_r_from_assignment", "default_Rs", "knn_recall",
]


def default_Rs(max_exp=17):
    """R = 2^0 .. 2^max_exp, the values DESIGN §5 reports."""
    return [1 << e for e in range(max_exp + 1)]


def _invlists(index):
    """(invlists, nlist) of a faiss IVF index or a tt_faiss IndexIVFTT."""
    if hasattr(index, "invlists") and hasattr(index, "nlist") and not _is_faiss_index(index):
        inv = index.invlists
        if inv is None:
            raise ValueError("index: has no inverted lists (not trained / not built)")
        return inv, int(index.nlist)
    if _is_faiss_index(index):
        import faiss
        try:
            ivf = faiss.extract_index_ivf(index)
        except RuntimeError:
            raise TypeError(f"index: {type(index).__name__} is not an IVF index (no inverted lists)") from None
        return ivf.invlists, int(ivf.nlist)
    raise TypeError(f"index: expected a faiss IVF index or an object with .invlists and .nlist, got {type(index).__name__}")


def _is_faiss_index(obj):
    import faiss
    return isinstance(obj, faiss.Index)


def list_sizes(index):
    """(nlist,) int64 number of stored vectors per inverted list.

    ``index`` is a faiss IVF index (IVF, IMI, IVF..._HNSW, RCQ ..., wrapped in IndexPreTransform
    or IndexRefine too) or an object with ``.nlist`` and ``.invlists`` (tt_faiss.IndexIVFTT).
    """
    inv, nlist = _invlists(index)
    if hasattr(inv, "list_sizes") and not hasattr(inv, "list_size"):
        return np.asarray(inv.list_sizes(), dtype=np.int64)
    sizes = np.fromiter((inv.list_size(i) for i in range(nlist)), dtype=np.int64, count=nlist)
    return sizes


def bucket_stats_from_sizes(sizes):
    """Bucket statistics of a (nlist,) size array (see module docstring) as a dict of Python numbers."""
    sizes = np.asarray(sizes)
    if sizes.ndim != 1 or sizes.size == 0:
        raise ValueError(f"sizes: expected a non-empty 1-D array, got shape {sizes.shape}")
    if np.any(sizes < 0):
        raise ValueError("sizes: negative list size")
    s = sizes.astype(np.float64)
    n = float(s.sum())
    nlist = int(s.size)
    empty = int(np.count_nonzero(sizes == 0))
    mean = n / nlist
    return {
        "nlist": nlist,
        "ntotal": int(n),
        "empty": empty,
        "empty_pct": 100.0 * empty / nlist,
        "max_size": int(sizes.max()),
        "mean_size": mean,
        "mean_nonempty_size": n / max(nlist - empty, 1),
        "sum_sq_over_n": float((s * s).sum() / n) if n > 0 else 0.0,
        "cv": float(s.std() / mean) if mean > 0 else 0.0,
    }


def bucket_stats(index_or_sizes):
    """Bucket statistics dict: nlist, ntotal, empty, empty_pct, max_size, mean_size,
    mean_nonempty_size, sum_sq_over_n (sum_i N_i^2 / N), cv (std / mean of N_i).

    Accepts an index (see ``list_sizes``), a (nlist,) size array, or an assignment can be turned
    into sizes with ``np.bincount(assign, minlength=nlist)`` first.
    """
    if isinstance(index_or_sizes, (np.ndarray, list, tuple)):
        return bucket_stats_from_sizes(index_or_sizes)
    return bucket_stats_from_sizes(list_sizes(index_or_sizes))


def list_assignment(index, ntotal=None):
    """Where every stored vector sits: (list_no (n,), rank (n,)) int64 indexed by vector id.

    ``rank`` is the position inside its list in stored order. Ids must be 0..n-1 (vectors added
    with ``add``, or ``add_with_ids`` with such ids); rows of ids never stored are -1.
    """
    import faiss
    inv, nlist = _invlists(index)
    ids_all, lists_all, ranks_all = [], [], []
    for l in range(nlist):
        n = inv.list_size(l)
        if n == 0:
            continue
        ptr = inv.get_ids(l)
        ids = faiss.rev_swig_ptr(ptr, n).copy()
        inv.release_ids(l, ptr)
        ids_all.append(ids)
        lists_all.append(np.full(n, l, dtype=np.int64))
        ranks_all.append(np.arange(n, dtype=np.int64))
    if not ids_all:
        z = np.zeros(0 if ntotal is None else ntotal, dtype=np.int64) - 1
        return z, z.copy()
    ids = np.concatenate(ids_all).astype(np.int64)
    if ids.min() < 0:
        raise ValueError("index: stored ids must be >= 0 to map them to database rows")
    n = int(ids.max()) + 1 if ntotal is None else int(ntotal)
    if ids.max() >= n:
        raise ValueError(f"index: stored id {int(ids.max())} >= ntotal={n}")
    list_no = np.full(n, -1, dtype=np.int64)
    rank = np.full(n, -1, dtype=np.int64)
    list_no[ids] = np.concatenate(lists_all)
    rank[ids] = np.concatenate(ranks_all)
    return list_no, rank


def probe_order(index, xq, nprobe):
    """(nq, nprobe) int64 list numbers in the order the index's coarse quantizer visits them.

    faiss IVF (flat, HNSW, RCQ quantizers) and IMI (multi-sequence order): the quantizer's
    ``search(xq, nprobe)``. tt_faiss.IndexIVFTT: the probe path of its own search (pretransform
    and coarse beam search with the index's beam rule), so Recall@R describes what search scans.
    -1 entries (fewer than nprobe lists reachable) are kept as -1.
    """
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    if not _is_faiss_index(index) and hasattr(index, "probe_order"):
        # IndexIVFTT: the exact probe path its search uses (its upper-level beam widens with
        # nprobe); quantizer.search alone keeps the quantizer's default beam
        return np.asarray(index.probe_order(xq, int(nprobe)), dtype=np.int64)
    q = index.quantizer if not _is_faiss_index(index) else _faiss_quantizer(index)
    _, I = q.search(xq, int(nprobe))
    return np.asarray(I, dtype=np.int64)


def _faiss_quantizer(index):
    import faiss
    ivf = faiss.extract_index_ivf(index)
    q = ivf.quantizer
    # downcast so RCQ / HNSW quantizers search with their own parameters
    return faiss.downcast_index(q)


def _gt_nn(gt, nq):
    gt = np.asarray(gt)
    if gt.ndim == 2:
        gt = gt[:, 0]
    if gt.ndim != 1 or gt.shape[0] != nq:
        raise ValueError(f"gt: expected (nq,) or (nq, k) with nq={nq}, got shape {np.shape(gt)}")
    return gt.astype(np.int64)


def _positions(probes, sizes, nn_list, nn_rank):
    """Position of each query's true NN in its concatenated candidate list (inf if not probed),
    and the number of candidates the probes cover."""
    probes = np.asarray(probes, dtype=np.int64)
    valid = probes >= 0
    psizes = np.where(valid, sizes[np.where(valid, probes, 0)], 0)
    cum = np.cumsum(psizes, axis=1)
    before = cum - psizes                                     # candidates ahead of each probed list
    hit = (probes == nn_list[:, None]) & valid & (nn_list[:, None] >= 0)
    found = hit.any(axis=1)
    j = hit.argmax(axis=1)
    pos = np.where(found, before[np.arange(len(j)), j] + nn_rank, np.inf)
    return pos, cum[:, -1] if cum.shape[1] else np.zeros(len(pos))


def _recall_from_positions(pos, covered, Rs):
    out = np.empty(len(Rs), dtype=np.float64)
    for i, R in enumerate(Rs):
        hit = pos < R
        unknown = (~hit) & (covered < R)
        out[i] = np.nan if unknown.any() else hit.mean()
    return out


def recall_at_r_from_assignment(assign, probes, gt, Rs=None, nlist=None):
    """Recall@R from a database assignment and probe lists, without an index.

    assign: (nb,) int64 bucket of each database row (as ``add`` would store it; within a bucket,
      rows are in ascending row order). probes: (nq, nprobe) buckets in visiting order (-1 =
      none). gt: (nq,) or (nq, k) true neighbour rows (column 0 used). Returns (len(Rs),) float64,
      NaN where the probes do not cover R candidates for some query that missed.
    """
    Rs = default_Rs() if Rs is None else list(Rs)
    assign = np.asarray(assign, dtype=np.int64)
    if assign.ndim != 1:
        raise ValueError(f"assign: expected (nb,), got shape {assign.shape}")
    probes = np.asarray(probes)
    if probes.ndim != 2:
        raise ValueError(f"probes: expected (nq, nprobe), got shape {probes.shape}")
    nl = int(max(assign.max(initial=-1), probes.max(initial=-1)) + 1) if nlist is None else int(nlist)
    if assign.size and (assign.min() < 0 or assign.max() >= nl):
        raise ValueError(f"assign: bucket ids must lie in 0..{nl - 1}")
    sizes = np.bincount(assign, minlength=nl).astype(np.int64)
    order = np.argsort(assign, kind="stable")
    rank = np.empty_like(assign)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank[order] = np.arange(assign.size) - starts[assign[order]]
    nn = _gt_nn(gt, probes.shape[0])
    if nn.size and (nn.min() < 0 or nn.max() >= assign.size):
        raise ValueError(f"gt: neighbour ids must lie in 0..{assign.size - 1}")
    pos, covered = _positions(probes, sizes, assign[nn], rank[nn])
    return _recall_from_positions(pos, covered, Rs)


def recall_at_r(index, xq, gt, Rs=None, nprobe=None, probes=None):
    """Recall@R of a built IVF index's coarse quantizer (DESIGN §5).

    index: faiss IVF/IMI/RCQ/HNSW-quantized index or tt_faiss.IndexIVFTT, with the database added
      (ids 0..nb-1). xq: (nq, d) queries. gt: (nq,) or (nq, k) true neighbour ids.
    Rs: list of R (default 2^0..2^17). nprobe: lists to visit per query; default adaptive: start
      with 1.5 max(Rs) / (mean non-empty list size) lists and probe 4x more for the queries whose
      lists held fewer than max(Rs) candidates, up to nlist. Or pass ``probes`` (nq, nprobe)
      directly, e.g. from a callable probe-order function.
    Returns (len(Rs),) float64 with NaN where probing did not reach R candidates (see module doc).
    """
    Rs = default_Rs() if Rs is None else list(Rs)
    xq = np.asarray(xq)
    if xq.ndim != 2:
        raise ValueError(f"xq: expected (nq, d), got shape {xq.shape}")
    sizes = list_sizes(index)
    nlist = sizes.size
    nn = _gt_nn(gt, xq.shape[0])
    list_no, rank = list_assignment(index)
    if nn.size and (nn.min() < 0 or nn.max() >= list_no.size):
        raise ValueError(f"gt: neighbour ids must lie in 0..{list_no.size - 1} (ids stored in the index)")
    if probes is not None:
        probes = np.asarray(probes)
        if probes.ndim != 2 or probes.shape[0] != xq.shape[0]:
            raise ValueError(f"probes: expected (nq={xq.shape[0]}, nprobe), got shape {probes.shape}")
        pos, covered = _positions(probes, sizes, list_no[nn], rank[nn])
        return _recall_from_positions(pos, covered, Rs)
    maxR = max(Rs)
    adaptive = nprobe is None
    if adaptive:
        mean_nonempty = max(sizes.sum() / max(np.count_nonzero(sizes), 1), 1.0)
        nprobe = int(min(nlist, max(1, np.ceil(1.5 * maxR / mean_nonempty))))
    pos, cov = _probe_positions(index, xq, np.arange(xq.shape[0]), nprobe, sizes, list_no[nn], rank[nn])
    # adaptive: queries whose probes hold fewer than max(Rs) candidates and missed their neighbour
    # (quantizers with many empty lists, e.g. IMI) are probed again with 4x more lists
    while adaptive and nprobe < nlist:
        todo = np.flatnonzero((pos >= maxR) & (cov < maxR))
        if todo.size == 0:
            break
        nprobe = int(min(nlist, 4 * nprobe))
        p, c = _probe_positions(index, xq, todo, nprobe, sizes, list_no[nn], rank[nn])
        pos[todo], cov[todo] = p, c
    return _recall_from_positions(pos, cov, Rs)


def _probe_positions(index, xq, rows, nprobe, sizes, nn_list, nn_rank):
    """_positions for queries ``rows``, probing in query blocks (nq x nprobe can be 10^4 x 10^5)."""
    bs = max(1, (1 << 22) // int(nprobe))
    pos_all, cov_all = [], []
    for i0 in range(0, rows.size, bs):
        r = rows[i0:i0 + bs]
        pr = probe_order(index, xq[r], nprobe)
        p, c = _positions(pr, sizes, nn_list[r], nn_rank[r])
        pos_all.append(p)
        cov_all.append(c.astype(np.float64))
    if not pos_all:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(pos_all), np.concatenate(cov_all)


def knn_recall(I, gt, k=1, at=None):
    """End-to-end recall of search results (DESIGN §5), as a float.

    I: (nq, >= at) result ids; gt: (nq, >= k) true neighbour ids, nearest first.
    ``knn_recall(I, gt, 1)`` is 1-recall@1 (the true NN is the first result);
    ``knn_recall(I, gt, 1, at=10)`` is 1-recall@10; ``knn_recall(I, gt, 10)`` is 10-recall@10,
    the mean overlap of the first 10 results with the true top 10, divided by 10.
    """
    at = k if at is None else int(at)
    I = np.asarray(I)
    gt = np.asarray(gt)
    if gt.ndim == 1:
        gt = gt[:, None]
    if I.ndim != 2 or gt.ndim != 2 or I.shape[0] != gt.shape[0]:
        raise ValueError(f"I, gt: expected (nq, *) arrays with equal nq, got {I.shape} and {gt.shape}")
    if not (1 <= k <= gt.shape[1]) or not (1 <= at <= I.shape[1]):
        raise ValueError(f"k={k}, at={at}: need k <= gt columns ({gt.shape[1]}) and at <= I columns ({I.shape[1]})")
    Ia, G = I[:, :at], gt[:, :k]
    # a true neighbour counts once however often it appears in the results; -1 padding never matches
    hits = np.count_nonzero((Ia[:, :, None] == G[:, None, :]).any(axis=1) & (G >= 0))
    return int(hits) / (I.shape[0] * k)
