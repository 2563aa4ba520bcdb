"""bench/summarize.py on tiny hand-made results, and one bench_ivf.py run on tiny data feeding it."""
import importlib.util
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "bench", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


summarize = _load("summarize")


def _run(key, label, floats, nlist, empty_pct, ssq, rec, sweep, pca=None):
    r = dict(key=key, label=label, kind="faiss", dataset="toy", d=4, nb=1000, nq=10, threads=1,
             train_s=1.25, add_s=0.5, quantizer_floats=floats, quantizer_bytes=floats * 4, nlist=nlist,
             index_bytes=3 * 2**20, sweep=sweep, env={"faiss": "x", "cpus": 2})
    if nlist:
        r["bucket_stats"] = dict(empty_pct=empty_pct, sum_sq_over_n=ssq)
        r["recall_at_R"] = {str(2**e): v for e, v in enumerate(rec)}
    if pca:
        r["pca_sample"] = pca
    qa = {}
    for m, t in (("recall1_at1", 0.9), ("recall1_at1", 0.95), ("recall10_at10", 0.9)):
        ok = [s["qps"] for s in sweep if s[m] >= t]
        qa[f"{m}={t}"] = max(ok) if ok else None
    r["qps_at"] = qa
    # CPU-time QPS (what the table shows by default) is twice the wall-clock QPS here
    for sw_row in sweep:
        sw_row["qps_cpu"] = 2 * sw_row["qps"]
    r["qps_cpu_at"] = {k: (None if v is None else 2 * v) for k, v in qa.items()}
    return r


def _write(tmp_path):
    sw = lambda a, b: [dict(params={"nprobe": 1}, qps=a, recall1_at1=0.5, recall10_at10=0.4),  # noqa: E731
                       dict(params={"nprobe": 4}, qps=b, recall1_at1=0.96, recall10_at10=0.93)]
    rec = [0.01 * 2**e for e in range(7)]
    np.savez(tmp_path / "tt.pca.npz", data=np.random.default_rng(0).standard_normal((50, 2)),
             tt=np.random.default_rng(1).standard_normal((30, 2)))
    runs = [
        _run("IMI2x4,Flat", "IMI", 64, 256, 30.0, 50.0, rec, sw(9000, 4000)),
        _run("TT16x16r4,Flat", "TT r4", 200, 256, 10.0, 20.0, [min(1, v * 1.5) for v in rec], sw(8000, 5000),
             pca="tt.pca.npz"),
        _run("TT16x16r8,Flat", "TT r8", 700, 256, 8.0, 15.0, [min(1, v * 1.6) for v in rec], sw(7000, 4500)),
        _run("HNSW32,Flat", "HNSW", 0, None, None, None, None,
             [dict(params={"efSearch": 16}, qps=20000, recall1_at1=0.8, recall10_at10=0.85)]),
    ]
    for i, r in enumerate(runs):
        (tmp_path / f"r{i}.json").write_text(json.dumps(r))
    (tmp_path / "other.json").write_text(json.dumps({"not": "a bench result"}))
    return runs


def test_table_and_plots(tmp_path):
    _write(tmp_path)
    out = tmp_path / "out"
    table = summarize.main([str(tmp_path), "--out", str(out), "--baseline", "IMI2x4,Flat"])
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 4  # header, rule, four runs (the foreign JSON is skipped)
    # ordered by quantizer floats, graph indexes (no buckets) last
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["IMI", "TT r4", "TT r8", "HNSW"]
    imi = [c.strip() for c in lines[2].split("|")[1:-1]]
    head = [c.strip() for c in lines[0].split("|")[1:-1]]
    row = dict(zip(head, imi))
    assert row["quantizer floats"] == "64" and row["buckets"] == "256"
    assert row["empty %"] == "30.0" and row["ΣN²/N"] == "50.0"
    assert row["R@16"] == "0.160" and row["R@1024"] == ""  # R beyond the measured curve is blank
    assert row["index MB"] == "3.0" and row["train s"] == "1.2"
    assert row["QPS R1@1=.9"] == "8,000" and row["QPS 10R@10=.9"] == "8,000"
    hnsw = dict(zip(head, [c.strip() for c in lines[5].split("|")[1:-1]]))
    assert hnsw["QPS R1@1=.9"] == "not reached" and hnsw["buckets"] == "–"
    for png in ("recall_at_R.png", "recall_at_R_diff.png", "buckets_vs_rank.png", "pca.png", "recall_vs_qps.png"):
        assert (out / png).stat().st_size > 1000, png
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "table.md").read_text().startswith(lines[0])


