"""`status` without a cluster: a finished local run (disk only), the published JSON schema, and the
SLURM logic (failures, disagreements, preemption, squeue fallback) against canned sacct/squeue."""

from __future__ import annotations

import io
import json
import shutil
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from helpers import small_config
from magpie_hpc.cli import main
from magpie_hpc.errors import ConfigError
from magpie_hpc.slurm import accounting
from magpie_hpc.status import SCHEMA_PATH, RunStatus, collect_status, render_table, schema_text, status_command

STAGES = ("instructions", "select", "responses", "multi_responses", "rewards")


@pytest.fixture(scope="module")
def local_run(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("status-local")
    cfg = small_config(root / "small.toml")
    args = [
        "launch",
        "--executor",
        "local",
        "--engine",
        "synthetic",
        "--model",
        str(tiny_models.deepseek),
        "--reward-model",
        str(tiny_models.reward),
        "--output-root",
        str(root / "data"),
        "--domains",
        "algebra,geometry",
        "--counts",
        "algebra=4,geometry=3",
        "--config",
        str(cfg),
    ]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(args) == 0
    return Path(out.getvalue().strip().splitlines()[-1])


def _disk(run_dir: Path, stage: str, domain: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((run_dir / "work" / stage / domain).glob("shard-*/DONE.json"))]


def _row(status: RunStatus, stage: str, domain: str):
    return next(r for r in status.stages if r.stage == stage and r.domain == domain)


def test_local_run_status_is_complete_and_matches_the_disk(local_run, capsys):
    status = collect_status(local_run)
    assert (status.state, status.complete, status.exit_code, status.active) == ("complete", True, 0, False)
    assert (status.executor, status.source) == ("local", "disk")
    assert status.merge.state == "done" and not status.failed and not status.disagreements
    for domain in ("algebra", "geometry"):
        for stage in STAGES:
            row, done = _row(status, stage, domain), _disk(local_run, stage, domain)
            assert row.shards == row.done == len(done) > 0
            key = "kept" if stage == "instructions" else "rows"
            assert row.records_done == sum(d[key] for d in done)
            assert row.records_done >= row.records_target
            assert row.output_tokens == sum(d.get("output_tokens", 0) for d in done)
            assert row.attempts == len(done) and row.retries == 0 and row.eta_seconds == 0
    problems = _row(status, "rewards", "all")
    assert problems.records_done == problems.records_target == 7
    assert status.totals.done == status.totals.shards == sum(r.shards for r in status.stages if r.domain != "all")

    assert main(["status", str(local_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run {local_run.name}") and "COMPLETE: " in out and "merge: done" in out
    assert "multi_responses" in out and "FAILED" not in out

    assert main(["status", str(local_run), "--json"]) == 0
    text = capsys.readouterr().out
    parsed = RunStatus.model_validate_json(text)
    assert parsed.totals == status.totals
    import jsonschema

    jsonschema.validate(json.loads(text), json.loads(SCHEMA_PATH.read_text()))

    # --watch on a run with nothing active draws once and returns the exit code
    buf = io.StringIO()
    assert status_command(local_run, watch=1, out=buf) == 0
    assert "COMPLETE" in buf.getvalue() and "refreshing" not in buf.getvalue()


def test_local_merge_writes_a_wall_clock_run_summary(local_run):
    info = json.loads((local_run / "combined_dataset_info.json").read_text())
    summary = info["run_summary"]
    assert summary["gpu_hours_source"] == "wall_clock" and "wall-clock" in summary["gpu_hours_note"]
    seconds = sum(
        d["seconds"]
        for stage in ("instructions", "responses", "multi_responses", "rewards")
        for domain in ("algebra", "geometry")
        for d in _disk(local_run, stage, domain)
    )
    assert summary["total"]["gpu_seconds"] == pytest.approx(seconds, abs=0.2)
    multi = summary["stages"]["multi_responses"]["domains"]["algebra"]
    done = _disk(local_run, "multi_responses", "algebra")
    assert multi["output_tokens"] == sum(d["output_tokens"] for d in done)
    assert multi["completions"] == sum(sum(d["finish_reasons"].values()) for d in done)
    assert summary["total"]["attempts"] == summary["total"]["shards"] and summary["total"]["retries"] == 0
    readme = (local_run / "README.md").read_text()
    assert "## Run summary" in readme and "wall-clock hours" in readme


def test_schema_file_is_current():
    assert SCHEMA_PATH.read_text() == schema_text(), "run `python -m magpie_hpc.status` to regenerate it"
    assert json.loads(SCHEMA_PATH.read_text()) == RunStatus.model_json_schema()


def test_not_a_run_directory(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "not a magpie-hpc run directory" in err
    with pytest.raises(ConfigError):
        collect_status(tmp_path)


# ------------------------------------------------------------------ canned SLURM (no cluster needed)

JOBS = [
    ("instructions", "algebra", [0], "10"),
    ("select", "algebra", [0], "11"),
    ("responses", "algebra", [0, 1], "12"),
    ("multi_responses", "algebra", [0, 1], "13"),
    ("rewards", "algebra", [0, 1], "14"),
    ("merge", "all", [0], "15"),
]
T0 = "2026-01-01T10:00:00"
SACCT = [  # JobID|State|ExitCode|Start|End|Elapsed|ElapsedRaw|NodeList|Reason|AllocTRES
    f"10|FAILED|1:0|{T0}|{T0}|00:00:30|30|node1|None|cpu=1,gres/gpu=1,node=1",  # yet DONE.json is there
    f"11|COMPLETED|0:0|{T0}|{T0}|00:00:03|3|node1|Dependency|cpu=1,node=1",
    f"12_0|COMPLETED|0:0|{T0}|{T0}|00:00:20|20|node1|Dependency|cpu=1,gres/gpu=1,node=1",  # no DONE.json
    f"12_1|FAILED|1:0|{T0}|{T0}|00:00:20|20|node2|Dependency|cpu=1,gres/gpu=1,node=1",
    f"13_0|PREEMPTED|0:0|{T0}|{T0}|00:00:10|10|node2|Dependency|cpu=1,gres/gpu=1,node=1",
    "13_0|PENDING|0:0|Unknown|Unknown|00:00:00|0|None assigned|BeginTime|",
    f"13_1|RUNNING|0:0|{T0}|Unknown|00:00:40|40|node2|Dependency|cpu=1,gres/gpu=1,node=1",
    "14_[0-1%8]|PENDING|0:0|Unknown|Unknown|00:00:00|0|None assigned|Dependency|",
    "15|PENDING|0:0|Unknown|Unknown|00:00:00|0|None assigned|Dependency|",
]
SQUEUE = [
    "13_0|PENDING||BeginTime",
    "13_1|RUNNING|node2|None",
    "14_0|PENDING||Dependency",
    "14_1|PENDING||Dependency",
    "15|PENDING||Dependency",
]


def _script(path: Path, lines: list[str], probe: bool = False) -> None:
    body = "#!/bin/sh\n"
    if probe:  # accounting_available() asks for job 1
        body += 'case " $* " in *" -j 1 "*) exit 0;; esac\n'
    body += "/bin/cat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n"
    path.write_text(body)
    path.chmod(0o755)


@pytest.fixture()
def broken_run(local_run, tmp_path) -> Path:
    """A copy of the local run, made to look like a SLURM run in trouble."""
    run = tmp_path / local_run.name
    shutil.copytree(local_run, run)
    (run / "jobs.jsonl").write_text(
        "".join(json.dumps({"stage": s, "domain": d, "shards": shards, "job_id": j}) + "\n" for s, d, shards, j in JOBS)
    )
    work = run / "work"
    for stage, shard in (
        ("responses", 0),
        ("responses", 1),
        ("multi_responses", 0),
        ("multi_responses", 1),
        ("rewards", 0),
        ("rewards", 1),
    ):
        (work / stage / "algebra" / f"shard-{shard:05d}" / "DONE.json").unlink()
    (work / "merge" / "all" / "shard-00000" / "DONE.json").unlink()
    failing = work / "responses" / "algebra" / "shard-00001" / "attempts.jsonl"
    failing.write_text(
        "".join(
            json.dumps({"event": "start", "attempt": a, "time": 1.0 + a})
            + "\n"
            + json.dumps({"event": "end", "attempt": a, "time": 1.5 + a, "error": f"EngineFault: boom {a}"})
            + "\n"
            for a in (1, 2, 3)
        )
    )
    preempted = work / "multi_responses" / "algebra" / "shard-00000" / "attempts.jsonl"
    preempted.write_text(
        json.dumps({"event": "start", "attempt": 1, "time": 1.0})
        + "\n"
        + json.dumps({"event": "end", "attempt": 1, "time": 2.0, "error": "Interrupted: SIGTERM after 0 chunks"})
        + "\n"
    )
    log = run / "logs" / "12_1" / "12_1_0_log.err"
    log.parent.mkdir(parents=True)
    log.write_text(
        "Traceback (most recent call last):\n    ^^^^^\nEngineFault: boom 3\nsrun: error: node2: task 0: Exited with exit code 1\n"
    )
    return run


def _bin(tmp_path: Path, sacct: bool) -> Path:
    bindir = tmp_path / ("bin-sacct" if sacct else "bin-nosacct")
    bindir.mkdir()
    _script(bindir / "squeue", SQUEUE)
    if sacct:
        _script(bindir / "sacct", SACCT, probe=True)
    return bindir


def test_failures_disagreements_and_preemption_from_sacct(broken_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(_bin(tmp_path, sacct=True)))
    status = collect_status(broken_run)
    assert status.source == "sacct" and status.source_note is None
    assert (status.state, status.exit_code, status.active, status.complete) == ("failed", 1, True, False)
    res, multi, rew = (_row(status, s, "algebra") for s in ("responses", "multi_responses", "rewards"))
    assert (res.done, res.failed, multi.preempted, multi.running, rew.pending) == (0, 2, 1, 1, 2)
    assert _row(status, "instructions", "algebra").done == 1 and _row(status, "select", "algebra").done == 1
    assert status.merge.state == "pending" and status.merge.reason == "Dependency"
    by_shard = {(f.stage, f.shard): f for f in status.failed}
    assert set(by_shard) == {("responses", 0), ("responses", 1)}
    capped = by_shard[("responses", 1)]
    assert capped.permanent and capped.attempts == 3 and capped.last_error == "EngineFault: boom 3"
    assert (capped.job_id, capped.node, capped.exit_code, capped.reason) == ("12_1", "node2", "1:0", "NonZeroExitCode")
    assert capped.log_path == str(broken_run / "logs" / "12_1" / "12_1_0_log.err")
    assert capped.log_tail == [
        "Traceback (most recent call last):",
        "EngineFault: boom 3",
        "srun: error: node2: task 0: Exited with exit code 1",
    ]
    assert not by_shard[("responses", 0)].permanent
    kinds = {(d.kind, d.stage, d.shard) for d in status.disagreements}
    assert kinds == {("completed_without_marker", "responses", 0), ("done_but_slurm_failed", "instructions", 0)}
    assert status.totals.preemptions == 1 and status.totals.retries == 2

    assert main(["status", str(broken_run)]) == 1
    out = capsys.readouterr().out
    assert "responses algebra shard 1" in out and "failed permanently" in out and "EngineFault: boom 3" in out
    assert "COMPLETED but there is no DONE.json" in out


def test_squeue_fallback_says_so(broken_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(_bin(tmp_path, sacct=False)))
    status = collect_status(broken_run)
    assert status.source == "squeue" and "sacct is not on PATH" in status.source_note
    assert any("squeue" in n for n in status.notes)
    multi, rew = _row(status, "multi_responses", "algebra"), _row(status, "rewards", "algebra")
    assert (multi.preempted, multi.running, rew.pending) == (1, 1, 2)  # the SIGTERM in attempts.jsonl tells
    failed = {(f.stage, f.shard) for f in status.failed}
    assert ("responses", 1) in failed  # past its attempt cap, from the disk alone
    assert status.exit_code == 1
    assert collect_status(broken_run, use_sacct=False).source == "squeue"
    assert main(["status", str(broken_run)]) == 1
    assert "note: SLURM accounting unavailable (sacct is not on PATH)" in capsys.readouterr().out


def test_render_table_has_a_row_per_domain_and_stage(local_run):
    text = render_table(collect_status(local_run))
    header = next(line for line in text.splitlines() if line.startswith("domain"))
    for column in ("shards", "done", "run", "pend", "preempt", "fail", "records", "tokens", "tok/s", "prob/h", "ETA"):
        assert column in header
    assert sum(1 for line in text.splitlines() if " multi_responses " in f" {line} ") == 3  # 2 domains + all


def test_interrupted_local_run_is_stopped_and_a_live_lock_is_running(local_run, tmp_path):
    run = tmp_path / local_run.name
    shutil.copytree(local_run, run)
    for shard in (run / "work" / "rewards" / "geometry").glob("shard-*"):
        (shard / "DONE.json").unlink()
    (run / "work" / "merge" / "all" / "shard-00000" / "DONE.json").unlink()
    status = collect_status(run)
    rewards = _row(status, "rewards", "geometry")
    assert rewards.pending == rewards.shards and rewards.done == 0
    assert (status.state, status.active, status.exit_code, status.merge.state) == ("stopped", False, 1, "pending")

    owner = run / "work" / "rewards" / "geometry" / "shard-00000" / "owner.json"
    owner.write_text(json.dumps({"token": "x", "host": "here", "pid": 1, "heartbeat": time.time()}))
    status = collect_status(run)
    assert _row(status, "rewards", "geometry").running == 1
    assert (status.state, status.active, status.exit_code) == ("running", True, 0)


def test_failing_sacct_falls_back_to_squeue(broken_run, tmp_path, monkeypatch):
    bindir = _bin(tmp_path, sacct=False)
    (bindir / "sacct").write_text("#!/bin/sh\necho 'sacct: error: Problem talking to the database' >&2\nexit 1\n")
    (bindir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    status = collect_status(broken_run)
    assert status.source == "squeue" and "Problem talking to the database" in status.source_note
    assert _row(status, "multi_responses", "algebra").running == 1


def test_array_record_stands_for_tasks_cancelled_before_the_array_split():
    # slurmdbd, as seen in CI: task 0 ran under its own record; task 1, cancelled because its
    # aftercorr twin failed, is recorded only under the array's record.
    rows = [
        {"JobID": "667_0", "State": "COMPLETED"},
        {"JobID": "667_[0-1%2]", "State": "CANCELLED by 0"},
        {"JobID": "668", "State": "FAILED"},
    ]
    pieces = {"667": [("rewards", "calculus", 0), ("rewards", "calculus", 1)], "668": [("merge", "all", 0)]}
    got = {(r.stage, r.shard, r.job_id, r.state) for r in accounting._records(rows, pieces)}
    assert got == {
        ("rewards", 0, "667_0", "COMPLETED"),
        ("rewards", 1, "667_1", "CANCELLED"),
        ("merge", 0, "668", "FAILED"),
    }


def test_status_asks_sacct_once_and_measures_throughput_once(broken_run, tmp_path, monkeypatch):
    from magpie_hpc import calibration

    bindir = _bin(tmp_path, sacct=True)
    calls = tmp_path / "sacct-calls"
    sacct = bindir / "sacct"
    sacct.write_text(sacct.read_text().replace("#!/bin/sh\n", f'#!/bin/sh\necho "$*" >> {calls}\n', 1))
    monkeypatch.setenv("PATH", str(bindir))
    measured = []
    real = calibration.measured_throughput
    monkeypatch.setattr(calibration, "measured_throughput", lambda ctx: measured.append(1) or real(ctx))
    status = collect_status(broken_run)
    assert len(calls.read_text().splitlines()) == 1 and len(measured) == 1
    # the GPU time comes from that one call: the canned runs' elapsed seconds x 1 GPU each
    costs = {c.stage: c for c in status.gpu_hours}
    assert {c.source for c in costs.values()} == {"sacct"}
    assert costs["responses"].gpu_hours == round(40 / 3600, 4)
    assert costs["multi_responses"].gpu_hours_cut_short == round(10 / 3600, 4)  # the preempted run
