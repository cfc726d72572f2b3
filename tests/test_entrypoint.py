"""The original entry point `hpc/run_math_generation.sh MODEL MODE [DOMAIN] [COUNT]`, kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "hpc" / "run_math_generation.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("args", [(), ("9", "2"), ("1", "3"), ("1", "1"), ("1", "1", "topology")])
def test_bad_choice_prints_menu_and_exits_2(args):
    proc = _run(*args)
    assert proc.returncode == 2
    assert "MODEL_CHOICE" in proc.stderr and "DeepSeek R1 Distill Qwen 32B" in proc.stderr


def test_model_1_all_domains_is_the_default_44k_run(tiny_models, tmp_path):
    proc = _run("1", "2", "--dry-run", "--json", "--executor", "local", "--output-root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["total_problems"] == 44000 and len(plan["domains"]) == 6
    assert plan["model"] in ("1", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B")
    assert not any(tmp_path.iterdir())


def test_mode_1_one_domain_with_count(tiny_models, tmp_path):
    proc = _run("1", "1", "geometry", "250", "--dry-run", "--json", "--executor", "local")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["domains"] == ["geometry"] and plan["total_problems"] == 250
