#!/usr/bin/env bash
# Mutation testing (cosmic-ray) of the modules whose bugs lose or corrupt data: the shard store,
# the shard lock, select, instruction cleaning, DPO pairs, the merge's record writing and the
# shard plan. Each module's mutants run only the fast tests that cover it. Outside CI's budget:
# run it by hand. It works on a copy of the repository (cosmic-ray edits files in place), so the
# working tree is never touched.
#
#   bash bench/mutation.sh                  # every module, a fixed sample of mutants each
#   bash bench/mutation.sh store dpo        # some modules
#   MUTANTS=all bash bench/mutation.sh      # every mutant (hours on 2 cores)
#   MUTANTS=40 bash bench/mutation.sh       # a sample of 40 per module
#
# Writes mutation/<module>.sqlite (the cosmic-ray session: `cr-report`, `cr-html` read it),
# mutation/<module>-survivors.txt (each surviving mutant's diff) and mutation/summary.md (the
# table MUTATION.md shows). The sample is seeded (MUTATION_SEED, default 0): reruns draw the same.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-$REPO/.venv/bin/python}
BIN=$(dirname "$PY")
OUT=${OUT:-$REPO/mutation}
SEED=${MUTATION_SEED:-0}
mkdir -p "$OUT"

# name | module | definitions to mutate (empty: all) | default sample | tests
MODULES=(
  "store|magpie_hpc/store/shard.py||20|tests/test_store.py"
  "shardlock|magpie_hpc/shardlock.py||15|tests/test_shardlock.py"
  "cleaning|magpie_hpc/quality/cleaning.py||20|tests/quality/test_cleaning.py; tests/test_properties.py -k cleaning_or_dedup"
  "dpo|magpie_hpc/quality/dpo.py||20|tests/quality/test_dpo.py; tests/test_properties.py -k dpo"
  "plan|magpie_hpc/plan.py||20|tests/test_plan.py; tests/test_instruction_chunks.py -k need_slightly_or_cap_and; tests/test_properties.py -k shard_ranges_or_chunk"
  "select|magpie_hpc/stages/select.py||5|tests/test_local_pipeline.py -k counts_flag; tests/test_fault_tolerance.py -k select_short"
  "merge_records|magpie_hpc/merge/records.py|file_names,final_answers,_response_configs|5|tests/test_local_pipeline.py -k three_responses_or_merge_refuses"
  "merge_streams|magpie_hpc/merge/domain.py|stage_rows,_with_instructions,write_instructions,write_sft,write_preference|5|tests/test_local_pipeline.py -k three_responses_or_merge_refuses"
  "merge_missing|magpie_hpc/merge/run.py|missing_shards|5|tests/test_local_pipeline.py -k three_responses_or_merge_refuses"
)

work=$(mktemp -d /tmp/magpie-mutation.XXXXXX)
trap 'rm -rf "$work"' EXIT
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$work"

# "a.py b.py; c.py -k x_or_y": one pytest per ';'-separated group (its -k with "_or_" read as
# " or "); every group must pass.
test_command() {
  local cmd="" group
  IFS=';' read -ra groups <<<"$1"
  for group in "${groups[@]}"; do
    group=$(echo "$group" | sed -E "s/-k ([^ ]+)/-k '\\1'/; s/_or_/ or /g")
    cmd+="${cmd:+ && }$PY -m pytest -x -q -p no:cacheprovider --hypothesis-seed=0 --basetemp=$work/pt $group"
  done
  echo "$cmd"
}

selected=("$@")
summary=()
for entry in "${MODULES[@]}"; do
  IFS='|' read -r name module defs default spec <<<"$entry"
  if [ ${#selected[@]} -gt 0 ] && [[ " ${selected[*]} " != *" $name "* ]]; then continue; fi
  n=${MUTANTS:-$default}
  cmd=$(test_command "$spec")
  echo "== $name ($module): $cmd"
  cd "$work"
  start=$(date +%s)
  printf 'cd %q && export PYTHONPATH=%q PYTHONDONTWRITEBYTECODE=1\n%s\n' "$work" "$work" "$cmd" >"$work/$name-test.sh"
  if ! bash "$work/$name-test.sh" >"$OUT/$name-baseline.log" 2>&1; then
    echo "mutation: $name's tests fail unmutated; see $OUT/$name-baseline.log" >&2; exit 1
  fi
  baseline=$(( $(date +%s) - start ))
  timeout=$(( baseline * 3 + 30 ))
  cat >"$work/$name.toml" <<TOML
[cosmic-ray]
module-path = "$module"
timeout = $timeout.0
excluded-modules = []
test-command = "bash $work/$name-test.sh"

[cosmic-ray.distributor]
name = "local"
TOML
  rm -f "$OUT/$name.sqlite"
  "$BIN/cosmic-ray" init "$work/$name.toml" "$OUT/$name.sqlite"
  "$PY" "$REPO/bench/mutation_sample.py" "$OUT/$name.sqlite" "$n" "$defs" "$SEED"
  "$BIN/cosmic-ray" exec "$work/$name.toml" "$OUT/$name.sqlite"
  git -C "$REPO" diff --quiet -- "$module" || { echo "mutation: $module changed in the repo" >&2; exit 1; }
  "$PY" "$REPO/bench/mutation_sample.py" --report "$OUT/$name.sqlite" "$name" "$module" \
    "$baseline" >>"$OUT/rows.md" 2>"$OUT/$name-survivors.txt"
  cd "$REPO"
done
{
  echo "| module | file | mutants in scope | in annotations (equivalent, not run) | run (sample) | killed | survived | timeout | incompetent | score | tests s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  cat "$OUT/rows.md"
} >"$OUT/summary.md"
rm -f "$OUT/rows.md"
cat "$OUT/summary.md"
