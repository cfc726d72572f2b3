"""The five menu models, checked through tokenizer-only doubles with their real special ids, chat
templates, tokenizer classes and context lengths (magpie_hpc.fixtures).

Each fixture sits in a Hugging Face cache layout (models--org--name/snapshots/REV/) and is found
the way a compute node finds a menu model: `resolve_model(KEY)` -> the cached snapshot path ->
`load_tokenizer(path)`. No weights: generation is not under test here.
"""

from __future__ import annotations

import json

import pytest

from magpie_hpc import registry
from magpie_hpc.config import load_config
from magpie_hpc.errors import ConfigError
from magpie_hpc.launch import validate
from magpie_hpc.fixtures import FIXTURES, write_hub_cache
from magpie_hpc.models import PromptBuilder, derive_pre_query, resolve_model

KEYS = tuple(registry.MODEL_MENU)

# Plain text a math dataset holds; each must come back unchanged from encode + decode.
TEXTS = [
    "Let $f(x) = x^2 + 3x - 4$. Find all real roots.",
    "Two  spaces, a\ttab,\nnew lines\n\nand a trailing space ",
    " leading space and \\frac{\\pi^2}{6} with $\\sum_{n=1}^{\\infty} n^{-2}$",
    "Prove: if $p$ is prime and $p \\mid ab$, then $p \\mid a$ or $p \\mid b$. (Euclid) \u2014 \u00fcber \u03b1\u03b2",
]


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """The five fixtures in a private hub cache that huggingface_hub (and so resolve_model) reads."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path_factory.mktemp("hf_home") / "hub"
    snapshots = write_hub_cache(cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield cache, snapshots


@pytest.fixture(scope="module")
def menu(hub_cache):
    """key -> (resolved model, prompt builder with its tokenizer loaded), built once."""
    cfg = load_config()
    out = {}
    for key in KEYS:
        model = resolve_model(key, cfg)
        builder = PromptBuilder(model)
        _ = builder.tokenizer
        out[key] = (model, builder)
    return out


def _config(model) -> dict:
    from pathlib import Path

    return json.loads((Path(model.path) / "config.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("key", KEYS)
def test_menu_key_resolves_to_its_cached_snapshot(key, hub_cache, menu):
    _, snapshots = hub_cache
    model, _ = menu[key]
    assert model.name == registry.MODEL_MENU[key]["hub_id"]
    assert model.path == str(snapshots[key])  # loaded from the snapshot path, as on a compute node
    assert model.family == registry.MODEL_MENU[key]["family"]


@pytest.mark.parametrize("key", KEYS)
def test_derived_pre_query_equals_the_registry(key, menu):
    model, builder = menu[key]
    family = registry.TEMPLATE_FAMILIES[model.family]
    assert derive_pre_query(builder.tokenizer) == family["pre_query"]
    cfg = load_config()
    text, ids = builder.magpie_prompt(cfg.domain("algebra"), True)  # raises on a mismatch or 2 BOS
    if family["bos"] is not None:
        bos = builder.tokenizer.convert_tokens_to_ids(family["bos"])
        assert ids[0] == bos and ids.count(bos) == 1
    else:  # ChatML: no BOS at all, the prompt opens the system turn
        assert ids[0] == builder.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert text.endswith(family["user_marker"])
    assert ids[-len(builder._ids(family["user_marker"])) :] == builder._ids(family["user_marker"])


@pytest.mark.parametrize("key", KEYS)
def test_stop_ids_equal_the_registry(key, menu):
    _, builder = menu[key]
    expected = tuple(registry.MODEL_MENU[key]["stop_token_ids"])
    assert builder.stop_token_ids == expected  # derived from the tokenizer, checked against the menu
    tok = builder.tokenizer
    assert tuple(tok.convert_tokens_to_ids(s) for s in builder.stop_strings) == expected


@pytest.mark.parametrize("key", KEYS)
def test_special_ids_are_the_real_ones(key, menu):
    """The fixture's added tokens sit on the published ids, and EOS agrees with config.json."""
    model, builder = menu[key]
    tok = builder.tokenizer
    for tid, content, _ in FIXTURES[key].added:
        assert tok.convert_tokens_to_ids(content) == tid
    eos = _config(model)["eos_token_id"]
    assert tok.eos_token_id in (eos if isinstance(eos, list) else [eos])
    assert type(tok).__name__ != "LlamaTokenizer"  # the class that drops spaces (key 2)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("text", TEXTS)
