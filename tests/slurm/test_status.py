"""`status` and the merge's run summary against the real development cluster.

One run goes through three phases, each checked by its own test (in file order): live (instruction
tasks throttled to one at a time, so some run while others pend), ended with an injected failure
(responses algebra shard 1 fails its first attempt), and complete after `resubmit` (the retry
succeeds and the merge writes the run summary from sacct).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import small_config
from magpie_hpc.cli import main
from magpie_hpc.context import RunContext
from magpie_hpc.slurm.resubmit import resubmit
from magpie_hpc.status import SCHEMA_PATH, RunStatus, collect_status
from slurm_helpers import devcluster_profile, queued, run_jobs, sh, wait_for_run, wait_for_sacct

FAIL_MESSAGE = "synthetic engine: injected failure"


def _cli_status(run_dir: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "magpie_hpc", "status", str(run_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _squeue_states(job_id: str) -> list[str]:
    return sorted(sh("squeue", "-h", "-r", "-j", job_id, "-o", "%T", check=False).split())


def _row(status: RunStatus, stage: str, domain: str = "algebra"):
    return next(r for r in status.stages if r.stage == stage and r.domain == domain)


def _consistent_snapshot(
    job_id: str, run_dir: Path, use_sacct: bool | None, want_running: bool = True, timeout: float = 60
) -> tuple[RunStatus, list[str]]:
    """A status taken between two identical squeue answers (nothing started or ended meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        before = _squeue_states(job_id)
        status = collect_status(run_dir, use_sacct=use_sacct)
        after = _squeue_states(job_id)
        if before == after and after and ("RUNNING" in after or not want_running or time.monotonic() > deadline):
            return status, after
        if time.monotonic() > deadline + 30:
            raise AssertionError(f"no stable squeue snapshot of job {job_id}: {before} / {after}")
        time.sleep(0.5)


def _no_sacct_path(tmp: Path) -> str:
    """A PATH with the SLURM client commands but without sacct (accounting unavailable)."""
    bindir = tmp / "bin-without-sacct"
    bindir.mkdir(exist_ok=True)
    for name in ("squeue", "scontrol", "sbatch", "sinfo", "scancel"):
        if (found := shutil.which(name)) and not (bindir / name).exists():
            (bindir / name).symlink_to(found)
    assert shutil.which("sacct", path=str(bindir)) is None
    return str(bindir)


def _check_against_disk(status: RunStatus, run_dir: Path) -> None:
    """Shard and record counts and tokens are what the done markers and committed chunks hold."""
    for row in status.stages:
        if row.domain == "all":
            continue
        folder = run_dir / "work" / row.stage / row.domain
        done = [json.loads(p.read_text()) for p in folder.glob("shard-*/DONE.json")]
        records = sum(d["kept"] if row.stage == "instructions" else d["rows"] for d in done)
        tokens = sum(d.get("output_tokens", 0) for d in done)
        for shard in folder.glob("shard-*"):
            if not (shard / "DONE.json").exists():
                for part in shard.glob("part-*.parquet"):
                    table = pq.read_table(part)
                    records += (
                        table.num_rows - table["instruction"].null_count
                        if row.stage == "instructions"
                        else table.num_rows
                    )
                    if "output_tokens" in table.column_names:
                        tokens += sum(sum(v) if isinstance(v, list) else v for v in table["output_tokens"].to_pylist())
        assert row.done == len(done), row
        assert row.records_done == records, row
        if row.stage not in ("select", "rewards"):
            assert row.output_tokens == tokens, row
        starts = sum(
            1
            for p in folder.glob("shard-*/attempts.jsonl")
            for line in p.read_text().splitlines()
            if json.loads(line)["event"] == "start"
        )
        assert row.attempts == starts, row


def _sacct_gpu_seconds(run_dir: Path) -> tuple[float, int]:
    """Sum of ElapsedRaw x allocated GPUs over every run of every task (merge excluded)."""
    jobs = run_jobs(run_dir)
    merges = {j["job_id"] for j in jobs if j["stage"] == "merge"}
    out = sh(
        "sacct",
        "-X",
        "-n",
        "-P",
        "--duplicates",
        "-j",
        ",".join(j["job_id"] for j in jobs),
        "-o",
        "JobID,ElapsedRaw,AllocTRES",
    )
    total, rows = 0.0, 0
    for line in out.splitlines():
        job, elapsed, tres = line.split("|")
        if job.split("_")[0] in merges:
            continue
        gpus = next((int(t.split("=")[1]) for t in tres.split(",") if t.startswith("gres/gpu=")), 0)
        total += int(elapsed or 0) * gpus
        rows += 1
    return total, rows


class Scenario:
    def __init__(self, tiny_models, root: Path):
        self.root = root
        cfg = small_config(
            root / "status.toml",
            max_tokens=(64, 64),
            sharding={"instructions": 2, "responses": 2, "multi_responses": 2, "chunk_size": 2},
            engine={"synthetic_tokens_per_second": 100.0, "synthetic_fail": ["responses:algebra:1:1"]},
            slurm={"stage_array_parallelism": {"instructions": 1}},
            fault_tolerance={"start_jitter_seconds": 0.0},
        )
        args = [
            "launch",
            "--executor",
            "slurm",
            "--engine",
            "synthetic",
            "--model",
            str(tiny_models.deepseek),
            "--reward-model",
            str(tiny_models.reward),
            "--output-root",
            str(root / "data"),
            "--profile",
            devcluster_profile(),
            "--domains",
            "algebra",
            "--count",
            "4",
            "--config",
            str(cfg),
        ]
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(args) == 0
        self.run_dir = Path(out.getvalue().strip().splitlines()[-1])
        self.phases: dict[str, dict] = {}

    def job_ids(self) -> list[str]:
        return [j["job_id"] for j in run_jobs(self.run_dir)]

    def live(self) -> dict:
        if "live" not in self.phases:
            ins = next(j["job_id"] for j in run_jobs(self.run_dir) if j["stage"] == "instructions")
            status, squeue = _consistent_snapshot(ins, self.run_dir, use_sacct=None)
            fallback, squeue_fallback = _consistent_snapshot(ins, self.run_dir, use_sacct=False, want_running=False)
            cli = _cli_status(self.run_dir, path=_no_sacct_path(self.root))
            self.phases["live"] = dict(
                status=status, squeue=squeue, fallback=fallback, squeue_fallback=squeue_fallback, cli=cli
            )
        return self.phases["live"]

    def ended_failed(self) -> dict:
        if "failed" not in self.phases:
            self.live()
            wait_for_run(self.run_dir, timeout=300)
            jobs = run_jobs(self.run_dir)
            wait_for_sacct(self.job_ids(), n_rows=sum(len(j["shards"]) for j in jobs))
            self.phases["failed"] = dict(
                text=_cli_status(self.run_dir),
                json=_cli_status(self.run_dir, "--json"),
                no_sacct=_cli_status(self.run_dir, path=_no_sacct_path(self.root)),
            )
        return self.phases["failed"]

    def completed(self) -> dict:
        if "complete" not in self.phases:
            self.ended_failed()
            result = resubmit(RunContext(self.run_dir))
            assert {(p.stage, tuple(p.shards)) for p in result.pieces} == {("responses", (1,)), ("merge", (0,))}
            wait_for_run(self.run_dir, timeout=300)
            jobs = run_jobs(self.run_dir)
            wait_for_sacct(self.job_ids(), n_rows=sum(len(j["shards"]) for j in jobs))
            self.phases["complete"] = dict(
                json=_cli_status(self.run_dir, "--json"), status=collect_status(self.run_dir)
            )
        return self.phases["complete"]


@pytest.fixture(scope="module")
def scenario(tiny_models, tmp_path_factory):
    sc = Scenario(tiny_models, tmp_path_factory.mktemp("status-slurm"))
    yield sc
    left = [line.split()[0] for line in queued(sc.job_ids())]
    if left:
        sh("scancel", *left, check=False)
    wait_for_run(sc.run_dir, timeout=120)


def test_status_during_a_run_agrees_with_squeue(scenario):
    live = scenario.live()
    status, squeue = live["status"], live["squeue"]
    ins = _row(status, "instructions")
    assert status.source == "sacct" and status.executor == "slurm" and status.active
    assert ins.shards == 2 and ins.done + len(squeue) == 2, (ins, squeue)
    assert ins.running == squeue.count("RUNNING"), (ins, squeue)
    assert ins.pending + ins.preempted == squeue.count("PENDING"), (ins, squeue)
    # the later stages wait on their dependencies
    assert _row(status, "responses").pending == 2 and _row(status, "rewards").pending == 2
    assert status.merge.state == "pending"
    assert status.state == "running" and status.exit_code == 0

    # without accounting: squeue and the disk, said so
    fallback, squeue = live["fallback"], live["squeue_fallback"]
    ins = _row(fallback, "instructions")
    assert fallback.source == "squeue" and fallback.source_note
    assert ins.running == squeue.count("RUNNING") and ins.pending + ins.preempted == squeue.count("PENDING")
    cli = live["cli"]
    assert cli.returncode == 0, cli.stderr
    assert "SLURM accounting unavailable (sacct is not on PATH)" in cli.stdout and "squeue" in cli.stdout


def test_failed_shard_is_shown_with_its_exit_code_and_error(scenario):
    failed = scenario.ended_failed()
    text = failed["text"]
    assert text.returncode == 1, text.stderr
    assert "responses algebra shard 1" in text.stdout and "exit code 1:0" in text.stdout
    assert FAIL_MESSAGE in text.stdout

    status = RunStatus.model_validate_json(failed["json"].stdout)
    assert failed["json"].returncode == 1
    assert status.state == "failed" and status.exit_code == 1 and not status.active
    shard = next(f for f in status.failed if f.stage == "responses")
    assert (shard.domain, shard.shard, shard.slurm_state, shard.exit_code) == ("algebra", 1, "FAILED", "1:0")
    assert shard.node in ("node1", "node2") and shard.reason == "NonZeroExitCode" and not shard.permanent
    assert shard.last_error == f"EngineFault: {FAIL_MESSAGE}" and shard.attempts == 1
    assert Path(shard.log_path).is_file() and shard.log_path.endswith(f"{shard.job_id}_0_log.err")
    assert any(line.endswith(f"EngineFault: {FAIL_MESSAGE}") for line in shard.log_tail), shard.log_tail
    assert _row(status, "responses").failed == 1 and _row(status, "responses").done == 1
    assert status.merge.state == "failed"  # the merge refused the incomplete run
    _check_against_disk(status, scenario.run_dir)

    no_sacct = failed["no_sacct"]
    assert no_sacct.returncode == 1 and "sacct is not on PATH" in no_sacct.stdout
    assert f"EngineFault: {FAIL_MESSAGE}" in no_sacct.stdout  # from attempts.jsonl and the log, without sacct


def test_status_json_validates_and_matches_the_disk(scenario):
    done = scenario.completed()
    proc = done["json"]
    assert proc.returncode == 0, proc.stderr
    status = RunStatus.model_validate_json(proc.stdout)
    import jsonschema

    jsonschema.validate(json.loads(proc.stdout), json.loads(SCHEMA_PATH.read_text()))
    assert status.state == "complete" and status.complete and status.exit_code == 0 and not status.failed
    assert status.totals.done == status.totals.shards and status.merge.state == "done"
    responses = _row(status, "responses")
    assert responses.retries == 1 and responses.attempts == 3
    _check_against_disk(status, scenario.run_dir)


def test_merge_summary_gpu_hours_match_sacct(scenario):
    scenario.completed()
    info = json.loads((scenario.run_dir / "combined_dataset_info.json").read_text())
    summary = info["run_summary"]
    assert summary["gpu_hours_source"] == "sacct"
    expected, rows = _sacct_gpu_seconds(scenario.run_dir)
    total = summary["total"]
    # one sacct row per task run: 8 GPU tasks + select + the failed attempt's retry, and one more per
    # run that a preemption cut short (the dev cluster is shared: another test's high-tier job may
    # preempt this run's tasks)
    assert sum(s["total"]["slurm_task_runs"] for s in summary["stages"].values()) == rows == 10 + total["preemptions"]
    assert total["gpu_seconds"] == pytest.approx(expected, abs=1.0), (total, expected)
    assert total["gpu_hours"] == pytest.approx(expected / 3600, abs=1e-4)
    assert summary["stages"]["select"]["total"]["gpu_seconds"] == 0  # a CPU job
    responses = summary["stages"]["responses"]["domains"]["algebra"]
    assert responses["retries"] == 1 and responses["slurm_task_runs"] == 3
    assert summary["stages"]["multi_responses"]["total"]["truncation_rate"] is not None
    readme = (scenario.run_dir / "README.md").read_text()
    assert "## Run summary" in readme and "| responses | algebra |" in readme
