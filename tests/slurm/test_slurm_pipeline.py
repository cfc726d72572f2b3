"""The pipeline through the real development cluster: arrays, dependencies, failure handling."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from helpers import small_config
from dataset_checks import check_run
from magpie_hpc.cli import main
from magpie_hpc.slurm.accounting import task_records
from magpie_hpc.store import RunStore
from slurm_helpers import launch_run, run_jobs, sh, wait_for_run, wait_for_sacct


def _task_rows(run_dir: Path, stage: str, domain: str | None = None) -> list[dict]:
    """sacct rows of a stage's tasks with the shard each ran, through the package's accounting
    reader: slurmdbd may record tasks that never split off their array under the array's record
    (`667_[0-1%2]`, e.g. dependents cancelled before they started), which only that reader maps."""
    rows = []
    for r in task_records(RunStore(run_dir)):
        if r.stage == stage and (domain is None or r.domain == domain):
            rows.append(
                {
                    "JobID": r.job_id,
                    "State": r.state,
                    "Start": r.start,
                    "End": r.end,
                    "NodeList": r.node,
                    "shard": r.shard,
                    "domain": r.domain,
                }
            )
    return rows


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def test_pipeline_through_slurm_matches_local(slurm_args, synthetic_args, tmp_path, capsys):
    cfg = small_config(
        tmp_path / "small.toml",
        engine={"synthetic_tokens_per_second": 400.0},
        slurm={"stage_array_parallelism": {"multi_responses": 1}},
    )
    counts = ["--domains", "algebra,geometry", "--counts", "algebra=5,geometry=4", "--config", str(cfg)]
    run_dir = launch_run([*slurm_args, *counts], capsys)
    jobs = run_jobs(run_dir)
    # one array per (stage, domain) + select per domain + merge; names that sacct --name finds
    assert {(j["stage"], j["domain"]) for j in jobs} >= {
        ("instructions", "algebra"),
        ("rewards", "geometry"),
        ("merge", "all"),
    }
    assert all(j["name"].startswith(f"magpie-{run_dir.name}-") for j in jobs)
    wait_for_run(run_dir, timeout=900)
    rows = wait_for_sacct([j["job_id"] for j in jobs], n_rows=sum(len(j["shards"]) for j in jobs))
    assert rows and all(r["State"] == "COMPLETED" for r in rows), [(r["JobID"], r["State"]) for r in rows]
    assert len(rows) == sum(len(j["shards"]) for j in jobs)
    slurm_run = check_run(run_dir, {"algebra": 5, "geometry": 4})

    # The local executor writes the same structure and counts.
    local_dir = launch_run([*synthetic_args, *counts], capsys)
    local_run = check_run(local_dir, {"algebra": 5, "geometry": 4})
    for domain in ("algebra", "geometry"):
        files = sorted(p.name for p in (run_dir / domain).iterdir())
        assert files == sorted(p.name for p in (local_dir / domain).iterdir())
    # check_run proved each summary equal to its domains' files; both executors kept every problem
    # and accounted for each in SFT (kept or excluded as incomplete) and in DPO (a pair or a reason).
    for run in (slurm_run, local_run):
        for domain, count in {"algebra": 5, "geometry": 4}.items():
            c = run["summary"][domain]
            assert c["instructions"] == count == c["sft_records"] + c["sft_excluded_incomplete"]
            assert c["dpo_pairs"] + sum(v for k, v in c.items() if k.startswith("dpo_skipped_")) == count

    # Order: nothing started before what it depends on ended.
    ins = _task_rows(run_dir, "instructions")
    sel = _task_rows(run_dir, "select")
    res, multi, rew = (_task_rows(run_dir, s) for s in ("responses", "multi_responses", "rewards"))
    merge = _task_rows(run_dir, "merge")
    for domain in ("algebra", "geometry"):
        sel_row = next(r for r in sel if r["domain"] == domain)
        assert _t(sel_row["Start"]) >= max(_t(r["End"]) for r in ins if r["domain"] == domain)
        for r in res + multi:
            if r["domain"] == domain:
                assert _t(r["Start"]) >= _t(sel_row["End"])
    for r in rew:
        twin = next(m for m in multi if m["domain"] == r["domain"] and m["shard"] == r["shard"])
        assert _t(r["Start"]) >= _t(twin["End"])
    assert _t(merge[0]["Start"]) >= max(_t(r["End"]) for r in ins + sel + res + multi + rew)
    # Pipelining per shard: with multi-responses one task at a time, reward 0 ran before multi 1 ended.
    for domain in ("algebra", "geometry"):
        reward0 = next(r for r in rew if r["domain"] == domain and r["shard"] == 0)
        multi1 = next(m for m in multi if m["domain"] == domain and m["shard"] == 1)
        assert _t(reward0["Start"]) < _t(multi1["End"]), (reward0, multi1)


def test_failing_shard_cancels_dependents_and_blocks_merge(slurm_args, tmp_path, capsys):
    cfg = small_config(tmp_path / "small.toml", engine={"synthetic_fail": ["multi_responses:statistics:1"]})
    run_dir = launch_run([*slurm_args, "--domains", "statistics", "--count", "4", "--config", str(cfg)], capsys)
    wait_for_run(run_dir, timeout=600)
    multi = {r["shard"]: r["State"] for r in _task_rows(run_dir, "multi_responses")}
    rew = {r["shard"]: r["State"] for r in _task_rows(run_dir, "rewards")}
    assert multi[1] == "FAILED" and multi[0] == "COMPLETED"
    assert rew[0] == "COMPLETED" and rew[1] == "CANCELLED"  # cancelled, not pending forever
    assert _task_rows(run_dir, "merge")[0]["State"] == "FAILED"
    assert not (run_dir / "combined_dataset_info.json").exists()
    assert not (run_dir / "statistics").exists()


@pytest.mark.parametrize(
    "toml, field",
    [
        ('[slurm]\npartition = "nosuchpartition"\n', "slurm.partition"),
        ('[slurm]\naccount = "nosuchaccount"\n', "slurm.account"),
        ('[slurm]\npython = "/usr/bin/false"\n', "slurm.python"),
        # the dev cluster's nodes have 2 GPUs each; a 4-way tensor-parallel task fits on none
        ("[engine]\ntensor_parallel_size = 4\n", "engine.tensor_parallel_size"),
    ],
)
def test_fail_fast_submits_nothing(toml, field, slurm_args, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    before = set(sh("squeue", "-h", "-o", "%i").split())
    assert main([*slurm_args, "--count", "2", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and field in err, err
    assert not set(sh("squeue", "-h", "-o", "%i").split()) - before  # nothing new was submitted
    assert not (tmp_path / "data").exists()


def test_dry_run_changes_nothing(slurm_args, tmp_path, capsys):
    before = set(sh("squeue", "-h", "-o", "%i").split())
    assert main([*slurm_args, "--domains", "all", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "instructions" in out
    assert not set(sh("squeue", "-h", "-o", "%i").split()) - before  # nothing new was submitted
    assert not (tmp_path / "data").exists()
