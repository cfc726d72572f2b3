"""The pipeline against a synthetic engine that misbehaves like a real model: samples cut at
max_tokens, loops, responses that never close `</think>`, repeated samples, answers that agree and
answers that differ. Rates are set so that every branch of instruction cleaning, SFT exclusion and
DPO skipping runs; the counts in the output files must equal what the chunk files hold.

One run (local executor, one domain) is shared by the module.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from helpers import local_launch, small_config
from magpie_hpc.cli import main
from magpie_hpc.context import RunContext
from magpie_hpc.config import load_config
from magpie_hpc.merge import merge_run
from magpie_hpc.quality.answers import split_reasoning
from magpie_hpc.quality.dpo import SKIP_REASONS, choose_pair
from magpie_hpc.store import RunStore

DOMAIN = "algebra"
COUNT = 40
RATES = {
    "synthetic_length_rate": 0.2,
    "synthetic_loop_rate": 0.1,
    "synthetic_no_think_rate": 0.15,
    "synthetic_duplicate_rate": 0.3,
    "synthetic_answer_agreement": 0.5,
}
MIN_MARGIN = 0.3


@pytest.fixture(scope="module")
def run_dir(tiny_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("misbehaving")
    cfg = small_config(
        root / "cfg.toml",
        max_tokens=(64, 400),
        sharding={"instructions": 20, "responses": 16, "multi_responses": 16, "chunk_size": 8},
        engine=RATES,
        quality={"dpo_min_margin": MIN_MARGIN},
    )
    assert main(local_launch(tiny_models, root / "data", DOMAIN, COUNT, cfg)) == 0
    (run,) = (root / "data").iterdir()
    return run


def _rows(run: Path, stage: str) -> list[dict]:
    """Every committed row of a stage's shards, in shard and chunk order."""
    store = RunStore(run)
    rows, shard = [], 0
    while (folder := store.shard(stage, DOMAIN, shard)).path.is_dir():
        rows += folder.read_all().to_pylist()
        shard += 1
    return rows


def _info(run: Path) -> dict:
    return json.loads((run / DOMAIN / "dataset_info.json").read_text())


def _records(run: Path, name: str) -> list[dict]:
    return json.loads((run / DOMAIN / _info(run)["files"][name]).read_text())


def _closes_think(text: str) -> bool:
    return split_reasoning(text)[0] is not None


def test_instruction_cleaning_drops_cut_and_repeated_samples(run_dir):
    rows = _rows(run_dir, "instructions")
    drops = Counter(r["drop_reason"] for r in rows if r["drop_reason"])
    # Length-cut samples (the engine cut them at max_tokens) are dropped as truncated, every one.
    cut = [r for r in rows if r["finish_reason"] == "length"]
    assert cut and all(r["instruction"] is None and r["drop_reason"] == "truncated" for r in cut)
    assert all(r["output_tokens"] == 64 for r in cut)
    assert drops["truncated"] == len(cut)
    # The repeated stock problem: kept once per shard, every later copy dropped as a duplicate.
    assert drops["duplicate"] > 0
    # What the run reports is what its chunk files hold.
    quality = _info(run_dir)["quality"]
    assert quality["instruction_drop_reasons"] == dict(drops)
    assert quality["instruction_stage_duplicates"] == drops["duplicate"]
    store = RunStore(run_dir)
    summaries = [
        json.loads((p / "DONE.json").read_text())
        for p in sorted(store.shard("instructions", DOMAIN, 0).path.parent.glob("shard-*"))
    ]
    assert sum(s["kept"] for s in summaries) == sum(r["instruction"] is not None for r in rows)
    assert sum(s["rows"] for s in summaries) == len(rows)


def test_sft_leaves_out_incomplete_responses(run_dir):
    rows = _rows(run_dir, "responses")
    assert len(rows) == COUNT
    finish = Counter(r["finish_reasons"][0] for r in rows)
    # Every way a response can be incomplete is in this run...
    assert finish["length"] and finish["repetition"]
    assert any(r["finish_reasons"][0] == "stop" and not _closes_think(r["responses"][0]) for r in rows)
    # ...and the SFT file holds exactly the finished responses that closed </think>, judged here from
    # the texts and finish reasons themselves, not from the stage's `complete` flag.
    expected = [r for r in rows if r["finish_reasons"][0] == "stop" and _closes_think(r["responses"][0])]
    sft = _records(run_dir, "sft_data")
    assert [r["id"] for r in sft] == [r["id"] for r in expected]
    assert [r["response"] for r in sft] == [r["responses"][0] for r in expected]
    assert all(r["complete"] == [True] for r in expected)
    assert all(not r["complete"][0] for r in rows if r not in expected)
    counts = _info(run_dir)["counts"]
    assert counts["sft_records"] == len(sft) and counts["sft_excluded_incomplete"] == COUNT - len(expected)
    assert 0 < len(sft) < COUNT


