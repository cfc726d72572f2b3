"""What a run's GPU time bought: spent beside planned, the share that went to runs a preemption or
a kill cut short, and the share that made responses thrown away (cut off or stopped as loops), in
the run summary, `report` and `status`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import local_launch, small_config
from magpie_hpc.cli import main
from magpie_hpc.config import RunConfig
from magpie_hpc.plan import estimated_gpu_hours
from magpie_hpc.run_summary import build_run_summary, cost_lines, render_run_summary
from magpie_hpc.status import collect_status
from magpie_hpc.store import RunStore


def _cfg() -> RunConfig:
    return RunConfig.model_validate(
        {
            "domains": ["algebra"],
            "domain_settings": {
                "algebra": {**RunConfig().domain("algebra").model_dump(), "count": 4, "max_tokens_response": 1000}
            },
            "sharding": {"instructions": 8, "responses": 2, "multi_responses": 4},
        }
    )


def test_cut_short_runs_and_thrown_away_responses_are_costed(tmp_path):
    cfg, store = _cfg(), RunStore(tmp_path)
    # shard 0: one response cut at max_tokens (1,000 tokens) of 2,000; shard 1: one loop of 500 tokens of 2,000
    store.shard("responses", "algebra", 0).mark_done(
        {"rows": 2, "output_tokens": 2000, "seconds": 100.0, "finish_reasons": {"stop": 1, "length": 1}}
    )
    store.shard("responses", "algebra", 1).mark_done(
        {
            "rows": 2,
            "output_tokens": 2000,
            "seconds": 100.0,
            "finish_reasons": {"stop": 1, "repetition": 1},
            "repetition_output_tokens": 500,
        }
    )
    records = [  # shard 0 preempted once after 1,800 s, then finished in 3,600 s; shard 1 in 3,600 s; 1 GPU each
        {
            "stage": "responses",
            "domain": "algebra",
            "shard": 0,
            "state": "PREEMPTED",
            "elapsed_seconds": 1800,
            "gpus": 1,
        },
        {
            "stage": "responses",
            "domain": "algebra",
            "shard": 0,
            "state": "COMPLETED",
            "elapsed_seconds": 3600,
            "gpus": 1,
        },
        {
            "stage": "responses",
            "domain": "algebra",
            "shard": 1,
            "state": "COMPLETED",
            "elapsed_seconds": 3600,
            "gpus": 1,
        },
    ]
    ctx = SimpleNamespace(cfg=cfg, store=store, model=SimpleNamespace(tensor_parallel_size=1))
    summary = build_run_summary(ctx, lambda s: {"source": "sacct", "records": records})
    m = summary["stages"]["responses"]["total"]
    assert m["gpu_hours"] == 2.5
    assert m["gpu_hours_cut_short"] == 0.5
    # the finished runs' 2 hours shared out by tokens: 1,500 of 4,000 made the two thrown-away responses
    assert m["gpu_hours_discarded"] == round(2.0 * 1500 / 4000, 4)
    assert m["gpu_hours_planned"] == round(estimated_gpu_hours(cfg, "responses", "algebra"), 4)
    line = next(line for line in cost_lines(summary) if line.startswith("responses:"))
    assert "2.50 GPU-hours spent of" in line and "0.5000 (20.0%) on runs cut short" in line
    assert "0.7500 (30.0%) on responses thrown away" in line
    assert "on runs cut short" in render_run_summary(summary)


@pytest.fixture(scope="module")
def run_dir(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("costs")
    cfg = small_config(root / "c.toml", max_tokens=(64, 60), engine={"synthetic_length_rate": 0.3})
    assert main(local_launch(tiny_models, root / "data", "algebra", 4, cfg)) == 0
    (run,) = (root / "data").iterdir()
    return run


def test_report_and_status_show_the_costs(run_dir, capsys):
    summary = json.loads((run_dir / "combined_dataset_info.json").read_text())["run_summary"]
    responses = summary["stages"]["responses"]["total"]
    assert responses["discarded_tokens"] > 0 and responses["gpu_hours_planned"] > 0
    main(["report", str(run_dir)])
    out = capsys.readouterr().out
    assert "GPU time per stage:" in out
    assert any(
        line.strip().startswith("responses:") and "planned" in line and "thrown away" in line
        for line in out.splitlines()
    )

    status = collect_status(run_dir)
    costs = {c.stage: c for c in status.gpu_hours}
    assert set(costs) == {"instructions", "responses", "multi_responses", "rewards"}
    assert costs["responses"].gpu_hours_planned == responses["gpu_hours_planned"]
    assert costs["responses"].source == "wall_clock"
    assert main(["status", str(run_dir)]) == 0
    assert "GPU time:" in capsys.readouterr().out
