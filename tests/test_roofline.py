"""The memory and roofline planner against figures worked out here by hand from the models' and
GPUs' published numbers (not from the module's output).

Assumptions the planner documents (magpie_hpc/roofline.py), restated as plain numbers here: 2 GiB of
activations and workspaces per GPU (+0.5 GiB of all-reduce buffers under tensor parallel), 16-token
KV blocks, 80% of peak memory bandwidth, 50% of dense bf16 peak, 10 us per all-reduce, two
all-reduces per layer, at most 1024 sequences, a larger group only for 10% fewer GPU-hours.
"""

from __future__ import annotations

import json
import math

import pytest

from magpie_hpc import model_arch, plan, roofline
from magpie_hpc.cli import main
from magpie_hpc.config import load_config
from magpie_hpc.errors import ConfigError

GIB = 2**30
# Published sizes (Hugging Face model.safetensors.index.json, metadata.total_size, bf16 bytes)
QWEN32B_BYTES = 65_527_752_704
LLAMA70B_BYTES = 141_107_412_992

# GPU figures: memory as reported (GiB), peak bandwidth (TB/s), dense bf16 (TFLOP/s), all-reduce GB/s
A100_80 = (80.0, 2.039, 312.0, 230.0)
A100_40 = (40.0, 1.555, 312.0, 230.0)
H100 = (79.6, 3.35, 989.0, 360.0)
H200 = (140.4, 4.8, 989.0, 360.0)


def qwen32b_parameters() -> int:
    """Qwen2.5-32B body: 64 layers, hidden 5120, 40 heads / 8 KV heads of 128, MLP 27648, vocab
    152064, q/k/v biases, untied embeddings."""
    attention = 5120 * 5120 + 2 * 5120 * 1024 + 5120 * 5120 + (5120 + 2 * 1024)
    mlp = 3 * 5120 * 27648
    return 64 * (attention + mlp + 2 * 5120) + 2 * 152064 * 5120 + 5120


def llama70b_parameters() -> int:
    """Llama-3 70B body: 80 layers, hidden 8192, 64 heads / 8 KV heads of 128, MLP 28672, vocab
    128256, no biases, untied embeddings."""
    attention = 8192 * 8192 + 2 * 8192 * 1024 + 8192 * 8192
    return 80 * (attention + 3 * 8192 * 28672 + 2 * 8192) + 2 * 128256 * 8192 + 8192


def test_parameter_counts_match_the_published_weight_sizes():
    assert qwen32b_parameters() * 2 == QWEN32B_BYTES
    assert llama70b_parameters() * 2 == LLAMA70B_BYTES
    cfg = load_config(overrides={"model": "1"})
    assert roofline.resolve_arch(cfg).weight_bytes == QWEN32B_BYTES  # menu table, no weights here
    assert roofline.resolve_arch(load_config(overrides={"model": "5"})).weight_bytes == LLAMA70B_BYTES


