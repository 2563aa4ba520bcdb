"""Bucket statistics and Recall@R (DESIGN §5) against brute-force references."""
import faiss
import numpy as np
import pytest

from tt_faiss import stats as S


def _data(n=3000, nq=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, d)) * 3
    xb = (centers[rng.integers(0, 20, n)] + rng.standard_normal((n, d))).astype(np.float32)
    xq = (centers[rng.integers(0, 20, nq)] + rng.standard_normal((nq, d))).astype(np.float32)
    d2 = ((xq[:, None].astype(np.float64) - xb[None]) ** 2).sum(-1)
    return xb, xq, d2.argmin(1)


def _ivf(xb, nlist=32, spec="Flat"):
    index = faiss.index_factory(xb.shape[1], f"IVF{nlist},{spec}")
    index.train(xb)
    index.add(xb)
    return index


def test_bucket_stats_from_sizes_exact():
    st = S.bucket_stats_from_sizes([0, 2, 4, 0])
    assert st["nlist"] == 4 and st["ntotal"] == 6
    assert st["empty"] == 2 and st["empty_pct"] == 50.0
    assert st["max_size"] == 4
    assert st["sum_sq_over_n"] == pytest.approx((4 + 16) / 6)
    assert st["cv"] == pytest.approx(np.std([0, 2, 4, 0]) / 1.5)
    assert st["mean_nonempty_size"] == 3.0
    with pytest.raises(ValueError, match="sizes"):
        S.bucket_stats_from_sizes([])
    with pytest.raises(ValueError, match="negative"):
        S.bucket_stats_from_sizes([1, -1])


def test_list_sizes_ivf_equals_quantizer_assignment():
    xb, _, _ = _data()
    index = _ivf(xb)
    _, a = index.quantizer.search(xb, 1)
    np.testing.assert_array_equal(S.list_sizes(index), np.bincount(a[:, 0], minlength=32))
    st = S.bucket_stats(index)
    assert st == S.bucket_stats(np.bincount(a[:, 0], minlength=32))
    assert st["ntotal"] == 3000


def test_list_sizes_imi_and_pretransform():
    xb, _, _ = _data()
    imi = faiss.index_factory(8, "IMI2x3,Flat")
    imi.train(xb)
    imi.add(xb)
    _, a = faiss.downcast_index(faiss.extract_index_ivf(imi).quantizer).search(xb, 1)
    sizes = S.list_sizes(imi)
    assert sizes.shape == (64,) and sizes.dtype == np.int64
    np.testing.assert_array_equal(sizes, np.bincount(a[:, 0], minlength=64))
    wrapped = faiss.index_factory(8, "PCA6,IVF16,Flat")
    wrapped.train(xb)
    wrapped.add(xb)
    assert S.list_sizes(wrapped).sum() == 3000


class _TTLike:
    """What stats needs from tt_faiss.IndexIVFTT: nlist, invlists, quantizer.search."""

    def __init__(self, ivf):
        self.nlist = ivf.nlist
        self.invlists = ivf.invlists
        self.quantizer = ivf.quantizer
        self._keep = ivf


def test_works_on_objects_with_invlists():
    xb, xq, nn = _data()
    ivf = _ivf(xb)
    tt = _TTLike(ivf)
    np.testing.assert_array_equal(S.list_sizes(tt), S.list_sizes(ivf))
    Rs = [1, 10, 100, 1000, 3000]
    np.testing.assert_array_equal(S.recall_at_r(tt, xq, nn, Rs, nprobe=32), S.recall_at_r(ivf, xq, nn, Rs, nprobe=32))


def _reference_recall(assign, probes, nn, Rs):
    """Materialise each query's candidate list (lists in probe order, rows ascending inside)."""
    out = []
    for R in Rs:
        hits = 0
        for q in range(len(nn)):
            cand = np.concatenate([np.flatnonzero(assign == l) for l in probes[q] if l >= 0] + [np.zeros(0, int)])
            hits += nn[q] in cand[:R]
        out.append(hits / len(nn))
    return np.array(out)


def test_recall_from_assignment_matches_reference():
    rng = np.random.default_rng(3)
    nb, nlist, nq = 400, 17, 40
    assign = rng.integers(0, nlist, nb)
    probes = np.stack([rng.permutation(nlist) for _ in range(nq)])
    nn = rng.integers(0, nb, nq)
    Rs = [1, 2, 5, 10, 30, 100, 250, 400]
    np.testing.assert_array_equal(S.recall_at_r_from_assignment(assign, probes, nn, Rs),
                                  _reference_recall(assign, probes, nn, Rs))


