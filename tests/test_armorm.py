"""The package's own ArmoRM (LlamaForRewardModelWithGating) on the tiny model in ArmoRM's layout.

Scores are checked against the formula recomputed here in plain torch from the safetensors (a
hand-written Llama forward, not the package's module, not transformers), batched against one at a
time, and the loading is checked to be strict. Everything is loaded by path with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from magpie_hpc.engine.armorm import GATING_PATTERN_TEXT, WeightsMismatch
from magpie_hpc.engine.reward_engine import MissingGatingPattern, TransformersScorer
from magpie_hpc.errors import ConfigError
from magpie_hpc.fixtures import REMOTE_CODE_MARKER, REMOTE_CODE_MARKER_ENV

QUESTION = "Let $f(x) = 3x^2 + 2x - 1$. Compute $f(2) + f(-1)$."
# Mixed lengths, so a batch is right-padded by several tokens per row.
ANSWERS = [
    "$f(2) = 15$ and $f(-1) = 0$, so the answer is $\\boxed{15}$.",
    "15",
    "We compute $f(2) = 12 + 4 - 1 = 15$. Then $f(-1) = 3 - 2 - 1 = 0$. Therefore the sum is $\\boxed{15}$, "
    "which we verify by substituting back into the original equation.",
    "The answer is $\\boxed{16}$ because I said so.",
]


def _conv(answer: str, question: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@pytest.fixture(scope="module")
def offline():
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    if old is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = old


@pytest.fixture(scope="module")
def reward_copy(tiny_models, tmp_path_factory) -> Path:
    """A private copy, so a marker its remote code might write is this module's alone."""
    folder = tmp_path_factory.mktemp("armorm") / "reward-tiny"
    shutil.copytree(tiny_models.reward, folder)
    return folder


@pytest.fixture(scope="module")
def scorer(offline, reward_copy) -> TransformersScorer:
    # A budget that puts all conversations of a test into one padded batch.
    return TransformersScorer(str(reward_copy), max_length=4096, batch_tokens=100_000, dtype="bfloat16")


