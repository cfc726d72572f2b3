"""Instruction chunk planning: the shard's tail joins the chunk before it instead of running as a
near-empty batch of its own, and no chunk exceeds the cap that bounds what a preemption loses."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import small_config
from magpie_hpc.config import load_config
from magpie_hpc.launch import create_run, validate
from magpie_hpc.stages import run_shard
from magpie_hpc.context import RunContext
from magpie_hpc.stages.instructions import MAX_CHUNK_FACTOR, plan_chunk
from magpie_hpc.store import RunStore


def test_need_slightly_over_one_chunk_is_one_chunk():
    # 167 kept wanted at the 0.7 prior: 263 samples, just over 256. The old plan ran 256 and then a
    # separate small round; now it is one chunk, in whole requests of n=16.
    assert plan_chunk(167, 0.7, 256, 16) == 272
    # The tail of a long shard: 1.3 chunks left is one chunk, not a full one plus a sliver.
    assert plan_chunk(int(1.3 * 256 * 0.7 / 1.1), 0.7, 256, 16) == 336


@pytest.mark.parametrize("chunk_size,per_prompt", [(1, 16), (2, 16), (7, 3), (100, 16), (256, 16), (256, 1)])
def test_chunks_stay_within_the_cap_and_leave_no_sliver(chunk_size, per_prompt):
    cap = math.floor(chunk_size * MAX_CHUNK_FACTOR)
    for missing in range(1, 40 * chunk_size):
        samples = plan_chunk(missing, 0.7, chunk_size, per_prompt)
        assert 1 <= samples <= cap
        need = math.ceil(missing / 0.7 * 1.1)
        if cap < per_prompt:
            # A chunk smaller than one request of n=per_prompt: always the whole cap.
            assert samples == cap
            continue
        assert samples % per_prompt == 0  # whole requests: nothing generated to be thrown away
        # A chunk falls below half a chunk only when that is all the shard still needs, and a need
        # under 1.5 chunks that the cap allows is met in this one chunk.
        assert samples >= min(need, chunk_size // 2)
        if need < 1.5 * chunk_size and need <= cap - cap % per_prompt:
            assert samples >= need


def _run(tiny_models, root: Path, problems: int, chunk_size: int) -> Path:
    cfg = load_config(
        small_config(
            root / "cfg.toml",
            sharding={
                "instructions": problems,
                "responses": problems,
                "multi_responses": problems,
                "chunk_size": chunk_size,
            },
            instructions={"samples_per_prompt": 4, "oversample": 0.0},
            throughput={"keep_rate": 1.0},
            engine={"kind": "synthetic", "reward_kind": "synthetic"},
        ),
        {
            "model": str(tiny_models.deepseek),
            "reward_model": str(tiny_models.reward),
            "output_root": str(root / "data"),
            "domains": "algebra",
            "executor": "local",
        },
        count=problems,
    )
    return create_run(cfg, *validate(cfg))


def test_shard_just_over_one_chunk_runs_in_one_chunk(tiny_models, tmp_path):
    # Target 20 with chunks of 16: 22 samples asked (10% margin), one chunk of 24 (whole requests).
    run_dir = _run(tiny_models, tmp_path, problems=20, chunk_size=16)
    summary = run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    assert summary["chunks"] == 1 and summary["rows"] == 24 and summary["kept"] >= 20


def test_long_shard_chunks_are_capped_and_even(tiny_models, tmp_path):
    run_dir = _run(tiny_models, tmp_path, problems=100, chunk_size=16)
    summary = run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    folder = RunStore(run_dir).shard("instructions", "algebra", 0).path
    sizes = [pq.read_table(p).num_rows for p in sorted(folder.glob("part-*.parquet"))]
    assert summary["kept"] >= 100 and len(sizes) == summary["chunks"]
    assert max(sizes) <= 16 * MAX_CHUNK_FACTOR
    assert min(sizes[:-1], default=16) >= 8  # only a shard's genuine remainder may be small
