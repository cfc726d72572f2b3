"""Prompts: derived from the tokenizer's own chat template, token ids, one BOS (defects 1, 2, 6)."""

from __future__ import annotations

import pytest

from magpie_hpc.config import load_config
from magpie_hpc.errors import ConfigError
from magpie_hpc.models import PromptBuilder, derive_pre_query, resolve_model


def _builder(path):
    cfg = load_config(overrides={"model": str(path)})
    return cfg, PromptBuilder(resolve_model(str(path), cfg))


def test_deepseek_magpie_prompt_ids(tiny_models):
    cfg, builder = _builder(tiny_models.deepseek)
    tok = builder.tokenizer
    text, ids = builder.magpie_prompt(cfg.domain("algebra"), True)
    bos, user = tok.convert_tokens_to_ids("<｜begin▁of▁sentence｜>"), tok.convert_tokens_to_ids("<｜User｜>")
    assert ids.count(bos) == 1 and ids[0] == bos  # one BOS, never two
    assert ids[-1] == user  # ends where the user's text would start
    assert text.startswith("<｜begin▁of▁sentence｜>") and text.endswith("<｜User｜>")
    assert "User: " not in text  # not the DeepSeek-V2 plain-text form of the original
    assert "Galois theory" in text  # the domain focus reaches the prompt
    # Stops: <｜Assistant｜>, EOS, <｜User｜>; no newline, no word "assistant".
    assert builder.stop_strings == ("<｜Assistant｜>", "<｜end▁of▁sentence｜>", "<｜User｜>")
    assert builder.stop_token_ids == tuple(tok.convert_tokens_to_ids(s) for s in builder.stop_strings)
    assert "\n" not in builder.stop_strings and "assistant" not in builder.stop_strings


def test_response_prompt_is_the_models_own_template(tiny_models):
    _, builder = _builder(tiny_models.deepseek)
    tok = builder.tokenizer
    text, ids = builder.response_prompt("Prove that 2 is prime.")
    assert text == tok.apply_chat_template(
        [{"role": "user", "content": "Prove that 2 is prime."}], tokenize=False, add_generation_prompt=True
    )
    assert ids.count(tok.convert_tokens_to_ids("<｜begin▁of▁sentence｜>")) == 1
    assert text.endswith("<｜Assistant｜><think>\n")


def test_chatml_family_detected(tiny_models):
    cfg, builder = _builder(tiny_models.chatml)
    assert builder.model.family == "chatml"
    text, ids = builder.magpie_prompt(cfg.domain("geometry"), True)
    assert text.endswith("<|im_start|>user\n")
    assert "<|im_end|>" in builder.stop_strings


def test_template_mismatch_with_registry_is_refused(tiny_models):
    """A menu entry whose family disagrees with the tokenizer's chat template is an error."""
    cfg, builder = _builder(tiny_models.deepseek)
    wrong = PromptBuilder(builder.model.__class__(**{**builder.model.__dict__, "family": "llama3"}))
    with pytest.raises(ConfigError, match="pre-query"):
        wrong.magpie_prompt(cfg.domain("algebra"), True)


def test_derive_pre_query_from_chat_template(tiny_models):
    _, builder = _builder(tiny_models.deepseek)
    assert derive_pre_query(builder.tokenizer) == "<｜begin▁of▁sentence｜>{system}<｜User｜>"
