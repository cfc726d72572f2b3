"""The shard plan's arithmetic: shard sizes from the throughput model, stage-to-shard mapping,
oversampling targets, seeds and GPU-hour estimates, on the package's own default config."""

from __future__ import annotations

import math

import pytest

from magpie_hpc.config import load_config
from magpie_hpc.plan import (
    ShardRange,
    derive_seed,
    estimated_gpu_hours,
    estimated_tokens,
    instruction_id,
    instruction_target,
    plan_summary,
    shard_size,
    stage_shards,
)


@pytest.fixture()
def cfg():
    # A configured rate and one GPU per task: the throughput model's arithmetic on its own (what the
    # roofline planner puts in their place when they are unset is tests/test_roofline.py's).
    return load_config(
        overrides={
            "domains": "algebra,geometry",
            "throughput": {"generation_tokens_per_second": 2500.0},
            "engine": {"tensor_parallel_size": 1},
        },
        counts={"algebra": 1000, "geometry": 30},
    )


def test_explicit_shard_sizes_win(cfg):
    cfg = cfg.model_copy(update={"sharding": cfg.sharding.model_copy(update={"responses": 7})})
    assert shard_size(cfg, "responses", "algebra") == 7
    assert [r.size for r in stage_shards(cfg, "responses", "algebra")][:2] == [7, 7]
    assert len(stage_shards(cfg, "responses", "algebra")) == math.ceil(1000 / 7)


def test_throughput_model_fills_the_target_task_hours(cfg):
    # With no explicit size: problems per task = (task hours - model load) * tokens/s / tokens per problem.
    t, d = cfg.throughput, cfg.domain("algebra")
    per_problem = d.max_tokens_response * t.response_fill
    expected = int(
        (cfg.sharding.target_task_hours * 3600 - t.model_load_seconds) * t.generation_tokens_per_second / per_problem
    )
    assert cfg.sharding.responses is None
    assert shard_size(cfg, "responses", "algebra") == expected
    # Bigger tasks for stages that generate less per problem.
    assert shard_size(cfg, "responses", "algebra") > shard_size(cfg, "multi_responses", "algebra")


def test_tiny_budget_still_gives_a_positive_size(cfg):
    slow = cfg.model_copy(
        update={
            "throughput": cfg.throughput.model_copy(
                update={"generation_tokens_per_second": 0.001, "model_load_seconds": 10**6}
            )
        }
    )
    assert shard_size(slow, "multi_responses", "algebra") == 1


def test_stage_mapping(cfg):
    assert stage_shards(cfg, "select", "algebra") == [ShardRange(0, 0, 1000)]
    # Reward shard i scores multi-response shard i: identical ranges (what aftercorr relies on).
    assert stage_shards(cfg, "rewards", "algebra") == stage_shards(cfg, "multi_responses", "algebra")
    summary = plan_summary(cfg)
    assert set(summary) == {"algebra", "geometry"}
    assert summary["algebra"]["select"] == 1
    assert (
        summary["algebra"]["rewards"]
        == summary["algebra"]["multi_responses"]
        == len(stage_shards(cfg, "multi_responses", "algebra"))
    )


def test_instruction_target_oversamples(cfg):
    over = cfg.instructions.oversample
    assert over > 0
    assert instruction_target(cfg, ShardRange(0, 0, 100)) == math.ceil(100 * (1 + over))
    assert instruction_target(cfg, ShardRange(3, 10, 11)) == math.ceil(1 + over)


def test_seeds_are_distinct_reproducible_and_in_range():
    seeds = {derive_seed(0, "responses", "algebra", shard, chunk) for shard in range(20) for chunk in range(20)}
    assert len(seeds) == 400 and all(0 <= s < 2**31 for s in seeds)
    assert derive_seed(0, "x", 1) == derive_seed(0, "x", 1) != derive_seed(1, "x", 1)
    assert derive_seed(0, "x", 1) != derive_seed(0, "x", 2)
    assert instruction_id("algebra", 7) == "algebra-7"


def test_estimated_tokens_and_hours(cfg):
    d, t, m = cfg.domain("geometry"), cfg.throughput, cfg.multi_responses
    assert estimated_tokens(cfg, "responses", "geometry") == pytest.approx(30 * d.max_tokens_response * t.response_fill)
    assert estimated_tokens(cfg, "multi_responses", "geometry") == pytest.approx(
        30 * m.num_responses * m.max_tokens * t.response_fill
    )
    instruction = d.max_tokens_instruction * t.instruction_fill
    assert estimated_tokens(cfg, "instructions", "geometry") == pytest.approx(
        30 * (1 + cfg.instructions.oversample) / t.keep_rate * instruction
    )
    assert estimated_tokens(cfg, "rewards", "geometry") == pytest.approx(
        30 * m.num_responses * (instruction + m.max_tokens * t.response_fill)
    )
    assert estimated_tokens(cfg, "select", "geometry") == 0.0
    assert estimated_gpu_hours(cfg, "select", "geometry") == 0.0
    shards = len(stage_shards(cfg, "rewards", "geometry"))
    assert estimated_gpu_hours(cfg, "rewards", "geometry") == pytest.approx(
        (estimated_tokens(cfg, "rewards", "geometry") / t.reward_tokens_per_second + shards * t.model_load_seconds)
        / 3600
    )
    shards = len(stage_shards(cfg, "responses", "geometry"))
    assert estimated_gpu_hours(cfg, "responses", "geometry") == pytest.approx(
        (
            estimated_tokens(cfg, "responses", "geometry") / t.generation_tokens_per_second
            + shards * t.model_load_seconds
        )
        / 3600
    )
