"""Which model a name means, and the prompts it is given.

`resolve_model` turns `--model KEY|PATH|HUB_ID` into a `ResolvedModel`; `PromptBuilder` derives
the Magpie pre-query prompt and the response prompt from the tokenizer's own chat template and
hands out token ids (a string prompt would get a second BOS from vLLM: defect 2 of SPEC.md).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from . import registry
from .config import DomainConfig, RunConfig
from .errors import ConfigError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Sentinels that no chat template alters, used to cut the rendered template apart.
_SYS, _USR = "\u2063SYSTEM\u2063", "\u2063USER\u2063"


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the records name as generator (hub id or path)
    path: str  # what is loaded (local folder or hub id)
    family: str
    tensor_parallel_size: int
    max_model_len: int
    expected_stop_token_ids: tuple[int, ...] = ()
    context_length: int | None = None  # longest max_model_len vLLM accepts (local config.json, else menu)
    tokenizer_path: str | None = None  # a run's own tokenizer folder (write_engine_tokenizer), if any

    @property
    def basename(self) -> str:
        return Path(self.name.rstrip("/")).name

    @property
    def template(self) -> dict:
        return registry.TEMPLATE_FAMILIES[self.family]


def model_label(name_or_path: str) -> str:
    """What a model is, not where it was loaded from: a hub id as is; a hub-cache snapshot folder
    as its hub id (`models--org--name/snapshots/HASH` -> `org/name`); any other local folder by its
    folder name only (an absolute path tells a reader nothing and leaks a site's layout)."""
    text = str(name_or_path).rstrip("/")
    if not (os.path.isabs(text) or text.startswith(("./", "../", "~"))):
        return text
    parts = Path(text).parts
    if "snapshots" in parts:
        for part in parts[: parts.index("snapshots")][::-1]:
            if part.startswith("models--"):
                return part[len("models--") :].replace("--", "/", 1)
    return Path(text).name


def _hub_cached(hub_id: str) -> str | None:
    """Local snapshot folder of a hub id, if its config is in the cache (compute nodes are offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(hub_id, "config.json")
    except Exception:  # noqa: BLE001 - an unusable cache is the same as no cache
        return None
    return str(Path(found).parent) if isinstance(found, str) else None


# RoPE types whose `factor` vLLM does not apply to max_position_embeddings (already scaled).
_UNSCALED_ROPE = {"su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling", "default"}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def context_length(path: str) -> int | None:
    """The longest max_model_len vLLM accepts for a local model folder, the way vLLM 0.32 derives
    it (config/model.py, _get_and_verify_max_len): config.json's max_position_embeddings, times a
    RoPE scaling factor of the types it applies, capped by tokenizer_config.json's
    model_max_length. None without a readable local config.json."""
    cfg = _read_json(Path(path) / "config.json")
    value = cfg.get("max_position_embeddings")
    if not isinstance(value, int) or value <= 0:
        return None
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type")) if isinstance(rope, dict) else None
    if rope_type not in _UNSCALED_ROPE and isinstance(rope.get("factor"), (int, float)):
        value = int(value * rope["factor"])
    cap = _read_json(Path(path) / "tokenizer_config.json").get("model_max_length")
    return min(value, cap) if isinstance(cap, int) and cap > 0 else value


def _family_of_chat_template(path: str) -> str | None:
    tokenizer = load_tokenizer(path)
    derived = derive_pre_query(tokenizer)
    if derived is None:
        return None
    for name, fam in registry.TEMPLATE_FAMILIES.items():
        if derived == fam["pre_query"]:
            return name
    return None


def _planned_tp(cfg: RunConfig) -> int:
    from .roofline import choose_tensor_parallel

    return choose_tensor_parallel(cfg).tensor_parallel_size


def tensor_parallel_size(cfg: RunConfig) -> int:
    """GPUs the generator is split over, known without its weights (a menu entry says it)."""
    try:
        return resolve_model(cfg.model, cfg, need_weights=False).tensor_parallel_size
    except ConfigError:
        return cfg.engine.tensor_parallel_size or 1


def resolve_model(spec: str, cfg: RunConfig, *, need_weights: bool = True) -> ResolvedModel:
    """Menu key, local path or hub id -> ResolvedModel; ConfigError says what to do otherwise."""
    by_hub = {e.hub_id: e for e in cfg.models.values()}
    entry = cfg.models.get(spec) or by_hub.get(spec)
    eng = cfg.engine
    if entry is not None:
        local = _hub_cached(entry.hub_id)
        if need_weights and local is None:
            raise ConfigError(
                f"model: {entry.hub_id} is not in the local Hugging Face cache; download it on a "
                f"node with internet (huggingface-cli download {entry.hub_id}) or pass --model PATH"
            )
        return ResolvedModel(
            name=entry.hub_id,
            path=local or entry.hub_id,
            family=entry.family,
            tensor_parallel_size=eng.tensor_parallel_size or entry.tensor_parallel_size or _planned_tp(cfg),
            max_model_len=eng.max_model_len or entry.max_model_len,
            expected_stop_token_ids=tuple(entry.stop_token_ids),
            context_length=(local and context_length(local)) or entry.max_position_embeddings,
        )
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model: {path} has no config.json; pass a model folder, a menu key or a hub id")
        family = _family_of_chat_template(str(path))
        if family is None:
            raise ConfigError(
                f"model: {path} has no known Magpie template (chat template matches none of "
                f"{', '.join(registry.TEMPLATE_FAMILIES)}); add it to [models] in a --config file"
            )
        return ResolvedModel(
            name=str(path.resolve()),
            path=str(path.resolve()),
            family=family,
            tensor_parallel_size=eng.tensor_parallel_size or _planned_tp(cfg),
            max_model_len=eng.max_model_len or 8192,
            context_length=context_length(str(path)),
        )
    if spec.startswith(("/", ".", "~")) or not _HUB_ID.match(spec):
        raise ConfigError(f"model: {spec} does not exist; pass an existing model folder, a menu key (1-5) or a hub id")
    raise ConfigError(
        f"model: {spec} has no known Magpie template; use a menu key (1-5) or add it to [models] in a --config file"
    )


def resolve_reward_model(spec: str, *, need_weights: bool = True) -> str:
    """The reward model's loadable location (local folder or cached hub snapshot), checked.

    Whether given by path or hub id, the folder's config.json decides what it is (never the name):
    ArmoRM's architecture or a sequence classifier, no remote code, weights and tokenizer present
    when they will be loaded (model_checks.reward_kind).
    """
    from .model_checks import check_armorm_template, reward_kind

    def checked(folder: Path) -> str:
        if reward_kind(folder, need_weights=need_weights) == "armorm" and need_weights:
            from .engine.armorm import check_weights

            check_armorm_template(folder)
            check_weights(folder)  # strict, from the safetensors headers: before anything is submitted
        return str(folder)

    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"reward_model: {path} has no config.json; pass a reward model folder or a hub id")
        return checked(path.resolve())
    if spec.startswith(("/", ".", "~")) or not _HUB_ID.match(spec):
        raise ConfigError(f"reward_model: {spec} does not exist; pass an existing folder or a hub id")
    local = _hub_cached(spec)
    if need_weights and local is None:
        raise ConfigError(
            f"reward_model: {spec} is not in the local Hugging Face cache; download it first "
            f"(huggingface-cli download {spec}) or pass --reward-model PATH"
        )
    return checked(Path(local)) if local is not None else spec


# Plain text a tokenizer must give back unchanged: spaces (single, double, leading), a tab,
# newlines, LaTeX and non-ASCII, the things a math dataset is made of.
ROUND_TRIP_PROBE = "Let $x = 2$.\n  Then \\frac{a}{b}\tis  ok: \u00fc\u00df\n\n"


def _round_trips(tokenizer, text: str = ROUND_TRIP_PROBE) -> bool:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False) == text


def load_tokenizer(path: str):
    """The model's tokenizer as transformers builds it, unless that loses text.

    transformers 5 maps `tokenizer_class` to its own class, and its Llama class rebuilds the
    pipeline as a sentencepiece one (Metaspace pre-tokenizer and decoder) even when tokenizer.json
    is a byte-level BPE: text comes back without its spaces. DeepSeek-R1-Distill-Llama names
    LlamaTokenizerFast; transformers special-cases it by hub id only (MODEL_IDS_TO_TOKENIZERS_BACKEND
    in models/auto/tokenization_auto.py, matched against config._name_or_path), so the same model
    loaded from its cache snapshot path or a copied folder is broken. The faithful tokenizer is then
    tokenizer.json as written, which is what transformers itself loads for the hub id
    (TokenizersBackend = PreTrainedTokenizerFast)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if _round_trips(tokenizer):
        return tokenizer
    if (Path(path) / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        fallback = PreTrainedTokenizerFast.from_pretrained(path)
        if _round_trips(fallback):
            fallback.magpie_class_mapping_lossy = True  # vLLM's own load would be lossy too
            return fallback
    raise ConfigError(
        f"model: the tokenizer of {path} ({type(tokenizer).__name__}) does not give plain text back "
        "unchanged (spaces or newlines are lost); check its tokenizer.json and the tokenizer_class "
        "in its tokenizer_config.json"
    )


# What a tokenizer folder for the engine holds (vLLM reads config.json beside the tokenizer files).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")


def write_engine_tokenizer(model_path: str, dest: Path) -> Path:
    """A copy of the model's tokenizer files whose tokenizer_config.json names the class that loads
    tokenizer.json as written (PreTrainedTokenizerFast), for a model whose own class name makes
    transformers lose text (load_tokenizer). vLLM loads its tokenizer through the same AutoTokenizer
    mapping and detokenizes every sample with it: without this folder (LLM(tokenizer=...)) the
    DeepSeek Llama distill's outputs lose their spaces, by path and by hub id alike (seen with
    vLLM 0.32's get_tokenizer; it hands AutoTokenizer a config it loaded itself). The files are
    copied unchanged but for that one field."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        src = Path(model_path) / name
        if not src.is_file():
            continue
        if name == "tokenizer_config.json":
            data = json.loads(src.read_text(encoding="utf-8"))
            data["tokenizer_class"] = "PreTrainedTokenizerFast"
            (dest / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            (dest / name).write_bytes(src.read_bytes())
    return dest


def derive_pre_query(tokenizer) -> str | None:
    """The pre-query template (with `{system}`) cut from the tokenizer's own chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": _SYS}, {"role": "user", "content": _USR}],
        tokenize=False,
        add_generation_prompt=False,
    )
    if _SYS not in text or _USR not in text:
        return None
    return text[: text.index(_USR)].replace(_SYS, "{system}")


def magpie_system_text(domain: DomainConfig, max_difficulty: bool) -> str:
    text = registry.MATH_CONTROL_SYSTEM
    if max_difficulty:
        text += " " + registry.MAX_DIFFICULTY_SYSTEM.format(focus=domain.focus)
    return text


class PromptBuilder:
    """Token-id prompts for one model, derived from and checked against its tokenizer."""

    def __init__(self, model: ResolvedModel, tokenizer=None):
        self.model = model
        self._tokenizer = tokenizer

    @cached_property
    def tokenizer(self):
        return self._tokenizer or load_tokenizer(self.model.tokenizer_path or self.model.path)

    def _ids(self, text: str) -> list[int]:
        # The text already holds BOS where the template wants it: add nothing (defect 2).
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @cached_property
    def pre_query_template(self) -> str:
        fam = self.model.template
        derived = derive_pre_query(self.tokenizer)
        if derived is not None and derived != fam["pre_query"]:
            raise ConfigError(
                f"model: the chat template of {self.model.name} gives pre-query {derived!r}, the "
                f"registry's {self.model.family} family says {fam['pre_query']!r}; fix [models] in the config"
            )
        return fam["pre_query"]

    def magpie_prompt(self, domain: DomainConfig, max_difficulty: bool) -> tuple[str, list[int]]:
        text = self.pre_query_template.format(system=magpie_system_text(domain, max_difficulty))
        ids = self._ids(text)
        bos = self.model.template["bos"]
        if bos is not None:
            bos_id = self.tokenizer.convert_tokens_to_ids(bos)
            if ids.count(bos_id) != 1 or ids[0] != bos_id:
                raise ConfigError(f"model: Magpie prompt of {self.model.name} does not start with exactly one BOS")
        return text, ids

    def response_prompt(self, instruction: str) -> tuple[str, list[int]]:
        """The model's own chat template, the instruction as the only message (defect 6)."""
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
        )
        return text, self._ids(text)

    @cached_property
    def stop_strings(self) -> tuple[str, ...]:
        return tuple(self.model.template["stop"])

    @cached_property
    def stop_token_ids(self) -> tuple[int, ...]:
        """Ids of the stop strings that are single tokens in this vocabulary."""
        ids = []
        unk = self.tokenizer.unk_token_id
        for text in self.stop_strings:
            enc = self._ids(text)
            if len(enc) == 1 and enc[0] != unk:
                ids.append(enc[0])
        expected = self.model.expected_stop_token_ids
        if expected and tuple(ids) != expected:
            raise ConfigError(
                f"model: stop ids of {self.model.name} are {ids}, the registry says {list(expected)}; "
                "the tokenizer is not the one the menu entry describes"
            )
        return tuple(ids)


