#!/usr/bin/env bash
# faiss / hnswlib baselines on GloVe 6B 50-d (390k database, 10k queries, seed 0), one process at a time.
# Recall@R to 2^17 where the probe order is cheap, to 2^14 where nprobe would reach 10^4-10^5 lists.
# QPS at 1 search thread; training at TRAIN_THREADS (default 1). Results: bench/results/glove/*.json
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${TRAIN_THREADS:-1}
B="python3 bench/bench_ivf.py --dataset glove --threads 1 --train-threads ${TRAIN_THREADS:-1} --min-time ${MIN_TIME:-0.3}"
# ~30k quantizer floats (TT16x64x64r16 has 30,208)
$B --key "IVF604,Flat"                 --label "IVF604 k-means (30.2k floats)"
$B --key "IMI2x8,Flat"                 --label "IMI2x8 (12.8k floats)"
$B --key "IMI2x9,Flat"                 --label "IMI2x9 (25.6k floats)"
$B --key "IVF65536(RCQ2x8),Flat"       --label "IVF65536(RCQ2x8) (25.6k floats)" --max-r-exp 14
$B --key "IVF604_HNSW32,Flat"          --label "IVF604_HNSW32 (30.2k floats)"
# ~100k quantizer floats (TT256x256r8 has 104,448)
$B --key "IVF2089,Flat"                --label "IVF2089 k-means (104k floats)"
$B --key "IMI2x10,Flat"                --label "IMI2x10 (51.2k floats)" --max-r-exp 14
# larger quantizer and graph indexes, end to end
$B --key "IVF16384_HNSW32,Flat"        --label "IVF16384_HNSW32 (819k floats)" --max-r-exp 14
$B --key "HNSW32,Flat"                 --label "HNSW32,Flat (faiss)"
$B --key "hnswlib,M=32,efC=200"        --label "hnswlib M=32"
