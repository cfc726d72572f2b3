"""Benchmark 5: scheduling on a real SLURM -- makespan against the ideal, pipelining against barriers.

A full run through `python -m magpie_hpc launch` on the development SLURM cluster
(hpc/devcluster: 2 nodes x 2 fake GPUs, profile magpie_hpc/profiles/devcluster.toml), synthetic engine
with a fixed speed (`[engine] synthetic_tokens_per_second`), so each task's duration is set by
its token count. From sacct (`magpie_hpc.slurm.accounting.task_records`): every task's start and
end. Figures:

  makespan   first task start -> merge end (measured)
  ideal      a lower bound for 4 GPUs with the measured task durations: max(critical path of the
             DAG, GPU work / 4 + the CPU-only steps on the critical path); plus an event-driven list
             schedule of the same durations with no scheduler latency, for reference
  ratio      makespan / ideal
  pipelining the same durations list-scheduled three ways: as submitted (reward task i starts
             when multi-response task i ends: `aftercorr`), with a barrier before rewards (each
             domain's rewards wait for its whole multi-response array: `afterok`), and with stage
             barriers across all domains (every stage waits for the previous one everywhere)
  latency    per task: its start minus the end of its last dependency (SLURM's reaction time)

The cluster is shared with other engineers' tests: the number of foreign jobs in the queue is
sampled during the run and reported. Run it once, late.

Usage: python bench/scheduling.py [--quick] [--count N] [--domains a,b] [--rate TOKENS_PER_S]
"""

from __future__ import annotations

import argparse
import heapq
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from _common import ROOT, quick_flag, scratch, table, tiny_models, write_results

GPUS = 4
STAGE_ORDER = ("instructions", "select", "responses", "multi_responses", "rewards", "merge")
CPU_STAGES = ("select", "merge")


def foreign_jobs(own_prefix: str) -> int:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%j"], capture_output=True, text=True).stdout
    return sum(1 for name in out.split() if not name.startswith(own_prefix))


