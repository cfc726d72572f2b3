#!/usr/bin/env bash
# One command for the tests: set up the virtualenv, start the development SLURM cluster
# (installs its Debian packages when missing), lint (ruff: pyflakes' checks and the format), run the whole suite
# under branch coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hpc/setup.sh
bash hpc/devcluster/start.sh
"${MAGPIE_VENV:-.venv}/bin/ruff" check magpie_hpc tests bench hpc
"${MAGPIE_VENV:-.venv}/bin/ruff" format --check magpie_hpc tests bench hpc
exec bash hpc/covered_pytest.sh "$@"
