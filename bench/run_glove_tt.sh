#!/usr/bin/env bash
# TT rows on GloVe 6B 50-d (same split, ground truth and sweep as run_glove_baselines.sh).
# Default tt_faiss.fit recipe; Recall@R up to 2^14 (the TT probe order for 2^17 candidates
# needs ~30k probes per query, a beam search too slow to be worth it on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${TRAIN_THREADS:-1}
B="python3 bench/bench_ivf.py --dataset glove --threads 1 --train-threads ${TRAIN_THREADS:-1} --min-time ${MIN_TIME:-0.3} --max-r-exp 14"
$B --key "TT16x64x64r16,Flat"  --label "TT16x64x64 r16 (30.2k floats)"
$B --key "TT16x64x64r8,Flat"   --label "TT16x64x64 r8 (11.0k floats)"
$B --key "TT256x256r8,Flat"    --label "TT256x256 r8 (104k floats)"
$B --key "TT16x64x64r32,Flat"  --label "TT16x64x64 r32 (93.2k floats)"
