"""index_factory grammar: every rule and every error message."""
import faiss
import numpy as np
import pytest

from tt_faiss.factory import index_factory, parse_tt_token
from tt_faiss.ivf import IndexIVFTT


@pytest.mark.parametrize("s,shape,ranks,codec,by_residual,refine,d_out", [
    ("TT8x8r4,Flat", (8, 8), (4,), "Flat", False, False, 16),
    ("TT64,Flat", (64,), (), "Flat", False, False, 16),
    ("TT64r1,SQ8", (64,), (), "SQ8", True, False, 16),
    ("TT4x4x4r2,PQ4", (4, 4, 4), (2, 2), "PQ4", True, False, 16),
    ("TT4x4x4r2,PQ4np", (4, 4, 4), (2, 2), "PQ4np", True, False, 16),
    ("TT8x8r4,PQ4x8", (8, 8), (4,), "PQ4x8", True, False, 16),
    ("TT8x8r4,PQ8x4fs", (8, 8), (4,), "PQ8x4fs", False, False, 16),
    ("TT8x8r4,PQ8x4fsr", (8, 8), (4,), "PQ8x4fsr", True, False, 16),
    ("TT8x8r4,SQfp16", (8, 8), (4,), "SQfp16", True, False, 16),
    ("TT8x8r4,SQ8,RFlat", (8, 8), (4,), "SQ8", True, True, 16),
    ("TT8x8r4,PQ4,Refine(Flat)", (8, 8), (4,), "PQ4", True, True, 16),
    ("IDMap,TT8x8r4,Flat", (8, 8), (4,), "Flat", False, False, 16),
    ("IDMap2,PCA8,TT8x8r4,Flat", (8, 8), (4,), "Flat", False, False, 8),
    ("OPQ4_8,TT8x8r4,PQ4,RFlat", (8, 8), (4,), "PQ4", True, True, 8),
    ("PCAR8,TT2x3x4r3,Flat", (2, 3, 4), (3, 3), "Flat", False, False, 8),
])
def test_grammar(s, shape, ranks, codec, by_residual, refine, d_out):
    index = index_factory(16, s)
    assert isinstance(index, IndexIVFTT)
    assert index.d == 16 and index.d_out == d_out and index.quantizer.d == d_out
    assert index.quantizer.shape == shape and tuple(index.quantizer.ranks) == ranks
    assert index.nlist == int(np.prod(shape)) and index.invlists.nlist == index.nlist
    assert index.codec == codec and index.by_residual == by_residual and index.refine == refine
    assert index.ntotal == 0 and not index.is_trained
    assert index.metric_type == faiss.METRIC_L2
    assert len(index.chain) == (0 if d_out == 16 else 1)


def test_factory_index_works_end_to_end():
    import tt_faiss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    index = index_factory(16, "PCA8,TT4x4r2,PQ2x4,RFlat")
    index.quantizer.cloud = tt_faiss.TTPointCloud.random(8, (4, 4), rank=2, seed=0)
    index.train(x)
    index.add(x)
    index.nprobe = 16
    index.k_factor = 50
    D, I = index.search(x[:5], 1)
    np.testing.assert_array_equal(I[:, 0], np.arange(5))  # exact re-ranking finds the vector itself
    np.testing.assert_allclose(D[:, 0], 0, atol=1e-5)


def test_non_tt_strings_go_to_faiss():
    idx = index_factory(16, "IVF16,Flat")
    assert isinstance(idx, faiss.IndexIVFFlat)
    idx = index_factory(16, "PCA8,IVF4,PQ4")
    assert isinstance(idx, faiss.IndexPreTransform)
    with pytest.raises(RuntimeError):
        index_factory(16, "Foo")  # faiss's own error, unchanged


def test_parse_tt_token():
    assert parse_tt_token("TT64x64x256r32") == ((64, 64, 256), 32)
    assert parse_tt_token("TT1024") == ((1024,), 1)
    with pytest.raises(ValueError, match="malformed"):
        parse_tt_token("TT64x")


@pytest.mark.parametrize("s,pos,msg", [
    ("TT8x8,Flat", 0, "needs a rank"),
    ("TT8xx8r4,Flat", 0, "malformed TT token"),
    ("TT8x8r,Flat", 0, "malformed TT token"),
    ("TTx8r4,Flat", 0, "malformed TT token"),
    ("TT0x8r4,Flat", 0, "mode size must be >= 1"),
    ("TT8x8r0,Flat", 0, "rank must be >= 1"),
    ("TT8x8r4", 7, "a codec must follow"),
    ("TT8x8r4,RFlat", 7, "a codec must follow"),
    ("TT8x8r4,Foo", 8, "unknown codec 'Foo'"),
    ("TT8x8r4,RFlat,Flat", 8, "RFlat must be the last token"),
    ("TT8x8r4,IVF16,Flat", 8, "exactly one coarse quantizer"),
    ("TT8x8r4,TT4r1,Flat", 8, "only one TT token"),
    ("Foo3,TT8x8r4,Flat", 0, "faiss cannot build the prefix 'Foo3'"),
    ("PCA8,IDMap,TT8x8r4,Flat", 5, "IDMap must be the first token"),
    (",TT8x8r4,Flat", 0, "empty token"),
    ("PCA8,TT8x8r4,Flat,", 18, "empty token"),
    ("TT65536x65536r4,Flat", 16, "exceed"),
    ("HNSW32,TT8x8r4,Flat", 0, "is not a vector transform prefix"),
])
def test_errors_quote_string_and_position(s, pos, msg):
    with pytest.raises(ValueError) as e:
        index_factory(16, s)
    text = str(e.value)
    assert repr(s) in text and f"at position {pos}:" in text and msg in text, text


def test_bad_arguments():
    with pytest.raises(ValueError, match="METRIC_L2"):
        index_factory(16, "TT8x8r4,Flat", faiss.METRIC_INNER_PRODUCT)
    with pytest.raises(TypeError, match="description must be a str"):
        index_factory(16, None)
    with pytest.raises(ValueError, match="d must be >= 1"):
        index_factory(0, "TT8x8r4,Flat")
    with pytest.raises(ValueError, match="PQ5"):
        index_factory(16, "TT8x8r4,PQ5")  # 16 is not a multiple of 5
