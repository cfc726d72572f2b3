"""Benchmark: idle seconds of a task preempted mid-stage, on the development SLURM cluster.

A run on the synthetic engine (model load 0 s, so what is left is the restart's own cost) is launched
on the dev cluster; once a multi-response shard has committed a chunk and works on the next, a
high-tier job on that shard's node preempts it (REQUEUE). For every shard that was preempted and
resumed: from the requeued run's start (sacct, whole seconds) to the shard lock taken (its attempt's
"start" record: a wait for the killed predecessor's stale lock would show here), and to its next
chunk commit (the part file's mtime), minus the model load and the chunk's own generation time (the
task log's "chunk N committed (... X s" line): the idle seconds per restart. The same span of the
preempted run before it (start to its first commit) is what any task start costs; the difference is
what the restart added.

Only this benchmark's jobs are preempted: it waits until the node holds no job of another user or run.
Usage (root, the cluster up: bash hpc/devcluster/start.sh): python bench/restart_idle.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

from _common import ROOT, median, quick_flag, scratch, table, tiny_models, write_results

PROFILE = ROOT / "slurm_templates" / "devcluster.toml"
FAST_FT = {"heartbeat_seconds": 1.0, "stale_seconds": 8.0, "start_jitter_seconds": 0.0}


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout


def launch(root: Path, count: int) -> Path:
    from helpers import small_config
    from magpie_hpc.cli import main

    models = tiny_models()
    cfg = small_config(
        root / "c.toml",
        engine={"synthetic_tokens_per_second": 60.0},
        sharding={"instructions": 8, "responses": 4, "multi_responses": 2, "chunk_size": 1},
        fault_tolerance=FAST_FT,
    )
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            [
                "launch",
                "--executor",
                "slurm",
                "--engine",
                "synthetic",
                "--model",
                str(models.deepseek),
                "--reward-model",
                str(models.reward),
                "--output-root",
                str(root / "data"),
                "--profile",
                str(PROFILE),
                "--domains",
                "algebra",
                "--count",
                str(count),
                "--config",
                str(cfg),
            ]
        )
    assert code == 0, buf.getvalue()
    return Path(buf.getvalue().strip().splitlines()[-1])


def jobs(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "jobs.jsonl").read_text().splitlines()]


def running_on(node: str) -> list[str]:
    return [line for line in sh("squeue", "-h", "-w", node, "-t", "RUNNING", "-o", "%A %i").splitlines() if line]


def wait_for_mid_stage(run_dir: Path, timeout: float = 600) -> tuple[str, str] | None:
    """(array task id `JOB_TASK`, node) of a running multi-response task between two chunk commits, on
    a node that runs no job of another run (the preemption takes every low-tier job of the node);
    None if the stage ended first."""
    multi = [j["job_id"] for j in jobs_when_ready(run_dir) if j["stage"] == "multi_responses"]
    folder = run_dir / "work" / "multi_responses" / "algebra"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in sh("squeue", "-h", "-j", ",".join(multi), "-t", "RUNNING", "-o", "%i %N %K").splitlines():
            task_id, node, index = line.split()
            shard = folder / f"shard-{int(index):05d}"
            if (shard / "part-00000.parquet").exists() and not (shard / "DONE.json").exists():
                ours = {j["job_id"] for j in jobs(run_dir)}
                if not [line for line in running_on(node) if line.split()[0] not in ours]:
                    return task_id, node
        if all((folder / f"shard-{i:05d}" / "DONE.json").exists() for i in (0, 1)):
            return None
        time.sleep(0.5)
    return None


def jobs_when_ready(run_dir: Path) -> list[dict]:
    while not any(j["stage"] == "multi_responses" for j in jobs(run_dir)):
        time.sleep(1)
    return jobs(run_dir)


def sacct_runs(task_id: str) -> list[dict]:
    out = sh("sacct", "-X", "-n", "-P", "--duplicates", "-j", task_id, "-o", "JobID,State,Start,End")
    return [dict(zip(("id", "state", "start", "end"), line.split("|"))) for line in out.splitlines() if line]


def epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").timestamp()


def chunk_seconds(run_dir: Path, shard: int, chunk: int) -> float | None:
    """The chunk's generation time, from the task logs' progress line."""
    pattern = re.compile(rf"multi_responses algebra shard {shard}: chunk {chunk} committed \(\d+ rows, ([\d.]+)s")
    for log in (run_dir / "logs").rglob("*.err"):
        if found := pattern.search(log.read_text(errors="replace")):
            return float(found.group(1))
    return None


def restarts(run_dir: Path, task_ids: dict[int, str]) -> list[dict]:
    out = []
    folder = run_dir / "work" / "multi_responses" / "algebra"
    for shard, task_id in task_ids.items():
        runs = sacct_runs(task_id)
        if not any(r["state"] == "PREEMPTED" for r in runs):
            continue
        sfolder = folder / f"shard-{shard:05d}"
        attempts = [json.loads(line) for line in (sfolder / "attempts.jsonl").read_text().splitlines()]
        start = [a for a in attempts if a["event"] == "start" and int(a.get("restart_count") or 0) >= 1][0]
        requeued = epoch([r for r in runs if r["state"] != "PREEMPTED"][-1]["start"])
        done = json.loads((sfolder / "DONE.json").read_text())
        chunk = done["resumed_at_chunk"]
        commit = (sfolder / f"part-{chunk:05d}.parquet").stat().st_mtime
        generation = chunk_seconds(run_dir, shard, chunk)
        to_commit = commit - requeued
        idle = to_commit - done["model_load_seconds"] - (generation or 0.0)
        # The same span of the preempted run, to its first commit: what any task start costs here
        first = epoch(runs[0]["start"])
        first_commit = (sfolder / "part-00000.parquet").stat().st_mtime
        first_idle = first_commit - first - (chunk_seconds(run_dir, shard, 0) or 0.0)
        out.append(
            {
                "shard": shard,
                "task": task_id,
                "resumed_at_chunk": chunk,
                "to_lock_s": round(start["time"] - requeued, 2),
                "to_commit_s": round(to_commit, 2),
                "model_load_s": done["model_load_seconds"],
                "chunk_generation_s": generation,
                "idle_s": round(idle, 2),
                "first_run_idle_s": round(first_idle, 2),
                "restart_extra_s": round(idle - first_idle, 2),
                "journal_reused_requests": done.get("journal_reused_requests"),
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one preemption")
    p.add_argument("--preemptions", type=int, default=None, help="runs, one preemption each (default 3, quick 1)")
    args = p.parse_args()
    quick = args.quick or quick_flag()
    results = []
    for i in range(args.preemptions or (1 if quick else 3)):
        root = scratch(f"restart_idle/{i}")
        run_dir = launch(root, count=4)
        if (found := wait_for_mid_stage(run_dir)) is None:
            print(f"run {i}: no window (the nodes ran other work while the stage ran); not counted")
            continue
        task_id, node = found
        ours = {j["job_id"] for j in jobs(run_dir)}
        high = sh("sbatch", "--parsable", "-p", "high", "-N1", "-w", node, "--gres=gpu:2", "--wrap", "sleep 5").strip()
        try:
            while any(line for line in sh("squeue", "-h", "-j", ",".join(ours)).splitlines()):
                time.sleep(2)
        finally:
            subprocess.run(["scancel", high], check=False)  # our own high-tier job only
        time.sleep(2)  # slurmdbd records the last end times
        multi = [j["job_id"] for j in jobs(run_dir) if j["stage"] == "multi_responses"][0]
        found = restarts(run_dir, {s: f"{multi}_{s}" for s in (0, 1)})
        print(f"run {i}: preempted {task_id} on {node}: {found}")
        results += found
    assert results, "no task was preempted and resumed"
    rows = [
        [
            r["task"],
            r["resumed_at_chunk"],
            r["to_lock_s"],
            r["to_commit_s"],
            r["model_load_s"],
            r["chunk_generation_s"],
            r["idle_s"],
            r["first_run_idle_s"],
            r["restart_extra_s"],
        ]
        for r in results
    ]
    print(
        table(
            [
                "task",
                "resumed at chunk",
                "start→lock s",
                "start→commit s",
                "model load s",
                "chunk s",
                "idle s",
                "first run idle s",
                "restart extra s",
            ],
            rows,
        )
    )
    idle = median([r["idle_s"] for r in results])
    print(f"\nmedian idle seconds per restart: {idle}")
    write_results(
        "restart_idle",
        {
            "quick": quick,
            "restarts": results,
            "median_idle_s": idle,
            "median_to_lock_s": median([r["to_lock_s"] for r in results]),
            "median_restart_extra_s": median([r["restart_extra_s"] for r in results]),
            "engine": "synthetic",
            "fault_tolerance": FAST_FT,
        },
    )


if __name__ == "__main__":
    main()
