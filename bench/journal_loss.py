"""Benchmark 8: requests regenerated after a kill mid-chunk, with the per-request journal.

A responses shard of one chunk runs on the synthetic engine (its prompts finish one after another,
each after its own tokens' time; response lengths spread about 1:20, from 2 to 40 reasoning
steps) in a subprocess that is stopped mid-chunk: by SIGKILL (preemption past KillWait, a lost
node), and by SIGTERM (preemption: nothing new is queued, what is in flight keeps finishing, then
SIGKILL after a grace period as SLURM's KillWait would). Then the shard is run again. And by USR2
(the time-limit warning) to the shard's SLURM task (slurm/task.py's ShardTask) under submitit's
local executor: nothing new is queued, what is in flight keeps finishing for the warning time less
the requeue margin, then submitit requeues the task, and the requeued run is the rerun. Counted:
requests finished before the stop (in the journal), requests the rerun took from the journal,
requests regenerated that had finished (target 0) and requests not finished at the stop (the
work lost: with vLLM all of them are in flight at once; the synthetic engine runs them in turn).

Usage: python bench/journal_loss.py [--quick]
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from _common import make_run, quick_flag, scratch, table, write_results
from local_task import usr2_mid_chunk


def _journal(folder) -> set[tuple[int, int]]:
    keys = set()
    for path in folder.glob("journal-*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
                keys.add((r["chunk"], r["index"]))
            except ValueError:
                pass
    return keys


def _run(root, count: int, rate: float, **sections):
    """A run of one domain with its instructions selected; its responses shard is one chunk."""
    from magpie_hpc.stages import run_shard
    from magpie_hpc.context import RunContext

    run_dir = make_run(
        root,
        engine={"kind": "synthetic", "reward_kind": "synthetic", "synthetic_tokens_per_second": rate},
        count=count,
        sharding={"instructions": count, "responses": count, "multi_responses": count, "chunk_size": count},
        **sections,
    )
    run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    run_shard(RunContext(run_dir), "select", "algebra", 0)
    return run_dir


def trial(root, how: str, count: int, rate: float, stop_after: int, grace: float) -> dict:
    from magpie_hpc.stages import run_shard
    from magpie_hpc.context import RunContext
    from magpie_hpc.store import RunStore

    run_dir = _run(root, count, rate)
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    cmd = [sys.executable, "-m", "magpie_hpc", "run-shard", str(run_dir), "responses", "algebra", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(_journal(shard.path)) < stop_after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    committed = len(list(shard.path.glob("part-*.parquet")))
    finished = _journal(shard.path)
    done = run_shard(RunContext(run_dir), "responses", "algebra", 0)
    reused = done.get("journal_reused_requests", 0)
    finished_open = 0 if committed else len(finished)  # committed chunks are not journal business
    return {
        "stop": how,
        "requests": count,
        "finished_before_rerun": len(finished),
        "chunk_committed": bool(committed),
        "reused_from_journal": reused,
        "regenerated_finished": finished_open - reused,
        "lost_in_flight": 0 if committed else count - len(finished),
        "rows": done["rows"],
    }


def usr2_trial(root, count: int, rate: float, stop_after: int, drain: float) -> dict:
    from magpie_hpc.slurm.task import REQUEUE_MARGIN_SECONDS

    warning = int(drain + REQUEUE_MARGIN_SECONDS)  # slurm signal_delay_s: what the drain gets, plus the margin
    run_dir = _run(root, count, rate, slurm={"gpu_stage": {"signal_delay_s": warning}})
    t = usr2_mid_chunk(run_dir, root / "submitit", after=stop_after)
    reused = t.done.get("journal_reused_requests", 0)
    finished_open = 0 if t.committed_in_first else len(t.journaled)
    return {
        "stop": f"USR2 ({warning - REQUEUE_MARGIN_SECONDS:g} s drain)",
        "requests": count,
        "finished_before_rerun": len(t.journaled),
        "finished_at_signal": t.signalled_after,
        "chunk_committed": bool(t.committed_in_first),
        "reused_from_journal": reused,
        "regenerated_finished": finished_open - reused,
        "lost_in_flight": 0 if t.committed_in_first else count - len(t.journaled),
        "rows": t.done["rows"],
        "requeued_by_submitit": t.done["attempt"] == 2,
        "signal_to_stop_seconds": round(t.first_attempt_seconds_after_signal, 1),
    }


def main() -> None:
    quick = quick_flag()
    count, rate = (12, 400.0) if quick else (32, 400.0)
    rows = []
    for how in ("SIGKILL", "SIGTERM"):
        root = scratch(f"journal-{how.lower()}")
        rows.append(trial(root, how, count, rate, stop_after=count // 3, grace=2.0))
    rows.append(usr2_trial(scratch("journal-usr2"), count, rate, stop_after=count // 3, drain=2.0))
    print(
        table(
            [
                "stop",
                "requests",
                "finished (journal)",
                "chunk committed",
                "taken from journal",
                "finished regenerated",
                "not finished at the stop",
            ],
            [
                [
                    r["stop"],
                    r["requests"],
                    r["finished_before_rerun"],
                    r["chunk_committed"],
                    r["reused_from_journal"],
                    f"**{r['regenerated_finished']}**",
                    r["lost_in_flight"],
                ]
                for r in rows
            ],
        )
    )
    write_results("journal_loss", {"quick": quick, "trials": rows})


if __name__ == "__main__":
    main()
