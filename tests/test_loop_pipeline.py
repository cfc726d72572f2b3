"""Loops end to end on the synthetic engine, which loops at a rate the test sets and, like vLLM,
stops a loop itself (finish reason `repetition`) only when the stage's repetition detection is on;
with it off the loop runs on until max_tokens cuts it. What the chunk files hold must be what
DONE.json, dataset_info.json, the card, `report` and the run summary say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import local_launch, small_config
from magpie_hpc.cli import main
from magpie_hpc.quality.loops import ends_in_loop
from magpie_hpc.store import RunStore

DOMAIN = "geometry"
COUNT = 12
MAX_TOKENS = (48, 300)
RATES = {"synthetic_loop_rate": 0.3, "synthetic_duplicate_rate": 0.0}


def _run(tiny_models, root: Path, detection: bool) -> Path:
    off = {"repetition_detection": {"enabled": detection}}
    cfg = small_config(
        root / "cfg.toml",
        max_tokens=MAX_TOKENS,
        sharding={"instructions": 12, "responses": 6, "multi_responses": 6, "chunk_size": 6},
        engine=RATES,
        instructions=off,
        responses=off,
        multi_responses={"max_tokens": MAX_TOKENS[1], **off},
    )
    assert main(local_launch(tiny_models, root / "data", DOMAIN, COUNT, cfg)) == 0
    (run,) = (root / "data").iterdir()
    return run


@pytest.fixture(scope="module")
def detected(tiny_models, tmp_path_factory) -> Path:
    return _run(tiny_models, tmp_path_factory.mktemp("loops-on"), True)


@pytest.fixture(scope="module")
def undetected(tiny_models, tmp_path_factory) -> Path:
    return _run(tiny_models, tmp_path_factory.mktemp("loops-off"), False)


def _shards(run: Path, stage: str):
    store, shard = RunStore(run), 0
    while (folder := store.shard(stage, DOMAIN, shard)).path.is_dir():
        yield folder
        shard += 1


def _info(run: Path) -> dict:
    return json.loads((run / DOMAIN / "dataset_info.json").read_text())


def test_looping_instructions_are_dropped_with_their_own_reason(detected):
    rows = [r for s in _shards(detected, "instructions") for r in s.read_all().to_pylist()]
    loops = [r for r in rows if r["finish_reason"] == "repetition"]
    assert loops, "the rate set gives looping instructions"
    assert all(r["instruction"] is None and r["drop_reason"] == "repetition" for r in loops)
    drops = sum(
        int((s.done() or {}).get("drop_reasons", {}).get("repetition", 0)) for s in _shards(detected, "instructions")
    )
    assert drops == len(loops)


def test_loop_stop_is_counted_from_the_chunks_to_the_card(detected, capsys):
    stopped = {}
    saved = {}
    for stage, max_tokens in (("responses", MAX_TOKENS[1]), ("multi_responses", MAX_TOKENS[1])):
        rows = [r for s in _shards(detected, stage) for r in s.read_all().to_pylist()]
        finishes = [f for r in rows for f in r["finish_reasons"]]
        tokens = [t for r in rows for t in r["output_tokens"]]
        assert all(c is False for r in rows for f, c in zip(r["finish_reasons"], r["complete"]) if f == "repetition")
        looped = [t for f, t in zip(finishes, tokens) if f == "repetition"]
        assert looped, stage
        dones = [s.done() for s in _shards(detected, stage)]
        assert sum(d["finish_reasons"].get("repetition", 0) for d in dones) == len(looped)
        assert sum(d["repetition_output_tokens"] for d in dones) == sum(looped)
        stopped[stage] = len(looped)
        saved[stage] = len(looped) * max_tokens - sum(looped)
    info = _info(detected)
    counts = info["counts"]
    assert counts["sft_stopped_as_loops"] == stopped["responses"]
    assert counts["preference_stopped_as_loops"] == stopped["multi_responses"]
    # A loop is never complete: no SFT record comes from one.
    sft = json.loads((detected / DOMAIN / info["files"]["sft_data"]).read_text())
    assert len(sft) <= COUNT - stopped["responses"]
    summary = json.loads((detected / "combined_dataset_info.json").read_text())["run_summary"]
    for stage in ("responses", "multi_responses"):
        assert summary["stages"][stage]["domains"][DOMAIN]["loop_tokens_saved"] == saved[stage], summary["stages"][
            stage
        ]
    card = (detected / "README.md").read_text()
    assert "stopped as loops" in card and "repetition_detection.enabled = false" in card
    assert main(["report", str(detected), "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert json.dumps(report).count("stopped_as_loops") >= 1


def test_without_detection_loops_run_to_max_tokens_and_are_counted_after_the_fact(undetected):
    for stage in ("instructions", "responses", "multi_responses"):
        for shard in _shards(undetected, stage):
            done = shard.done()
            assert "repetition" not in done["finish_reasons"], (stage, done["finish_reasons"])
    rows = [r for s in _shards(undetected, "responses") for r in s.read_all().to_pylist()]
    cut = [
        (text, tokens)
        for r in rows
        for text, f, tokens in zip(r["responses"], r["finish_reasons"], r["output_tokens"])
        if f == "length"
    ]
    looping = [tokens for text, tokens in cut if ends_in_loop(text)]
    assert looping, "the loops ran on to max_tokens"
    assert all(tokens == MAX_TOKENS[1] for tokens in looping)
    loops = _info(undetected)["quality"]["loops"]["sft"]
    assert loops["stopped_as_loops"] == 0
    assert loops["cut_off_looping"] == len(looping)
    assert loops["cut_off_long"] == len(cut) - len(looping)
