"""Tiny offline models: they load with transformers like real checkpoints.

Fast (transformers only, no vLLM, no hub).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import torch  # noqa: E402
import transformers  # noqa: E402

from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
)

from safetensors import safe_open  # noqa: E402

from magpie_hpc.fixtures import MARKER_FILE, TinyModels, write_tiny_models  # noqa: E402

R1_BOS = "<｜begin▁of▁sentence｜>"
R1_EOS = "<｜end▁of▁sentence｜>"
R1_PAD = "<｜▁pad▁｜>"
R1_USER = "<｜User｜>"
R1_ASSISTANT = "<｜Assistant｜>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return write_tiny_models(tmp_path_factory.mktemp("tiny"))


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------


def test_layout(tiny: TinyModels) -> None:
    root = tiny.deepseek.parent
    assert tiny.deepseek == root / "deepseek-r1-tiny"
    assert tiny.chatml == root / "chatml-tiny"
    assert tiny.reward == root / "reward-tiny"
    for folder in (tiny.deepseek, tiny.chatml, tiny.reward):
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", MARKER_FILE):
            assert (folder / name).is_file(), (folder, name)
    for folder in (tiny.deepseek, tiny.chatml):
        assert (folder / "generation_config.json").is_file()
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["architectures"] == ["Qwen2ForCausalLM"]
        assert cfg["tie_word_embeddings"] is False
        assert cfg["hidden_size"] // cfg["num_attention_heads"] == 64
        assert cfg["max_position_embeddings"] == 8192
    # no leftovers from the atomic write
    assert sorted(p.name for p in root.iterdir()) == ["chatml-tiny", "deepseek-r1-tiny", "reward-tiny"]


# ---------------------------------------------------------------------------
# DeepSeek-R1-Distill style tokenizer
# ---------------------------------------------------------------------------


def test_deepseek_special_tokens_are_single_ids(tiny: TinyModels) -> None:
    tok = AutoTokenizer.from_pretrained(tiny.deepseek)
    seen = set()
    for text in (R1_BOS, R1_EOS, R1_PAD, R1_USER, R1_ASSISTANT, THINK_OPEN, THINK_CLOSE):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (text, ids)
        assert tok.convert_ids_to_tokens(ids[0]) == text
        seen.add(ids[0])
    assert len(seen) == 7
    assert tok.bos_token == R1_BOS and tok.eos_token == R1_EOS and tok.pad_token == R1_PAD
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    # BOS/EOS/pad are special; role markers and think tags are not (as in R1).
    special = set(tok.all_special_tokens)
    assert {R1_BOS, R1_EOS, R1_PAD} <= special
    assert not ({R1_USER, R1_ASSISTANT, THINK_OPEN, THINK_CLOSE} & special)


def test_deepseek_encode_adds_bos_only_with_special_tokens(tiny: TinyModels) -> None:
    tok = AutoTokenizer.from_pretrained(tiny.deepseek)
    with_bos = tok("Find $x$ such that $x^2 = 4$.")["input_ids"]
    without = tok("Find $x$ such that $x^2 = 4$.", add_special_tokens=False)["input_ids"]
    assert with_bos[0] == tok.bos_token_id
    assert with_bos[1:] == without
    assert tok.bos_token_id not in without


def test_deepseek_decode_keeps_markers_and_think_tags(tiny: TinyModels) -> None:
    tok = AutoTokenizer.from_pretrained(tiny.deepseek)
    text = f"{R1_USER}What is $\\frac{{1}}{{2}}$?{R1_ASSISTANT}{THINK_OPEN}\nhmm{THINK_CLOSE}\\boxed{{1}}{R1_EOS}"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == R1_BOS + text
    assert tok.decode(ids, skip_special_tokens=True) == text[: -len(R1_EOS)]


def test_deepseek_chat_template(tiny: TinyModels) -> None:
    tok = AutoTokenizer.from_pretrained(tiny.deepseek)
    messages = [
        {"role": "system", "content": "Please reason step by step."},
        {"role": "user", "content": "What is $2+2$?"},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == f"{R1_BOS}Please reason step by step.{R1_USER}What is $2+2$?{R1_ASSISTANT}{THINK_OPEN}\n"
    no_prompt = tok.apply_chat_template(messages, tokenize=False)
    assert no_prompt == f"{R1_BOS}Please reason step by step.{R1_USER}What is $2+2$?"
    # Assistant turns: closed by EOS, reasoning before </think> dropped (as in R1).
    convo = messages[1:] + [{"role": "assistant", "content": f"2 and 2{THINK_CLOSE}The answer is 4."}]
    assert tok.apply_chat_template(convo, tokenize=False) == (
        f"{R1_BOS}{R1_USER}What is $2+2$?{R1_ASSISTANT}The answer is 4.{R1_EOS}"
    )
    # The template's BOS plus add_special_tokens=False gives exactly one BOS.
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert ids[-3:-1] == tok.convert_tokens_to_ids([R1_ASSISTANT, THINK_OPEN])


# ---------------------------------------------------------------------------
# ChatML (Qwen2.5) tokenizer
# ---------------------------------------------------------------------------


def test_chatml_tokenizer(tiny: TinyModels) -> None:
    tok = AutoTokenizer.from_pretrained(tiny.chatml)
    for text in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert len(tok(text, add_special_tokens=False)["input_ids"]) == 1
    ids = tok("<|im_start|>user\nhi<|im_end|>\n<|endoftext|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi\n"
    assert tok.bos_token is None
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok("hello")["input_ids"] == tok("hello", add_special_tokens=False)["input_ids"]
    user = [{"role": "user", "content": "Compute $3 \\cdot 4$."}]
    assert tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nCompute $3 \\cdot 4$.<|im_end|>\n<|im_start|>assistant\n"
    )
    with_system = [{"role": "system", "content": "Be brief."}] + user
    assert tok.apply_chat_template(with_system, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCompute $3 \\cdot 4$.<|im_end|>\n"
    )


# ---------------------------------------------------------------------------
# Generator models
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["deepseek", "chatml"])
def test_generators_load(tiny: TinyModels, which: str) -> None:
    path = getattr(tiny, which)
    tok = AutoTokenizer.from_pretrained(path)
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert type(model).__name__ == "Qwen2ForCausalLM"
    with safe_open(str(path / "model.safetensors"), framework="pt") as fh:
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"BF16"}
    assert model.config.vocab_size >= len(tok)
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    eos = model.generation_config.eos_token_id
    assert tok.eos_token_id in (eos if isinstance(eos, list) else [eos])
    if tok.bos_token is not None:
        assert model.config.bos_token_id == tok.bos_token_id == model.generation_config.bos_token_id


def _generate(path: Path, prompts: list[list[int]], stops: list[int], **kwargs) -> list[list[int]]:
    # float32 for the test: transformers 5 loads the checkpoint's bf16 by default
    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(path, **{dtype_kw: torch.float32})
    width = max(map(len, prompts))
    pad = 0
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids, attention_mask=mask, max_new_tokens=256, eos_token_id=stops, pad_token_id=pad, **kwargs
        )
    rows = []
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        rows.append(row[:cut])
    return rows


def test_deepseek_generation_stops_by_itself(tiny: TinyModels) -> None:
    """Magpie-style prompts: sampling ends on <｜Assistant｜>/EOS, not the length limit."""
    tok = AutoTokenizer.from_pretrained(tiny.deepseek)
    stops = tok.convert_tokens_to_ids([R1_ASSISTANT, R1_EOS, R1_USER])
    systems = ["", "Please reason step by step, and put your final answer within \\boxed{}."]
    prompts = [tok(s, add_special_tokens=True)["input_ids"] + [stops[2]] for s in systems * 12]
    torch.manual_seed(0)
    rows = _generate(tiny.deepseek, prompts, stops, do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
    stopped = [r for r in rows if r[-1] in stops]
    assert len(stopped) >= 0.7 * len(rows)
    assert sum(r[-1] == stops[0] for r in stopped) >= len(stopped) // 2  # mostly <｜Assistant｜>
    assert any(len(r) > 3 for r in stopped)
    # greedy decoding terminates too
    (greedy,) = _generate(tiny.deepseek, prompts[:1], stops, do_sample=False)
    assert greedy[-1] in stops
    # responses (chat template + generation prompt) end on EOS
    response_prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is $2+2$?"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(response_prompt, add_special_tokens=False)["input_ids"]
    torch.manual_seed(1)
    rows = _generate(tiny.deepseek, [ids] * 16, [tok.eos_token_id], do_sample=True, temperature=0.8, top_p=1.0, top_k=0)
    assert sum(r[-1] == tok.eos_token_id for r in rows) >= 0.7 * len(rows)


def test_chatml_generation_stops_by_itself(tiny: TinyModels) -> None:
    tok = AutoTokenizer.from_pretrained(tiny.chatml)
    stops = tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    prompt = tok(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n", add_special_tokens=False
    )["input_ids"]
    torch.manual_seed(0)
    rows = _generate(tiny.chatml, [prompt] * 16, stops, do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
    assert sum(r[-1] in stops for r in rows) >= 0.7 * len(rows)


# ---------------------------------------------------------------------------
# Reward model
# ---------------------------------------------------------------------------


def test_reward_model_has_armorm_layout(tiny: TinyModels) -> None:
    """The tiny reward model is laid out like RLHFlow/ArmoRM-Llama3-8B-v0.1 where it can break."""
    tok = AutoTokenizer.from_pretrained(tiny.reward)
    cfg = json.loads((tiny.reward / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForRewardModelWithGating"]
    assert cfg["auto_map"] == {"AutoModelForSequenceClassification": "modeling_custom.LlamaForRewardModelWithGating"}
    assert (cfg["num_objectives"], cfg["gating_n_hidden"], cfg["gating_temperature"]) == (19, 3, 10.0)
    # [PAD] appended after the vocabulary, named by config.json only: the tokenizer has no pad token.
    assert tok.pad_token is None and tok.pad_token_id is None
    assert cfg["pad_token_id"] == cfg["vocab_size"] - 1 == len(tok) - 1
    assert tok.convert_ids_to_tokens(cfg["pad_token_id"]) == "[PAD]"
    assert tok.eos_token == "<|eot_id|>" and cfg["eos_token_id"] == tok.eos_token_id
    assert AutoConfig.from_pretrained(tiny.reward).max_position_embeddings == 8192
    for text in ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>"):
        assert len(tok(text, add_special_tokens=False)["input_ids"]) == 1
    ids = tok("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|end_of_text|>")["input_ids"]
    assert ids[0] == tok.bos_token_id  # Llama-3 adds BOS on plain encode
    assert tok.decode(ids, skip_special_tokens=True) == "user\n\nhi"
    conv = [{"role": "user", "content": "What is $2+2$?"}, {"role": "assistant", "content": "It is $\\boxed{4}$."}]
    assert tok.apply_chat_template(conv, tokenize=False) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is $2+2$?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nIt is $\\boxed{4}$.<|eot_id|>"
    )
    with safe_open(str(tiny.reward / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        matrix = f.get_tensor("reward_transform_matrix")
        assert f.get_tensor("gating.logit_scale").shape == (1,)
    assert {"regression_layer.weight", "gating.logit_scale", "reward_transform_matrix"} <= keys
    assert {f"gating.layers.{i}.{w}" for i in range(4) for w in ("weight", "bias")} <= keys
    assert not any(k.startswith(("score.", "lm_head.")) for k in keys)
    assert matrix.shape == (19, 19) and not torch.allclose(matrix, torch.eye(19))


def test_reward_remote_code_fails_like_armorms(tiny: TinyModels, tmp_path: Path) -> None:
    # What trust_remote_code=True does with the real checkpoint under transformers 5: ImportError on
    # LLAMA_INPUTS_DOCSTRING. The double also leaves a marker, which the package's tests look for.
    copy = tmp_path / "reward"
    shutil.copytree(tiny.reward, copy)
    marker = tmp_path / "marker"
    code = (
        "from transformers import AutoModelForSequenceClassification as A\n"
        f"A.from_pretrained({str(copy)!r}, trust_remote_code=True)\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "MAGPIE_TINY_REMOTE_CODE_MARKER": str(marker),
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "LLAMA_INPUTS_DOCSTRING" in proc.stderr, proc.stderr[-2000:]
    assert marker.read_text().startswith("modeling_custom imported")


# ---------------------------------------------------------------------------
# Idempotence, atomicity, determinism
# ---------------------------------------------------------------------------


def test_second_call_keeps_folders(tiny: TinyModels) -> None:
    markers = [m / MARKER_FILE for m in (tiny.deepseek, tiny.chatml, tiny.reward)]
    before = [m.stat().st_mtime_ns for m in markers]
    weights_before = [(m.parent / "model.safetensors").stat().st_ino for m in markers]
    again = write_tiny_models(tiny.deepseek.parent)
    assert again == tiny
    assert [m.stat().st_mtime_ns for m in markers] == before
    assert [(m.parent / "model.safetensors").stat().st_ino for m in markers] == weights_before


def test_deterministic_and_overwrite(tmp_path: Path, tiny: TinyModels) -> None:
    other = write_tiny_models(tmp_path / "a")
    for mine, theirs in zip((tiny.deepseek, tiny.chatml, tiny.reward), (other.deepseek, other.chatml, other.reward)):
        assert _tree_digest(mine) == _tree_digest(theirs), mine.name
    digest = _tree_digest(other.deepseek)
    marker = other.deepseek / MARKER_FILE
    inode = marker.stat().st_ino
    write_tiny_models(tmp_path / "a", overwrite=True)
    assert marker.stat().st_ino != inode  # rewritten...
    assert _tree_digest(other.deepseek) == digest  # ...with the same bytes


def test_incomplete_folder_is_replaced(tmp_path: Path) -> None:
    half = tmp_path / "deepseek-r1-tiny"
    half.mkdir()
    (half / "config.json").write_text("{not json")
    models = write_tiny_models(tmp_path)
    assert (models.deepseek / MARKER_FILE).is_file()
    json.loads((models.deepseek / "config.json").read_text())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_writer_imports_no_torch_transformers_or_vllm(tmp_path: Path) -> None:
    code = (
        "import sys; from magpie_hpc.fixtures import write_tiny_models; "
        f"write_tiny_models({str(tmp_path)!r}); "
        "bad = [m for m in ('torch', 'transformers', 'vllm') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=120)
