"""Measured tokens/s per GPU beside the planned figure (status, run summary) and `calibrate`, on a
synthetic-engine local run; the figures are recomputed here from the shards' DONE.json files."""

from __future__ import annotations

import io
import json
import tomllib
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from helpers import small_config
from magpie_hpc.cli import main
from magpie_hpc.config import load_config
from magpie_hpc.context import RunContext
from magpie_hpc.plan import tokens_per_second_per_gpu
from magpie_hpc.status import collect_status, render_table

GENERATION = ("instructions", "responses", "multi_responses")


@pytest.fixture(scope="module")
def pilot(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("calibrate")
    # a slow synthetic engine, so that each shard's generating seconds are well above zero
    cfg = small_config(root / "small.toml", engine={"synthetic_tokens_per_second": 4000.0})
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
        "algebra",
        "--count",
        "4",
        "--config",
        str(cfg),
    ]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(args) == 0
    return Path(out.getvalue().strip().splitlines()[-1])


def by_hand(run_dir: Path, stage: str) -> float:
    done = [json.loads(p.read_text()) for p in sorted((run_dir / "work" / stage / "algebra").glob("shard-*/DONE.json"))]
    assert done and all(d["resumed_at_chunk"] == 0 for d in done)
    tp = json.loads((run_dir / "run.json").read_text())["model"]["tensor_parallel_size"]
    return sum(d["output_tokens"] for d in done) / sum((d["seconds"] - d["model_load_seconds"]) * tp for d in done)


def test_status_shows_measured_beside_planned(pilot):
    status = collect_status(pilot)
    ctx = RunContext(pilot)
    rows = {r.stage: r for r in status.throughput}
    assert set(rows) == set(GENERATION)
    for stage in GENERATION:
        assert rows[stage].measured_tokens_per_second_per_gpu == pytest.approx(by_hand(pilot, stage), rel=1e-3)
        assert rows[stage].planned_tokens_per_second_per_gpu == pytest.approx(
            tokens_per_second_per_gpu(ctx.cfg, stage, "algebra"), rel=1e-3
        )
        assert rows[stage].measured_on_gpu is False  # the synthetic engine has no GPU
    line = next(x for x in render_table(status).splitlines() if x.startswith("tokens/s per GPU, measured vs planned"))
    m, p = rows["responses"].measured_tokens_per_second_per_gpu, rows["responses"].planned_tokens_per_second_per_gpu
    assert f"; responses: {m:,.0f} vs {p:,.0f};" in line
    readme = next(pilot.glob("**/README.md")).read_text()
    assert "Generation tokens/s per GPU, measured" in readme and f"| responses | {m:,.0f} | {p:,.0f} |" in readme


def test_calibrate_prints_toml_that_config_accepts_and_the_plan_uses(pilot, tmp_path, capsys):
    assert main(["calibrate", str(pilot)]) == 0
    text = capsys.readouterr().out
    snippet = tmp_path / "measured.toml"
    snippet.write_text(text)
    ctx = RunContext(pilot)
    model, gpu = ctx.model.name, "A100-80GB"  # no GPU ran it: keyed by the run's hardware.gpu
    figures = tomllib.loads(text)["throughput"]["measured"][model][gpu]
    for stage in GENERATION:
        assert figures[stage] == pytest.approx(by_hand(pilot, stage), rel=1e-3)
    # the full run, with the pilot's figures: its shards are sized from them, not from the roofline
    full = load_config(snippet, {"model": model, "domains": "algebra"})
    assert tokens_per_second_per_gpu(full, "responses", "algebra") == figures["responses"]
    other_gpu = load_config(snippet, {"model": model, "domains": "algebra", "hardware": {"gpu": "H200"}})
    assert tokens_per_second_per_gpu(other_gpu, "responses", "algebra") != figures["responses"]


def test_calibrate_refuses_what_is_not_a_run(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: calibrate:") and err.count("\n") == 1
