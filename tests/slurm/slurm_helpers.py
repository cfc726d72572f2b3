"""Helpers for tests against the real development cluster (hpc/devcluster)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def sh(*args: str, check: bool = True) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def run_jobs(run_dir: Path) -> list[dict]:
    path = run_dir / "jobs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def queued(job_ids: list[str]) -> list[str]:
    if not job_ids:
        return []
    out = sh("squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T", check=False)
    return [line for line in out.splitlines() if line.strip()]


def wait_for_run(run_dir: Path, timeout: float = 600) -> None:
    """Until no job of the run is pending or running in squeue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = [j["job_id"] for j in run_jobs(run_dir)]
        if not queued(ids):
            time.sleep(1)  # let slurmdbd record the last end times
            return
        time.sleep(2)
    raise AssertionError(f"run {run_dir.name} still has jobs after {timeout}s: {queued(ids)}")


def sacct(job_ids: list[str]) -> list[dict]:
    """One row per array task / job (allocations only): JobID, JobName, State, Start, End, ExitCode."""
    fields = ["JobID", "JobName", "State", "Start", "End", "ExitCode", "NodeList"]
    out = sh("sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", ",".join(fields))
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]


def wait_for_sacct(job_ids: list[str], n_rows: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows = sacct(job_ids)
    while time.monotonic() < deadline and (len(rows) < n_rows or any(r["End"] == "Unknown" for r in rows)):
        time.sleep(1)
        rows = sacct(job_ids)
    return rows


def devcluster_profile() -> str:
    return str(REPO / "magpie_hpc" / "profiles" / "devcluster.toml")


# Fault tolerance fast enough for tests: a lost holder is seen in seconds, no start jitter.
FAST_FT = {"heartbeat_seconds": 1.0, "stale_seconds": 8.0, "start_jitter_seconds": 0.0}


def launch_run(args: list[str], capsys) -> Path:
    """`launch` through the CLI; the run directory it printed."""
    from magpie_hpc.cli import main

    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return Path(captured.out.strip().splitlines()[-1])


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
