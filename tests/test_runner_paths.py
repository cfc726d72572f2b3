"""Paths of the shard runner, the local executor and `launch --resume` that a clean run never
takes: a lock lost mid-shard, an engine stream that ends early, a select that comes up short in a
local run, and relaunching into an existing run directory."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_checks import check_run
from helpers import make_run, small_config
from magpie_hpc.cli import main
from magpie_hpc.engine import EngineCache, Generator
from magpie_hpc.engine.synthetic import SyntheticGenerator
from magpie_hpc.errors import MagpieError
from magpie_hpc.executors.local import LocalExecutor
from magpie_hpc.stages import run_shard
from magpie_hpc.context import RunContext
from magpie_hpc.store import RunStore


def _ids(shard) -> list[str]:
    return [i for p in sorted(shard.path.glob("part-*.parquet")) for i in pq.read_table(p)["id"].to_pylist()]


def test_lock_lost_mid_shard_stops_before_the_next_commit(tiny_models, tmp_path):
    run_dir = make_run(tiny_models, tmp_path, count=8, engine={"synthetic_tokens_per_second": 300.0})
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    foreign = {"token": "taker", "host": "node-elsewhere", "pid": 1, "heartbeat": time.time() + 3600}

    def take_over():  # another node presumed this task dead and took the shard
        deadline = time.monotonic() + 60
        while not shard.chunk_path(0).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        (shard.path / "owner.json").write_text(json.dumps(foreign))

    thread = threading.Thread(target=take_over, daemon=True)
    thread.start()
    with pytest.raises(MagpieError, match="lost the shard's lock"):
        run_shard(RunContext(run_dir), "responses", "algebra", 0)
    thread.join()
    assert shard.done() is None
    assert len(shard.committed_indices()) < 4  # it stopped writing once it noticed
    assert json.loads((shard.path / "owner.json").read_text())["token"] == "taker"  # not removed
    assert "lost the shard's lock" in shard.attempts()[-1]["error"]


class _StreamEndsEarly(Generator):
    """An engine whose stream stops after its first chunk (a crashed engine core, say)."""

    name = "synthetic"

    def __init__(self, inner: SyntheticGenerator):
        self.inner = inner

    def generate(self, prompts, sampling, seeds=None):
        return self.inner.generate(prompts, sampling, seeds)

    def generate_stream(self, requests, on_finished=None):
        for request in requests:
            yield self.generate(request.prompts, request.sampling, request.seeds)
            return


def test_stream_that_ends_early_leaves_the_shard_not_done(tiny_models, tmp_path):
    run_dir = make_run(tiny_models, tmp_path, count=6)
    engines = EngineCache()
    engines._generator = _StreamEndsEarly(SyntheticGenerator(seed=1, user_marker_ids=[]))
    with pytest.raises(MagpieError, match="chunks ended before the shard was complete"):
        run_shard(RunContext(run_dir), "responses", "algebra", 0, engines=engines)
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    assert shard.done() is None and shard.committed_indices() == [0]
    # The next attempt, with a whole engine, finishes what is left after the committed chunk.
    summary = run_shard(RunContext(run_dir), "responses", "algebra", 0)
    assert summary["resumed_at_chunk"] == 1 and summary["rows"] == 6
    assert _ids(shard) == [f"algebra-{i}" for i in range(6)]


def test_local_executor_recovers_when_select_comes_up_short(tiny_models, tmp_path):
    """Most clean instructions lost (as a heavy duplicate rate would lose them): the local executor
    does what `resubmit` does on SLURM, generates the difference and selects again."""
    run_dir = make_run(tiny_models, tmp_path, count=6)
    store = RunStore(run_dir)
    ins = store.shard("instructions", "algebra", 0)
    table = pq.read_table(ins.chunk_path(0))
    keep = [t if i < 2 else None for i, t in enumerate(table["instruction"].to_pylist())]
    # through the store, so the chunk's record matches (a chunk rewritten by hand reads as damaged)
    ins.commit(0, table.set_column(table.column_names.index("instruction"), "instruction", pa.array(keep, "string")))
    for later in ins.committed_indices()[1:]:
        ins.chunk_path(later).unlink()
    shutil.rmtree(store.shard("select", "algebra", 0).path)
    LocalExecutor().launch(run_dir)
    assert (ins.path / "topup.json").exists() and ins.done()["resumed_at_chunk"] == 1
    check_run(run_dir, {"algebra": 6})


def _args(tiny_models, tmp_path, cfg: Path) -> list[str]:
    return [
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
        str(tmp_path / "data"),
        "--domains",
        "geometry",
        "--count",
        "4",
        "--config",
        str(cfg),
    ]


def test_launch_resume_finishes_a_run_and_guards_its_config(tiny_models, tmp_path, capsys):
    cfg = small_config(tmp_path / "small.toml")
    args = _args(tiny_models, tmp_path, cfg)
    assert main(args) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    # Lose the last reward shard and the dataset, as a run stopped before its end would.
    rewards = RunStore(run_dir).shard("rewards", "geometry", 1)
    shutil.rmtree(rewards.path)
    shutil.rmtree(run_dir / "geometry")
    (run_dir / "combined_dataset_info.json").unlink()
    assert main([*args, "--resume", str(run_dir)]) == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == run_dir
    assert rewards.done() is not None
    check_run(run_dir, {"geometry": 4})
    manifest = json.loads((run_dir / "run.json").read_text())
    assert "config_history" not in manifest  # same config: nothing recorded

    # A changed config is refused unless forced, and recorded when it is.
    changed = small_config(tmp_path / "changed.toml", quality={"max_truncation_rate": 0.5})
    assert main([*_args(tiny_models, tmp_path, changed), "--resume", str(run_dir)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main([*_args(tiny_models, tmp_path, changed), "--resume", str(run_dir), "--force"]) == 0
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["config"]["quality"]["max_truncation_rate"] == 0.5 and len(manifest["config_history"]) == 1
    # A change of the shard plan never applies, forced or not.
    replanned = small_config(
        tmp_path / "replan.toml", sharding={"instructions": 4, "responses": 1, "multi_responses": 2, "chunk_size": 2}
    )
    capsys.readouterr()
    assert main([*_args(tiny_models, tmp_path, replanned), "--resume", str(run_dir), "--force"]) == 2
    assert "alters the shard plan" in capsys.readouterr().err