def test_plain_text_round_trip_is_lossless(key, text, menu):
    _, builder = menu[key]
    tok = builder.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert tok.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("key", KEYS)
def test_max_model_len_fits_the_models_context(key, menu):
    model, _ = menu[key]
    context = _config(model)["max_position_embeddings"]
    assert registry.MODEL_MENU[key]["max_model_len"] <= context
    assert registry.MODEL_MENU[key]["max_position_embeddings"] == context
    assert model.context_length == min(context, FIXTURES[key].tokenizer_config["model_max_length"])
    assert registry.MODEL_MENU[key]["max_model_len"] <= model.context_length  # vLLM's own cap


def test_key2_snapshot_path_tokenizes_like_the_hub_id(hub_cache, menu):
    """transformers special-cases DeepSeek-R1-Distill-Llama by hub id only; from the snapshot path
    load_tokenizer must give what transformers gives for the hub id."""
    from transformers import AutoTokenizer

    cache, snapshots = hub_cache
    by_id = AutoTokenizer.from_pretrained(FIXTURES["2"].hub_id, cache_dir=str(cache), local_files_only=True)
    by_path = AutoTokenizer.from_pretrained(str(snapshots["2"]))
    _, builder = menu["2"]
    for text in TEXTS:
        expected = by_id(text, add_special_tokens=False)["input_ids"]
        assert builder.tokenizer(text, add_special_tokens=False)["input_ids"] == expected
    # What the fix is for: the class mapping of a path (the same files) loses the spaces.
    lossy = by_path.decode(by_path(TEXTS[1], add_special_tokens=False)["input_ids"])
    if lossy == TEXTS[1]:
        pytest.fail(
            "transformers now loads the DeepSeek Llama distill from a path without loss; "
            "load_tokenizer's fallback may be dropped"
        )


def test_key5_pre_query_has_the_templates_dated_system_lines(menu):
    """Llama 3.3's template dates every system block; the response prompt (same template) too."""
    _, builder = menu["5"]
    dated = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
    assert dated + "{system}<|eot_id|>" in builder.pre_query_template
    response, _ = builder.response_prompt("What is 2 + 2?")
    assert response.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + dated)
    assert response.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def _launch_cfg(key: str, **engine):
    return load_config(overrides={"model": key, "engine": {"kind": "synthetic", "reward_kind": "synthetic", **engine}})


@pytest.mark.parametrize("key", [k for k in KEYS if k != "3"])
def test_launch_validates_menu_key(key, menu):
    model, _, prompts = validate(_launch_cfg(key))
    assert model.name == registry.MODEL_MENU[key]["hub_id"]
    assert prompts.stop_token_ids == tuple(registry.MODEL_MENU[key]["stop_token_ids"])


def test_launch_refuses_key3_defaults_with_the_fix(menu):
    """Qwen2.5-Math-72B has 4,096 positions: the default 1,024 + 4,096 tokens cannot fit."""
    with pytest.raises(ConfigError, match=r"4096-token context .*lower max_tokens_response") as err:
        validate(_launch_cfg("3"))
    assert "1088-token prompt plus 4096 new tokens" in str(err.value)
    with pytest.raises(ConfigError, match=r"max_model_len: 8192 exceeds the 4096-token context .*<= 4096"):
        validate(_launch_cfg("3", max_model_len=8192))


def test_launch_accepts_key3_when_the_lengths_fit(menu):
    overrides = {
        "model": "3",
        "engine": {"kind": "synthetic", "reward_kind": "synthetic"},
        "multi_responses": {"max_tokens": 2048},
        "domain_settings": {d: {"max_tokens_response": 2048} for d in registry.DOMAIN_PRESETS},
    }
    model, _, _ = validate(load_config(overrides=overrides))
    assert model.max_model_len == 4096 == model.context_length


