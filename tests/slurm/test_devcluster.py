"""Smoke test for the dev SLURM cluster (hpc/devcluster/start.sh).

Assumes the cluster is already up; it does not start it. Submits a 3-task GPU
job array plus a job that depends on it with afterok, and checks through sacct
that everything completed in the right order.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from pathlib import Path

WAIT_S = 60


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}"
    return proc.stdout.strip()


def _sacct(job_ids: list[str]) -> list[tuple[str, str, str, str]]:
    # -X: allocations only (no .batch/.extern steps); one row per array task.
    out = _run("sacct", "-X", "-j", ",".join(job_ids), "--parsable2", "--noheader", "-o", "JobID,State,Start,End")
    return [tuple(line.split("|")) for line in out.splitlines() if line]  # type: ignore[misc]


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def test_array_then_dependent_job(tmp_path: Path) -> None:
    assert shutil.which("sinfo") and shutil.which("sbatch"), (
        "SLURM client tools not found: start the dev cluster with "
        "`sudo hpc/devcluster/start.sh` (see hpc/devcluster/README.md)"
    )
    _run("sinfo", "-h")  # fails clearly if slurmctld is not running

    out = str(tmp_path / "%x-%A_%a.out")
    array_id = _run(
        "sbatch",
        "--parsable",
        "--job-name=dc-array",
        "--array=0-2",
        "--gres=gpu:1",
        f"--output={out}",
        f"--chdir={tmp_path}",
        "--wrap",
        "echo task $SLURM_ARRAY_TASK_ID gpus=$CUDA_VISIBLE_DEVICES; sleep 1",
    ).split(";")[0]
    dep_id = _run(
        "sbatch",
        "--parsable",
        "--job-name=dc-dep",
        f"--dependency=afterok:{array_id}",
        f"--output={tmp_path / 'dep.out'}",
        f"--chdir={tmp_path}",
        "--wrap",
        "echo dependent",
    ).split(";")[0]

    # Both ids in one query: sacct -j <array id> also lists its tasks as <id>_<n>.
    deadline = time.monotonic() + WAIT_S
    rows: list[tuple[str, str, str, str]] = []
    while time.monotonic() < deadline:
        rows = _sacct([array_id, dep_id])
        done = [r for r in rows if r[1] not in ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING")]
        if len(rows) == 4 and len(done) == 4:
            break
        time.sleep(0.5)
    else:
        subprocess.run(["squeue", "-a"], check=False)
        raise AssertionError(f"jobs not finished after {WAIT_S}s: {rows}")

    tasks = {r[0]: r for r in rows if r[0].startswith(f"{array_id}_")}
    assert sorted(tasks) == [f"{array_id}_{i}" for i in range(3)], rows
    dep = next(r for r in rows if r[0] == dep_id)
    assert all(r[1] == "COMPLETED" for r in rows), rows

    last_array_end = max(_ts(r[3]) for r in tasks.values())
    assert _ts(dep[2]) >= last_array_end, f"dependent started before the array ended: {rows}"

    outputs = sorted(tmp_path.glob("dc-array-*.out"))
    assert len(outputs) == 3, outputs
    # The fake GPUs are character devices, so slurm exports their index.
    texts = [p.read_text().strip() for p in outputs]
    assert all(t.split("gpus=")[1] in ("0", "1") for t in texts), texts
