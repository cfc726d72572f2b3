"""A requeued SLURM task takes its shard at once: its killed predecessor's owner record (same job and
array task, lower restart count) and a record marked released on SIGTERM are dead without waiting
out stale_seconds; an unknown owner still is not. Real processes and files; the SLURM_* variables
the code reads are set in the subprocesses' environment (no SLURM needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from magpie_hpc.errors import MagpieError
from magpie_hpc.stages import run_shard
from magpie_hpc.context import RunContext
from magpie_hpc.store import RunStore
from test_fault_tolerance import make_run, shard_cmd, shard_ids, wait_for

# Longer than any test may take: a task that waited it out would fail on the subprocess timeout.
STALE = {"heartbeat_seconds": 0.5, "stale_seconds": 600.0, "wait_for_holder": False}


def slurm_env(job: str, task: str, restart: int | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_JOB_ID=job, SLURM_ARRAY_JOB_ID=job, SLURM_ARRAY_TASK_ID=task)
    if restart is not None:  # SLURM leaves it unset on a task's first run
        env["SLURM_RESTART_COUNT"] = str(restart)
    return env


def _owner(shard) -> dict | None:
    try:
        return json.loads((shard.path / "owner.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_requeued_task_takes_over_its_killed_first_run_at_once(tiny_models, tmp_path):
    run_dir = make_run(
        tiny_models, tmp_path, count=6, fault_tolerance=STALE, engine={"synthetic_tokens_per_second": 150.0}
    )
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    first = subprocess.Popen(
        shard_cmd(run_dir), env=slurm_env("4242", "3", None), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: any(a["event"] == "start" for a in shard.attempts()))
    owner = _owner(shard)
    assert (owner["job_id"], owner["array_task"], owner["restart_count"]) == ("4242", "3", 0)  # unset = first run
    first.send_signal(signal.SIGKILL)  # preempted past KillWait: the record stays, heartbeat fresh
    first.wait(30)
    assert _owner(shard)["token"] == owner["token"]

    # another job finding that fresh record must still leave it alone (an owner it cannot know dead)
    other = subprocess.run(
        shard_cmd(run_dir), env=slurm_env("5151", "3", 1), capture_output=True, text=True, timeout=60
    )
    assert other.returncode != 0 and "being worked on by another task" in other.stderr
    # the same task's first run restarted without a restart count: not a predecessor either
    same = subprocess.run(
        shard_cmd(run_dir), env=slurm_env("4242", "3", None), capture_output=True, text=True, timeout=60
    )
    assert same.returncode != 0 and "being worked on by another task" in same.stderr

    requeued = subprocess.run(
        shard_cmd(run_dir), env=slurm_env("4242", "3", 1), capture_output=True, text=True, timeout=120
    )
    assert requeued.returncode == 0, requeued.stderr
    starts = [a for a in shard.attempts() if a["event"] == "start"]
    assert [a["restart_count"] for a in starts] == [0, 1]
    assert shard_ids(run_dir) == [f"algebra-{i}" for i in range(6)]


def test_sigterm_marks_the_owner_record_released_first(tiny_models, tmp_path):
    run_dir = make_run(
        tiny_models, tmp_path, count=6, fault_tolerance=STALE, engine={"synthetic_tokens_per_second": 25.0}
    )
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    proc = subprocess.Popen(
        shard_cmd(run_dir),
        env=slurm_env("777", "0", None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # a first chunk committed: the task is in its chunk loop, its signal handler installed
    wait_for(lambda: shard.chunk_path(0).exists(), timeout=120)
    assert not _owner(shard).get("released")
    proc.send_signal(signal.SIGTERM)
    # while the chunk in flight finishes, the record already says the shard is free
    wait_for(lambda: (_owner(shard) or {}).get("released") is True or proc.poll() is not None)
    released = _owner(shard)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)  # SLURM's KillWait ran out: nothing else gets written
    proc.wait(30)
    if released is None:
        pytest.fail("the task exited before its record could be read; slow the synthetic engine down")
    assert released["released"] is True and released["job_id"] == "777"
    # any task (here: this process, no SLURM at all) takes over at once, not after 600 s
    if _owner(shard) is not None:
        assert _owner(shard)["released"] is True
    assert run_shard(RunContext(run_dir), "responses", "algebra", 0)["rows"] == 6
    assert shard_ids(run_dir) == [f"algebra-{i}" for i in range(6)]


def test_an_unknown_live_owner_still_blocks(tiny_models, tmp_path):
    import time

    run_dir = make_run(tiny_models, tmp_path, count=2, fault_tolerance=STALE)
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    shard.path.mkdir(parents=True, exist_ok=True)
    (shard.path / "owner.json").write_text(
        json.dumps(
            {
                "token": "t",
                "host": "elsewhere",
                "pid": 1,
                "job_id": None,
                "array_task": None,
                "restart_count": None,
                "heartbeat": time.time(),
            }
        )
    )
    with pytest.raises(MagpieError, match="being worked on"):
        run_shard(RunContext(run_dir), "responses", "algebra", 0)
