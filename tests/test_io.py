"""write/read, serialize/deserialize and pickling of IndexIVFTT; golden files of format v1;
truncated, corrupted and wrong-version files raise ValueError."""
import glob
import os
import pickle
import struct
import zlib

import faiss
import numpy as np
import pytest

import tt_faiss
from tt_faiss.factory import index_factory
from tt_faiss.io import (FORMAT_VERSION, MAGIC, deserialize_index, read_header, read_index,
                         serialize_index, write_index)
from tt_faiss.ivf import IndexIVFTT

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def xs():
    rng = np.random.default_rng(5)
    return rng.standard_normal((1500, 16)).astype(np.float32), rng.standard_normal((20, 16)).astype(np.float32)


def build(s, xb, trained=True, add=True):
    index = index_factory(16, s)
    index.quantizer.cloud = tt_faiss.TTPointCloud.random(index.d_out, index.quantizer.shape,
                                                         rank=max(index.quantizer.ranks or (1,)), seed=3)
    index.quantizer.beam = 48
    if trained:
        index.train(xb)
    if add:
        index.add_with_ids(xb, np.arange(len(xb), dtype=np.int64) * 7)
        index.remove_ids(np.arange(0, 700, 7, dtype=np.int64))
    index.nprobe = 5
    return index


FACTORIES = ["TT6x8r3,Flat", "TT6x8r3,PQ4x4", "TT6x8r3,PQ4x4,RFlat", "TT48,SQ8", "TT6x8r3,SQfp16",
             "PCA8,TT6x8r3,PQ4x4fs", "OPQ4_8,TT6x8r3,PQ2x4", "TT2x4x6r2,PQ8x4fsr"]


@pytest.mark.parametrize("s", FACTORIES)
def test_roundtrips_are_bit_identical(s, xs, tmp_path):
    xb, xq = xs
    index = build(s, xb)
    D0, I0 = index.search(xq, 10)
    path = tmp_path / "a.ttf"
    write_index(index, path)
    buf = serialize_index(index)
    assert buf.dtype == np.uint8 and bytes(buf[:8]) == MAGIC
    assert path.read_bytes() == buf.tobytes()
    for other in (read_index(path), deserialize_index(buf), deserialize_index(buf.tobytes()),
                  pickle.loads(pickle.dumps(index))):
        assert isinstance(other, IndexIVFTT)
        assert (other.ntotal, other.nprobe, other.quantizer.beam, other.codec, other.by_residual,
                other.refine, other.d) == (index.ntotal, 5, 48, index.codec, index.by_residual,
                                           index.refine, 16)
        D1, I1 = other.search(xq, 10)
        np.testing.assert_array_equal(I1, I0)
        np.testing.assert_array_equal(D1, D0)
        # still a working index: adds go on with the next ids
        other.add(xb[:3])
        assert other.ntotal == index.ntotal + 3
    # a reloaded index re-serializes to the same bytes except the version stamp block
    assert read_header(serialize_index(read_index(path)))["sections"] == read_header(buf)["sections"]


def test_untrained_roundtrip(xs):
    xb, xq = xs
    index = build("OPQ4_8,TT6x8r3,PQ2x4", xb, trained=False, add=False)
    other = deserialize_index(serialize_index(index))
    assert not other.is_trained and other.quantizer.is_trained and other.ntotal == 0
    other.train(xb)  # the untrained OPQ is rebuilt from the factory prefix and trains
    other.add(xb)
    assert other.is_trained and other.ntotal == len(xb)
    # nothing trained at all: the quantizer comes back untrained with its shape and ranks
    bare = deserialize_index(serialize_index(index_factory(16, "TT6x8r3,Flat")))
    assert not bare.quantizer.is_trained and bare.quantizer.shape == (6, 8) and bare.quantizer.ranks == (3,)
    custom = IndexIVFTT(tt_faiss.TTQuantizer(8, (4, 4), 2), 16, pretransform=faiss.PCAMatrix(16, 8))
    with pytest.raises(ValueError, match="untrained pretransform"):
        serialize_index(custom)