# ---------------------------------------------------------------------------
# The formula, recomputed in plain torch
# ---------------------------------------------------------------------------


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _llama_hidden(sd: dict[str, torch.Tensor], cfg: dict, ids: list[int]) -> torch.Tensor:
    """Final hidden states of one unpadded sequence: RMSNorm, RoPE, grouped-query causal attention, SwiGLU."""
    n_heads, n_kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, t = cfg["rms_norm_eps"], len(ids)
    x = sd["model.embed_tokens.weight"][torch.tensor(ids)]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(torch.arange(t, dtype=torch.float32), inv_freq)
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()

    def rope(v):  # (heads, t, hd)
        half = torch.cat([-v[..., hd // 2 :], v[..., : hd // 2]], -1)
        return v * cos + half * sin

    causal = torch.full((t, t), float("-inf")).triu(1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = _rms(x, sd[p + "input_layernorm.weight"], eps)
        q = rope((h @ sd[p + "self_attn.q_proj.weight"].T).view(t, n_heads, hd).transpose(0, 1))
        k = rope((h @ sd[p + "self_attn.k_proj.weight"].T).view(t, n_kv, hd).transpose(0, 1))
        v = (h @ sd[p + "self_attn.v_proj.weight"].T).view(t, n_kv, hd).transpose(0, 1)
        k, v = k.repeat_interleave(n_heads // n_kv, 0), v.repeat_interleave(n_heads // n_kv, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + causal, -1) @ v
        x = x + att.transpose(0, 1).reshape(t, n_heads * hd) @ sd[p + "self_attn.o_proj.weight"].T
        h = _rms(x, sd[p + "post_attention_layernorm.weight"], eps)
        gate = torch.nn.functional.silu(h @ sd[p + "mlp.gate_proj.weight"].T)
        x = x + (gate * (h @ sd[p + "mlp.up_proj.weight"].T)) @ sd[p + "mlp.down_proj.weight"].T
    return _rms(x, sd["model.norm.weight"], eps)


def _last_occurrence(ids: list[int], pattern: list[int]) -> int:
    starts = [i for i in range(len(ids) - len(pattern) + 1) if ids[i : i + len(pattern)] == pattern]
    assert starts, "conversation without the assistant header"
    return starts[-1]


def reference_score(
    folder: Path, tokenizer, conversation, *, gating_at: str = "header", transform: bool = True
) -> float:
    """ArmoRM's score by its published formula: sum(gating(prompt) * (rewards(last token) @ T))."""
    sd = {k: v.double() for k, v in load_file(str(folder / "model.safetensors")).items()}
    cfg = json.loads((folder / "config.json").read_text())
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hidden = _llama_hidden({k: v.float() for k, v in sd.items()}, cfg, ids).double()
        rewards = sd["regression_layer.weight"] @ hidden[-1]
        pattern = tokenizer(GATING_PATTERN_TEXT, add_special_tokens=False)["input_ids"]
        x = hidden[_last_occurrence(ids, pattern) if gating_at == "header" else -1]
        n = cfg["gating_n_hidden"]
        for i in range(n):
            x = torch.relu(sd[f"gating.layers.{i}.weight"] @ x + sd[f"gating.layers.{i}.bias"])
        logits = sd[f"gating.layers.{n}.weight"] @ x + sd[f"gating.layers.{n}.bias"]
        gating = torch.softmax(logits / cfg["gating_temperature"], -1) * sd["gating.logit_scale"][0]
        matrix = sd["reward_transform_matrix"] if transform else torch.eye(len(rewards), dtype=torch.float64)
        return float((gating * (rewards @ matrix)).sum())


# ---------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------


def test_batched_equals_one_at_a_time_equals_formula(scorer, reward_copy):
    convs = [_conv(a) for a in ANSWERS] + [_conv("Yes.", "Is $7$ prime?")]
    lengths = {len(scorer._encode(c)) for c in convs}
    assert len(lengths) == len(convs)  # every row of the batch is padded differently
    batched = scorer.score(convs)
    single = [scorer.score([c])[0] for c in convs]
    expected = [reference_score(reward_copy, scorer.tokenizer, c) for c in convs]
    assert batched == pytest.approx(single, abs=1e-4)
    assert batched == pytest.approx(expected, abs=1e-4)
    assert len({round(s, 3) for s in batched}) == len(convs)


def test_the_formula_check_can_fail(scorer, reward_copy):
    # Reading the gating input at the last token, or skipping the transform matrix, gives other
    # numbers on this model: the comparison above would catch either mistake.
    conv = _conv(ANSWERS[0])
    (score,) = scorer.score([conv])
    wrong_gate = reference_score(reward_copy, scorer.tokenizer, conv, gating_at="last")
    no_transform = reference_score(reward_copy, scorer.tokenizer, conv, transform=False)
    assert abs(score - wrong_gate) > 1e-3 and abs(score - no_transform) > 1e-3


def test_changing_only_the_response_changes_the_score(scorer):
    a, b = scorer.score([_conv(ANSWERS[0]), _conv(ANSWERS[0].replace("15", "17"))])
    assert math.isfinite(a) and math.isfinite(b) and abs(a - b) > 1e-4


def test_pads_with_the_config_pad_id_not_the_tokenizer(scorer, reward_copy):
    cfg = json.loads((reward_copy / "config.json").read_text())
    assert scorer.tokenizer.pad_token_id is None  # as in ArmoRM: [PAD] is known to config.json only
    assert scorer.pad_id == cfg["pad_token_id"] == cfg["vocab_size"] - 1
    assert scorer.tokenizer.convert_tokens_to_ids("[PAD]") == scorer.pad_id


def test_a_conversation_without_assistant_header_is_an_error(scorer):
    with pytest.raises(MissingGatingPattern) as info:
        scorer.score([_conv("fine"), [{"role": "user", "content": "no answer yet"}]])
    assert info.value.index == 1 and "assistant" in str(info.value)


def test_remote_code_is_not_imported(scorer, reward_copy, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv(REMOTE_CODE_MARKER_ENV, str(marker))
    again = TransformersScorer(str(reward_copy), max_length=4096, batch_tokens=4096, dtype="bfloat16")
    assert again.kind == "armorm" and type(again.model).__module__ == "magpie_hpc.engine.armorm"
    assert not marker.exists() and not (reward_copy / REMOTE_CODE_MARKER).exists()


# ---------------------------------------------------------------------------
# Strict loading
# ---------------------------------------------------------------------------


def _copy_with_weights(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda t: t.pop("gating.layers.3.bias"), "gating.layers.3.bias"),
        (lambda t: t.pop("reward_transform_matrix"), "reward_transform_matrix"),
        (lambda t: t.update({"score.weight": torch.zeros(1, 128)}), "score.weight"),
        (lambda t: t.update({"regression_layer.weight": torch.zeros(1, 128)}), "regression_layer.weight"),
    ],
)
def test_armorm_weights_load_strictly(offline, reward_copy, tmp_path, edit, key):
    folder = _copy_with_weights(reward_copy, tmp_path / "bad", edit)
    with pytest.raises(WeightsMismatch, match=key.replace(".", r"\.")):
        TransformersScorer(str(folder), max_length=4096, batch_tokens=4096, dtype="bfloat16")


def _classifier(reward_copy: Path, dst: Path, *, drop_score: bool = False) -> Path:
    """A plain LlamaForSequenceClassification on the tiny backbone."""

    def edit(t):
        for key in [k for k in t if not k.startswith("model.")]:
            del t[key]
        if not drop_score:
            t["score.weight"] = torch.randn(1, 128, generator=torch.Generator().manual_seed(5)) / 11.0

    folder = _copy_with_weights(reward_copy, dst, edit)
    cfg = json.loads((folder / "config.json").read_text())
    for key in ("auto_map", "num_objectives", "gating_hidden_dim", "gating_n_hidden", "gating_temperature"):
        cfg.pop(key)
    cfg["architectures"] = ["LlamaForSequenceClassification"]
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "modeling_custom.py").unlink()
    return folder


def test_plain_sequence_classifier_keeps_working(offline, reward_copy, tmp_path):
    scorer = TransformersScorer(
        str(_classifier(reward_copy, tmp_path / "cls")), max_length=4096, batch_tokens=100_000, dtype="bfloat16"
    )
    assert scorer.kind == "classifier" and type(scorer.model).__name__ == "LlamaForSequenceClassification"
    convs = [_conv(a) for a in ANSWERS]
    batched = scorer.score(convs)
    assert batched == pytest.approx([scorer.score([c])[0] for c in convs], abs=1e-4)
    assert len({round(s, 4) for s in batched}) == len(convs)


def test_sequence_classifier_loads_strictly(offline, reward_copy, tmp_path):
    folder = _classifier(reward_copy, tmp_path / "cls", drop_score=True)
    with pytest.raises(ConfigError, match=r"missing score\.weight"):
        TransformersScorer(str(folder), max_length=4096, batch_tokens=4096, dtype="bfloat16")
