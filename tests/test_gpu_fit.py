"""Preflight's does-the-generator-fit check and the compute-node environment of every task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magpie_hpc.config import RunConfig, load_config
from magpie_hpc.errors import ConfigError
from magpie_hpc.slurm import cluster, gpu_fit, preflight
from magpie_hpc.slurm.submit import setup_lines

GIB = 1024**3


def _checkpoint(folder: Path, *, weights_gib: float, layers: int, kv_heads: int, head_dim: int, index: bool) -> Path:
    """A checkpoint's metadata as published (config.json, safetensors index); weights not needed."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen2ForCausalLM"],
                "num_hidden_layers": layers,
                "num_attention_heads": 40,
                "num_key_value_heads": kv_heads,
                "hidden_size": 40 * head_dim,
                "max_position_embeddings": 131072,
                "vocab_size": 152064,
            }
        )
    )
    if index:
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": int(weights_gib * GIB)}, "weight_map": {}})
        )
    else:
        with open(folder / "model.safetensors", "wb") as f:
            f.truncate(int(weights_gib * GIB))  # sparse: the size is what counts
    return folder


def test_the_need_comes_from_the_index_or_the_file_sizes(tmp_path):
    # DeepSeek-R1-Distill-Qwen-32B's published shape: 64 layers, 8 KV heads of 128, ~61 GiB of bf16 weights.
    r1 = gpu_fit.model_need(
        _checkpoint(tmp_path / "r1", weights_gib=61.0, layers=64, kv_heads=8, head_dim=128, index=True), 8192
    )
    assert r1.weights_bytes == int(61.0 * GIB)
    assert r1.kv_bytes_per_token == 2 * 64 * 8 * 128 * 2  # K and V, bf16: 256 KiB a token
    assert r1.per_gpu_gib(1) == pytest.approx(61.0 + 2.0 + 2.0)  # 8192 tokens x 256 KiB = 2 GiB
    small = gpu_fit.model_need(
        _checkpoint(tmp_path / "s", weights_gib=0.5, layers=2, kv_heads=2, head_dim=64, index=False), 1024
    )
    assert small.weights_bytes == int(0.5 * GIB)


@pytest.mark.parametrize(
    ("gres", "features", "gib"),
    [
        ("gpu:a100:4(S:0-1)", "a100,80gb", 80.0),
        ("gpu:a100:4", "a100", 40.0),
        ("gpu:h100:8", "(null)", 80.0),
        ("gpu:4", "gpu40g", 40.0),
        ("gpu:4", "", None),
        ("gpu:a100_80g:4", "", 80.0),
    ],
)
def test_gpu_memory_from_sinfo(gres, features, gib):
    assert gpu_fit.gpu_gib_of(gres, features) == gib


def test_an_a100_constraint_also_matches_the_40gb_nodes():
    groups = [("gpu:a100:4", "a100,80gb"), ("gpu:a100:4", "a100,40gb"), ("gpu:h100:4", "h100")]
    assert gpu_fit.smallest_gpu_gib(groups, "a100") == 40.0
    assert gpu_fit.smallest_gpu_gib(groups, "a100&80gb") == 80.0
    assert gpu_fit.smallest_gpu_gib(groups, "h100") == 80.0


def _slurm_cfg(model: Path, **slurm) -> RunConfig:
    # The seed's layout, one GPU per model: the planner would choose one for the profile's GPU, and
    # preflight checks the layout actually run against the partition's real GPUs.
    return load_config(
        overrides={
            "model": str(model),
            "executor": "slurm",
            "slurm": {"partition": "gpu", **slurm},
            "engine": {"tensor_parallel_size": 1},
        }
    )


def test_preflight_refuses_what_cannot_fit_and_names_the_layout_that_would(tmp_path, tiny_models, monkeypatch):
    folder = tmp_path / "r1-32b"
    _checkpoint(folder, weights_gib=61.0, layers=64, kv_heads=8, head_dim=128, index=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # its chat template: a deepseek_r1 model
        (folder / name).write_bytes((Path(tiny_models.deepseek) / name).read_bytes())
    monkeypatch.setattr(
        cluster, "node_groups", lambda partition: [("gpu:a100:4", "a100,40gb"), ("gpu:a100:4", "a100,80gb")]
    )
    monkeypatch.setattr(cluster, "max_gres_per_node", lambda partition, kind="gpu": 4)
    cfg = _slurm_cfg(folder, constraint="a100")
    with pytest.raises(ConfigError) as err:
        preflight.check_gpu_fit(cfg, "partition gpu")
    message = str(err.value)
    assert "\n" not in message and "40 GB GPUs" in message and "engine.tensor_parallel_size = 2" in message
    # the 80 GB nodes alone hold it on one GPU
    preflight.check_gpu_fit(_slurm_cfg(folder, constraint="a100&80gb"), "partition gpu")
    preflight.check_gpu_fit(_slurm_cfg(folder, constraint="a100", gpu_memory_gb=80), "partition gpu")
    with pytest.raises(ConfigError, match="tensor_parallel_size = 4"):
        preflight.check_gpu_fit(_slurm_cfg(folder, gpu_memory_gb=24), "partition gpu")
    with pytest.raises(ConfigError, match="no split over the 4 GPUs"):
        preflight.check_gpu_fit(_slurm_cfg(folder, gpu_memory_gb=16), "partition gpu")
    # where nothing says how big the GPUs are, nothing is refused
    monkeypatch.setattr(cluster, "node_groups", lambda partition: [("gpu:2", "")])
    preflight.check_gpu_fit(cfg, "partition gpu")


def test_every_task_gets_its_own_modules_cache_and_its_cpus_for_srun():
    import submitit.slurm.slurm as submitit_slurm

    lines = setup_lines(RunConfig())
    assert "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK" in lines
    modules = next(line for line in lines if "HF_MODULES_CACHE" in line)
    assert "$SLURM_JOB_ID" in modules and modules.startswith("export HF_MODULES_CACHE=${TMPDIR:-/tmp}/")
    # in the script submitit writes, before its srun line
    script = submitit_slurm._make_sbatch_string(command="python -m task", folder="/tmp/x", cpus_per_task=8, setup=lines)
    assert script.index("SRUN_CPUS_PER_TASK") < script.index("srun")
    assert "#SBATCH --cpus-per-task=8" in script


def test_a_reasoning_model_below_its_guidance_is_warned_about(tiny_models):
    from magpie_hpc.launch import temperature_warnings
    from magpie_hpc.models import resolve_model

    cfg = load_config(overrides={"model": str(tiny_models.deepseek), "domains": "algebra,geometry"})
    model = resolve_model(cfg.model, cfg)
    (line,) = temperature_warnings(cfg, model)
    assert "algebra 0.05" in line and "0.5-0.7" in line and "loop stop ([responses.repetition_detection]) is on" in line
    assert "preference responses" not in line  # 0.8 is within the guidance
    warm = load_config(
        overrides={
            "model": str(tiny_models.deepseek),
            "domains": "algebra",
            "domain_settings": {"algebra": {**cfg.domain("algebra").model_dump(), "response_temperature": 0.6}},
        }
    )
    assert temperature_warnings(warm, model) == []
    chatml = load_config(overrides={"model": str(tiny_models.chatml)})
    assert temperature_warnings(chatml, resolve_model(chatml.model, chatml)) == []
