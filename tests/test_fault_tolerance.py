"""Nothing lost, nothing duplicated: kills, concurrent writers, stale locks, hung engines, attempt
caps and full disks, on real processes and a real (tiny) filesystem."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import make_run
from magpie_hpc.engine import EngineFault
from magpie_hpc.errors import MagpieError
from magpie_hpc.stages import run_shard
from magpie_hpc.context import RunContext
from magpie_hpc.stages.interrupts import Interrupted
from magpie_hpc.stages.runner import ShardFailed
from magpie_hpc.store import RunStore


def shard_cmd(run_dir: Path, stage: str = "responses", shard: int = 0) -> list[str]:
    return [sys.executable, "-m", "magpie_hpc", "run-shard", str(run_dir), stage, "algebra", str(shard)]


def shard_ids(run_dir: Path, stage: str = "responses") -> list[str]:
    folder = RunStore(run_dir).shard(stage, "algebra", 0).path
    return [i for p in sorted(folder.glob("part-*.parquet")) for i in pq.read_table(p)["id"].to_pylist()]


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sigkill_mid_chunk_then_rerun_resumes_without_duplicates(tiny_models, tmp_path):
    run_dir = make_run(tiny_models, tmp_path, count=8, engine={"synthetic_tokens_per_second": 150.0})
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    proc = subprocess.Popen(shard_cmd(run_dir), stderr=subprocess.DEVNULL)
    wait_for(lambda: shard.chunk_path(1).exists())  # two chunks committed, the third in flight
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert shard.done() is None
    committed = len(shard.committed_indices())
    summary = run_shard(RunContext(run_dir), "responses", "algebra", 0)
    assert summary["resumed_at_chunk"] == committed >= 2
    ids = shard_ids(run_dir)
    assert ids == [f"algebra-{i}" for i in range(8)]  # each once, in order


def test_sigterm_stops_at_a_chunk_boundary(tiny_models, tmp_path):
    run_dir = make_run(tiny_models, tmp_path, count=8, engine={"synthetic_tokens_per_second": 150.0})
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    proc = subprocess.Popen(shard_cmd(run_dir), stderr=subprocess.PIPE, text=True)
    wait_for(lambda: shard.chunk_path(0).exists())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "SIGTERM" in err
    assert not list(shard.path.glob(".part-*.tmp"))  # the chunk in flight finished or was discarded whole
    assert "SIGTERM" in shard.attempts()[-1]["error"]
    stop = next(a for a in shard.attempts() if a["event"] == "interrupted")  # recorded when the signal came
    assert (stop["attempt"], stop["signal"]) == (1, "SIGTERM") and shard.counted_starts() == []
    assert run_shard(RunContext(run_dir), "responses", "algebra", 0)["rows"] == 8
    assert shard_ids(run_dir) == [f"algebra-{i}" for i in range(8)]


def test_same_shard_twice_one_writes_the_other_waits(tiny_models, tmp_path):
    run_dir = make_run(tiny_models, tmp_path, count=6, engine={"synthetic_tokens_per_second": 200.0})
    first = subprocess.Popen(shard_cmd(run_dir), stderr=subprocess.DEVNULL, stdout=subprocess.PIPE)
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    wait_for(lambda: (shard.path / "owner.json").exists())
    second = subprocess.Popen(shard_cmd(run_dir), stderr=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert first.wait(120) == 0 and second.wait(120) == 0
    starts = [a for a in shard.attempts() if a["event"] == "start"]
    assert len(starts) == 1  # the second never wrote: it waited for the first to finish
    assert json.loads(second.stdout.read()) == shard.done()
    assert shard_ids(run_dir) == [f"algebra-{i}" for i in range(6)]


def test_two_writers_without_lock_still_leave_each_record_once(tiny_models, tmp_path):
    run_dir = make_run(
        tiny_models, tmp_path, count=6, fault_tolerance={"lock": False}, engine={"synthetic_tokens_per_second": 300.0}
    )
    procs = [subprocess.Popen(shard_cmd(run_dir), stderr=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    assert len([a for a in shard.attempts() if a["event"] == "start"]) == 2  # both really wrote
    assert shard_ids(run_dir) == [f"algebra-{i}" for i in range(6)]
    assert shard.done()["rows"] == 6


def test_stale_lock_taken_over_after_heartbeat_timeout_not_before(tiny_models, tmp_path):
    run_dir = make_run(tiny_models, tmp_path, count=4, fault_tolerance={"wait_for_holder": False})
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    shard.path.mkdir(parents=True, exist_ok=True)
    owner = {
        "token": "dead-task",
        "host": "node-elsewhere",
        "pid": 1,
        "job_id": "99",
        "started": time.time(),
        "heartbeat": time.time(),
    }
    (shard.path / "owner.json").write_text(json.dumps(owner))
    with pytest.raises(MagpieError, match="being worked on"):
        run_shard(RunContext(run_dir), "responses", "algebra", 0)  # a live heartbeat on another host: hands off
    assert not list(shard.path.glob("part-*"))
    owner["heartbeat"] = time.time() - 3.5  # silent for longer than stale_seconds (3)
    (shard.path / "owner.json").write_text(json.dumps(owner))
    assert run_shard(RunContext(run_dir), "responses", "algebra", 0)["rows"] == 4
    assert not (shard.path / "owner.json").exists()  # released after the work


def test_hung_engine_is_caught_by_the_watchdog(tiny_models, tmp_path):
    run_dir = make_run(
        tiny_models,
        tmp_path,
        count=4,
        engine={"synthetic_hang": ["responses:algebra:0"]},
        fault_tolerance={"stall_seconds": 2.0},
    )
    started = time.monotonic()
    proc = subprocess.run(shard_cmd(run_dir), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 75 and time.monotonic() - started < 60
    assert "engine looks hung" in proc.stderr
    assert "stall_seconds" in RunStore(run_dir).shard("responses", "algebra", 0).attempts()[-1]["error"]


def test_attempt_cap_stops_retries_and_reports_last_error(tiny_models, tmp_path):
    run_dir = make_run(
        tiny_models,
        tmp_path,
        count=4,
        engine={"synthetic_fail": ["responses:algebra:0"]},
        fault_tolerance={"max_attempts": 3},
    )
    for _ in range(3):
        with pytest.raises(EngineFault):
            run_shard(RunContext(run_dir), "responses", "algebra", 0)
    with pytest.raises(ShardFailed, match="failed 3 attempts.*injected failure"):
        run_shard(RunContext(run_dir), "responses", "algebra", 0)
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    assert len([a for a in shard.attempts() if a["event"] == "start"]) == 3  # the 4th did not start


def _sigterm_once_started(shard, attempt: int) -> threading.Thread:
    """SIGTERM this process as soon as `attempt` has logged its start, as a preemption would."""

    def watch():
        deadline = time.monotonic() + 60
        while not any(a.get("event") == "start" and a.get("attempt") == attempt for a in shard.attempts()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_preemptions_and_time_limits_do_not_count_toward_the_attempt_cap(tiny_models, tmp_path):
    run_dir = make_run(
        tiny_models,
        tmp_path,
        count=8,
        engine={"synthetic_fail": ["responses:algebra:0:2"], "synthetic_tokens_per_second": 400.0},
        fault_tolerance={"max_attempts": 3},
    )
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    for _ in range(2):  # two real failures
        with pytest.raises(EngineFault):
            run_shard(RunContext(run_dir), "responses", "algebra", 0)
    for attempt in (3, 4):  # two real preemptions: SIGTERM reaches the running shard
        watcher = _sigterm_once_started(shard, attempt)
        with pytest.raises(Interrupted, match="SIGTERM"):
            run_shard(RunContext(run_dir), "responses", "algebra", 0)
        watcher.join()
    # A time limit, as the SLURM task's checkpoint records it (slurm/task.py) before requeueing.
    shard.log_attempt({"event": "start", "time": time.time(), "attempt": 5})
    shard.log_interruption("USR2 (time limit)")
    events = [(a["event"], a["attempt"]) for a in shard.attempts() if a["event"] == "interrupted"]
    assert events == [("interrupted", 3), ("interrupted", 4), ("interrupted", 5)]
    # Five starts, two of them failures: under the cap of 3, so the sixth runs and finishes.
    assert run_shard(RunContext(run_dir), "responses", "algebra", 0)["attempt"] == 6
    assert [a["attempt"] for a in shard.counted_starts()] == [1, 2, 6]
    assert shard_ids(run_dir) == [f"algebra-{i}" for i in range(8)]


def test_transient_failure_recovers_on_next_attempt(tiny_models, tmp_path):
    run_dir = make_run(tiny_models, tmp_path, count=4, engine={"synthetic_fail": ["responses:algebra:0:1"]})
    with pytest.raises(EngineFault):
        run_shard(RunContext(run_dir), "responses", "algebra", 0)
    assert run_shard(RunContext(run_dir), "responses", "algebra", 0)["attempt"] == 2


@pytest.fixture()
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb") as fh:  # to the last byte
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def test_full_disk_during_chunk_write_loses_nothing(tiny_models, tmp_path, small_disk):
    run_dir = make_run(tiny_models, small_disk, count=8, engine={"synthetic_tokens_per_second": 100.0})
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    proc = subprocess.Popen(shard_cmd(run_dir), stderr=subprocess.PIPE, text=True)
    wait_for(lambda: shard.chunk_path(0).exists())
    first = shard.chunk_path(0).read_bytes()
    _fill(small_disk / "filler")  # the disk fills while the next chunk is being generated
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "disk full writing chunk" in err and "Traceback" not in err
    committed = shard.committed_indices()
    assert shard.done() is None and not list(shard.path.glob(".part-*.tmp"))
    assert shard.chunk_path(0).read_bytes() == first  # earlier chunks stay valid
    (small_disk / "filler").unlink()
    summary = run_shard(RunContext(run_dir), "responses", "algebra", 0)
    assert summary["resumed_at_chunk"] == len(committed) and summary["rows"] == 8
    assert shard_ids(run_dir) == [f"algebra-{i}" for i in range(8)]


def test_not_a_run_directory(tmp_path, capsys):
    from magpie_hpc.cli import main

    assert main(["resubmit", str(tmp_path)]) == 2  # bad input, as from status and report (issue 18)
    err = capsys.readouterr().err
    assert "not a magpie-hpc run directory" in err and err.count("\n") == 1


def test_select_short_of_instructions_reopens_and_completes(tiny_models, tmp_path):
    """Cleaning and dedup left too few: select reopens the last instruction shard for the
    difference (resuming after its chunks) instead of asking a person to change the config."""
    from magpie_hpc.stages.select import NeedMoreInstructions

    run_dir = make_run(tiny_models, tmp_path, count=6)
    store = RunStore(run_dir)
    ins = store.shard("instructions", "algebra", 0)
    chunks_before = ins.committed_indices()
    # Lose most of the clean instructions, as a heavy duplicate rate would: two distinct ones are
    # left, and an exact copy of the first.
    clean = [t for c in chunks_before for t in pq.read_table(ins.chunk_path(c))["instruction"].to_pylist() if t]
    table = pq.read_table(ins.chunk_path(0))
    assert table.num_rows >= 3 and len(clean) >= 2
    keep = [clean[0], clean[1], clean[0]] + [None] * (table.num_rows - 3)
    # (committed through the store, so its record matches: a hand-written chunk would be damaged)
    ins.commit(
        0,
        table.set_column(
            table.column_names.index("instruction"), "instruction", __import__("pyarrow").array(keep, "string")
        ),
    )
    for later in chunks_before[1:]:
        ins.chunk_path(later).unlink()
    sel = store.shard("select", "algebra", 0)
    import shutil

    shutil.rmtree(sel.path)
    with pytest.raises(NeedMoreInstructions, match="reopened instructions shard 0") as short:
        run_shard(RunContext(run_dir), "select", "algebra", 0)
    # 2 of 6 chosen: 4 missing, asked for with half again for the next round's losses.
    assert "only 2 distinct clean instructions for 6 problems (1 exact and 0 near" in str(short.value)
    assert json.loads((ins.path / "topup.json").read_text()) == {"extra": 6} and "for 6 more" in str(short.value)
    assert ins.done() is None  # reopened
    summary = run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    assert summary["resumed_at_chunk"] == 1 and summary["kept"] >= 6
    assert run_shard(RunContext(run_dir), "select", "algebra", 0)["rows"] == 6