def test_readme_section(tmp_path):
    _write(tmp_path)
    readme = tmp_path / "README_table.md"
    summarize.main([str(tmp_path), "--out", str(tmp_path / "plots"), "--readme", str(readme), "--title", "Toy"])
    assert (tmp_path / "plots" / "recall_vs_qps.png").exists()
    text = readme.read_text()
    assert text.startswith("### Toy\n") and "| TT r4 |" in text
    assert "![recall_vs_qps](plots/recall_vs_qps.png)" in text  # relative to the section file
    assert text.count("python bench/bench_ivf.py") == 4
    summarize.main([str(tmp_path), "--out", str(tmp_path / "plots2"), "--readme", str(readme), "--append",
                    "--title", "Again", "--no-plots"])
    assert not (tmp_path / "plots2" / "recall_vs_qps.png").exists()
    assert readme.read_text().count("### ") == 2


def test_no_tt_runs_skips_tt_plots(tmp_path):
    _write(tmp_path)
    for f in ("r1.json", "r2.json"):
        os.unlink(tmp_path / f)
    out = tmp_path / "o"
    table = summarize.main([str(tmp_path / "r0.json"), str(tmp_path / "r3.json"), "--out", str(out), "--qps", "wall"])
    assert "| 4,000 | 4,000 | 4,000 |" in table  # wall-clock QPS on request
    assert (out / "recall_at_R.png").exists() and (out / "recall_vs_qps.png").exists()
    assert not (out / "buckets_vs_rank.png").exists() and not (out / "pca.png").exists()


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        summarize.main([str(tmp_path / "nothere.json")])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        summarize.main([str(tmp_path / "bad.json")])
    _write(tmp_path)
    os.unlink(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="baseline 'nope'"):
        summarize.main([str(tmp_path), "--out", str(tmp_path / "o"), "--baseline", "nope"])


def test_bench_ivf_tiny_end_to_end(tmp_path):
    bench = _load("bench_ivf")
    out = tmp_path / "res" / "ivf.json"
    res = bench.run(["--dataset", "tiny", "--key", "IVF16,Flat", "--min-time", "0", "--nprobe", "1,4,16",
                     "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--max-r-exp", "11", "--quiet"])
    saved = json.loads(out.read_text())
    assert saved["nlist"] == 16 and saved["quantizer_floats"] == 16 * 16 and saved["nb"] == 2000
    assert saved["bucket_stats"]["ntotal"] == 2000
    assert [s["params"]["nprobe"] for s in saved["sweep"]] == [1, 4, 16]
    # all lists probed with exact distances: the true NN is always found
    assert saved["sweep"][-1]["recall1_at1"] == 1.0
    assert saved["recall_at_R"]["2048"] == 1.0
    assert res["qps_at"]["recall1_at1=0.95"] is not None
    # the second run loads the cached filled index and reports the original times
    res2 = bench.run(["--dataset", "tiny", "--key", "IVF16,Flat", "--min-time", "0", "--nprobe", "16",
                      "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--max-r-exp", "0", "--quiet"])
    assert res2["train_s"] == res["train_s"] and res2["add_s"] == res["add_s"]
    summarize.main([str(out.parent), "--out", str(tmp_path / "sum"), "--no-plots"])
    assert (tmp_path / "sum" / "table.md").exists()