def launch(count: int, domains: str, rate: float, root: Path) -> Path:
    from helpers import small_config

    models = tiny_models()
    cfg = small_config(
        root / "small.toml",
        sharding={
            "instructions": count,
            "responses": max(1, count // 2),
            "multi_responses": max(1, count // 4),
            "chunk_size": 2,
        },
        engine={"synthetic_tokens_per_second": rate},
        fault_tolerance={"start_jitter_seconds": 1.0},
        quality={"near_dedup": False},
    )
    cmd = [
        sys.executable,
        "-m",
        "magpie_hpc",
        "launch",
        "--profile",
        str(ROOT / "magpie_hpc/profiles/devcluster.toml"),
        "--engine",
        "synthetic",
        "--model",
        str(models.deepseek),
        "--reward-model",
        str(models.reward),
        "--count",
        str(count),
        "--domains",
        domains,
        "--config",
        str(cfg),
        "--output-root",
        str(root / "data"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"launch failed ({out.returncode}): {out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def wait(run_dir: Path, timeout: float, samples: list) -> None:
    from magpie_hpc.store import RunStore

    store = RunStore(run_dir)
    deadline = time.monotonic() + timeout
    while store.shard("merge", "all", 0).done() is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"the run did not finish in {timeout:.0f}s: {run_dir}")
        samples.append(foreign_jobs("magpie-" + run_dir.name))
        time.sleep(3)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def task_times(run_dir: Path) -> dict:
    """(stage, domain, shard) -> (start, end) of the run that completed, from sacct."""
    from magpie_hpc.slurm.accounting import task_records
    from magpie_hpc.store import RunStore

    for _ in range(20):  # slurmdbd lags a little behind the end of the last task
        records = task_records(RunStore(run_dir))
        done = {
            r.key: r
            for r in records
            if r.state == "COMPLETED" and r.start and r.end and r.end not in ("Unknown", "None")
        }
        if any(k[0] == "merge" for k in done):
            break
        time.sleep(3)
    return {k: (parse_time(r.start), parse_time(r.end)) for k, r in done.items()}, records


def dependencies(tasks, mode: str) -> dict:
    """Each task's prerequisites: the DAG as submitted ("aftercorr"), with each domain's rewards
    waiting for its whole multi-response array ("afterok barrier"), or every stage waiting for the
    previous stage in every domain ("stage barriers")."""
    by_stage: dict = {}
    for key in tasks:
        by_stage.setdefault((key[0], key[1]), []).append(key)
    deps = {}
    for key in tasks:
        stage, domain, shard = key
        if mode == "stage barriers":
            i = STAGE_ORDER.index(stage)
            deps[key] = [k for k in tasks if i and k[0] == STAGE_ORDER[i - 1]]
        elif stage == "instructions":
            deps[key] = []
        elif stage == "select":
            deps[key] = by_stage.get(("instructions", domain), [])
        elif stage in ("responses", "multi_responses"):
            deps[key] = by_stage.get(("select", domain), [])
        elif stage == "rewards":
            deps[key] = (
                [("multi_responses", domain, shard)]
                if mode == "aftercorr"
                else by_stage.get(("multi_responses", domain), [])
            )
        else:  # merge
            deps[key] = [k for k in tasks if k[0] != "merge"]
    return deps


def simulate(durations: dict, mode: str) -> float:
    """Event-driven list schedule: GPU tasks on GPUS slots in submission order (stage, domain,
    shard), CPU steps (select, merge) without a slot; no scheduler latency."""
    deps = dependencies(list(durations), mode)
    order = sorted(durations, key=lambda k: (STAGE_ORDER.index(k[0]), k[1], k[2]))
    end: dict = {}
    free_gpus, now, running = GPUS, 0.0, []  # heap of (end, key)
    pending = list(order)
    while pending or running:
        started = True
        while started:
            started = False
            for key in list(pending):
                if all(d in end and end[d] <= now for d in deps[key]):
                    if key[0] in CPU_STAGES:
                        pending.remove(key)
                        heapq.heappush(running, (now + durations[key], key))
                        started = True
                    elif free_gpus:
                        free_gpus -= 1
                        pending.remove(key)
                        heapq.heappush(running, (now + durations[key], key))
                        started = True
        if not running:
            raise RuntimeError("deadlock in simulation")
        t, key = heapq.heappop(running)
        now, end[key] = t, t
        if key[0] not in CPU_STAGES:
            free_gpus += 1
    return max(end.values())


def lower_bound(durations: dict) -> dict:
    """No schedule on GPUS GPUs beats the DAG's critical path, nor the GPU work spread over every
    GPU followed by the merge (which waits for everything)."""
    deps = dependencies(list(durations), "aftercorr")
    finish: dict = {}

    def cp(key):
        if key not in finish:
            finish[key] = durations[key] + max((cp(d) for d in deps[key]), default=0.0)
        return finish[key]

    critical = max(cp(k) for k in durations)
    gpu_work = sum(v for k, v in durations.items() if k[0] not in CPU_STAGES)
    merge = sum(v for k, v in durations.items() if k[0] == "merge")
    return {
        "critical_path": critical,
        "gpu_work": gpu_work,
        "work_bound": gpu_work / GPUS + merge,
        "ideal": max(critical, gpu_work / GPUS + merge),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--count", type=int, help="problems per domain")
    p.add_argument("--domains", help="comma list")
    p.add_argument("--rate", type=float, default=150.0, help="synthetic tokens/s (sets task durations)")
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args()
    quick = args.quick or quick_flag()
    count = args.count or (8 if quick else 16)
    domains = args.domains or ("algebra,geometry" if quick else "algebra,geometry,discrete")
    if shutil.which("sbatch") is None:
        raise SystemExit("no SLURM here: run `bash hpc/devcluster/start.sh` first (needs root)")
    subprocess.run(["bash", str(ROOT / "hpc/devcluster/start.sh")], check=True, capture_output=True)
    root = scratch("scheduling")
    shutil.rmtree(root / "data", ignore_errors=True)
    foreign_before = foreign_jobs("magpie-none")
    started = time.monotonic()
    run_dir = launch(count, domains, args.rate, root)
    samples: list[int] = []
    wait(run_dir, args.timeout, samples)
    wall = time.monotonic() - started
    times, records = task_times(run_dir)
    first = min(s for s, _ in times.values())
    merge_end = max(e for k, (s, e) in times.items() if k[0] == "merge")
    makespan = merge_end - first
    durations = {k: max(1.0, e - s) for k, (s, e) in times.items()}
    bound = lower_bound(durations)
    sims = {mode: simulate(durations, mode) for mode in ("aftercorr", "afterok barrier", "stage barriers")}
    deps = dependencies(list(times), "aftercorr")
    latency = sorted(
        times[k][0] - max((times[d][1] for d in deps[k] if d in times), default=first) for k in times if deps[k]
    )
    per_stage = {}
    for (stage, _, _), (s, e) in times.items():
        per_stage.setdefault(stage, []).append(e - s)
    rows = [
        ["measured on the dev cluster", f"{makespan:.0f}", f"**{makespan / bound['ideal']:.2f}**"],
        ["ideal (lower bound: max(critical path, GPU work/4 + merge))", f"{bound['ideal']:.0f}", "1.00"],
    ]
    for mode, value in sims.items():
        rows.append([f"list schedule, no latency: {mode}", f"{value:.0f}", f"{value / bound['ideal']:.2f}"])
    print(
        f"{len(times)} tasks ({', '.join(f'{s}: {len(v)}' for s, v in per_stage.items())}), "
        f"{len(domains.split(','))} domains x {count} problems, synthetic {args.rate:g} tokens/s\n"
    )
    print(table(["schedule", "makespan s", "/ ideal"], rows))
    print(
        f"\ncritical path {bound['critical_path']:.0f}s, GPU work {bound['gpu_work']:.0f} GPU-s; "
        f"dependency -> start latency median {latency[len(latency) // 2]:.0f}s, max {latency[-1]:.0f}s; "
        f"foreign jobs in the queue: {foreign_before} at launch, max {max(samples, default=0)} during the run"
    )
    print(
        f"pipelining gain (afterok barrier / aftercorr, simulated): {sims['afterok barrier'] / sims['aftercorr']:.2f}x; "
        f"stage barriers / aftercorr: {sims['stage barriers'] / sims['aftercorr']:.2f}x"
    )
    write_results(
        "scheduling",
        {
            "quick": quick,
            "count_per_domain": count,
            "domains": domains.split(","),
            "rate": args.rate,
            "run_dir": str(run_dir),
            "wall_seconds_launch_to_merge": round(wall, 1),
            "makespan_seconds": makespan,
            "bound": bound,
            "ratio_to_ideal": makespan / bound["ideal"],
            "simulated": sims,
            "latency_seconds": {"median": latency[len(latency) // 2], "max": latency[-1], "all": latency},
            "task_seconds_by_stage": {s: sorted(v) for s, v in per_stage.items()},
            "foreign_jobs": {"at_launch": foreign_before, "samples": samples},
            "tasks": {
                "/".join(map(str, k)): [round(s - first, 1), round(e - first, 1)] for k, (s, e) in sorted(times.items())
            },
            "sacct_records": len(records),
        },
    )
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
