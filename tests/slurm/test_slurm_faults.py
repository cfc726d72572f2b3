"""Preemption, a node lost mid-run, failed shards and resubmission, on the real dev cluster.
In every case the final files hold each id exactly once and exactly the requested counts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


from helpers import small_config
from dataset_checks import check_run
from magpie_hpc.cli import main
from magpie_hpc.slurm.accounting import task_records
from magpie_hpc.store import RunStore
from slurm_helpers import FAST_FT, REPO, launch_run, run_jobs, sacct, sh, wait_for_run, wait_until


def _shard_job_states(run_dir: Path, stage: str) -> dict[int, list[str]]:
    """Every state each shard's tasks went through (sacct --duplicates keeps requeued runs). Read
    through the package's accounting reader: slurmdbd may record a task that was cancelled before
    its array split under the array's record (`667_[0-1%2]`), which only that reader maps back."""
    out: dict[int, list[str]] = {}
    for record in task_records(RunStore(run_dir)):
        if record.stage == stage:
            out.setdefault(record.shard, []).append(record.state)
    return out


def test_preemption_requeues_and_resumes(slurm_args, tmp_path, capsys):
    cfg = small_config(
        tmp_path / "c.toml",
        engine={"synthetic_tokens_per_second": 60.0},
        sharding={"instructions": 8, "responses": 4, "multi_responses": 2, "chunk_size": 1},
        fault_tolerance=FAST_FT,
    )
    run_dir = launch_run([*slurm_args, "--domains", "algebra", "--count", "4", "--config", str(cfg)], capsys)
    multi = run_dir / "work" / "multi_responses" / "algebra"
    # Preempt once a multi-response task has committed a chunk and is working on the next.
    wait_until(lambda: any((multi / f"shard-0000{i}" / "part-00000.parquet").exists() for i in (0, 1)), 300)
    started = {
        i
        for i in (0, 1)
        if (multi / f"shard-0000{i}" / "part-00000.parquet").exists()
        and not (multi / f"shard-0000{i}" / "DONE.json").exists()
    }
    high = sh("sbatch", "--parsable", "-p", "high", "-N2", "--gres=gpu:2", "--wrap", "sleep 5").strip()
    try:
        wait_for_run(run_dir, timeout=600)
    finally:
        subprocess.run(["scancel", high], check=False)
    assert started, "no shard was between chunks when the preemption was asked for"
    states = _shard_job_states(run_dir, "multi_responses")
    preempted = [s for s, hist in states.items() if "PREEMPTED" in hist]
    assert preempted, states
    resumed = {}
    for shard in preempted:
        assert states[shard][-1] == "COMPLETED", states
        folder = multi / f"shard-{shard:05d}"
        done = json.loads((folder / "DONE.json").read_text())
        attempts = [json.loads(l) for l in (folder / "attempts.jsonl").read_text().splitlines()]
        starts = [a for a in attempts if a["event"] == "start"]
        assert max(int(a.get("restart_count") or 0) for a in starts) >= 1
        # The requeued run resumed after exactly the chunks committed before it started.
        before = sum(p.stat().st_mtime < starts[-1]["time"] for p in folder.glob("part-*.parquet"))
        assert done["resumed_at_chunk"] == before, (shard, attempts)
        resumed[shard] = before
    # A shard preempted between chunks (the moment the preemption was asked for) kept its chunk.
    assert any(resumed[s] >= 1 for s in started if s in resumed), (started, resumed)
    check_run(run_dir, {"algebra": 4})


def test_time_limit_requeues_and_resumes(slurm_args, tmp_path, capsys):
    # One 16-problem multi-response shard of ~7 s per problem under a 2-minute limit with USR2
    # asked 30 s before it (SLURM may send it up to 60 s earlier still): no single run can finish
    # it. Each run commits what it can, gets USR2, drains (no new problem; the one in flight
    # finishes and is committed, within the 30 s less the requeue margin), requeues itself through
    # submitit, and the next run resumes; a stop by the clock is not a failure, so max_attempts=1
    # does not end it.
    cfg = small_config(
        tmp_path / "c.toml",
        engine={"synthetic_tokens_per_second": 200.0},
        sharding={"instructions": 16, "responses": 16, "multi_responses": 16, "chunk_size": 1},
        slurm={"gpu_stage": {"time_min": 2, "signal_delay_s": 30}},
        fault_tolerance={**FAST_FT, "max_attempts": 1, "time_limit_requeues": 10},
    )
    run_dir = launch_run([*slurm_args, "--domains", "number_theory", "--count", "16", "--config", str(cfg)], capsys)
    wait_for_run(run_dir, timeout=900)
    shard = RunStore(run_dir).shard("multi_responses", "number_theory", 0)
    attempts = shard.attempts()
    stops = [a for a in attempts if a["event"] == "interrupted"]
    assert stops, attempts
    # Each stop is the clock's: USR2 first; the SIGTERM that SLURM sends when the task requeues
    # itself may reach it before it exits, and is logged after the USR2 of the same attempt.
    commits = [r["time"] for records in (shard.chunk_records() or {}).values() for r in records]
    for attempt in {a["attempt"] for a in stops}:
        signals = [a["signal"] for a in stops if a["attempt"] == attempt]
        assert signals[0] == "USR2 (time limit)" and set(signals[1:]) <= {"SIGTERM"}, attempts
        # The runner stopped it, after the drain (submitit's handler at once would end it in a
        # SystemExit), and the problem in flight at the signal was committed, not lost.
        usr2 = next(a["time"] for a in stops if a["attempt"] == attempt)
        end = next(a for a in attempts if a["event"] == "end" and a["attempt"] == attempt)
        assert end["error"].startswith("Interrupted:") and "USR2 (time limit)" in end["error"], end
        assert any(usr2 < t <= end["time"] for t in commits), (attempt, usr2, end, commits)
    last = [a for a in attempts if a["event"] == "start"][-1]
    assert int(last["restart_count"] or 0) >= 1, attempts  # the same SLURM task, requeued
    assert {"event": "end", "attempt": last["attempt"], "done": True}.items() <= attempts[-1].items(), attempts
    assert json.loads(shard.done_path.read_text())["resumed_at_chunk"] >= 1
    assert _shard_job_states(run_dir, "multi_responses")[0][-1] == "COMPLETED"
    check_run(run_dir, {"number_theory": 16})