def by_hand(gpu, weight_bytes, params, layers, kv_heads, hidden, tp, prompt, output, util):
    """KV-cache tokens, sequences and decode tokens/s per GPU, from first principles."""
    memory, bandwidth, tflops, link = gpu
    free = memory * GIB * util - weight_bytes / tp - (2.0 + (0.5 if tp > 1 else 0)) * GIB
    kv_token = 2 * layers * (kv_heads // tp) * 128 * 2  # K and V, bf16, head_dim 128
    kv_tokens = int(free // (16 * kv_token)) * 16
    seqs = min(1024, int(kv_tokens // (prompt + output)))
    read = weight_bytes / tp + seqs * (prompt + output / 2) * kv_token
    step = max(read / (bandwidth * 1e12 * 0.8), 2 * params * seqs / tp / (tflops * 1e12 * 0.5))
    if tp > 1:
        step += 2 * layers * (10e-6 + 2 * (tp - 1) / tp * seqs * hidden * 2 / (link * 1e9))
    return kv_tokens, seqs, seqs / step / tp


# responses stage at the algebra preset: prompt = 1024 x 0.3 instruction + 64 template tokens,
# output = 4096 x 0.6
PROMPT, OUTPUT = 1024 * 0.3 + 64, 4096 * 0.6


def _cfg(model: str, gpu: str, util: float, **extra):
    return load_config(
        overrides={
            "model": model,
            "domains": "algebra",
            "hardware": {"gpu": gpu, **extra.pop("hardware", {})},
            "engine": {"gpu_memory_utilization": util, **extra.pop("engine", {})},
            **extra,
        }
    )


def test_r1_qwen_32b_on_one_a100_80gb_fits_a_dozen_sequences():
    cfg = _cfg("1", "A100-80GB", 0.9)
    lay = roofline.stage_layout(cfg, "responses", "algebra", 1)
    # 72 GiB - 65.5 GB weights - 2 GiB = 9.63e9 B for 256 KiB tokens: 2296 blocks of 16
    free = 72 * GIB - QWEN32B_BYTES - 2 * GIB
    assert free == 9_634_174_976
    assert lay.kv_cache_tokens == 2296 * 16 == 36_736
    assert lay.max_num_seqs == 12  # 36,736 / 2,828.8 expected tokens per sequence
    # each step reads 65.5 GB of weights + 12 x 1,600 x 256 KiB of KV at 1.63 TB/s: 43.3 ms
    step = (QWEN32B_BYTES + 12 * 1600 * 262_144) / (2.039e12 * 0.8)
    assert lay.tokens_per_second_per_gpu == pytest.approx(12 / step, rel=1e-9)
    assert lay.tokens_per_second_per_gpu == pytest.approx(277.4, abs=0.1)
    assert by_hand(A100_80, QWEN32B_BYTES, qwen32b_parameters(), 64, 8, 5120, 1, PROMPT, OUTPUT, 0.9) == (
        lay.kv_cache_tokens,
        lay.max_num_seqs,
        pytest.approx(lay.tokens_per_second_per_gpu, rel=1e-9),
    )


def test_r1_qwen_32b_on_two_a100_80gb():
    cfg = _cfg("1", "A100-80GB", 0.9)
    lay = roofline.stage_layout(cfg, "responses", "algebra", 2)
    free = 72 * GIB - QWEN32B_BYTES / 2 - 2.5 * GIB  # 41.9e9 B for 128 KiB tokens
    assert lay.kv_cache_tokens == int(free // (16 * 131_072)) * 16 == 19_960 * 16 == 319_360
    assert lay.max_num_seqs == 112
    memory = (QWEN32B_BYTES / 2 + 112 * 1600 * 131_072) / (2.039e12 * 0.8)  # 34.5 ms: memory-bound
    compute = 2 * qwen32b_parameters() * 112 / 2 / 156e12  # 23.5 ms
    comm = 128 * (10e-6 + 1 * 112 * 5120 * 2 / 230e9)  # 1.9 ms
    assert memory > compute
    assert lay.tokens_per_second_per_gpu == pytest.approx(112 / (memory + comm) / 2, rel=1e-9)
    # about 5.5x the tokens per GPU of tensor parallel 1
    assert (
        5
        < lay.tokens_per_second_per_gpu
        / roofline.stage_layout(cfg, "responses", "algebra", 1).tokens_per_second_per_gpu
        < 6
    )


def test_r1_qwen_32b_on_an_h200():
    cfg = _cfg("1", "H200", 0.9)
    lay = roofline.stage_layout(cfg, "responses", "algebra", 1)
    kv_tokens, seqs, rate = by_hand(H200, QWEN32B_BYTES, qwen32b_parameters(), 64, 8, 5120, 1, PROMPT, OUTPUT, 0.9)
    assert kv_tokens == int((140.4 * 0.9 * GIB - QWEN32B_BYTES - 2 * GIB) // 4_194_304) * 16
    assert (lay.kv_cache_tokens, lay.max_num_seqs) == (kv_tokens, seqs) == (16_213 * 16, 91)
    assert lay.tokens_per_second_per_gpu == pytest.approx(rate, rel=1e-9)
    # one H200 already holds 91 R1-length sequences: more than 7x an A100's
    assert (
        lay.max_num_seqs
        > 7 * roofline.stage_layout(_cfg("1", "A100-80GB", 0.9), "responses", "algebra", 1).max_num_seqs
    )


def test_llama_70b_on_h100_and_the_layout_chosen():
    cfg = _cfg("5", "H100-80GB", 0.9, hardware={"gpus_per_node": 8})
    # 141 GB of weights do not fit one 80 GB GPU at all
    assert roofline.stage_layout(cfg, "responses", "algebra", 1).kv_cache_tokens == 0
    rates = {}
    for tp in (2, 4, 8):
        lay = roofline.stage_layout(cfg, "responses", "algebra", tp)
        kv_tokens, seqs, rate = by_hand(
            H100, LLAMA70B_BYTES, llama70b_parameters(), 80, 8, 8192, tp, PROMPT, OUTPUT, 0.9
        )
        assert (lay.kv_cache_tokens, lay.max_num_seqs) == (kv_tokens, seqs)
        assert lay.tokens_per_second_per_gpu == pytest.approx(rate, rel=1e-9)
        rates[tp] = rate
    # TP 4: 71.6 GiB - 35.3 GB of weights - 2.5 GiB = 39.0e9 B for 80 layers x 2 KV heads x 128 x 2 x 2 B
    free = 79.6 * 0.9 * GIB - LLAMA70B_BYTES / 4 - 2.5 * GIB
    assert (
        roofline.stage_layout(cfg, "responses", "algebra", 4).kv_cache_tokens
        == int(free // (16 * 81_920)) * 16
        == 475_600
    )
    # The chosen group: fewest generation GPU-hours over the three stages (instructions: a 160-token
    # Magpie prompt and 307 tokens out; multi_responses: 7 x 4096 x 0.6 out), 10% needed per step up.
    stages = {
        "instructions": (160, 1024 * 0.3, 10_000 * 1.3 / 0.7 * 1024 * 0.3),
        "responses": (PROMPT, OUTPUT, 10_000 * 4096 * 0.6),
        "multi_responses": (PROMPT, OUTPUT, 10_000 * 7 * 4096 * 0.6),
    }
    hours = {
        tp: sum(
            tokens / by_hand(H100, LLAMA70B_BYTES, llama70b_parameters(), 80, 8, 8192, tp, p, o, 0.9)[2] / 3600
            for p, o, tokens in stages.values()
        )
        for tp in (2, 4, 8)
    }
    best = 2
    for tp in (4, 8):
        if hours[tp] < hours[best] * 0.9:
            best = tp
    choice = roofline.choose_tensor_parallel(cfg)
    assert choice.tensor_parallel_size == best and not choice.explicit
    assert choice.hours[best] == pytest.approx(hours[best], rel=1e-9)
    # on 4-GPU nodes the group of 8 is not a candidate
    assert (
        roofline.choose_tensor_parallel(_cfg("5", "H100-80GB", 0.9, hardware={"gpus_per_node": 4})).tensor_parallel_size
        == 4
    )


def test_one_a100_40gb_is_refused_before_submission_naming_a_layout_that_fits(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(
        '[hardware]\ngpu = "A100-40GB"\n[engine]\ntensor_parallel_size = 1\ngpu_memory_utilization = 0.9\n'
    )
    code = main(
        [
            "launch",
            "--model",
            "1",
            "--domains",
            "algebra",
            "--executor",
            "local",
            "--config",
            str(config),
            "--output-root",
            str(tmp_path / "data"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "data").exists()
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: engine.tensor_parallel_size: 1 x A100-40GB holds 0 KV-cache tokens"), err
    named = int(line.split("set engine.tensor_parallel_size = ")[1].split()[0])
    # 36 GiB less 65.5 GB of weights is negative at TP 1; the named group holds a full 8192-token sequence
    assert 36 * GIB - QWEN32B_BYTES < 0
    assert by_hand(A100_40, QWEN32B_BYTES, qwen32b_parameters(), 64, 8, 5120, named, PROMPT, OUTPUT, 0.9)[0] >= 8192
    # the dry run refuses it too, rather than printing a plan that cannot run
    assert (
        main(
            [
                "launch",
                "--model",
                "1",
                "--domains",
                "algebra",
                "--executor",
                "local",
                "--config",
                str(config),
                "--dry-run",
            ]
        )
        == 2
    )


def test_an_explicit_tensor_parallel_wins_and_the_plan_says_what_it_costs():
    cfg = _cfg("1", "A100-80GB", 0.9, engine={"tensor_parallel_size": 1})
    choice = roofline.choose_tensor_parallel(cfg)
    assert choice.tensor_parallel_size == 1 and choice.explicit and choice.best != 1
    assert choice.hours[1] > 4 * choice.hours[choice.best]
    assert "tensor_parallel_size 1 (set in the config)" in choice.note
    assert plan.stage_plan(cfg)["tensor_parallel_note"] == choice.note


def test_shards_and_gpu_hours_follow_the_planned_rate_and_the_override_wins():
    cfg = _cfg("1", "A100-80GB", 0.9, engine={"tensor_parallel_size": 2})
    rate = roofline.stage_layout(cfg, "multi_responses", "algebra", 2).tokens_per_second_per_gpu
    per_problem = 7 * 4096 * 0.6
    # 1.5 h per task less the 240 s model load, at the rate of both GPUs of the task
    assert plan.shard_size(cfg, "multi_responses", "algebra") == int((1.5 * 3600 - 240) * rate * 2 / per_problem)
    shards = len(plan.stage_shards(cfg, "multi_responses", "algebra"))
    assert plan.estimated_gpu_hours(cfg, "multi_responses", "algebra") == pytest.approx(
        (10_000 * per_problem / rate + shards * 240 * 2) / 3600
    )
    fixed = _cfg(
        "1", "A100-80GB", 0.9, engine={"tensor_parallel_size": 2}, throughput={"generation_tokens_per_second": 500.0}
    )
    assert plan.shard_size(fixed, "multi_responses", "algebra") == int((1.5 * 3600 - 240) * 500.0 * 2 / per_problem)


def test_max_num_seqs_reaches_the_engine_per_stage():
    from magpie_hpc.engine.factory import TaskRef, _max_num_seqs

    cfg = _cfg("1", "A100-80GB", 0.9, engine={"tensor_parallel_size": 1})
    assert _max_num_seqs(cfg, TaskRef("responses", "algebra", 0)) == 12
    # instruction sequences are short: 36,736 tokens / (160 + 307.2) = 78
    assert _max_num_seqs(cfg, TaskRef("instructions", "algebra", 0)) == int(36_736 // (160 + 307.2)) == 78
    pinned = _cfg("1", "A100-80GB", 0.9, engine={"tensor_parallel_size": 1, "max_num_seqs": 8})
    assert _max_num_seqs(pinned, TaskRef("responses", "algebra", 0)) == 8


def test_architecture_from_a_model_folder(tiny_models, tmp_path):
    from safetensors import safe_open

    arch = model_arch.arch_from_folder(str(tiny_models.deepseek))
    config = json.loads((tiny_models.deepseek / "config.json").read_text())
    assert (arch.layers, arch.hidden_size, arch.kv_heads) == (
        config["num_hidden_layers"],
        config["hidden_size"],
        config["num_key_value_heads"],
    )
    total = 0
    for path in tiny_models.deepseek.glob("*.safetensors"):
        with safe_open(str(path), "np") as f:
            total += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    assert arch.parameters == total
    # a sharded checkpoint: the index's total_size (bytes) decides
    (tmp_path / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 2_000_000}}))
    assert model_arch.arch_from_folder(str(tmp_path)).parameters == 1_000_000


def test_unknown_gpu_is_one_clear_error():
    with pytest.raises(ConfigError, match="hardware.gpu: unknown GPU 'B300'"):
        roofline.resolve_gpu(load_config(overrides={"hardware": {"gpu": "B300"}}))
    own = roofline.resolve_gpu(
        load_config(overrides={"hardware": {"gpu": "B300", "gpu_memory_gib": 270, "memory_bandwidth_tbs": 8.0}})
    )
    assert (own.memory_gib, own.bandwidth_tbs) == (270, 8.0)


def test_dry_run_prints_the_plan_per_stage(tmp_path, capsys):
    args = [
        "launch",
        "--model",
        "1",
        "--domains",
        "algebra,geometry",
        "--executor",
        "local",
        "--dry-run",
        "--output-root",
        str(tmp_path / "data"),
    ]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    keys = {
        "stage",
        "domain",
        "gpu",
        "tensor_parallel_size",
        "kv_cache_tokens",
        "max_num_seqs",
        "tokens_per_second_per_gpu",
        "tasks",
        "gpu_hours",
    }
    assert all(keys <= set(s) for s in doc["stages"]) and len(doc["stages"]) == 5 * 2
    responses = next(s for s in doc["stages"] if (s["stage"], s["domain"]) == ("responses", "geometry"))
    # defaults: A100-80GB, gpu_memory_utilization 0.95, 4 GPUs per node; the planner's group of 4
    kv_tokens, seqs, rate = by_hand(A100_80, QWEN32B_BYTES, qwen32b_parameters(), 64, 8, 5120, 4, PROMPT, OUTPUT, 0.95)
    assert (responses["gpu"], responses["tensor_parallel_size"]) == ("A100-80GB", 4)
    assert (responses["kv_cache_tokens"], responses["max_num_seqs"]) == (kv_tokens, seqs)
    assert responses["tokens_per_second_per_gpu"] == pytest.approx(rate, abs=0.05)
    assert doc["total_gpu_hours"] == pytest.approx(sum(s["gpu_hours"] for s in doc["stages"]), abs=0.05)
    assert sum(s["tasks"] for s in doc["stages"] if s["stage"] == "responses") == sum(
        len(plan.stage_shards(load_config(overrides={"model": "1", "domains": "algebra,geometry"}), "responses", d))
        for d in ("algebra", "geometry")
    )
    assert not (tmp_path / "data").exists()

    assert main(args) == 0
    text = capsys.readouterr().out
    assert "tensor parallel 4 (planner)" in text
    row = next(line.split() for line in text.splitlines() if line.startswith("responses") and "geometry" in line)
    assert row[:4] == ["responses", "geometry", "A100-80GB", "4"] and row[4] == f"{kv_tokens:,}"
    assert text.strip().splitlines()[-1] == f"total GPU-hours: {doc['total_gpu_hours']:,.1f}"

    config = tmp_path / "tp1.toml"
    config.write_text("[engine]\ntensor_parallel_size = 1\n")
    assert main([*args, "--config", str(config)]) == 0
    assert "note: tensor_parallel_size 1 (set in the config) plans" in capsys.readouterr().out


def test_launch_freezes_the_architecture_and_a_relaunch_plans_the_same(tiny_models, tmp_path):
    from dataclasses import asdict

    from magpie_hpc.context import RunContext
    from magpie_hpc.launch import create_run, reconcile_config, validate

    overrides = {
        "model": str(tiny_models.deepseek),
        "reward_model": str(tiny_models.reward),
        "domains": "algebra",
        "output_root": str(tmp_path / "data"),
        "executor": "local",
        "engine": {"kind": "synthetic", "reward_kind": "synthetic"},
    }
    cfg = load_config(overrides=overrides, count=3)
    run_dir = create_run(cfg, *validate(cfg))
    frozen = json.loads((run_dir / "run.json").read_text())["config"]["hardware"]["architecture"]
    assert frozen == asdict(model_arch.arch_from_folder(str(tiny_models.deepseek)))
    ctx = RunContext(run_dir)
    assert plan.plan_summary(ctx.cfg) == plan.plan_summary(cfg)
    reconcile_config(run_dir, load_config(overrides=overrides, count=3), force=False)  # no difference reported
    with pytest.raises(ConfigError, match="hardware.gpu"):
        reconcile_config(
            run_dir, load_config(overrides={**overrides, "hardware": {"gpu": "H200"}}, count=3), force=False
        )
    # tasks plan from the frozen figures, not from the model folder
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["config"]["hardware"]["architecture"]["parameters"] = 7 * frozen["parameters"]
    (run_dir / "run.json").write_text(json.dumps(manifest))
    assert roofline.resolve_arch(RunContext(run_dir).cfg).parameters == 7 * frozen["parameters"]
