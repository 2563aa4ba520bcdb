"""index_factory: faiss's factory strings with a TT token standing where faiss writes IVF<nlist>.

Grammar (comma-separated tokens, faiss syntax everywhere except the TT token)::

    [IDMap|IDMap2,] [<faiss pretransforms>,] TT<N1>x<N2>x...x<Nk>[r<rank>] , <codec> [,RFlat]

- ``TT<N1>x...x<Nk>r<rank>``: a TT quantizer with mode sizes N1..Nk (nlist = N1*...*Nk) and
  TT rank ``rank``; ``r<rank>`` is required when k >= 2 and may be omitted for k = 1.
- pretransforms: any faiss prefix (``OPQ16_64``, ``PCA64``, ``PCAR64``, ``RR64``, ``L2norm``...),
  built by faiss itself; the TT quantizer works in their output dimension.
- ``IDMap`` / ``IDMap2``: accepted for compatibility; IVF indexes store ids natively.
- codec: faiss IVF codec syntax (``Flat``, ``SQ8``, ``SQfp16``, ``PQ16``, ``PQ16x8``,
  ``PQ16x4fs``, ``PQ16x4fsr``, ...), with faiss's by_residual default.
- ``RFlat`` (or ``Refine(Flat)``): exact re-ranking on the raw vectors (k_factor settable).

Strings without a TT token go to ``faiss.index_factory`` unchanged.
"""
from __future__ import annotations

import re

import faiss

from ._validate import as_positive_int

_TT_RE = re.compile(r"^TT(\d+(?:x\d+)*)(?:r(\d+))?$")
_IDMAP = ("IDMap", "IDMap2")
_REFINE = ("RFlat", "Refine(Flat)")


def _token_positions(description: str):
    pos, out = 0, []
    for tok in description.split(","):
        out.append((tok, pos))
        pos += len(tok) + 1
    return out


def parse_tt_token(token: str):
    """'TT16x64x64r16' -> (shape tuple, rank); raises ValueError for a malformed token."""
    m = _TT_RE.match(token)
    if not m:
        raise ValueError(f"malformed TT token {token!r}: expected TT<N1>x...x<Nk>r<rank>, e.g. TT64x64x256r32")
    shape = tuple(int(s) for s in m.group(1).split("x"))
    if any(s < 1 for s in shape):
        raise ValueError(f"TT token {token!r}: every mode size must be >= 1")
    if m.group(2) is None:
        if len(shape) > 1:
            raise ValueError(f"TT token {token!r} has {len(shape)} modes and needs a rank: "
                             f"{token}r<rank>")
        rank = 1
    else:
        rank = int(m.group(2))
        if rank < 1:
            raise ValueError(f"TT token {token!r}: rank must be >= 1")
    return shape, rank


def index_factory(d: int, description: str, metric: int = faiss.METRIC_L2):
    """Build an index from a factory string (see the module docstring for the grammar).

    Returns an IndexIVFTT for strings with a TT token, else whatever faiss.index_factory builds.
    Errors are ValueError messages quoting the string and the character position.
    """
    from .ivf import IndexIVFTT
    from .quantizer import TTQuantizer

    d = as_positive_int(d, "d")
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    toks = _token_positions(description)
    tt_at = [i for i, (t, _) in enumerate(toks) if t.startswith("TT")]
    if not tt_at:
        return faiss.index_factory(d, description, metric)

    def fail(pos, msg):
        raise ValueError(f"index_factory({description!r}): at position {pos}: {msg}")

    if len(tt_at) > 1:
        fail(toks[tt_at[1]][1], "only one TT token is allowed")
    i = tt_at[0]
    tok, pos = toks[i]
    try:
        shape, rank = parse_tt_token(tok)
    except ValueError as e:
        fail(pos, str(e))
    if metric != faiss.METRIC_L2:
        fail(pos, "TT quantizers support only METRIC_L2")

    prefix = toks[:i]
    if prefix and prefix[0][0] in _IDMAP:
        prefix = prefix[1:]
    for t, p in prefix:
        if t in _IDMAP:
            fail(p, f"{t} must be the first token")
        if not t:
            fail(p, "empty token")
    chain = []
    if prefix:
        pre = ",".join(t for t, _ in prefix)
        try:
            pt = faiss.index_factory(d, pre + ",Flat", metric)
        except RuntimeError as e:
            fail(prefix[0][1], f"faiss cannot build the prefix {pre!r} "
                               f"({str(e).split('Error: ')[-1].strip()})")
        if not isinstance(pt, faiss.IndexPreTransform):
            fail(prefix[0][1], f"{pre!r} is not a vector transform prefix (OPQ.., PCA.., RR.., L2norm)")
        # the transforms stay owned by pt (an untrained OPQMatrix cannot be copied through
        # faiss serialization: it reads back as a plain LinearTransform), so pt is kept alive
        chain = [faiss.downcast_VectorTransform(pt.chain.at(j)) for j in range(pt.chain.size())]

    rest = toks[i + 1:]
    refine = False
    if rest and rest[-1][0] in _REFINE:
        refine = True
        rest = rest[:-1]
    if not rest:
        fail(pos + len(tok), f"a codec must follow {tok!r} (e.g. {tok},Flat or {tok},PQ16)")
    for t, p in rest:
        if not t:
            fail(p, "empty token")
        if t in _REFINE:
            fail(p, f"{t} must be the last token")
        if t.startswith("TT") or t.startswith("IVF") or t.startswith("IMI"):
            fail(p, f"{t!r}: a TT index has exactly one coarse quantizer")
    codec = ",".join(t for t, _ in rest)
    d_out = chain[-1].d_out if chain else d
    try:
        quantizer = TTQuantizer(d_out, shape, rank if len(shape) > 1 else 1)
        index = IndexIVFTT(quantizer, d, codec, pretransform=chain or None, refine=refine)
    except ValueError as e:
        fail(rest[0][1], str(e))
    if chain:
        index._chain_owner = pt
        index.pretransform_spec = ",".join(t for t, _ in prefix)
    return index


def _clone_transform(vt):
    """Independent copy of a trained faiss VectorTransform (via faiss serialization)."""
    w = faiss.VectorIOWriter()
    faiss.write_VectorTransform(vt, w)
    r = faiss.VectorIOReader()
    r.data = w.data
    return faiss.read_VectorTransform(r)
