"""What an operator does on the real dev cluster: `cancel` a running run and finish it with
`resubmit`, read a failed task's traceback with `logs --failed`, and get mail from the merge job."""

from __future__ import annotations

from pathlib import Path

from helpers import small_config
from dataset_checks import check_run
from magpie_hpc.cli import main
from magpie_hpc.status import collect_status
from slurm_helpers import FAST_FT, launch_run, queued, run_jobs, sh, wait_for_run, wait_until


def test_cancel_then_resubmit_finishes_with_every_id_once(slurm_args, tmp_path, capsys):
    cfg = small_config(
        tmp_path / "c.toml",
        engine={"synthetic_tokens_per_second": 30.0},
        sharding={"instructions": 4, "responses": 2, "multi_responses": 2, "chunk_size": 1},
        fault_tolerance=FAST_FT,
        slurm={"mail_user": "researcher@example.org", "mail_type": "END,FAIL"},
    )
    run_dir = launch_run([*slurm_args, "--domains", "algebra", "--count", "4", "--config", str(cfg)], capsys)
    jobs = run_jobs(run_dir)
    merge_id = next(j["job_id"] for j in jobs if j["stage"] == "merge")
    shown = sh("scontrol", "show", "job", merge_id)
    assert "MailUser=researcher@example.org" in shown and "MailType=END,FAIL" in shown, shown
    instructions = next(j["job_id"] for j in jobs if j["stage"] == "instructions")
    assert "MailUser=researcher@example.org" not in sh("scontrol", "show", "job", instructions)

    # Cancel once the instruction task works (a chunk committed, more to come).
    work = run_dir / "work" / "instructions" / "algebra" / "shard-00000"
    wait_until(lambda: (work / "part-00000.parquet").exists(), 300)
    assert main(["cancel", str(run_dir), "--stage", "instructions"]) == 0
    out = capsys.readouterr().out
    assert "cancelled instructions algebra shard 0" in out, out
    assert "cancelled merge all shard 0" in out, out  # a merge waiting on a cancelled task could only fail
    wait_until(lambda: not queued([j["job_id"] for j in jobs]), 120)  # dependents go with kill-on-invalid-dep
    assert (work / "part-00000.parquet").exists()  # committed chunks stay

    status = collect_status(run_dir)
    rows = {(r.stage, r.domain): r for r in status.stages}
    assert rows[("instructions", "algebra")].cancelled == 1, rows
    assert status.merge.state == "cancelled"
    assert status.exit_code != 0 and not status.complete

    assert main(["cancel", str(run_dir)]) == 0  # idempotent: nothing left to cancel
    assert "nothing to cancel" in capsys.readouterr().out

    assert main(["resubmit", str(run_dir)]) == 0
    capsys.readouterr()
    wait_for_run(run_dir, timeout=600)
    check_run(run_dir, {"algebra": 4})


def test_logs_failed_shows_the_traceback(slurm_args, tmp_path, capsys):
    cfg = small_config(
        tmp_path / "c.toml",
        engine={"synthetic_fail": ["responses:geometry:0"]},
        fault_tolerance={**FAST_FT, "max_attempts": 1},
    )
    run_dir = launch_run([*slurm_args, "--domains", "geometry", "--count", "2", "--config", str(cfg)], capsys)
    wait_for_run(run_dir, timeout=600)

    assert main(["status", str(run_dir)]) == 1
    status_out = capsys.readouterr().out
    assert status_out.rstrip().splitlines()[-1] == f"see why: python -m magpie_hpc logs {run_dir} --failed"

    assert main(["logs", str(run_dir), "--failed", "--lines", "60"]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("== ")]
    # The failed shard, and the merge that ran after it (afterany) on an incomplete run and failed.
    assert [h.split(":")[0] for h in headers] == ["== merge all shard 0", "== responses geometry shard 0"], out
    shard = headers[1]
    assert "state FAILED" in shard and "attempt 1" in shard and "node node" in shard, headers
    assert "EngineFault" in out and "injected failure" in out, out  # the traceback from the task's stderr

    # One named task: a shard that did not fail shows its logs too, with its own state.
    assert main(["logs", str(run_dir), "instructions", "geometry", "0"]) == 0
    assert "state COMPLETED" in capsys.readouterr().out
    assert main(["logs", str(run_dir), "instructions", "geometry", "9"]) == 2
    assert "never submitted" in capsys.readouterr().err


def test_local_run_has_nothing_to_cancel(synthetic_args, tmp_path, capsys):
    assert (
        main(
            [
                *synthetic_args,
                "--domains",
                "algebra",
                "--count",
                "1",
                "--config",
                str(small_config(tmp_path / "c.toml")),
            ]
        )
        == 0
    )
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["cancel", str(run_dir)]) == 0
    assert "nothing to cancel: this run uses the local executor" in capsys.readouterr().out
    assert main(["logs", str(run_dir), "--failed"]) == 2
    assert main(["cancel", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
