"""IndexIVFTT: a faiss IVF index whose coarse quantizer is a TT point cloud (DESIGN §2).

The inverted lists live in an ordinary faiss ``IndexIVF*`` (the "inner" index) built with
``by_residual=False`` and an empty placeholder ``IndexFlatL2`` quantizer: faiss never calls the
quantizer on the preassigned route, and it cannot call back into Python anyway. tt_faiss does
the coarse work itself with the C++ beam search (``TTQuantizer.search``):

- non-residual codecs (Flat, or PQ/SQ with ``by_residual=False``): one ``search_preassigned``
  call per query batch with the probed lists of every query;
- residual codecs: the inner index stores encodings of ``x - c(list)``. 8-bit residual PQ is
  scanned by tt_faiss with one lookup table per query plus a stored per-vector term
  (``_PQTables``); other residual codecs (SQ, 4-bit PQ, fast-scan "fsr") expand a query into one
  pseudo-query ``q - c(list)`` per probed list, each scanning only its list, and merge.
  Either way distances equal faiss's own residual IVF ones (up to float rounding).

Optional pieces: a chain of faiss VectorTransforms (OPQ / PCA prefixes) applied before
everything, and RFlat re-ranking with exact distances on the raw (pre-transform) vectors.
"""
from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

import faiss
import numpy as np

from ._validate import as_float_matrix, as_positive_int

# Upper bound on the floats held by one search batch's temporaries (queries x probes x d):
# 2^22 floats = 16 MiB, whatever the number of queries.
BATCH_FLOATS = 1 << 22
# Vectors encoded per add() chunk.
ADD_BATCH = 1 << 16
# ArrayInvertedLists keeps ~48 bytes of bookkeeping per list: refuse absurd list counts.
MAX_NLIST = 1 << 26

_FASTSCAN_RE = re.compile(r"^PQ(\d+)x4fs(r?)(?:_(\d+))?$")


# the coarse beam is at least ceil(nprobe / COARSE_BEAM_DIVISOR)
COARSE_BEAM_DIVISOR = 8


@dataclass
class SearchParametersIVFTT:
    """Per-call search parameters; None keeps the index's own value.

    nprobe: lists scanned per query; beam: beam width of the upper levels of the coarse TT
    search (raised to at least ceil(nprobe / 8); the last level always returns nprobe lists);
    k_factor: RFlat re-ranking depth (k * k_factor candidates are re-ranked).
    """

    nprobe: int | None = None
    beam: int | None = None
    k_factor: float | None = None


def _swig(a):
    return faiss.swig_ptr(a)


def _check_k(k) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _make_inner(d: int, nlist: int, codec: str):
    """Build the inner faiss IVF index for `codec` (faiss syntax) with a placeholder quantizer.

    Returns (inner, fastscan_bbs, default_by_residual). Fast-scan codecs are staged in an
    IVFPQ with 4-bit codes (faiss's fast-scan lists cannot take add_core) and converted lazily.
    """
    if not isinstance(codec, str) or not codec:
        raise ValueError(f"codec must be a non-empty faiss codec string, got {codec!r}")
    m = _FASTSCAN_RE.match(codec)
    if m:
        bbs = int(m.group(3)) if m.group(3) else 32
        spec, default_res = f"PQ{m.group(1)}x4", bool(m.group(2))
    else:
        bbs, spec, default_res = None, codec, None
    try:
        inner = faiss.index_factory(d, f"IVF{nlist},{spec}")
    except RuntimeError as e:
        msg = str(e).split("Error: ")[-1].strip()
        raise ValueError(f"unknown codec {codec!r} (faiss: {msg})") from None
    if not isinstance(inner, faiss.IndexIVF):
        raise ValueError(f"codec {codec!r} does not describe an IVF encoding")
    if isinstance(inner, (faiss.IndexIVFFastScan,)):
        raise ValueError(f"fast-scan codec {codec!r} is only supported as PQ<M>x4fs[r][_<bbs>]")
    if default_res is None:
        default_res = bool(inner.by_residual)
    if isinstance(inner, faiss.IndexIVFPQ):
        # faiss's factory turns on polysemous training (slow annealing that only reorders the
        # codewords for polysemous filtering, which IndexIVFTT does not use)
        inner.do_polysemous_training = False
    inner.by_residual = False
    return inner, bbs, default_res