def test_atomic_write(xs, tmp_path):
    xb, xq = xs
    index = build("TT6x8r3,Flat", xb)
    path = tmp_path / "idx.ttf"
    write_index(index, str(path))
    before = path.read_bytes()
    bad = IndexIVFTT(tt_faiss.TTQuantizer(8, (4, 4), 2), 16, pretransform=faiss.PCAMatrix(16, 8))
    with pytest.raises(ValueError):
        write_index(bad, path)  # fails while serializing: the old file is untouched
    assert path.read_bytes() == before
    index.add(xb[:5])
    write_index(index, path)  # overwrite
    assert read_index(path).ntotal == index.ntotal
    assert sorted(os.listdir(tmp_path)) == ["idx.ttf"]  # no temp files left behind


def test_truncated_files_raise(xs, tmp_path):
    xb, xq = xs
    buf = serialize_index(build("TT6x8r3,PQ4x4,RFlat", xb)).tobytes()
    for i in range(10):
        cut = buf[: len(buf) * i // 10]
        with pytest.raises(ValueError, match="truncated|too short|corrupt"):
            deserialize_index(cut)
        p = tmp_path / f"t{i}.ttf"
        p.write_bytes(cut)
        with pytest.raises(ValueError):
            read_index(p)
    with pytest.raises(ValueError):
        deserialize_index(buf[:-1])


def test_flipped_bytes_raise(xs):
    xb, xq = xs
    buf = serialize_index(build("TT6x8r3,SQ8", xb)).tobytes()
    rng = np.random.default_rng(0)
    positions = sorted(set([0, 8, 12, 16, 40, len(buf) - 1, len(buf) - 5])
                       | set(rng.integers(0, len(buf), 40).tolist()))
    for pos in positions:
        bad = bytearray(buf)
        bad[pos] ^= 0xFF
        with pytest.raises(ValueError):
            deserialize_index(bytes(bad))


def test_wrong_version_and_magic(xs):
    xb, xq = xs
    buf = bytearray(serialize_index(build("TT6x8r3,Flat", xb)).tobytes())
    future = bytearray(buf)
    struct.pack_into("<I", future, 8, FORMAT_VERSION + 1)
    future[-4:] = struct.pack("<I", zlib.crc32(bytes(future[:-4])) & 0xFFFFFFFF)
    with pytest.raises(ValueError, match=f"unsupported tt_faiss index format version {FORMAT_VERSION + 1}"):
        deserialize_index(bytes(future))
    with pytest.raises(ValueError, match="bad magic"):
        deserialize_index(b"XXXXXXXX" + bytes(buf[8:]))
    with pytest.raises(ValueError, match="too short"):
        deserialize_index(b"")
    with pytest.raises(TypeError):
        deserialize_index(np.zeros(10, dtype=np.float32))
    # header CRC is right but the sections do not add up
    body = bytes(buf[:-4]) + b"junk"
    fake = body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    with pytest.raises(ValueError, match="sections hold"):
        deserialize_index(fake)


def test_plain_faiss_passthrough(xs, tmp_path):
    xb, xq = xs
    f = faiss.index_factory(16, "IVF8,Flat")
    f.train(xb)
    f.add(xb)
    write_index(f, tmp_path / "f.index")
    g = read_index(tmp_path / "f.index")
    assert isinstance(g, faiss.IndexIVFFlat) and g.ntotal == len(xb)
    np.testing.assert_array_equal(g.search(xq, 3)[1], f.search(xq, 3)[1])
    assert isinstance(deserialize_index(serialize_index(f)), faiss.IndexIVFFlat)


GOLDEN = sorted(glob.glob(os.path.join(DATA, "ivftt_v*_*.ttf")))


def test_golden_files_exist():
    assert any(os.path.basename(p).startswith("ivftt_v1_") for p in GOLDEN)


@pytest.mark.parametrize("path", GOLDEN, ids=[os.path.basename(p) for p in GOLDEN])
def test_golden_files_load(path):
    expected = np.load(path.replace(".ttf", ".expected.npz"))
    with open(path, "rb") as f:
        header = read_header(f.read())
    version = int(os.path.basename(path).split("_")[1][1:])
    assert header["format"] == "tt_faiss.IndexIVFTT"
    index = read_index(path)
    assert index.ntotal == 280 and index.nprobe == 3 and index.quantizer.beam == 16
    D, I = index.search(expected["xq"], 5)
    np.testing.assert_array_equal(I, expected["I"])
    np.testing.assert_allclose(D, expected["D"], rtol=1e-6, atol=1e-6)
    assert version >= 1
