#!/usr/bin/env bash
# Run every benchmark in turn; each prints its Markdown rows and writes bench/results/NAME.json.
#   bash bench/run_all.sh            full sizes (merge_scale alone takes ~25 min: 44K and 176K problems)
#   bash bench/run_all.sh --quick    smaller sizes, under ~10 minutes on 2 cores
# Python: $PYTHON, else .venv/bin/python, else python3. scheduling.py needs the development SLURM
# cluster (bash hpc/devcluster/start.sh, root); it is skipped when sbatch is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
lscpu | grep 'Model name' || true
echo "cores: $(nproc)"
status=0
for bench in shard_sizing reward_scoring checkpoint_overhead generation_efficiency loop_stop merge_scale scheduling; do
  if [ "$bench" = scheduling ] && ! command -v sbatch >/dev/null; then
    echo "== $bench: skipped (no sbatch; start hpc/devcluster first)"
    continue
  fi
  echo "== $bench"
  start=$(date +%s)
  # vLLM's own logging goes to stderr; keep it out of the tables unless the benchmark fails.
  if ! "$PY" "bench/$bench.py" "$@" 2> "bench/results/$bench.stderr"; then
    echo "!! $bench failed; last lines of bench/results/$bench.stderr:"
    tail -20 "bench/results/$bench.stderr"
    status=1
  else
    rm -f "bench/results/$bench.stderr"
  fi
  echo "-- $bench: $(( $(date +%s) - start ))s"
done
exit $status
