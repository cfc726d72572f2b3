#!/usr/bin/env bash
# pytest under branch coverage, with every Python process it starts measured: `python -m
# magpie_hpc` subprocesses, vLLM's and the SLURM tasks (sbatch exports the environment by default,
# so COVERAGE_PROCESS_START and the absolute COVERAGE_FILE reach them; coverage's .pth hook in the
# virtualenv starts measurement there). Then combine, report, and enforce the floor of pyproject.toml
# on the total and on each package, but only for a whole-suite run (no test paths given): a subset
# of the tests is not expected to reach it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${MAGPIE_VENV:-.venv}/bin/python
export COVERAGE_PROCESS_START="$PWD/pyproject.toml"
export COVERAGE_FILE="$PWD/.coverage"
rm -f .coverage .coverage.* coverage.json
"$PY" -m pytest "$@"
status=$?
whole=1
for arg in "$@"; do  # a test path (tests/x.py, tests/x.py::test_y) means a subset; option values do not
  case "$arg" in -*) ;; *) [ -e "${arg%%::*}" ] && whole=0 ;; esac
done
unset COVERAGE_PROCESS_START  # the report commands themselves are not measured
"$PY" -m coverage combine -q || exit 1
"$PY" -m coverage json -q --fail-under=0 -o coverage.json || exit 1  # the floor is checked below
if [ "$whole" = 1 ]; then
  "$PY" -m coverage report || status=${status/#0/1}
  "$PY" hpc/coverage_floor.py coverage.json || status=${status/#0/1}
else
  "$PY" -m coverage report --fail-under=0 | grep "^TOTAL" || true
fi
exit "$status"