def test_node_lost_mid_run_work_completes_on_other_node(slurm_args, tmp_path, capsys):
    cfg = small_config(
        tmp_path / "c.toml",
        engine={"synthetic_tokens_per_second": 40.0},
        sharding={"instructions": 8, "responses": 1, "multi_responses": 4, "chunk_size": 1},
        fault_tolerance=FAST_FT,
    )
    run_dir = launch_run([*slurm_args, "--domains", "geometry", "--count", "4", "--config", str(cfg)], capsys)
    responses = [j for j in run_jobs(run_dir) if j["stage"] == "responses"][0]["job_id"]
    wait_until(lambda: any(r["NodeList"] == "node2" and r["State"] == "RUNNING" for r in sacct([responses])), 300)
    node = str(REPO / "hpc" / "devcluster" / "node.sh")
    subprocess.run([node, "kill", "node2"], check=True, capture_output=True)
    try:
        wait_for_run(run_dir, timeout=600)
        # The package's reader asks sacct with --duplicates: the run lost with node2 keeps its record.
        records = [r for r in task_records(RunStore(run_dir)) if r.stage == "responses"]
        shown = [(r.shard, r.state, r.node) for r in records]
        lost = {r.shard for r in records if r.state == "NODE_FAIL" and r.node == "node2"}
        assert lost, shown
        for shard in lost:  # each lost task ran again, to completion, on the node that was left
            last = [r for r in records if r.shard == shard][-1]
            assert (last.state, last.node) == ("COMPLETED", "node1"), shown
    finally:
        subprocess.run([node, "start", "node2"], check=True, capture_output=True)
        sh("scontrol", "update", "nodename=node2", "state=resume", check=False)
    check_run(run_dir, {"geometry": 4})


def test_failed_shard_blocks_dependents_and_resubmit_completes(slurm_args, tmp_path, capsys):
    cfg = small_config(
        tmp_path / "c.toml", engine={"synthetic_fail": ["multi_responses:calculus:1:1"]}, fault_tolerance=FAST_FT
    )
    run_dir = launch_run([*slurm_args, "--domains", "calculus", "--count", "4", "--config", str(cfg)], capsys)
    wait_for_run(run_dir, timeout=600)
    assert _shard_job_states(run_dir, "multi_responses")[1] == ["FAILED"]
    assert _shard_job_states(run_dir, "rewards")[1] == ["CANCELLED"]  # its dependent did not run
    assert not (run_dir / "work" / "rewards" / "calculus" / "shard-00001" / "DONE.json").exists()
    assert not (run_dir / "combined_dataset_info.json").exists()

    before = len(run_jobs(run_dir))
    assert main(["resubmit", str(run_dir)]) == 0
    out = capsys.readouterr().out
    new = run_jobs(run_dir)[before:]
    assert {(j["stage"], tuple(j["shards"])) for j in new} == {
        ("multi_responses", (1,)),
        ("rewards", (1,)),
        ("merge", (0,)),
    }, out
    rewards = next(j for j in new if j["stage"] == "rewards")
    assert rewards["dependency"].startswith("aftercorr:")
    # Twice in a row: the second submits nothing (the first's jobs are queued or running).
    assert main(["resubmit", str(run_dir)]) == 0
    assert "nothing to resubmit" in capsys.readouterr().out
    assert len(run_jobs(run_dir)) == before + 3
    wait_for_run(run_dir, timeout=600)
    check_run(run_dir, {"calculus": 4})
    assert main(["resubmit", str(run_dir)]) == 0
    assert "nothing to resubmit" in capsys.readouterr().out


def test_resubmit_shard_above_max_array_size(slurm_args, tmp_path, capsys):
    max_size = int(
        next(
            line.split("=")[1]
            for line in sh("scontrol", "show", "config").splitlines()
            if line.startswith("MaxArraySize")
        )
    )
    count = max_size + 3
    target = max_size + 1  # lives in the second piece of the split array
    cfg = small_config(
        tmp_path / "c.toml",
        engine={"synthetic_fail": [f"responses:number_theory:{target}:1"]},
        sharding={"instructions": 64, "responses": 1, "multi_responses": 64, "chunk_size": 8},
        fault_tolerance=FAST_FT,
    )
    run_dir = launch_run(
        [*slurm_args, "--domains", "number_theory", "--count", str(count), "--config", str(cfg)], capsys
    )
    pieces = [j for j in run_jobs(run_dir) if j["stage"] == "responses"]
    assert [len(p["shards"]) for p in pieces] == [max_size, 3]
    wait_for_run(run_dir, timeout=600)
    assert main(["resubmit", str(run_dir)]) == 0
    capsys.readouterr()
    again = [j for j in run_jobs(run_dir) if j["stage"] == "responses"][-1]
    assert again["shards"] == [target]  # index 0 of the new array runs shard max_size + 1
    wait_for_run(run_dir, timeout=600)
    done = json.loads(
        (run_dir / "work" / "responses" / "number_theory" / f"shard-{target:05d}" / "DONE.json").read_text()
    )
    assert done["job_id"].startswith(again["job_id"]) or done["array_task"] == "0"
    check_run(run_dir, {"number_theory": count})
