"""Seeds of the instruction stage, against vLLM's GPU seed semantics (sample k of a request seeded
`seed + k`, v1/engine/parallel_sampling.py) as the synthetic engine models them, and against the
CPU build's (per-request seeds dropped, the engine-level seed decides); `instructions.max_rounds`;
and when a shard counts as complete."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import small_config
from magpie_hpc.config import load_config
from magpie_hpc.context import RunContext
from magpie_hpc.engine import Sampling, build_generator
from magpie_hpc.engine.synthetic import Misbehaviour, SyntheticGenerator
from magpie_hpc.errors import MagpieError
from magpie_hpc.launch import create_run, validate
from magpie_hpc.plan import derive_seed, stage_shards
from magpie_hpc.stages import run_shard
from magpie_hpc.stages.instructions import INSTRUCTION_SCHEMA, InstructionsWork
from magpie_hpc.store import RunStore

MARKER = (7, 8)
MAGPIE = [1, 2, 3, *MARKER]  # ends with the user marker: an instruction prompt
NO_REPEATS = Misbehaviour(duplicate_rate=0.0)  # no stock problem: equal texts come from equal seeds only


def _texts(results) -> list[str]:
    return [c.text for r in results for c in r.completions]


def test_synthetic_engine_follows_vllm_gpu_seeds():
    engine = SyntheticGenerator(seed=0, user_marker_ids=MARKER, misbehaviour=NO_REPEATS)
    sampling = Sampling(temperature=1.2, top_p=1.0, max_tokens=200, n=4, seed=1000)
    shared = _texts(engine.generate([MAGPIE, MAGPIE], sampling))
    # One seed for two identical prompts: the same four texts twice, as on a GPU.
    assert shared[:4] == shared[4:] and len(set(shared[:4])) == 4
    # Sample k is the sample of seed + k, whatever batch it came in and whatever the engine seed.
    other = SyntheticGenerator(seed=99, user_marker_ids=MARKER, misbehaviour=NO_REPEATS)
    singles = [
        other.generate([MAGPIE], dataclasses.replace(sampling, n=1, seed=1000 + k))[0].completions[0].text
        for k in range(4)
    ]
    assert singles == shared[:4]
    # Per-prompt seeds in ranges of n: eight different texts, the first four the same as before.
    ranged = _texts(engine.generate([MAGPIE, MAGPIE], sampling, seeds=[1000, 1004]))
    assert ranged[:4] == shared[:4] and len(set(ranged)) == 8
    # Another prompt with the same seed writes something else.
    assert _texts(engine.generate([[5, *MAGPIE]], sampling))[0] != shared[0]
    with pytest.raises(ValueError, match="2 seeds for 1 prompts"):
        engine.generate([MAGPIE], sampling, seeds=[1, 2])


def test_synthetic_engine_without_request_seeds_follows_the_engine_seed():
    sampling = Sampling(temperature=1.2, top_p=1.0, max_tokens=200, n=4)
    for seeded, engine_kwargs in ((None, {}), (1000, {"request_seeds": False})):  # no seed / CPU build
        engine = SyntheticGenerator(seed=5, user_marker_ids=MARKER, misbehaviour=NO_REPEATS, **engine_kwargs)
        params = dataclasses.replace(sampling, seed=seeded)
        first, second = (_texts(engine.generate([MAGPIE, MAGPIE], params)) for _ in range(2))
        assert len(set(first)) == 8 and not set(first) & set(second)  # call order and position decide
        fresh = SyntheticGenerator(seed=5, user_marker_ids=MARKER, misbehaviour=NO_REPEATS, **engine_kwargs)
        assert _texts(fresh.generate([MAGPIE, MAGPIE], params)) == first  # same engine seed: replayed
        moved = SyntheticGenerator(seed=6, user_marker_ids=MARKER, misbehaviour=NO_REPEATS, **engine_kwargs)
        assert not set(_texts(moved.generate([MAGPIE, MAGPIE], params))) & set(first)


def test_synthetic_engine_greedy_is_the_prompt_alone():
    engine = SyntheticGenerator(seed=0, user_marker_ids=MARKER)
    greedy = Sampling(temperature=0.0, top_p=1.0, max_tokens=200, n=1, seed=3)
    assert _texts(engine.generate([MAGPIE], greedy)) == _texts(
        engine.generate([MAGPIE], dataclasses.replace(greedy, seed=4))
    )
    with pytest.raises(ValueError, match="n must be 1 when using greedy sampling"):
        engine.generate([MAGPIE], dataclasses.replace(greedy, n=2))


def _run(tiny_models, root: Path, problems: int, chunk_size: int, per_prompt: int = 16, **sections) -> Path:
    engine = {"kind": "synthetic", "reward_kind": "synthetic", **sections.pop("engine", {})}
    instructions = {"samples_per_prompt": per_prompt, "oversample": 0.0, **sections.pop("instructions", {})}
    cfg = load_config(
        small_config(
            root / "cfg.toml",
            sharding={
                "instructions": problems,
                "responses": problems,
                "multi_responses": problems,
                "chunk_size": chunk_size,
            },
            instructions=instructions,
            engine=engine,
            **sections,
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


def _chunks(run_dir: Path) -> list[pa.Table]:
    store = RunStore(run_dir).shard("instructions", "algebra", 0)
    return [pq.read_table(store.chunk_path(i)) for i in store.committed_indices()]


def test_identical_prompts_get_their_own_seeds_on_gpu(tiny_models, tmp_path):
    # 60 instructions in chunks of 64 samples: each chunk holds 4 requests of n=16 of one prompt.
    run_dir = _run(tiny_models, tmp_path, problems=60, chunk_size=64, engine={"synthetic_duplicate_rate": 0.0})
    summary = run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    rows = [row for table in _chunks(run_dir) for row in table.to_pylist()]
    drops = Counter(r["drop_reason"] for r in rows if r["drop_reason"])
    # Kept is what was sampled less what cleaning drops: no pile of duplicates (one shared seed made
    # every request of a chunk return the same 16 texts, and 3 of every 4 samples were duplicates).
    assert summary["kept"] >= 60 and drops["duplicate"] <= 2
    assert summary["kept"] == len(rows) - sum(drops.values())
    # Each record carries the seed of its own sample: request r's sample k has seed S + r*n + k.
    for chunk in {r["chunk"] for r in rows}:
        start = derive_seed(RunContext(run_dir).cfg.seed, "instructions", "algebra", 0, chunk)
        in_chunk = [r for r in rows if r["chunk"] == chunk]
        assert [r["seed"] for r in in_chunk] == list(range(start, start + len(in_chunk)))
    assert len({r["seed"] for r in rows}) == len(rows)
    # ...and that seed alone reproduces the sample (another engine seed, a batch of one).
    ctx = RunContext(run_dir)
    work = InstructionsWork(ctx, "algebra", stage_shards(ctx.cfg, "instructions", "algebra")[0])
    engine = build_generator(ctx.cfg, ctx.model, ctx.prompts, seed=12345)
    d = ctx.cfg.domain("algebra")
    for row in rows[:: max(1, len(rows) // 20)]:
        sampling = Sampling(
            temperature=d.instruction_temperature,
            top_p=ctx.cfg.instructions.top_p,
            max_tokens=d.max_tokens_instruction,
            n=1,
            seed=row["seed"],
            stop=ctx.prompts.stop_strings,
            stop_token_ids=ctx.prompts.stop_token_ids,
        )
        assert engine.generate([work.prompt_ids], sampling)[0].completions[0].text == row["raw"]


def test_resumed_chunk_does_not_replay_chunk_zero_on_cpu(tiny_models, tmp_path):
    # The CPU build drops per-request seeds: then only the engine seed, which includes the resume
    # point, keeps a resumed task from sampling exactly what chunk 0 sampled.
    run_dir = _run(
        tiny_models,
        tmp_path,
        problems=24,
        chunk_size=8,
        per_prompt=4,
        engine={"synthetic_duplicate_rate": 0.0, "synthetic_request_seeds": False},
    )
    run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    store = RunStore(run_dir).shard("instructions", "algebra", 0)
    first = _chunks(run_dir)[0]["raw"].to_pylist()
    assert len(store.committed_indices()) >= 3
    for index in store.committed_indices()[1:]:
        store.chunk_path(index).unlink()
    store.done_path.unlink()
    summary = run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    assert summary["resumed_at_chunk"] == 1
    resumed = _chunks(run_dir)[1]
    assert not set(resumed["raw"].to_pylist()) & set(first)
    assert "duplicate" not in resumed["drop_reason"].to_pylist()


def test_max_rounds_fails_with_the_keep_rate_and_drop_reasons(tiny_models, tmp_path):
    # 85% of samples run past max_tokens: at the planned keep rate of 70% two rounds are far too few.
    run_dir = _run(
        tiny_models,
        tmp_path,
        problems=20,
        chunk_size=16,
        per_prompt=4,
        engine={"synthetic_length_rate": 0.85},
        instructions={"max_rounds": 2},
    )
    with pytest.raises(MagpieError, match=r"instructions\.max_rounds") as failed:
        run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    rows = [row for table in _chunks(run_dir) for row in table.to_pylist()]
    ctx = RunContext(run_dir)
    work = InstructionsWork(ctx, "algebra", stage_shards(ctx.cfg, "instructions", "algebra")[0])
    assert work.round_samples() == 32  # 20 / 0.7 * 1.1 = 32 samples, whole requests of 4
    assert len(rows) == 2 * work.round_samples()  # it sampled its two rounds, not one more
    kept = sum(r["instruction"] is not None for r in rows)
    message = str(failed.value)
    assert f"{kept} of 20 clean instructions after {len(rows)} samples" in message
    assert f"keep rate {kept / len(rows):.1%}" in message
    drops = Counter(r["drop_reason"] for r in rows if r["drop_reason"])
    assert drops["truncated"] > 0
    listed = dict((reason, int(n)) for reason, n in re.findall(r"(\w+) (\d+)(?=[,.])", message.split("drops: ")[1]))
    assert listed == dict(drops)
    assert RunStore(run_dir).shard("instructions", "algebra", 0).done() is None


def _table(kept: int, dropped: int) -> pa.Table:
    n = kept + dropped
    return pa.table(
        {
            "sample": list(range(n)),
            "instruction": [f"Problem {i}: prove it." for i in range(kept)] + [None] * dropped,
            "raw": ["x"] * n,
            "drop_reason": [None] * kept + ["dangling"] * dropped,
            "answer_cut": [False] * n,
            "finish_reason": ["stop"] * n,
            "prompt_tokens": [10] * n,
            "output_tokens": [5] * n,
            "seed": list(range(n)),
            "chunk": [0] * n,
            "created": [0] * n,
        },
        schema=INSTRUCTION_SCHEMA,
    )


def test_a_shard_one_short_of_its_target_is_not_complete(tiny_models, tmp_path):
    run_dir = _run(tiny_models, tmp_path, problems=10, chunk_size=8, per_prompt=4)
    ctx = RunContext(run_dir)
    work = InstructionsWork(ctx, "algebra", stage_shards(ctx.cfg, "instructions", "algebra")[0])
    assert work.target == 10
    assert work.next_chunk([_table(6, 2), _table(3, 1)]) >= 1  # 9 of 10: one more chunk
    assert work.next_chunk([_table(6, 2), _table(4, 1)]) is None  # 10 of 10: done
    # End to end: the shard holds at least its target when it is marked done.
    summary = run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    assert summary["kept"] >= 10
    assert sum(t.num_rows - t["instruction"].null_count for t in _chunks(run_dir)) == summary["kept"]
