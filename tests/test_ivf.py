"""IndexIVFTT against faiss IVF indexes whose IndexFlatL2 quantizer holds the materialised TT
points; the TT beam covers every point, so coarse search is exact and results must agree."""
import faiss
import numpy as np
import pytest

import tt_faiss
from tt_faiss import ivf as ivf_mod
from tt_faiss.interop import to_faiss
from tt_faiss.ivf import IndexIVFTT, SearchParametersIVFTT, set_index_parameter

D = 16
SHAPE = (8, 8)
NLIST = 64


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def cloud():
    return tt_faiss.TTPointCloud.random(D, SHAPE, rank=4, seed=0)


@pytest.fixture(scope="module")
def data(cloud):
    rng = np.random.default_rng(7)
    pts = cloud.reconstruct(np.arange(NLIST))
    scale = float(np.sqrt(((pts - pts.mean(0)) ** 2).sum(1).mean() / D))
    xb = pts[rng.integers(0, NLIST, 4000)] + 0.3 * scale * rng.standard_normal((4000, D))
    xq = pts[rng.integers(0, NLIST, 60)] + 0.3 * scale * rng.standard_normal((60, D))
    return xb.astype(np.float32), xq.astype(np.float32), pts


def make_tt(cloud, codec, by_residual=None, d=D, **kw):
    q = tt_faiss.TTQuantizer.from_cloud(cloud)
    q.beam = NLIST  # full beam: exact coarse search
    return IndexIVFTT(q, d, codec, by_residual=by_residual, **kw)


def make_ref(pts, codec, by_residual):
    flat = faiss.IndexFlatL2(D)
    flat.add(pts)
    ref = faiss.index_factory(D, f"IVF{NLIST},{codec}")
    ref.own_fields = False
    ref.quantizer = flat
    ref.referenced_objects = [flat]
    ref.by_residual = by_residual
    if isinstance(ref, faiss.IndexIVFPQ):
        ref.do_polysemous_training = False  # as IndexIVFTT
    return ref


def share_codec(tt, ref):
    """Copy the trained codec of the TT index into the reference (isolates the IVF path)."""
    inner = tt.inner
    if hasattr(inner, "pq"):
        faiss.copy_array_to_vector(faiss.vector_to_array(inner.pq.centroids), ref.pq.centroids)
    if hasattr(inner, "sq"):
        faiss.copy_array_to_vector(faiss.vector_to_array(inner.sq.trained), ref.sq.trained)
    ref.is_trained = True
    if isinstance(ref, faiss.IndexIVFPQ) and ref.by_residual:
        ref.precompute_table()


CASES = [("Flat", None), ("SQ8", True), ("SQ8", False), ("SQfp16", True), ("PQ4x8", True),
         ("PQ4x8", False), ("PQ8x4", True)]


