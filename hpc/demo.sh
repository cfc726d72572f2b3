#!/usr/bin/env bash
# One command, fresh machine, no cluster, no GPU: set up, write the tiny models, and run the whole
# pipeline (all six domains, real vLLM CPU build, local executor) into data/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hpc/setup.sh
.venv/bin/python -m magpie_hpc tiny-models .models
exec .venv/bin/python -m magpie_hpc launch --domains all --executor local \
  --config hpc/demo.toml --model .models/deepseek-r1-tiny --reward-model .models/reward-tiny \
  --output-root "${MAGPIE_DEMO_OUTPUT:-data}" "$@"
