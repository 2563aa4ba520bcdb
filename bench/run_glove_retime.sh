#!/usr/bin/env bash
# Re-time every GloVe index side by side in one run (cached indexes, bucket statistics and
# Recall@R reused from the JSON), then write the summary table and plots.
# QPS is reported from process CPU time at 1 search thread (see bench_ivf.timed_search).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
B="python3 bench/bench_ivf.py --dataset glove --threads 1 --min-time ${MIN_TIME:-0.3} --reuse-stats --stop-at ${STOP_AT:-0.99}"
# ALL=1 re-times every run; by default only runs recorded without CPU-time QPS.
for f in bench/results/glove/*.json; do
  if [ "${ALL:-0}" != 1 ] && python3 -c "import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get('qps_cpu_at') else 1)" "$f"; then
    continue
  fi
  key=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['key'])" "$f")
  label=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['label'])" "$f")
  $B --key "$key" --label "$label" --out "$f"
done
python3 bench/summarize.py bench/results/glove --baseline "IMI2x8,Flat" \
  --readme bench/results/README_table.md --title "GloVe 6B 50-d: 390k database, 10k queries"
