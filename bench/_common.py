"""Shared helpers of the benchmark scripts: machine description, scratch folders, tiny models,
run directories built through the package's own launch code, and result files.

Every script runs as `python bench/NAME.py [--quick]`, prints Markdown table rows and writes
`bench/results/NAME.json`. Scratch data (tiny models, run directories) goes under
$MAGPIE_BENCH_DIR (default: <tmp>/magpie-bench) and is deleted by the script that made it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))  # the package, when not installed
sys.path.insert(0, str(ROOT / "tests"))  # helpers.small_config: the tests' TOML writer

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def scratch(name: str) -> Path:
    base = Path(os.environ.get("MAGPIE_BENCH_DIR", Path(tempfile.gettempdir()) / "magpie-bench"))
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def tiny_models():
    """The package's tiny models (written once, reused by every script)."""
    from magpie_hpc.fixtures import write_tiny_models

    return write_tiny_models(scratch("models"))


def machine() -> dict:
    """What the figures were measured on: CPU model, cores, memory, load at the start."""
    cpu = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # noqa: BLE001 - best effort
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": mem_gib,
        "gpu": gpu,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def median(values):
    return statistics.median(values) if values else float("nan")


def write_results(name: str, payload: dict) -> Path:
    """bench/results/NAME.json (full run) or NAME.quick.json (--quick), so that a quick rerun never
    overwrites the figures BENCHMARKS.md quotes."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (f"{name}.quick.json" if payload.get("quick") else f"{name}.json")
    header = {
        "benchmark": name,
        "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "argv": sys.argv[1:],
    }
    clash = header.keys() & payload.keys()
    assert not clash, f"results keys {sorted(clash)} would overwrite the header"
    payload = {**header, **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nresults: {path.relative_to(ROOT)}")
    return path


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def make_run(
    root: Path,
    *,
    engine: dict,
    count: int | None = None,
    counts: dict | None = None,
    domains: str = "algebra",
    max_tokens=None,
    **sections,
) -> Path:
    """A run directory created by the package's own launch code (validate + create_run), nothing run."""
    from helpers import small_config
    from magpie_hpc.config import load_config
    from magpie_hpc.launch import create_run, validate

    models = tiny_models()
    sections["engine"] = engine
    sections.setdefault("fault_tolerance", {"start_jitter_seconds": 0.0})
    cfg_path = small_config(root / "bench.toml", max_tokens=max_tokens, **sections)
    cfg = load_config(
        cfg_path,
        {
            "model": str(models.deepseek),
            "reward_model": str(models.reward),
            "output_root": str(root / "data"),
            "domains": domains,
            "executor": "local",
        },
        count=count,
        counts=counts,
    )
    model, reward, prompts = validate(cfg)
    return create_run(cfg, model, reward, prompts)


def set_config(run_dir: Path, section: str, key: str, value) -> None:
    """Change one field of a run's frozen config (benchmarks only: e.g. sweep the chunk size on the
    same run directory; the shard plan is unchanged because shard sizes are explicit)."""
    path = Path(run_dir) / "run.json"
    manifest = json.loads(path.read_text())
    manifest["config"][section][key] = value
    path.write_text(json.dumps(manifest, indent=2))


def reset_shard(run_dir: Path, stage: str, domain: str, shard: int) -> None:
    from magpie_hpc.store import RunStore

    shutil.rmtree(RunStore(Path(run_dir)).shard(stage, domain, shard).path, ignore_errors=True)


def quick_flag() -> bool:
    return "--quick" in sys.argv[1:]
