"""Regenerate the format-version-1 golden files (run only when adding a new format version:
old golden files must stay as they are so that loading them keeps being tested).

    python tests/data/make_golden.py
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

import tt_faiss  # noqa: E402
from tt_faiss.factory import index_factory  # noqa: E402
from tt_faiss.io import FORMAT_VERSION, write_index  # noqa: E402

CASES = {  # file stem -> factory string
    "flat": "TT4x4r2,Flat",
    "pq_residual": "TT4x4r2,PQ2x4",
    "sq8_rflat_pca": "PCA6,TT4x4r2,SQ8,RFlat",
}


def data():
    rng = np.random.default_rng(2024)
    return (rng.standard_normal((300, 8)).astype(np.float32),
            rng.standard_normal((10, 8)).astype(np.float32))


def build(stem, s, xb):
    index = index_factory(8, s)
    index.quantizer.cloud = tt_faiss.TTPointCloud.random(index.d_out, (4, 4), rank=2, seed=1)
    index.quantizer.beam = 16
    index.train(xb)
    ids = np.arange(len(xb), dtype=np.int64) * 3 + 1
    index.add_with_ids(xb, ids)
    index.remove_ids(ids[:20])
    index.nprobe = 3
    return index


def main():
    xb, xq = data()
    for stem, s in CASES.items():
        index = build(stem, s, xb)
        path = os.path.join(HERE, f"ivftt_v{FORMAT_VERSION}_{stem}.ttf")
        write_index(index, path)
        D, I = index.search(xq, 5)
        np.savez(os.path.join(HERE, f"ivftt_v{FORMAT_VERSION}_{stem}.expected.npz"),
                 xq=xq, D=D, I=I, factory=s)
        print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