def _loops(text: str) -> bool:
    """The tail repeats one phrase at least 4 times (what the engine's loops look like)."""
    return re.search(r"(.{8,}?)(?: \1){3,}$", text) is not None


def test_loops_end_in_a_repeated_tail(run_dir):
    responses = [(t, f) for r in _rows(run_dir, "multi_responses") for t, f in zip(r["responses"], r["finish_reasons"])]
    looped = [t for t, f in responses if f == "repetition"]
    assert looped and all(_loops(t) and not _closes_think(t) for t in looped)


def _expected_dpo(run: Path) -> tuple[list[tuple[str, int, int]], Counter]:
    """Pairs and skip reasons recomputed from the multi-response and reward chunk files."""
    scores = {r["id"]: r["scores"] for r in _rows(run, "rewards")}
    pairs, skipped = [], Counter()
    for row in _rows(run, "multi_responses"):
        usable = [
            f == "stop" and _closes_think(t) and bool(split_reasoning(t)[1])
            for t, f in zip(row["responses"], row["finish_reasons"])
        ]
        pair, reason = choose_pair(row["responses"], scores[row["id"]], usable, MIN_MARGIN)
        if pair is None:
            skipped[reason] += 1
        else:
            pairs.append((row["id"], pair.chosen, pair.rejected))
    return pairs, skipped


def test_dpo_pairs_and_every_skip_reason(run_dir):
    # Cut-off responses include some cut after </think>, in an answer part that is not empty.
    multi = [(t, f) for r in _rows(run_dir, "multi_responses") for t, f in zip(r["responses"], r["finish_reasons"])]
    assert any(f == "length" and _closes_think(t) and split_reasoning(t)[1] for t, f in multi)
    pairs, skipped = _expected_dpo(run_dir)
    # The rates make each of the DPO rule's skip reasons happen: all complete responses the same text
    # (no_pair), all complete ones the same answer and so the same score (tie), and small margins.
    assert set(skipped) == set(SKIP_REASONS) and pairs
    dpo = _records(run_dir, "dpo_data")
    assert [(r["id"], r["chosen_index"], r["rejected_index"]) for r in dpo] == pairs
    assert all(r["margin"] >= MIN_MARGIN for r in dpo)
    counts = _info(run_dir)["counts"]
    assert counts["dpo_pairs"] == len(pairs)
    assert {reason: counts[f"dpo_skipped_{reason}"] for reason in SKIP_REASONS} == {r: skipped[r] for r in SKIP_REASONS}
    assert counts["dpo_skipped_disagreeing"] == 0


def test_answers_agree_and_disagree(run_dir, tmp_path):
    pref = _records(run_dir, "preference_data")
    rows = {r["id"]: r for r in _rows(run_dir, "multi_responses")}
    assert [r["id"] for r in pref] == list(rows)
    for rec in pref:
        given = [a for a in rec["final_answers"] if a is not None]
        assert rec["answers_agree"] == any(given.count(a) >= 2 for a in given)
        # A final answer only where the response finished and closed </think>.
        row = rows[rec["id"]]
        for answer, text, finish in zip(rec["final_answers"], row["responses"], row["finish_reasons"]):
            if answer is not None:
                assert finish == "stop" and _closes_think(text)
    agreeing = [r["id"] for r in pref if r["answers_agree"]]
    assert 0 < len(agreeing) < COUNT
    counts = _info(run_dir)["counts"]
    assert counts["answers_disagreeing"] == COUNT - len(agreeing)

    # drop_disagreeing: the disagreeing problems leave the preference and DPO files, counted.
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "run.json").read_text())
    manifest["config"]["quality"]["drop_disagreeing"] = True
    (copy / "run.json").write_text(json.dumps(manifest))
    merge_run(RunContext(copy))
    assert [r["id"] for r in _records(copy, "preference_data")] == agreeing
    pairs, _ = _expected_dpo(run_dir)
    assert [r["id"] for r in _records(copy, "dpo_data")] == [i for i, _, _ in pairs if i in agreeing]
    dropped = _info(copy)["counts"]
    assert dropped["preference_dropped_disagreeing"] == dropped["dpo_skipped_disagreeing"] == COUNT - len(agreeing)


def test_rates_that_add_up_past_one_are_refused(tmp_path):
    from magpie_hpc.errors import ConfigError

    cfg = small_config(tmp_path / "cfg.toml", engine={"synthetic_length_rate": 0.6, "synthetic_duplicate_rate": 0.5})
    with pytest.raises(ConfigError, match="add up to 1.1"):
        load_config(cfg)
