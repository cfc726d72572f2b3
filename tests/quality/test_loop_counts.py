"""Finish reason "repetition" (vLLM stopped a loop) through the counting code: cleaning's drop
reason, the responses' complete flag, the merge's per-file counts and card, the run summary's tokens
saved and `report`. The engine side is tested with real vLLM in tests/test_vllm_pipeline.py."""

from __future__ import annotations

from types import SimpleNamespace

from magpie_hpc.config import RunConfig
from magpie_hpc.engine import Completion, PromptResult
from magpie_hpc.merge import LoopCount, loop_figures
from magpie_hpc.plan import ShardRange, loop_tokens_saved, planned_loop_savings
from magpie_hpc.quality.cleaning import clean_instruction
from magpie_hpc.quality.dpo import choose_pair
from magpie_hpc.report.quality import format_report
from magpie_hpc.report.sections import loops_cell, loops_note
from magpie_hpc.run_summary import build_run_summary, render_run_summary
from magpie_hpc.stages.responses import ResponsesWork
from magpie_hpc.store import RunStore

LOOP = "<think>\nWe count. " + "Wait, let me check the sum again, it is $n^2$. " * 30
LONG = "<think>\n" + " ".join(f"Case {k}: the sum is {k * k}." for k in range(200))


def test_an_instruction_ending_in_a_loop_has_its_own_drop_reason():
    text = "Let $G$ be a group of order 12. Prove that " + "$G$ has a normal subgroup and " * 20
    assert clean_instruction(text, "repetition").dropped == "repetition"
    assert clean_instruction(text, "length").dropped == "truncated"


def _responses_work(reasoning: bool = True) -> ResponsesWork:
    work = object.__new__(ResponsesWork)
    work.cfg, work.domain, work.shard = RunConfig(), "algebra", ShardRange(0, 0, 3)
    work.ctx = SimpleNamespace(model=SimpleNamespace(template={"reasoning": reasoning}))
    work.items = [{"id": f"algebra-{i}", "instruction": "q"} for i in range(3)]
    return work


def test_a_response_stopped_as_a_loop_is_not_complete():
    done = "<think>\nok\n</think>\n\nThe answer is $\\boxed{2}$."
    results = [
        PromptResult(5, [Completion(done, 10, "stop")]),
        PromptResult(5, [Completion(LOOP, 400, "repetition")]),
        PromptResult(5, [Completion(LONG, 4096, "length")]),
    ]
    table = _responses_work().to_table(slice(0, 3), 0, results)
    assert table["complete"].to_pylist() == [[True], [False], [False]]
    assert table["looped"].to_pylist() == [[False], [True], [False]]
    assert table["truncated"].to_pylist() == [[False], [False], [True]]
    # so it is never a DPO side, even with the best score
    pair, _ = choose_pair(["a", "b", "c"], [0.1, 9.0, 0.5], [True, False, True])
    assert pair is not None and 1 not in (pair.chosen, pair.rejected)


def test_loop_count_tells_stopped_loops_cut_off_loops_and_long_responses_apart():
    count = LoopCount()
    count.add(["stop", "repetition", "length", "length"], ["fine", LOOP[:300], LOOP, LONG])
    figures = count.figures()
    assert figures == {
        "responses": 4,
        "stopped_as_loops": 1,
        "loop_stop_rate": 0.25,
        "cut_off_looping": 1,
        "cut_off_long": 1,
    }
    assert count.stats("sft") == {"sft_stopped_as_loops": 1, "sft_cut_off_looping": 1, "sft_cut_off_long": 1}


def test_card_and_report_show_the_loops_and_the_switch():
    cfg = RunConfig()
    cfg.multi_responses.repetition_detection.enabled = False
    sft, pref = LoopCount(), LoopCount()
    sft.add(["repetition", "repetition", "stop"], ["x", "y", "z"])
    pref.add(["length", "length"], [LOOP, LONG])
    quality = {"loops": loop_figures({"sft": sft, "preference": pref}, cfg)}
    assert loops_cell(quality) == "2 / 0"
    note = "\n".join(loops_note({"algebra": {"quality": quality}}))
    assert "on for SFT responses and off for preference responses" in note
    assert "repetition_detection.enabled = false" in note
    assert "algebra 1 ending in a repeated block, 1 merely long" in note
    figures = {
        "problems": 3,
        "exact_duplicates_dropped": 0,
        "instruction_stage_duplicates": 0,
        "near_duplicates_dropped": 0,
        "duplicate_rate": 0.0,
        "truncation_rate": 0.5,
        "sft_excluded": 2,
        "agreement_rate": 0.0,
        "mean_agreement": 0.0,
        "dpo_pairs": 0,
        "dpo_skipped": {},
        "instruction_drop_reasons": {"repetition": 4},
        "dropped_disagreeing": 0,
        **quality,
    }
    text = format_report(
        {
            "run_dir": "r",
            "dataset_name": "d",
            "domains": {"algebra": figures},
            "flags": [],
            "loop_savings": ["responses: 2 stopped as loops, 100 tokens not generated"],
            "thresholds": {"max_truncation_rate": 1, "max_duplicate_rate": 1, "min_agreement_rate": 0},
        }
    )
    assert "repetition 4" in text
    assert (
        "algebra: cut off (SFT/preference): 0/1 ending in a repeated block, 0/1 merely long; loop stop on/off" in text
    )
    assert "responses: 2 stopped as loops, 100 tokens not generated" in text


def test_run_summary_counts_the_tokens_a_loop_did_not_spend(tmp_path):
    cfg = RunConfig.model_validate(
        {
            "domains": ["algebra"],
            "domain_settings": {
                "algebra": {**RunConfig().domain("algebra").model_dump(), "count": 4, "max_tokens_response": 1000}
            },
            "sharding": {"instructions": 8, "responses": 2, "multi_responses": 4},
        }
    )
    store = RunStore(tmp_path)
    # two response shards: 3 loops that generated 100, 200 and 300 tokens; 5,000 tokens in 1,000 s
    for shard, (reasons, loop_tokens) in enumerate([({"stop": 1, "repetition": 1}, 100), ({"repetition": 2}, 500)]):
        store.shard("responses", "algebra", shard).mark_done(
            {
                "rows": 2,
                "output_tokens": 2500,
                "seconds": 500.0,
                "finish_reasons": reasons,
                "repetition_output_tokens": loop_tokens,
            }
        )
    summary = build_run_summary(SimpleNamespace(cfg=cfg, store=store, model=SimpleNamespace(tensor_parallel_size=1)))
    m = summary["stages"]["responses"]["total"]
    assert m["stopped_as_loops"] == 3
    assert m["loop_tokens_saved"] == loop_tokens_saved(1000, 3, 600) == 2400
    assert m["loop_gpu_hours_saved"] == round(2400 / (5000 / 1000) / 3600, 4)  # at the stage's own rate
    assert summary["stages"]["multi_responses"]["total"]["stopped_as_loops"] == 0
    assert "responses: 3 stopped as loops, 2,400 tokens not generated" in render_run_summary(summary)


def test_planned_savings_scale_with_the_loop_rate():
    cfg = RunConfig()
    five, ten = planned_loop_savings(cfg, 0.05, 0.5), planned_loop_savings(cfg, 0.10, 0.5)
    assert ten["multi_responses"]["tokens"] == 2 * five["multi_responses"]["tokens"] > 0
    expected = sum(cfg.domain(d).count for d in cfg.domains) * 0.05 * 4096 * 0.5
    assert five["responses"]["tokens"] == int(expected)
