"""Which model a name means, and the prompts it is given.

`resolve_model` turns `--model KEY|PATH|HUB_ID` into a `ResolvedModel`; `PromptBuilder` derives
the Magpie pre-query prompt and the response prompt from the tokenizer's own chat template and
hands out token ids (a string prompt would get a second BOS from vLLM: defect 2 of SPEC.md).
"""

from __future__ import annotations

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

    @property
    def basename(self) -> str:
        return Path(self.name.rstrip("/")).name

    @property
    def template(self) -> dict:
        return registry.TEMPLATE_FAMILIES[self.family]


def _hub_cached(hub_id: str) -> str | None:
    """Local snapshot folder of a hub id, if its config is in the cache (compute nodes are offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(hub_id, "config.json")
    except Exception:  # noqa: BLE001 - an unusable cache is the same as no cache
        return None
    return str(Path(found).parent) if isinstance(found, str) else None


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
            name=entry.hub_id, path=local or entry.hub_id, family=entry.family,
            tensor_parallel_size=eng.tensor_parallel_size or entry.tensor_parallel_size or _planned_tp(cfg),
            max_model_len=eng.max_model_len or entry.max_model_len,
            expected_stop_token_ids=tuple(entry.stop_token_ids),
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
            name=str(path.resolve()), path=str(path.resolve()), family=family,
            tensor_parallel_size=eng.tensor_parallel_size or _planned_tp(cfg),
            max_model_len=eng.max_model_len or 8192,
        )
    if spec.startswith(("/", ".", "~")) or not _HUB_ID.match(spec):
        raise ConfigError(f"model: {spec} does not exist; pass an existing model folder, a menu key (1-5) or a hub id")
    raise ConfigError(
        f"model: {spec} has no known Magpie template; use a menu key (1-5) or add it to [models] in a --config file"
    )


def resolve_reward_model(spec: str, *, need_weights: bool = True) -> str:
    """The reward model's loadable location (local folder or cached hub snapshot)."""
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"reward_model: {path} has no config.json; pass a reward model folder or a hub id")
        return str(path.resolve())
    if spec.startswith(("/", ".", "~")) or not _HUB_ID.match(spec):
        raise ConfigError(f"reward_model: {spec} does not exist; pass an existing folder or a hub id")
    local = _hub_cached(spec)
    if need_weights and local is None:
        raise ConfigError(
            f"reward_model: {spec} is not in the local Hugging Face cache; download it first "
            f"(huggingface-cli download {spec}) or pass --reward-model PATH"
        )
    return local or spec


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def derive_pre_query(tokenizer) -> str | None:
    """The pre-query template (with `{system}`) cut from the tokenizer's own chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": _SYS}, {"role": "user", "content": _USR}],
        tokenize=False, add_generation_prompt=False,
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
        return self._tokenizer or load_tokenizer(self.model.path)

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

    @classmethod
    def render(cls, prompts: PromptBuilder, cfg: RunConfig) -> TemplateTexts:
        return cls(
            pre_query={d: prompts.magpie_prompt(cfg.domain(d), cfg.instructions.max_difficulty)[0]
                       for d in cfg.domains},
            response_prompt=prompts.response_prompt("{instruction}")[0],
            stop_strings=prompts.stop_strings,
        )

    def to_json(self) -> dict:
        return {"pre_query": self.pre_query, "response_prompt": self.response_prompt,
                "stop_strings": list(self.stop_strings)}

    @classmethod
    def from_json(cls, data: dict) -> TemplateTexts:
        return cls(dict(data["pre_query"]), data["response_prompt"], tuple(data["stop_strings"]))
