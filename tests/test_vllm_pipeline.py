"""Real vLLM (CPU build) on the tiny models: stop handling, and the whole pipeline end to end
through the local executor with real generation and real reward scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import small_config
from dataset_checks import check_run
from magpie_hpc.cli import main
from magpie_hpc.config import load_config
from magpie_hpc.engine import Request, Sampling
from magpie_hpc.engine.vllm_engine import VllmGenerator
from magpie_hpc.models import PromptBuilder, resolve_model
from magpie_hpc.registry import DOMAIN_PRESETS


@pytest.fixture(scope="module")
def deepseek(tiny_models):
    cfg = load_config(overrides={"model": str(tiny_models.deepseek)})
    builder = PromptBuilder(resolve_model(str(tiny_models.deepseek), cfg))
    engine = VllmGenerator(
        str(tiny_models.deepseek),
        seed=0,
        dtype="bfloat16",
        max_model_len=512,
        tensor_parallel_size=1,
        gpu_memory_utilization=0.9,
        enable_prefix_caching=True,
        enforce_eager=True,
    )
    yield cfg, builder, engine
    engine.close()


def test_assistant_token_stops_magpie_generation(deepseek):
    cfg, builder, engine = deepseek
    _, ids = builder.magpie_prompt(cfg.domain("algebra"), True)
    base = dict(temperature=1.3, top_p=1.0, max_tokens=128, n=16)
    free = engine.generate([ids] * 4, Sampling(**base))
    texts = [c.text for r in free for c in r.completions]
    # Without stops the model does write the assistant header (the weights make it likely)...
    assert any("<｜Assistant｜>" in t for t in texts)
    stopped = engine.generate(
        [ids] * 4, Sampling(**base, stop=builder.stop_strings, stop_token_ids=builder.stop_token_ids)
    )
    comps = [c for r in stopped for c in r.completions]
    assert len(comps) == 64 and all(r.prompt_tokens == len(ids) for r in stopped)
    # ...and with them, generation ends there: no stop text leaks into an instruction.
    assert not any(s in c.text for c in comps for s in builder.stop_strings)
    assert sum(c.finish_reason == "stop" for c in comps) >= len(comps) // 2
    assert all(c.output_tokens <= 128 for c in comps)


def test_n_samples_per_prompt(deepseek):
    _, builder, engine = deepseek
    _, ids = builder.response_prompt("Let G be a group of order 12. How many Sylow 3-subgroups can G have?")
    results = engine.generate([ids, ids], Sampling(temperature=0.8, top_p=0.95, max_tokens=32, n=7))
    assert [len(r.completions) for r in results] == [7, 7]
    assert len({c.text for c in results[0].completions}) > 1  # sampled, not copies


def test_stream_keeps_chunk_order_and_aborts_what_is_left(deepseek):
    _, builder, engine = deepseek
    # Prompts of distinct lengths, so each result shows which prompt it answers.
    prompts = [builder.response_prompt("Prove it. " * (k + 1))[1] for k in range(6)]
    sampling = Sampling(temperature=0.8, top_p=0.95, max_tokens=16, n=2)
    chunks = [prompts[0:3], prompts[3:4], prompts[4:6]]
    streamed = list(engine.generate_stream(Request(c, sampling) for c in chunks))
    assert [[r.prompt_tokens for r in results] for results in streamed] == [[len(p) for p in c] for c in chunks]
    assert all(
        len(r.completions) == 2 and all(0 < c.output_tokens <= 16 for c in r.completions)
        for results in streamed
        for r in results
    )
    # A caller that stops after the first chunk (SIGTERM) leaves nothing queued in the engine,
    # which may serve the next shard of this process.
    stream = engine.generate_stream(Request(c, sampling) for c in chunks)
    assert len(next(stream)) == 3
    stream.close()
    assert not engine.llm.llm_engine.has_unfinished_requests()
    assert [r.prompt_tokens for r in engine.generate(prompts[:2], sampling)] == [len(p) for p in prompts[:2]]


def test_all_domains_local_real_vllm(tiny_models, tmp_path, capsys):
    # Responses sample at 0.8 with room for 96 tokens, as hpc/demo.toml does: the tiny model's
    # greedy answers never close </think>, so at the real 0.0-0.05 the SFT files would be empty and
    # the per-record SFT checks would check nothing. At 0.8 about half its answers close </think>
    # (seen: 9 of 18); 8 problems a domain leave each domain's SFT file empty with odds of 1/256.
    domains = {
        f"domain_settings.{d}": {"max_tokens_instruction": 48, "max_tokens_response": 96, "response_temperature": 0.8}
        for d in DOMAIN_PRESETS
    }
    cfg = small_config(
        tmp_path / "small.toml", engine={"max_model_len": 512}, multi_responses={"max_tokens": 64}, **domains
    )
    code = main(
        [
            "launch",
            "--domains",
            "all",
            "--count",
            "8",
            "--executor",
            "local",
            "--config",
            str(cfg),
            "--model",
            str(tiny_models.deepseek),
            "--reward-model",
            str(tiny_models.reward),
            "--output-root",
            str(tmp_path / "data"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    run_dir = Path(captured.out.strip().splitlines()[-1])
    combined = check_run(run_dir, {d: 8 for d in combined_domains(run_dir)}, sft_nonempty=True)
    for domain in combined_domains(run_dir):
        sft = json.loads((run_dir / domain / f"{domain}_ins_res.json").read_text())
        # Complete: the model closed its reasoning and stopped by itself within the budget.
        assert all(r["finish_reason"] == "stop" and r["reasoning"] is not None for r in sft), domain
        assert all(0 < r["output_tokens"] <= 96 for r in sft), domain
    assert combined["model"] == tiny_models.deepseek.name  # named by its folder, never its machine path
    pref = json.loads((run_dir / "algebra" / "algebra_ins_7res_armorm.json").read_text())
    assert pref[0]["gen_response_configs"]["engine"] == "vllm"
    # Real reward model: different responses get different scores.
    assert len({s for rec in pref for s in rec["scores"]}) > 1
    # Finish reasons and token counts come from vLLM, not defaults.
    assert all(0 < t <= 64 for rec in pref for t in rec["output_tokens"])


def combined_domains(run_dir: Path) -> list[str]:
    return json.loads((run_dir / "run.json").read_text())["config"]["domains"]


@pytest.mark.parametrize("temperature", [0.0, 0.05])  # the seed's response temperatures
def test_loop_stop_ends_looping_requests_inside_vllm(deepseek, temperature):
    """The same prompts with the responses stage's loop stop on and off, one engine (the detection is
    per request). The tiny model is built to stop under greedy decoding; a repetition penalty below 1
    (it rewards tokens already written) drives it into the loop an R1 model falls into at these
    temperatures: "2,2,2,..." until max_tokens."""
    import pyarrow as pa

    from magpie_hpc.engine.base import RepetitionDetection
    from magpie_hpc.plan import loop_tokens_saved
    from magpie_hpc.quality.loops import ends_in_loop
    from magpie_hpc.stages.runner import _summary

    cfg, builder, engine = deepseek
    prompts = [
        builder.response_prompt(f"Let G be a group of order {n}. How many Sylow 3-subgroups can G have?")[1]
        for n in (12, 15, 21, 27)
    ]
    max_tokens = 256
    base = dict(
        temperature=temperature,
        top_p=1.0,
        max_tokens=max_tokens,
        repetition_penalty=0.7,
        stop=builder.stop_strings,
        stop_token_ids=builder.stop_token_ids,
    )
    on = RepetitionDetection.from_settings(cfg.responses.repetition_detection)
    assert on is not None  # on by default
    stopped = [c for r in engine.generate(prompts, Sampling(**base, repetition_detection=on)) for c in r.completions]
    ran_on = [c for r in engine.generate(prompts, Sampling(**base)) for c in r.completions]
    # At 0.05 a sampled token may break a lap (the check starts over); greedy decoding loops exactly.
    slack = 0 if temperature == 0.0 else 1
    # Off: every request runs on to max_tokens, and what it wrote ends in a loop (the after-the-fact count).
    assert [c.finish_reason for c in ran_on] == ["length"] * len(prompts)
    assert sum(ends_in_loop(c.text) for c in ran_on) >= len(prompts) - slack
    # On: the loops end inside vLLM.
    reasons = [c.finish_reason for c in stopped]
    assert set(reasons) <= {"repetition", "length"}
    looped = [c for c in stopped if c.finish_reason == "repetition"]
    assert len(looped) >= len(prompts) - slack
    assert all(c.output_tokens < max_tokens for c in looped)
    assert sum(c.output_tokens for c in stopped) < sum(c.output_tokens for c in ran_on) / 2
    # Counted as the shard's DONE.json counts them, and the tokens not spent as the run summary does.
    table = pa.table(
        {"finish_reasons": [[c.finish_reason] for c in stopped], "output_tokens": [[c.output_tokens] for c in stopped]}
    )
    done = _summary("responses", [table])
    assert done["finish_reasons"].get("repetition") == len(looped)
    assert done["repetition_output_tokens"] == sum(c.output_tokens for c in looped)
    saved = loop_tokens_saved(max_tokens, done["finish_reasons"]["repetition"], done["repetition_output_tokens"])
    assert saved == sum(max_tokens - c.output_tokens for c in looped) > 0