@pytest.mark.parametrize("codec,by_residual", CASES)
def test_search_matches_faiss(cloud, data, codec, by_residual):
    xb, xq, pts = data
    tt = make_tt(cloud, codec, by_residual)
    tt.train(xb)
    tt.add(xb)
    ref = make_ref(pts, codec, tt.by_residual)
    share_codec(tt, ref)
    ref.add(xb)
    assert tt.ntotal == ref.ntotal == len(xb)
    for nprobe in (1, 3, 10):
        tt.nprobe = ref.nprobe = nprobe
        D0, I0 = ref.search(xq, 10)
        D1, I1 = tt.search(xq, 10)
        np.testing.assert_array_equal(I1, I0)
        np.testing.assert_allclose(D1, D0, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("codec", ["SQ8", "PQ4x8"])
def test_codec_training_matches_faiss(cloud, data, codec):
    """Codec trained on residuals of exact assignments = faiss's own residual training."""
    xb, xq, pts = data
    tt = make_tt(cloud, codec)
    tt.train(xb)
    ref = make_ref(pts, codec, True)
    ref.train(xb)
    inner = tt.inner
    if codec.startswith("PQ"):
        np.testing.assert_allclose(faiss.vector_to_array(inner.pq.centroids),
                                   faiss.vector_to_array(ref.pq.centroids), rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(faiss.vector_to_array(inner.sq.trained),
                                   faiss.vector_to_array(ref.sq.trained), rtol=1e-5, atol=1e-6)


def test_refine_matches_faiss(cloud, data):
    xb, xq, pts = data
    tt = make_tt(cloud, "PQ4x8", refine=True, k_factor=4)
    tt.train(xb)
    tt.add(xb)
    base = make_ref(pts, "PQ4x8", True)
    share_codec(tt, base)
    ref = faiss.IndexRefineFlat(base)
    ref.add(xb)
    ref.k_factor = 4
    tt.nprobe = base.nprobe = 4
    D0, I0 = ref.search(xq, 5)
    D1, I1 = tt.search(xq, 5)
    np.testing.assert_array_equal(I1, I0)
    np.testing.assert_allclose(D1, D0, rtol=1e-4, atol=1e-4)
    # re-ranked distances are exact
    np.testing.assert_allclose(D1[:, 0], ((xb[I1[:, 0]] - xq) ** 2).sum(1), rtol=1e-4)
    # k_factor per call
    D2, I2 = tt.search(xq, 5, params={"k_factor": 1})
    ref.k_factor = 1
    np.testing.assert_array_equal(I2, ref.search(xq, 5)[1])


@pytest.mark.parametrize("codec,by_residual", [("Flat", None), ("PQ4x8", True)])
def test_ids_remove_reset_range(cloud, data, codec, by_residual):
    xb, xq, pts = data
    rng = np.random.default_rng(3)
    ids = rng.permutation(10 ** 6)[:len(xb)].astype(np.int64)
    tt = make_tt(cloud, codec, by_residual)
    tt.train(xb)
    ref = make_ref(pts, codec, tt.by_residual)
    share_codec(tt, ref)
    tt.add_with_ids(xb, ids)
    ref.add_with_ids(xb, ids)
    tt.nprobe = ref.nprobe = 5
    np.testing.assert_array_equal(tt.search(xq, 7)[1], ref.search(xq, 7)[1])
    assert set(tt.search(xq, 7)[1].ravel()) <= set(ids)

    # remove by array, then by selector
    gone = ids[::3]
    assert tt.remove_ids(gone) == ref.remove_ids(gone) == len(gone)
    assert tt.ntotal == ref.ntotal == len(xb) - len(gone)
    sel = faiss.IDSelectorRange(0, 500000)
    n_sel = int(((ids < 500000) & ~np.isin(ids, gone)).sum())
    assert tt.remove_ids(sel) == n_sel
    ref.remove_ids(faiss.IDSelectorRange(0, 500000))
    assert tt.ntotal == ref.ntotal == len(xb) - len(gone) - n_sel
    D0, I0 = ref.search(xq, 7)
    D1, I1 = tt.search(xq, 7)
    np.testing.assert_array_equal(I1, I0)
    assert not np.isin(I1, gone).any() and not ((I1 >= 0) & (I1 < 500000)).any()
    assert tt.remove_ids(np.array([123456789], dtype=np.int64)) == 0

    # range search: same result sets per query
    radius = float(np.median(D0[:, 3]))
    l0, d0, i0 = ref.range_search(xq, radius)
    l1, d1, i1 = tt.range_search(xq, radius)
    np.testing.assert_array_equal(l1, l0)
    for q in range(len(xq)):
        a, b = slice(l0[q], l0[q + 1]), slice(l1[q], l1[q + 1])
        o0, o1 = np.argsort(i0[a]), np.argsort(i1[b])
        np.testing.assert_array_equal(i1[b][o1], i0[a][o0])
        np.testing.assert_allclose(d1[b][o1], d0[a][o0], rtol=1e-4, atol=1e-4)

    tt.reset()
    assert tt.ntotal == 0 and tt.is_trained
    D, I = tt.search(xq, 3)
    assert (I == -1).all() and np.isinf(D).all()
    tt.add(xb[:10])  # ids restart at 0 after reset, as in faiss
    assert tt.ntotal == 10
    assert tt.search(xb[:1], 1)[1][0, 0] == 0


def test_padding_when_few_results(cloud, data):
    xb, xq, pts = data
    tt = make_tt(cloud, "PQ4x8")
    tt.train(xb)
    tt.add(xb[:5])
    D, I = tt.search(xq, 20, params={"nprobe": NLIST})
    assert D.dtype == np.float32 and I.dtype == np.int64 and D.shape == (len(xq), 20)
    assert (I[:, 5:] == -1).all() and np.isinf(D[:, 5:]).all()
    assert (np.diff(D[:, :5], axis=1) >= 0).all() and np.isfinite(D[:, :5]).all()


def test_batching_is_transparent(cloud, data, monkeypatch):
    xb, xq, pts = data
    for codec, res in [("Flat", None), ("PQ4x8", True)]:
        tt = make_tt(cloud, codec, res)
        tt.train(xb)
        tt.add(xb)
        tt.nprobe = 6
        D0, I0 = tt.search(xq, 5)
        l0, d0, i0 = tt.range_search(xq, float(np.median(D0[:, 2])))
        monkeypatch.setattr(ivf_mod, "BATCH_FLOATS", 50)  # one query per batch
        monkeypatch.setattr(ivf_mod, "ADD_BATCH", 7)
        assert tt._batch_size(6, 5) == 1
        D1, I1 = tt.search(xq, 5)
        l1, d1, i1 = tt.range_search(xq, float(np.median(D0[:, 2])))
        tt2 = make_tt(cloud, codec, res)
        tt2.train(xb)
        tt2.add(xb[:100])
        monkeypatch.undo()
        np.testing.assert_array_equal(I1, I0)
        np.testing.assert_array_equal(D1, D0)
        np.testing.assert_array_equal(l1, l0)
        np.testing.assert_array_equal(i1, i0)
        tt3 = make_tt(cloud, codec, res)
        tt3.train(xb)
        tt3.add(xb[:100])
        np.testing.assert_array_equal(tt2.search(xq, 5)[1], tt3.search(xq, 5)[1])


def test_params_per_call(cloud, data):
    xb, xq, pts = data
    tt = make_tt(cloud, "Flat")
    tt.train(xb)
    tt.add(xb)
    tt.nprobe = 2
    base = tt.search(xq, 10)
    tt.nprobe = 8
    want = tt.search(xq, 10)
    tt.nprobe = 2
    for p in ({"nprobe": 8}, SearchParametersIVFTT(nprobe=8), faiss.SearchParametersIVF(nprobe=8)):
        got = tt.search(xq, 10, params=p)
        np.testing.assert_array_equal(got[1], want[1])
    assert tt.nprobe == 2  # per-call params do not stick
    np.testing.assert_array_equal(tt.search(xq, 10)[1], base[1])
    # a narrow beam probes the lists the narrow beam search returns; a full beam is exact
    Dq_narrow, Iq_narrow = tt.quantizer.search(xq, 8, 8)
    np.testing.assert_array_equal(tt.search(xq, 10, params={"nprobe": 8, "beam": NLIST})[1], want[1])
    set_index_parameter(tt, "quantizer_beam", 8)
    assert tt.quantizer.beam == 8 and tt.beam == 8
    set_index_parameter(tt, "nprobe", 8)
    assert tt.nprobe == 8
    ref = make_ref(pts, "Flat", False)
    share_codec(tt, ref)
    ref.add(xb)
    ref.nprobe = 8
    Dn, In = tt.search(xq, 10)
    Dr, Ir = ref.search_preassigned(xq, 10, Iq_narrow, Dq_narrow)
    np.testing.assert_array_equal(In, Ir)
    with pytest.raises(ValueError, match="unknown IndexIVFTT parameter"):
        set_index_parameter(tt, "efSearch", 3)
    with pytest.raises(ValueError, match="unknown search parameter"):
        tt.search(xq, 1, params={"nprob": 3})
    with pytest.raises(ValueError, match="nprobe"):
        tt.search(xq, 1, params={"nprobe": NLIST + 1})
    # faiss indexes go through ParameterSpace
    set_index_parameter(ref, "nprobe", 3)
    assert ref.nprobe == 3


def test_bad_inputs_leave_index_intact(cloud, data):
    xb, xq, pts = data
    tt = make_tt(cloud, "PQ4x8")
    with pytest.raises(RuntimeError, match="not trained"):
        tt.add(xb)
    with pytest.raises(RuntimeError, match="not trained"):
        tt.search(xq, 1)
    tt.train(xb)
    tt.add(xb)
    tt.nprobe = 4
    D0, I0 = tt.search(xq, 5)
    bad_x = xb[:10].copy()
    bad_x[3, 2] = np.nan
    cases = [
        (ValueError, "d=16", lambda: tt.add(xb[:, :8])),
        (ValueError, "NaN", lambda: tt.add(bad_x)),
        (ValueError, "NaN", lambda: tt.add_with_ids(bad_x, np.arange(10))),
        (ValueError, "shape", lambda: tt.add_with_ids(xb[:10], np.arange(9))),
        (TypeError, "integers", lambda: tt.add_with_ids(xb[:10], np.zeros(10))),
        (ValueError, ">= 0", lambda: tt.add_with_ids(xb[:10], -np.ones(10, dtype=np.int64))),
        (ValueError, "k must be >= 1", lambda: tt.search(xq, 0)),
        (ValueError, "k must be >= 1", lambda: tt.search(xq, -3)),
        (TypeError, "k must be an integer", lambda: tt.search(xq, 2.5)),
        (ValueError, "d=16", lambda: tt.search(xq[:, :3], 1)),
        (ValueError, "NaN", lambda: tt.search(bad_x, 1)),
        (ValueError, "empty", lambda: tt.search(xq[:0], 1)),
        (ValueError, "nprobe must be <= 64", lambda: setattr(tt, "nprobe", NLIST + 1)),
        (ValueError, "nprobe must be >= 1", lambda: setattr(tt, "nprobe", 0)),
        (ValueError, "radius", lambda: tt.range_search(xq, float("nan"))),
        (TypeError, "IDSelector", lambda: tt.remove_ids("3")),
        (KeyError, "not in the index", lambda: tt.reconstruct(10 ** 9)),
        (RuntimeError, "by_residual", lambda: setattr(tt, "by_residual", False)),
        (TypeError, "TTQuantizer", lambda: IndexIVFTT(faiss.IndexFlatL2(D), D)),
        (ValueError, "quantizer.d=16", lambda: IndexIVFTT(tt.quantizer, 12)),
        (ValueError, "METRIC_L2", lambda: IndexIVFTT(tt.quantizer, D, metric=faiss.METRIC_INNER_PRODUCT)),
        (ValueError, "unknown codec", lambda: IndexIVFTT(tt.quantizer, D, "PQ5x8")),
    ]
    for exc, msg, fn in cases:
        with pytest.raises(exc, match=msg):
            fn()
    assert tt.ntotal == len(xb) and tt.nprobe == 4
    D1, I1 = tt.search(xq, 5)
    np.testing.assert_array_equal(I1, I0)
    np.testing.assert_array_equal(D1, D0)


@pytest.mark.parametrize("codec,by_residual", [("Flat", None), ("SQ8", True), ("PQ4x8", False)])
def test_reconstruct(cloud, data, codec, by_residual):
    xb, xq, pts = data
    tt = make_tt(cloud, codec, by_residual)
    tt.train(xb)
    ids = np.arange(len(xb), dtype=np.int64) * 2 + 5
    tt.add_with_ids(xb, ids)
    ref = make_ref(pts, codec, tt.by_residual)
    share_codec(tt, ref)
    ref.add_with_ids(xb, ids)
    ref.set_direct_map_type(faiss.DirectMap.Hashtable)
    for i in (0, 17, 3999):
        r = tt.reconstruct(int(ids[i]))
        assert r.shape == (D,) and r.dtype == np.float32
        np.testing.assert_allclose(r, ref.reconstruct(int(ids[i])), rtol=1e-5, atol=1e-5)
        if codec == "Flat":
            np.testing.assert_array_equal(r, xb[i])
    tt.remove_ids(ids[:1])
    with pytest.raises(KeyError):
        tt.reconstruct(int(ids[0]))
    tt.add_with_ids(xb[:1], np.array([1], dtype=np.int64))  # direct map follows adds
    np.testing.assert_allclose(tt.reconstruct(1), ref.reconstruct(int(ids[0])), rtol=1e-5, atol=1e-5)


def test_fastscan(cloud, data):
    xb, xq, pts = data
    # non-residual fast-scan equals faiss's fast-scan built from the same PQ
    tt = make_tt(cloud, "PQ8x4fs")
    assert not tt.by_residual
    tt.train(xb)
    tt.add(xb)
    ivfpq = make_ref(pts, "PQ8x4", False)
    share_codec(tt, ivfpq)
    ivfpq.add(xb)
    ref = faiss.IndexIVFPQFastScan(ivfpq)
    tt.nprobe = ref.nprobe = 4
    D0, I0 = ref.search(xq, 10)
    D1, I1 = tt.search(xq, 10)
    np.testing.assert_array_equal(I1, I0)
    np.testing.assert_allclose(D1, D0, rtol=1e-4, atol=1e-4)
    # residual fast-scan ("fsr"): approximate LUTs, so compare recall with the exact 4-bit IVFPQ
    ttr = make_tt(cloud, "PQ8x4fsr")
    assert ttr.by_residual
    ttr.train(xb)
    ttr.add(xb)
    exact = faiss.IndexFlatL2(D)
    exact.add(xb)
    gt = exact.search(xq, 1)[1][:, 0]
    ttr.nprobe = 4
    _, Ir = ttr.search(xq, 10)
    recall = np.mean([gt[i] in Ir[i] for i in range(len(xq))])
    assert recall > 0.8
    ttr.remove_ids(np.arange(0, len(xb), 2))  # the fast-scan copy is rebuilt after changes
    _, Ir2 = ttr.search(xq, 10)
    assert not np.isin(Ir2[Ir2 >= 0] % 2, [0]).any()


def test_to_faiss(cloud, data):
    xb, xq, pts = data
    for s, res in [("Flat", None), ("PQ4x8", True), ("SQ8", True), ("PQ8x4fs", None)]:
        tt = make_tt(cloud, s, res)
        tt.train(xb)
        tt.add(xb)
        tt.nprobe = 5
        f = to_faiss(tt)
        assert isinstance(f, faiss.IndexIVF)
        assert f.ntotal == tt.ntotal and f.nlist == NLIST
        np.testing.assert_array_equal(faiss.vector_to_array(faiss.downcast_index(f.quantizer).codes).view(np.float32).reshape(-1, D),
                                      pts)
        D0, I0 = f.search(xq, 10)
        D1, I1 = tt.search(xq, 10)
        np.testing.assert_array_equal(I1, I0)
        np.testing.assert_allclose(D1, D0, rtol=1e-4, atol=1e-4)
    with pytest.raises(TypeError):
        to_faiss(f)


def test_invlists_and_probe_order(cloud, data):
    xb, xq, pts = data
    tt = make_tt(cloud, "Flat")
    tt.train(xb)
    tt.add(xb)
    sizes = np.array([tt.invlists.list_size(i) for i in range(tt.nlist)])
    assert sizes.sum() == tt.ntotal
    exact = faiss.IndexFlatL2(D)
    exact.add(pts)
    np.testing.assert_array_equal(np.bincount(exact.assign(xb, 1).ravel(), minlength=NLIST), sizes)
    _, order = tt.quantizer.search(xq, 5)
    np.testing.assert_array_equal(order, exact.search(xq, 5)[1])


def test_train_keeps_a_trained_quantizer(cloud, data):
    xb, xq, pts = data
    tt = make_tt(cloud, "SQ8")
    before = tt.quantizer.cloud
    assert tt.quantizer.is_trained and not tt.is_trained
    tt.train(xb)
    assert tt.quantizer.cloud is before and tt.is_trained
    sq_before = faiss.vector_to_array(tt.inner.sq.trained).copy()
    tt.train(xb[:100])  # everything trained: a no-op
    np.testing.assert_array_equal(faiss.vector_to_array(tt.inner.sq.trained), sq_before)


def test_pretransform(cloud, data):
    xb, xq, pts = data
    rng = np.random.default_rng(0)
    x32 = np.hstack([xb, 0.01 * rng.standard_normal((len(xb), D))]).astype(np.float32)
    q32 = np.hstack([xq, 0.01 * rng.standard_normal((len(xq), D))]).astype(np.float32)
    pca = faiss.PCAMatrix(2 * D, D)
    tt = make_tt(cloud, "PQ4x8", d=2 * D, pretransform=pca)
    tt.train(x32)
    tt.add(x32)
    tt.nprobe = 4
    D1, I1 = tt.search(q32, 5)
    ref = make_ref(pts, "PQ4x8", True)
    share_codec(tt, ref)
    ref.add(pca.apply(x32))
    ref.nprobe = 4
    D0, I0 = ref.search(pca.apply(q32), 5)
    assert_same_knn(D1, I1, D0, I0)
    f = to_faiss(tt)
    assert isinstance(f, faiss.IndexPreTransform)
    assert_same_knn(*f.search(q32, 5), D1, I1)


def assert_same_knn(D1, I1, D0, I0, tol=1e-4):
    """Same results up to the order of exactly tied distances (PQ codes repeat in a list)."""
    np.testing.assert_allclose(D1, D0, rtol=tol, atol=tol)
    for q in range(len(I0)):
        for dist in np.unique(D0[q]):
            tie0 = np.abs(D0[q] - dist) <= tol * max(1.0, abs(dist))
            tie1 = np.abs(D1[q] - dist) <= tol * max(1.0, abs(dist))
            if tie0.sum() == tie1.sum() and not tie0[-1]:
                assert set(I0[q][tie0]) == set(I1[q][tie1]), (q, I0[q], I1[q])


def test_stats_agree_with_faiss_copy(cloud, data):
    xb, xq, pts = data
    tt = make_tt(cloud, "SQ8")
    tt.train(xb)
    tt.add(xb)
    f = to_faiss(tt)
    np.testing.assert_array_equal(tt_faiss.list_sizes(tt), tt_faiss.list_sizes(f))
    assert tt_faiss.bucket_stats(tt) == tt_faiss.bucket_stats(f)
    assert tt_faiss.list_sizes(tt).sum() == tt.ntotal


def test_pq_table_scan_equals_per_list_scan(cloud, data):
    """The one-table-per-query residual PQ scan gives faiss's per-(query, list) results."""
    xb, xq, pts = data
    tt = make_tt(cloud, "PQ4x8")
    assert tt.pq_scan == "tables"
    tt.train(xb)
    tt.add(xb[:3000])
    for step in range(3):
        if step == 1:
            tt.add(xb[3000:])  # the list mirror follows modifications
        if step == 2:
            tt.remove_ids(np.arange(0, 4000, 3))
        for nprobe in (1, 7, NLIST):
            tt.pq_scan = "tables"
            D1, I1 = tt.search(xq, 12, params={"nprobe": nprobe})
            tt.pq_scan = "pseudo"
            D0, I0 = tt.search(xq, 12, params={"nprobe": nprobe})
            assert_same_knn(D1, I1, D0, I0)
    assert tt.ntotal == 4000 - len(range(0, 4000, 3))


def test_probe_order_is_the_exact_list_order_with_a_full_beam(cloud):
    q = tt_faiss.TTQuantizer.from_cloud(cloud, beam=NLIST)
    index = IndexIVFTT(q, D, codec="Flat")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((25, D)).astype(np.float32)
    index.train(x)  # the quantizer is trained: this trains only the (trivial) Flat codec
    order = index.probe_order(x, 10)
    pts = cloud.reconstruct(np.arange(NLIST)).astype(np.float64)
    d2 = ((x[:, None, :].astype(np.float64) - pts[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(order, np.argsort(d2, axis=1, kind="stable")[:, :10])
    assert order.dtype == np.int64 and order.shape == (25, 10)
    with pytest.raises(ValueError, match="nprobe"):
        index.probe_order(x, NLIST + 1)