def test_recall_nan_when_probes_do_not_cover_R():
    assign = np.array([0, 0, 1, 1, 2, 2])
    probes = np.array([[1, 0], [2, 1]])
    nn = np.array([1, 0])  # query 0 finds row 1 at position 3; query 1 never probes list 0
    r = S.recall_at_r_from_assignment(assign, probes, nn, Rs=[1, 3, 4, 5], nlist=3)
    # R=1,3: query 1's probes cover 4 candidates >= R, so its miss is known: recall 0 and 0
    # R=4: query 0 hit (pos 3 < 4), query 1 missed with 4 covered: known, 0.5
    # R=5: query 1 covers only 4 candidates and missed: unknown
    assert r[0] == 0.0 and r[1] == 0.0 and r[2] == 0.5 and np.isnan(r[3])


def test_recall_at_r_index_matches_assignment_version():
    xb, xq, nn = _data()
    index = _ivf(xb)
    _, a = index.quantizer.search(xb, 1)
    _, probes = index.quantizer.search(xq, 32)
    Rs = S.default_Rs(12)
    ref = S.recall_at_r_from_assignment(a[:, 0], probes, nn, Rs, nlist=32)
    got = S.recall_at_r(index, xq, nn, Rs, nprobe=32)
    np.testing.assert_array_equal(got, ref)
    assert np.all(np.diff(got) >= 0)
    assert got[-1] == 1.0  # all lists probed, R >= nb
    # the first candidate scanned is the true NN only if it heads its probed list
    assert got[0] <= 0.2
    # probes given directly (e.g. from a custom probe-order function)
    np.testing.assert_array_equal(S.recall_at_r(index, xq, nn[:, None], Rs, probes=probes), ref)


def test_recall_at_r_default_nprobe_and_imi():
    xb, xq, nn = _data()
    imi = faiss.index_factory(8, "IMI2x3,Flat")
    imi.train(xb)
    imi.add(xb)
    r = S.recall_at_r(imi, xq, nn, [1, 100, 1000, 3000], nprobe=64)
    assert r[-1] == 1.0 and np.all(np.diff(r) >= 0)
    r2 = S.recall_at_r(imi, xq, nn, [1, 100, 1000])  # default nprobe reaches 1.5 * max(R)
    np.testing.assert_array_equal(r2, r[:3])


def test_list_assignment_ranks():
    xb, _, _ = _data(n=500)
    index = _ivf(xb, nlist=8)
    list_no, rank = S.list_assignment(index)
    _, a = index.quantizer.search(xb, 1)
    np.testing.assert_array_equal(list_no, a[:, 0])
    for l in range(8):
        rows = np.flatnonzero(list_no == l)
        np.testing.assert_array_equal(rank[rows], np.arange(rows.size))  # added in row order


def test_bad_inputs():
    xb, xq, nn = _data(n=500)
    with pytest.raises(TypeError, match="IVF"):
        S.list_sizes(faiss.IndexFlatL2(8))
    with pytest.raises(TypeError):
        S.list_sizes(object())
    index = _ivf(xb, nlist=8)
    with pytest.raises(ValueError, match="gt"):
        S.recall_at_r(index, xq, nn[:5], [1])
    with pytest.raises(ValueError, match="gt"):
        S.recall_at_r(index, xq, nn + 10_000, [1])
    with pytest.raises(ValueError, match="assign"):
        S.recall_at_r_from_assignment(np.array([0, 5]), np.array([[0]]), np.array([0]), [1], nlist=3)


def test_adaptive_nprobe_covers_sparse_quantizers():
    # IMI on clustered data leaves most lists empty: the first guess of nprobe (from the mean
    # non-empty list size) under-covers R, and the adaptive rounds must close the gap
    xb, xq, nn = _data()
    imi = faiss.index_factory(8, "IMI2x5,Flat")
    imi.train(xb)
    imi.add(xb)
    assert S.bucket_stats(imi)["empty_pct"] > 50
    Rs = [1, 64, 512, 2048]
    full = S.recall_at_r(imi, xq, nn, Rs, nprobe=1024)
    assert not np.isnan(full).any()
    np.testing.assert_array_equal(S.recall_at_r(imi, xq, nn, Rs), full)
    # a fixed, too small nprobe leaves large R unknown instead of guessing
    assert np.isnan(S.recall_at_r(imi, xq, nn, Rs, nprobe=2)[-1])


def test_probe_order_uses_the_index_probe_path_when_it_has_one():
    xb, xq, nn = _data(n=500)
    ivf = _ivf(xb, nlist=8)

    class _WithCoarse(_TTLike):
        def probe_order(self, x, nprobe):
            # reversed faiss order: stats must follow the index, not quantizer.search
            _, I = self.quantizer.search(x, self.nlist)
            return I[:, ::-1][:, :nprobe]

    w = _WithCoarse(ivf)
    _, ref = ivf.quantizer.search(xq, 8)
    np.testing.assert_array_equal(S.probe_order(w, xq, 3), ref[:, ::-1][:, :3])