@dataclass(frozen=True)
class TemplateTexts:
    """The prompt texts the merge records (`pre_query_template`, `gen_response_configs.prompt`,
    `stop_tokens`), rendered once at launch and frozen into run.json: the merge then needs no
    tokenizer, hence no transformers/torch import (seconds and hundreds of MB on a CPU node)."""

    pre_query: dict[str, str]  # domain -> Magpie prompt text
    response_prompt: str  # the chat template around the literal placeholder "{instruction}"
    stop_strings: tuple[str, ...]
    # The tokenizer's eos_token, which the standard-format TRL files end each completion with
    # (trl_files.py); None in a run.json written before it was recorded.
    eos_token: str | None = None

    @classmethod
    def render(cls, prompts: PromptBuilder, cfg: RunConfig) -> TemplateTexts:
        return cls(
            pre_query={
                d: prompts.magpie_prompt(cfg.domain(d), cfg.instructions.max_difficulty)[0] for d in cfg.domains
            },
            response_prompt=prompts.response_prompt("{instruction}")[0],
            stop_strings=prompts.stop_strings,
            eos_token=prompts.tokenizer.eos_token,
        )

    def to_json(self) -> dict:
        return {
            "pre_query": self.pre_query,
            "response_prompt": self.response_prompt,
            "stop_strings": list(self.stop_strings),
            "eos_token": self.eos_token,
        }

    @classmethod
    def from_json(cls, data: dict) -> TemplateTexts:
        return cls(dict(data["pre_query"]), data["response_prompt"], tuple(data["stop_strings"]), data.get("eos_token"))
