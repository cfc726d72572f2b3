#!/usr/bin/env bash
# The original entry point, kept: ./run_math_generation.sh MODEL_CHOICE MODE_CHOICE [DOMAIN] [COUNT]
#   MODEL_CHOICE  1-5, the model menu (1 = DeepSeek R1 Distill Qwen 32B, recommended)
#   MODE_CHOICE   1 = one domain (DOMAIN, optional COUNT), 2 = all domains (44,000 problems)
# Extra arguments after these go to `python -m magpie_hpc launch` (e.g. --profile site.toml).
set -euo pipefail
PYTHON=${PYTHON:-python3}
DOMAINS="algebra calculus geometry statistics number_theory discrete"

menu() {
  cat >&2 <<'MENU'
usage: run_math_generation.sh MODEL_CHOICE MODE_CHOICE [DOMAIN_CHOICE] [COUNT]
  MODEL_CHOICE: 1 DeepSeek R1 Distill Qwen 32B (Recommended - Balanced performance)
                2 DeepSeek R1 Distill Llama 70B   3 Qwen2.5 Math 72B Instruct
                4 Qwen2.5 32B Instruct            5 Llama 3.3 70B Instruct
  MODE_CHOICE:  1 one domain (DOMAIN_CHOICE required, COUNT optional)
                2 all domains (algebra 10K, calculus 10K, geometry 6K, statistics 6K, number_theory 4K, discrete 8K)
  DOMAIN_CHOICE: algebra calculus geometry statistics number_theory discrete
MENU
  exit 2
}

[ $# -ge 2 ] || menu
model=$1 mode=$2
shift 2
case "$model" in 1|2|3|4|5) ;; *) echo "error: unknown MODEL_CHOICE '$model'" >&2; menu ;; esac
case "$mode" in
  2) exec "$PYTHON" -m magpie_hpc launch --model "$model" --domains all "$@" ;;
  1)
    [ $# -ge 1 ] || { echo "error: mode 1 needs a DOMAIN_CHOICE" >&2; menu; }
    domain=$1; shift
    case " $DOMAINS " in *" $domain "*) ;; *) echo "error: unknown DOMAIN_CHOICE '$domain'" >&2; menu ;; esac
    count=()
    if [ $# -ge 1 ] && [[ "$1" =~ ^[0-9]+$ ]]; then count=(--count "$1"); shift; fi
    exec "$PYTHON" -m magpie_hpc launch --model "$model" --domains "$domain" "${count[@]}" "$@" ;;
  *) echo "error: unknown MODE_CHOICE '$mode'" >&2; menu ;;
esac