class IndexIVFTT:
    """IVF index with a TT point-cloud coarse quantizer (faiss vocabulary).

    Parameters
    ----------
    quantizer : TTQuantizer (trained or not); its ``nlist`` TT points are the lists.
    d : input dimension (before the optional pretransform chain).
    codec : faiss codec string: "Flat", "SQ8", "SQfp16", "PQ<M>[x<b>]", "PQ<M>x4fs[r]", ...
    by_residual : encode x - c(list) (None: faiss's default for the codec, True for PQ/SQ,
        False for fast-scan "x4fs"; always False for Flat, where it changes nothing).
    pretransform : None, a faiss VectorTransform or a list of them (applied in order; the last
        one outputs quantizer.d). They are trained by train() when not yet trained.
    refine : keep the raw vectors and re-rank k * k_factor candidates exactly (",RFlat").
    k_factor : re-ranking depth for refine.
    nprobe : default number of probed lists.

    Attributes: d, d_out, ntotal, nlist, is_trained, metric_type, nprobe, beam (= quantizer.beam),
    by_residual, codec, refine, k_factor, chain, quantizer, invlists, inner (the faiss IVF index),
    pq_scan ("tables" or "pseudo": the residual-PQ search path, see the module docstring).
    """

    def __init__(self, quantizer, d: int, codec: str = "Flat", by_residual: bool | None = None,
                 metric: int = faiss.METRIC_L2, pretransform=None, refine: bool = False,
                 k_factor: float = 1.0, nprobe: int = 1):
        if metric != faiss.METRIC_L2:
            raise ValueError("IndexIVFTT supports only metric=faiss.METRIC_L2 (TT points are L2 centroids)")
        for name in ("d", "nlist", "search", "is_trained", "compute_residuals"):
            if not hasattr(quantizer, name):
                raise TypeError(f"quantizer must be a TTQuantizer, got {type(quantizer).__name__} "
                                f"(no attribute {name!r})")
        self.d = as_positive_int(d, "d")
        self.chain = self._as_chain(pretransform)
        self.pretransform_spec = None  # faiss prefix string when built by index_factory
        d_out = self.chain[-1].d_out if self.chain else self.d
        if self.chain and self.chain[0].d_in != self.d:
            raise ValueError(f"pretransform takes d_in={self.chain[0].d_in}, but d={self.d}")
        if quantizer.d != d_out:
            raise ValueError(f"quantizer.d={quantizer.d} must equal the "
                             f"{'pretransform output' if self.chain else 'index'} dimension {d_out}")
        self.quantizer = quantizer
        self.nlist = int(quantizer.nlist)
        if self.nlist > MAX_NLIST:
            raise ValueError(f"nlist={self.nlist} TT points exceed the {MAX_NLIST} inverted lists "
                             "this index can hold (each list costs memory even when empty)")
        self.metric_type = faiss.METRIC_L2
        self.codec = codec
        self._inner, self._fastscan_bbs, default_res = _make_inner(d_out, self.nlist, codec)
        self._fastscan = None  # converted fast-scan index, rebuilt after each modification
        self._pq_mirror = None  # _PQTables for the residual-PQ scan, rebuilt after each modification
        # residual PQ search: "tables" (one LUT per query + per-vector terms, see _PQTables) or
        # "pseudo" (one faiss scan per (query, list) with the residual query; also range_search)
        self.pq_scan = "tables"
        if isinstance(self._inner, faiss.IndexIVFFlat) or by_residual is None:
            self.by_residual = bool(default_res) and not isinstance(self._inner, faiss.IndexIVFFlat)
        else:
            self.by_residual = bool(by_residual)
        self.refine = bool(refine)
        self._refine_store = faiss.IndexIDMap2(faiss.IndexFlatL2(self.d)) if self.refine else None
        self.k_factor = k_factor
        self.nprobe = nprobe

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _as_chain(pretransform) -> list:
        if pretransform is None:
            return []
        chain = list(pretransform) if isinstance(pretransform, (list, tuple)) else [pretransform]
        for i, vt in enumerate(chain):
            if not isinstance(vt, faiss.VectorTransform):
                raise TypeError(f"pretransform[{i}] must be a faiss.VectorTransform, got {type(vt).__name__}")
            if i and vt.d_in != chain[i - 1].d_out:
                raise ValueError(f"pretransform[{i}] takes d_in={vt.d_in} but the previous one outputs "
                                 f"{chain[i - 1].d_out}")
        return chain

    # ------------------------------------------------------------------ faiss-like state
    @property
    def ntotal(self) -> int:
        return int(self._inner.ntotal)

    @property
    def d_out(self) -> int:
        """Dimension the quantizer and the codec see (after the pretransform chain)."""
        return int(self._inner.d)

    @property
    def is_trained(self) -> bool:
        return (self.quantizer.is_trained and bool(self._inner.is_trained)
                and all(vt.is_trained for vt in self.chain))

    @property
    def invlists(self):
        """The faiss InvertedLists holding the lists (list i = TT point i)."""
        return self._inner.invlists

    @property
    def inner(self):
        """The inner faiss IVF index (by_residual=False, placeholder quantizer)."""
        return self._inner

    @property
    def code_size(self) -> int:
        return int(self._inner.code_size)

    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, v) -> None:
        self._nprobe = as_positive_int(v, "nprobe", self.nlist)

    @property
    def beam(self) -> int:
        """Beam width of the coarse search (alias of quantizer.beam)."""
        return self.quantizer.beam

    @beam.setter
    def beam(self, v) -> None:
        self.quantizer.beam = v

    @property
    def by_residual(self) -> bool:
        return self._by_residual

    @by_residual.setter
    def by_residual(self, v) -> None:
        v = bool(v)
        if getattr(self, "_by_residual", v) != v and (self._inner.is_trained or self.ntotal):
            raise RuntimeError("by_residual can only be changed before the codec is trained")
        if v and isinstance(self._inner, faiss.IndexIVFFlat):
            v = False  # raw vectors give the same distances and need no per-list scan
        self._by_residual = v

    @property
    def k_factor(self) -> float:
        return self._k_factor

    @k_factor.setter
    def k_factor(self, v) -> None:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not v >= 1:
            raise ValueError(f"k_factor must be a number >= 1, got {v!r}")
        self._k_factor = float(v)

    def __repr__(self) -> str:
        return (f"IndexIVFTT(d={self.d}, nlist={self.nlist}, codec={self.codec!r}, "
                f"by_residual={self.by_residual}, refine={self.refine}, ntotal={self.ntotal}, "
                f"nprobe={self.nprobe}, beam={self.quantizer.beam}, is_trained={self.is_trained})")

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise RuntimeError("IndexIVFTT is not trained: call train(x) first "
                               "(or build it from a trained TTQuantizer and train the codec)")

    def _apply_chain(self, x: np.ndarray) -> np.ndarray:
        for vt in self.chain:
            x = np.ascontiguousarray(vt.apply(x), dtype=np.float32)
        return x

    # ------------------------------------------------------------------ training
    def train(self, x, **fit_kwargs) -> None:
        """Train what is not trained yet: pretransforms, the TT (tt_faiss.fit via
        quantizer.train(x, **fit_kwargs)), then the codec on residuals x - c(assign(x)).

        x : (n, d) float array. With a pre-trained quantizer only the codec is trained.
        """
        x = as_float_matrix(x, self.d, "x")
        for vt in self.chain:
            if not vt.is_trained:
                vt.train(x)
            x = np.ascontiguousarray(vt.apply(x), dtype=np.float32)
        if not self.quantizer.is_trained:
            self.quantizer.train(x, **fit_kwargs)
        if int(self.quantizer.ntotal) != self.nlist:
            raise RuntimeError(f"trained quantizer has {self.quantizer.ntotal} points, expected {self.nlist}")
        if self._inner.is_trained:
            return
        nmax = int(self._inner.train_encoder_num_vectors())
        if nmax > 0 and x.shape[0] > nmax:
            # same policy as faiss IndexIVF::train: a fixed-seed subsample for the codec
            sel = np.sort(np.random.default_rng(1234).choice(x.shape[0], nmax, replace=False))
            x = np.ascontiguousarray(x[sel])
        assign = np.zeros(x.shape[0], dtype=np.int64)
        if self.by_residual:
            assign = self._assign(x)
            x = self.quantizer.compute_residuals(x, assign)
        self._inner.train_encoder(x.shape[0], _swig(x), _swig(assign))
        self._inner.is_trained = True

    # ------------------------------------------------------------------ coarse quantization
    def _assign(self, xt: np.ndarray) -> np.ndarray:
        return self.quantizer.search(xt, 1)[1][:, 0]

    def _coarse(self, xt: np.ndarray, nprobe: int, beam: int | None):
        # The beam applies to the upper levels; the last level returns nprobe lists. Long probe
        # lists need a wider upper beam to stay good (GloVe, 16x64x64, nprobe 1024: beam 32 ->
        # R@1 .85, 128 -> .96, 1024 -> .97), hence the floor of nprobe / 8.
        b = max(self.quantizer.beam if beam is None else beam, -(-nprobe // COARSE_BEAM_DIVISOR))
        # the inner index is never by_residual, so faiss ignores Dq: the cheaper expanded-form
        # distances (exact=False) are enough to pick and order the lists
        try:
            Dq, Iq = self.quantizer.search(xt, nprobe, b, exact=False)
        except TypeError:  # quantizer without the exact flag
            Dq, Iq = self.quantizer.search(xt, nprobe, b)
        return np.ascontiguousarray(Dq, dtype=np.float32), np.ascontiguousarray(Iq, dtype=np.int64)

    def probe_order(self, x, nprobe: int | None = None, params=None) -> np.ndarray:
        """Lists that search() scans for each query, nearest first: x (n, d) -> (n, nprobe) int64.

        The same path as search (pretransform, then the coarse beam search with the index's beam
        rule); nprobe defaults to index.nprobe, params as in search (nprobe/beam).
        """
        x = as_float_matrix(x, self.d, "x")
        self._require_trained()
        p_nprobe, beam, _ = self._resolve(params)
        nprobe = p_nprobe if nprobe is None else as_positive_int(nprobe, "nprobe", self.nlist)
        return self._coarse(self._apply_chain(x), nprobe, beam)[1]

    # ------------------------------------------------------------------ adding / removing
    def add(self, x) -> None:
        """Add x (n, d) with ids ntotal .. ntotal+n-1."""
        x = as_float_matrix(x, self.d, "x")
        self._require_trained()
        self._add(x, np.arange(self.ntotal, self.ntotal + x.shape[0], dtype=np.int64))

    def add_with_ids(self, x, ids) -> None:
        """Add x (n, d) with int64 ids (n,) (any values >= 0; duplicates are the caller's business)."""
        x = as_float_matrix(x, self.d, "x")
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        if ids.shape != (x.shape[0],):
            raise ValueError(f"ids must have shape ({x.shape[0]},) to match x, got {ids.shape}")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.size and ids.min() < 0:
            raise ValueError("ids must be >= 0 (-1 marks missing results)")
        self._require_trained()
        self._add(x, ids)

    def _add(self, x: np.ndarray, ids: np.ndarray) -> None:
        n = x.shape[0]
        progress = None
        if n > 4 * ADD_BATCH:
            from tqdm.auto import tqdm
            progress = tqdm(total=n, desc="IndexIVFTT.add", unit="vec")
        try:
            for i0 in range(0, n, ADD_BATCH):
                xb, ib = x[i0:i0 + ADD_BATCH], ids[i0:i0 + ADD_BATCH]
                xt = self._apply_chain(xb)
                a = self._assign(xt)
                if self.by_residual:
                    xt = self.quantizer.compute_residuals(xt, a)
                self._inner.add_core(xt.shape[0], _swig(xt), _swig(ib), _swig(a))
                if self.refine:
                    self._refine_store.add_with_ids(xb, ib)
                if progress is not None:
                    progress.update(xb.shape[0])
        finally:
            self._fastscan = self._pq_mirror = None
            if progress is not None:
                progress.close()

    def remove_ids(self, sel) -> int:
        """Remove ids given as an int array or a faiss.IDSelector; returns the number removed."""
        hashed = self._inner.direct_map.type == faiss.DirectMap.Hashtable
        if isinstance(sel, faiss.IDSelector):
            if hashed and not isinstance(sel, faiss.IDSelectorArray):
                # faiss's hashtable direct map removes only by IDSelectorArray: drop it, it is
                # rebuilt by the next reconstruct()
                self._inner.set_direct_map_type(faiss.DirectMap.NoMap)
                hashed = False
            inner_sel = store_sel = sel
        else:
            ids = np.asarray(sel)
            if ids.dtype.kind not in "iu" or ids.ndim != 1:
                raise TypeError(f"remove_ids takes a 1-D integer array or a faiss.IDSelector, "
                                f"got {type(sel).__name__} {getattr(ids, 'dtype', '')} {getattr(ids, 'shape', '')}")
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            # IDSelectorBatch hashes the ids (fast list scans); IDSelectorArray (pointing into
            # ids, alive for this call) is what the hashtable direct map accepts
            store_sel = faiss.IDSelectorBatch(ids.size, _swig(ids))
            inner_sel = faiss.IDSelectorArray(ids.size, _swig(ids)) if hashed else store_sel
        n = int(self._inner.remove_ids(inner_sel))
        if self.refine:
            self._refine_store.remove_ids(store_sel)
        self._fastscan = self._pq_mirror = None
        return n

    def reset(self) -> None:
        """Remove every vector; training is kept."""
        self._inner.reset()
        if self.refine:
            self._refine_store.reset()
        self._fastscan = self._pq_mirror = None

    def reconstruct(self, key: int) -> np.ndarray:
        """Stored vector for id `key` as (d,) float32 (decoded; exact with Flat or RFlat)."""
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral):
            raise TypeError(f"key must be an integer id, got {type(key).__name__}")
        key = int(key)
        if self.refine:
            try:
                return self._refine_store.reconstruct(key)
            except RuntimeError:
                raise KeyError(f"id {key} is not in the index") from None
        if self._inner.direct_map.type != faiss.DirectMap.Hashtable:
            # maintained by faiss on later add_core / remove_ids
            self._inner.set_direct_map_type(faiss.DirectMap.Hashtable)
        try:
            lo = int(self._inner.direct_map.get(key))
        except RuntimeError:
            raise KeyError(f"id {key} is not in the index") from None
        x = self._inner.reconstruct(key)
        if self.by_residual:
            x = x + self.quantizer.reconstruct(lo >> 32)
        x = np.asarray(x, dtype=np.float32).reshape(1, -1)
        for vt in reversed(self.chain):
            x = np.ascontiguousarray(vt.reverse_transform(x), dtype=np.float32)
        return x[0]

    # ------------------------------------------------------------------ search
    def _resolve(self, params):
        nprobe, beam, k_factor = self.nprobe, None, self.k_factor
        if params is None:
            return nprobe, beam, k_factor
        if isinstance(params, dict):
            unknown = set(params) - {"nprobe", "beam", "quantizer_beam", "k_factor"}
            if unknown:
                raise ValueError(f"unknown search parameter(s) {sorted(unknown)}; "
                                 "use nprobe, beam (quantizer_beam), k_factor")
            p = SearchParametersIVFTT(params.get("nprobe"), params.get("beam", params.get("quantizer_beam")),
                                      params.get("k_factor"))
        elif isinstance(params, SearchParametersIVFTT):
            p = params
        elif isinstance(params, faiss.SearchParametersIVF):
            p = SearchParametersIVFTT(nprobe=int(params.nprobe))
        else:
            raise TypeError(f"params must be a dict, SearchParametersIVFTT or faiss.SearchParametersIVF, "
                            f"got {type(params).__name__}")
        if p.nprobe is not None:
            nprobe = as_positive_int(p.nprobe, "nprobe", self.nlist)
        if p.beam is not None:
            beam = as_positive_int(p.beam, "beam")
        if p.k_factor is not None:
            if not isinstance(p.k_factor, numbers.Real) or not p.k_factor >= 1:
                raise ValueError(f"k_factor must be >= 1, got {p.k_factor!r}")
            k_factor = float(p.k_factor)
        return nprobe, beam, k_factor

    def _scan_index(self):
        """The faiss index to scan (the converted fast-scan copy for x4fs codecs)."""
        if self._fastscan_bbs is None:
            return self._inner
        if self._fastscan is None:
            self._fastscan = faiss.IndexIVFPQFastScan(self._inner, self._fastscan_bbs)
        return self._fastscan

    def _batch_size(self, nprobe: int, k: int) -> int:
        per_query = nprobe * ((self.d_out + 2 * k) if self.by_residual else 3) + self.d + k
        return max(1, BATCH_FLOATS // per_query)

    def search(self, x, k: int, params=None):
        """k nearest stored vectors: x (n, d) -> D (n, k) float32 ascending squared L2,
        I (n, k) int64 ids; missing results are -1 with distance +inf.

        params: None, a dict / SearchParametersIVFTT with nprobe, beam, k_factor, or a
        faiss.SearchParametersIVF (nprobe only).
        """
        x = as_float_matrix(x, self.d, "x")
        k = _check_k(k)
        nprobe, beam, k_factor = self._resolve(params)
        self._require_trained()
        kb = max(k, int(k * k_factor)) if self.refine else k
        n = x.shape[0]
        D = np.empty((n, k), dtype=np.float32)
        I = np.empty((n, k), dtype=np.int64)
        bs = self._batch_size(nprobe, kb)
        for i0 in range(0, n, bs):
            xb = x[i0:i0 + bs]
            Db, Ib = self._search_base(self._apply_chain(xb), kb, nprobe, beam)
            if self.refine:
                Db, Ib = self._rerank(xb, Db, Ib, k)
            D[i0:i0 + bs], I[i0:i0 + bs] = Db, Ib
        D[I < 0] = np.inf  # faiss pads with FLT_MAX; the contract is -1 / +inf
        return D, I

    def _tables_apply(self) -> bool:
        inner = self._inner
        return (self.by_residual and self.pq_scan == "tables" and self._fastscan_bbs is None
                and isinstance(inner, faiss.IndexIVFPQ) and inner.pq.nbits == 8)

    def _search_base(self, xt: np.ndarray, k: int, nprobe: int, beam):
        Dq, Iq = self._coarse(xt, nprobe, beam)
        if self._tables_apply():
            if self._pq_mirror is None:
                self._pq_mirror = _PQTables(self)
            return self._pq_mirror.search(xt, k, Iq, Dq)
        index = self._scan_index()
        if not self.by_residual:
            return self._preassigned(index, xt, k, Iq, Dq)
        n = xt.shape[0]
        qr, Iq1, Dq1 = self._pseudo_queries(xt, Iq, Dq)
        Dp, Ip = self._preassigned(index, qr, k, Iq1, Dq1)
        return _merge(Dp.reshape(n, nprobe * k), Ip.reshape(n, nprobe * k), k)

    def _pseudo_queries(self, xt, Iq, Dq):
        """One residual query q - c(list) per (query, probed list), each probing only its list."""
        nprobe = Iq.shape[1]
        lists = Iq.reshape(-1)
        valid = lists >= 0
        qr = np.repeat(xt, nprobe, axis=0)
        if valid.all():
            qr = self.quantizer.compute_residuals(qr, lists)
        elif valid.any():
            qr[valid] = self.quantizer.compute_residuals(qr[valid], lists[valid])
        return qr, np.ascontiguousarray(lists.reshape(-1, 1)), np.ascontiguousarray(Dq.reshape(-1, 1))

    @staticmethod
    def _preassigned(index, x, k, Iq, Dq):
        n = x.shape[0]
        D = np.empty((n, k), dtype=np.float32)
        I = np.empty((n, k), dtype=np.int64)
        p = faiss.SearchParametersIVF()
        p.nprobe = Iq.shape[1]
        index.search_preassigned_c(n, _swig(x), k, _swig(Iq), _swig(Dq), _swig(D), _swig(I), False, p)
        return D, I

    def _rerank(self, x: np.ndarray, Db: np.ndarray, Ib: np.ndarray, k: int):
        """Exact distances on the raw vectors of the candidates, keep the best k."""
        n, kb = Ib.shape
        valid = Ib >= 0
        xr = np.zeros((n, kb, self.d), dtype=np.float32)
        if valid.any():
            xr[valid] = self._refine_store.reconstruct_batch(np.ascontiguousarray(Ib[valid]))
        diff = xr - x[:, None, :]
        dist = np.einsum("nkd,nkd->nk", diff, diff, dtype=np.float32)
        dist[~valid] = np.inf
        return _merge(dist, np.where(valid, Ib, -1), k)

    def range_search(self, x, radius: float, params=None):
        """All stored vectors within squared L2 `radius` in the probed lists.

        x (n, d) -> lims (n+1,) int64, D (lims[n],) float32, I (lims[n],) int64: the results
        of query i are D[lims[i]:lims[i+1]], I[lims[i]:lims[i+1]] (in list order).
        """
        x = as_float_matrix(x, self.d, "x")
        if isinstance(radius, (bool, np.bool_)) or not isinstance(radius, numbers.Real) \
                or not np.isfinite(radius):
            raise ValueError(f"radius must be a finite number, got {radius!r}")
        nprobe, beam, _ = self._resolve(params)
        self._require_trained()
        if self.refine:
            raise NotImplementedError("range_search is not available with RFlat re-ranking "
                                      "(faiss IndexRefine has none either)")
        n = x.shape[0]
        bs = self._batch_size(nprobe, 1)
        lims_all, D_all, I_all = [np.zeros(1, dtype=np.int64)], [], []
        index = self._scan_index()
        for i0 in range(0, n, bs):
            xt = self._apply_chain(x[i0:i0 + bs])
            Dq, Iq = self._coarse(xt, nprobe, beam)
            if self.by_residual:
                q, Iq, Dq = self._pseudo_queries(xt, Iq, Dq)
            else:
                q = xt
            lims, Db, Ib = _range_preassigned(index, q, float(radius), Iq, Dq)
            if self.by_residual:  # pseudo-queries of query i are rows i*nprobe .. (i+1)*nprobe-1
                lims = lims[::nprobe]
            lims_all.append(lims[1:] + lims_all[-1][-1])
            D_all.append(Db)
            I_all.append(Ib)
        return (np.concatenate(lims_all), np.concatenate(D_all) if D_all else np.zeros(0, np.float32),
                np.concatenate(I_all) if I_all else np.zeros(0, np.int64))

    # ------------------------------------------------------------------ persistence
    def __getstate__(self):
        from .io import serialize_index

        return {"bytes": serialize_index(self).tobytes()}

    def __setstate__(self, state):
        from .io import deserialize_index

        other = deserialize_index(state["bytes"])
        self.__dict__.update(other.__dict__)


class _PQTables:
    """Residual-PQ scan with one lookup table per query (faiss's precomputed-table idea).

    For x stored as r = PQ(x - c(l)) in list l:
        ||q - c(l) - r||^2 = ||q - c(l)||^2 + (||r||^2 + 2 <c(l), r>) - 2 <q, r>
    The first term is the coarse distance Dq, the second a per-vector float computed once
    here, the third a sum of M table lookups from one (M, 256) table per query. This replaces
    faiss's per-(query, list) residual table (d * 256 flops per probed list), which dominates
    when lists hold a few vectors, as TT lists do. Works on a numpy mirror of the lists
    (codes, ids, per-vector terms in list order: ntotal * (M + 12) bytes), rebuilt lazily after
    each add / remove / reset.
    """

    def __init__(self, index):
        inner, inv = index.inner, index.inner.invlists
        pq = inner.pq
        nlist, cs = index.nlist, int(inner.code_size)
        self.M, self.ksub, self.dsub = int(pq.M), int(pq.ksub), int(pq.dsub)
        self.centroids = faiss.vector_to_array(pq.centroids).reshape(self.M, self.ksub, self.dsub)
        sizes = np.fromiter((inv.list_size(i) for i in range(nlist)), dtype=np.int64, count=nlist)
        offsets = np.zeros(nlist + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        n = int(offsets[-1])
        codes = np.empty((n, cs), dtype=np.uint8)
        ids = np.empty(n, dtype=np.int64)
        for l in np.flatnonzero(sizes):
            o, m = int(offsets[l]), int(sizes[l])
            codes[o:o + m] = faiss.rev_swig_ptr(inv.get_codes(int(l)), m * cs).reshape(m, cs)
            ids[o:o + m] = faiss.rev_swig_ptr(inv.get_ids(int(l)), m)
        lists = np.repeat(np.arange(nlist, dtype=np.int64), sizes)
        extra = np.empty(n, dtype=np.float32)
        for i0 in range(0, n, ADD_BATCH):
            r = pq.decode(codes[i0:i0 + ADD_BATCH])
            c = index.quantizer.reconstruct_batch(lists[i0:i0 + ADD_BATCH])
            extra[i0:i0 + ADD_BATCH] = (r * r).sum(1) + 2 * (c * r).sum(1)
        self.sizes, self.offsets, self.codes, self.ids, self.extra = sizes, offsets, codes, ids, extra

    def search(self, xt, k, Iq, Dq):
        """xt (n, d) residual-free queries, Iq/Dq (n, nprobe) coarse results -> D, I (n, k)."""
        n, nprobe = Iq.shape
        valid = Iq >= 0
        lens = np.where(valid, self.sizes[np.where(valid, Iq, 0)], 0)
        per_query = lens.sum(1)
        D = np.empty((n, k), dtype=np.float32)
        I = np.empty((n, k), dtype=np.int64)
        # sub-batches of queries whose candidates x M lookups stay within BATCH_FLOATS
        budget = max(1, BATCH_FLOATS // (2 * self.M))
        q0 = 0
        while q0 < n:
            q1, tot = q0 + 1, int(per_query[q0])
            while q1 < n and tot + per_query[q1] <= budget:
                tot += int(per_query[q1])
                q1 += 1
            D[q0:q1], I[q0:q1] = self._scan(xt[q0:q1], k, Iq[q0:q1], Dq[q0:q1], lens[q0:q1],
                                            per_query[q0:q1])
            q0 = q1
        return D, I

    def _scan(self, x, k, Iq, Dq, lens, per_query):
        n = x.shape[0]
        M, ksub = self.M, self.ksub
        lut = np.einsum("nmd,mkd->nmk", x.reshape(n, M, self.dsub), self.centroids,
                        dtype=np.float32).reshape(-1)
        flat_lens = lens.reshape(-1)
        total = int(flat_lens.sum())
        if total == 0:
            return (np.full((n, k), np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64))
        # row of every candidate: list start + position inside the list
        starts = self.offsets[np.where(Iq >= 0, Iq, 0)].reshape(-1)
        seg = np.repeat(np.arange(flat_lens.size), flat_lens)
        first = np.cumsum(flat_lens) - flat_lens
        rows = starts[seg] + (np.arange(total) - first[seg])
        qidx = seg // Iq.shape[1]
        dist = Dq.reshape(-1)[seg] + self.extra[rows]
        codes = self.codes[rows]
        base = qidx * (M * ksub)
        ip = np.zeros(total, dtype=np.float32)
        for m in range(M):
            ip += lut[base + (m * ksub) + codes[:, m]]
        dist -= 2 * ip
        # pad per query into (n, max candidates) and keep the best k
        width = int(per_query.max())
        pos = np.arange(total) - np.repeat(np.cumsum(per_query) - per_query, per_query)
        Dm = np.full((n, width), np.inf, dtype=np.float32)
        Im = np.full((n, width), -1, dtype=np.int64)
        Dm[qidx, pos] = dist
        Im[qidx, pos] = self.ids[rows]
        return _merge(Dm, Im, k)


def _range_preassigned(index, x, radius, Iq, Dq):
    n = x.shape[0]
    res = faiss.RangeSearchResult(n)
    p = faiss.SearchParametersIVF()
    p.nprobe = Iq.shape[1]
    index.range_search_preassigned_c(n, _swig(x), radius, _swig(Iq), _swig(Dq), res, False, p)
    lims = faiss.rev_swig_ptr(res.lims, n + 1).copy().astype(np.int64)
    nres = int(lims[-1])
    return (lims, faiss.rev_swig_ptr(res.distances, nres).copy(),
            faiss.rev_swig_ptr(res.labels, nres).copy())


def _merge(D: np.ndarray, I: np.ndarray, k: int):
    """Best k per row of (n, m) candidate arrays, ascending; pads with -1 / +inf when m < k."""
    n, m = D.shape
    if m > k:
        part = np.argpartition(D, k - 1, axis=1)[:, :k]
        D, I = np.take_along_axis(D, part, 1), np.take_along_axis(I, part, 1)
    order = np.argsort(D, axis=1, kind="stable")
    D, I = np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)
    if D.shape[1] < k:
        D = np.hstack([D, np.full((n, k - D.shape[1]), np.inf, dtype=np.float32)])
        I = np.hstack([I, np.full((n, k - I.shape[1]), -1, dtype=np.int64)])
    I = np.where(np.isfinite(D), I, -1)
    return np.ascontiguousarray(D, dtype=np.float32), np.ascontiguousarray(I)


def set_index_parameter(index, name: str, value) -> None:
    """faiss-ParameterSpace-like setter: "nprobe", "quantizer_beam" (or "beam"),
    "k_factor" / "k_factor_rf" on an IndexIVFTT; any other index goes to faiss.ParameterSpace."""
    if not isinstance(index, IndexIVFTT):
        faiss.ParameterSpace().set_index_parameter(index, name, value)
        return
    if name == "nprobe":
        index.nprobe = value
    elif name in ("quantizer_beam", "beam"):
        index.quantizer.beam = value
    elif name in ("k_factor", "k_factor_rf"):
        if not index.refine:
            raise ValueError("k_factor needs an index with RFlat re-ranking")
        index.k_factor = value
    else:
        raise ValueError(f"unknown IndexIVFTT parameter {name!r}; use nprobe, quantizer_beam, k_factor_rf")
