"""The tt-faiss command on tiny data (no torch: TT indexes use a pre-made cloud via --cloud)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tt_faiss
from tt_faiss import cli
from tt_faiss import datasets as D


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    t = tmp_path_factory.mktemp("cli")
    xb = D.deep_like(3000, d=16, seed=1)
    xq = D.deep_like(40, d=16, seed=1, stream="queries")
    D.write_vectors(t / "xb.fvecs", xb)
    D.write_vectors(t / "xb.npy", xb)
    D.write_vectors(t / "xq.fbin", xq)
    D.write_vectors(t / "gt.ivecs", D.ground_truth(xb, xq, k=10)[1])
    tt_faiss.TTPointCloud.random(16, (8, 8), 4, seed=0).save(t / "cloud.tt")
    assert cli.main(["build", "--data", str(t / "xb.fvecs"), "--factory", "TT8x8r4,Flat", "--cloud",
                     str(t / "cloud.tt"), "--out", str(t / "idx.tt"), "--quiet"]) == 0
    return t


def _run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_build_search_info_tt(files, capsys):
    idx = files / "idx4.tt"
    rc, out, _ = _run(capsys, "build", "--data", files / "xb.fvecs", "--factory", "TT8x8r4,Flat",
                      "--cloud", files / "cloud.tt", "--out", idx, "--nprobe", "4", "--quiet")
    assert rc == 0 and "built TT8x8r4,Flat on 3000 x 16" in out and idx.exists()
    # exhaustive probing of a Flat index is exact: recall 1
    rc, out, _ = _run(capsys, "search", "--index", idx, "--queries", files / "xq.fbin", "--k", "10",
                      "--nprobe", "64", "--beam", "64", "--gt", files / "gt.ivecs", "--out", files / "r.npz", "--quiet")
    assert rc == 0
    assert "40 queries, k=10" in out and "1-recall@1 1.0000" in out and "10-recall@10 1.0000" in out
    res = np.load(files / "r.npz")
    assert res["I"].shape == (40, 10) and res["D"].dtype == np.float32
    np.testing.assert_array_equal(res["I"], D.read_vectors(files / "gt.ivecs"))
    rc, out, _ = _run(capsys, "info", idx)
    info = json.loads(out)
    assert info["type"] == "IndexIVFTT" and info["ntotal"] == 3000 and info["nlist"] == 64
    assert info["tt_shape"] == [8, 8] and info["nprobe"] == 4 and info["format_version"] == 1
    cloud = tt_faiss.TTPointCloud.load(files / "cloud.tt")
    assert info["quantizer_floats"] == cloud.nparams
    assert info["bucket_stats"]["ntotal"] == 3000


def test_build_search_faiss(files, capsys):
    idx = files / "f.index"
    rc, out, _ = _run(capsys, "build", "--data", files / "xb.npy", "--factory", "IVF8,Flat", "--out", idx,
                      "--max-train", "1000", "--quiet")
    assert rc == 0 and idx.exists()
    rc, out, _ = _run(capsys, "search", "--index", idx, "--queries", files / "xq.fbin", "--nprobe", "8",
                      "--gt", files / "gt.ivecs", "--out", files / "r.ivecs", "--quiet")
    assert rc == 0 and "1-recall@1 1.0000" in out
    assert D.read_vectors(files / "r.ivecs").shape == (40, 10)
    rc, out, _ = _run(capsys, "info", idx)
    info = json.loads(out)
    assert info["type"] == "IndexIVFFlat" and info["nlist"] == 8 and info["bucket_stats"]["ntotal"] == 3000


@pytest.mark.parametrize("argv,msg", [
    (["search", "--index", "{t}/missing.tt", "--queries", "{t}/xq.fbin"], "index file not found"),
    (["search", "--index", "{t}/xq.fbin", "--queries", "{t}/xq.fbin"], "cannot read index"),
    (["build", "--data", "{t}/nope.fvecs", "--factory", "IVF8,Flat", "--out", "{t}/o"], "data file not found"),
    (["build", "--data", "{t}/xb.fvecs", "--factory", "TT8x8x,Flat", "--out", "{t}/o"], "TT8x8x"),
    (["build", "--data", "{t}/xb.fvecs", "--factory", "IVF8,Flat", "--cloud", "{t}/cloud.tt", "--out", "{t}/o"],
     "--cloud needs a TT"),
    (["build", "--data", "{t}/xb.fvecs", "--factory", "TT4x4r2,Flat", "--cloud", "{t}/cloud.tt", "--out", "{t}/o"],
     "has shape (8, 8)"),
    (["build", "--data", "{t}/xb.fvecs", "--factory", "TT8x8r4,Flat", "--fit", "[1]", "--out", "{t}/o"],
     "--fit must be a JSON object"),
    (["search", "--index", "{t}/idx.tt", "--queries", "{t}/xq.fbin", "--nprobe", "1000"], "--nprobe must be in 1..nlist=64"),
    (["search", "--index", "{t}/idx.tt", "--queries", "{t}/xq.fbin", "--k", "0"], "--k must be >= 1"),
    (["search", "--index", "{t}/idx.tt", "--queries", "{t}/gt.ivecs"], "queries have d=10"),
    (["search", "--index", "{t}/idx.tt", "--queries", "{t}/xq.fbin", "--gt", "{t}/none.ivecs"], "ground-truth file not found"),
])
def test_errors(files, capsys, argv, msg):
    rc, out, err = _run(capsys, *[a.format(t=files) for a in argv])
    assert rc == 2
    assert "tt-faiss: error:" in err and msg in err, err


def test_truncated_data_file_error(files, capsys):
    full = (files / "xb.fvecs").read_bytes()
    (files / "cut.fvecs").write_bytes(full[:-3])
    rc, _, err = _run(capsys, "build", "--data", files / "cut.fvecs", "--factory", "IVF8,Flat", "--out", files / "o")
    assert rc == 2 and "truncated" in err


def test_console_entry_point_runs_without_torch(files):
    """python -m tt_faiss.cli behaves like the console script and never imports torch."""
    code = ("import sys; from tt_faiss import cli; rc = cli.main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", code, "info", str(files / "idx.tt")], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["type"] == "IndexIVFTT"
    p = subprocess.run([sys.executable, "-m", "tt_faiss.cli"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "demo" in p.stdout and "search" in p.stdout
    p = subprocess.run([sys.executable, "-m", "tt_faiss.cli", "search", "--index", "x"], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 2 and "--queries" in p.stderr  # argparse's own usage error