@pytest.mark.parametrize("key", ["1", "2"])
def test_launch_gives_vllm_a_tokenizer_that_keeps_spaces(key, menu, tmp_path):
    """vLLM detokenizes every sample with its own AutoTokenizer load, which for the DeepSeek Llama
    distill loses spaces by path and by hub id alike; the run then carries its own tokenizer folder."""
    from vllm.tokenizers.registry import get_tokenizer

    from magpie_hpc.context import RunContext
    from magpie_hpc.launch import create_run

    cfg = load_config(
        overrides={
            "model": key,
            "output_root": str(tmp_path / "data"),
            "engine": {"kind": "synthetic", "reward_kind": "synthetic"},
        }
    )
    model, reward, prompts = validate(cfg)
    run_dir = create_run(cfg, model, reward, prompts)
    frozen = RunContext(run_dir).model
    if key == "1":  # Qwen2Tokenizer keeps text: nothing is copied, vLLM loads the snapshot itself
        assert frozen.tokenizer_path is None and not (run_dir / "tokenizer").exists()
        return
    assert frozen.tokenizer_path == str(run_dir / "tokenizer")
    assert (
        json.loads((run_dir / "tokenizer" / "tokenizer_config.json").read_text())["tokenizer_class"]
        == "PreTrainedTokenizerFast"
    )
    engine_tok = get_tokenizer(frozen.tokenizer_path)  # what LLM(tokenizer=...) loads
    snapshot_tok = get_tokenizer(model.path)  # what LLM(model=path) alone would load
    text = TEXTS[1]
    assert engine_tok.decode(engine_tok.encode(text, add_special_tokens=False)) == text
    assert snapshot_tok.decode(snapshot_tok.encode(text, add_special_tokens=False)) != text
    # Same ids as the prompts were built with, and the stage code's tokenizer is that folder's.
    ctx_tok = RunContext(run_dir).prompts.tokenizer
    assert engine_tok.encode(text, add_special_tokens=False) == ctx_tok(text, add_special_tokens=False)["input_ids"]
    assert RunContext(run_dir).prompts.stop_token_ids == tuple(registry.MODEL_MENU["2"]["stop_token_ids"])


def test_a_tokenizer_that_loses_text_is_refused(hub_cache, tmp_path):
    """No class gives the text back (here: tokenizer.json without its byte-level decoder): the
    model is refused at resolve time with one line, not used to write space-less data."""
    import shutil

    _, snapshots = hub_cache
    broken = tmp_path / "broken-distill"
    shutil.copytree(snapshots["2"], broken)
    data = json.loads((broken / "tokenizer.json").read_text(encoding="utf-8"))
    data["decoder"] = None
    (broken / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ConfigError, match="does not give plain text back unchanged"):
        resolve_model(str(broken), load_config(overrides={"model": str(broken)}))


@pytest.mark.parametrize(
    "rope, expected",
    [
        (None, 32768),
        ({"rope_type": "linear", "factor": 2.0}, 65536),  # vLLM applies a linear factor
        ({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, 32768),  # not yarn's
    ],
)
def test_context_length_as_vllm_derives_it(rope, expected, hub_cache, tmp_path):
    import shutil

    from magpie_hpc.models import context_length

    _, snapshots = hub_cache
    folder = tmp_path / "qwen"
    shutil.copytree(snapshots["4"], folder)
    cfg = json.loads((folder / "config.json").read_text())
    if rope is not None:
        cfg["rope_scaling"] = rope
    (folder / "config.json").write_text(json.dumps(cfg))
    assert context_length(str(folder)) == expected
    tcfg = json.loads((folder / "tokenizer_config.json").read_text())
    tcfg["model_max_length"] = 16384  # vLLM caps by the tokenizer's model_max_length too
    (folder / "tokenizer_config.json").write_text(json.dumps(tcfg))
    assert context_length(str(folder)) == 16384
