"""Tables that `datasets` and TRL take as they are (issue 13 part 4, issue 17 part 1).

TRL's *standard* (plain-text) formats carry the exact text a model was trained to continue: the
generation prompt as the generator was given it (its chat template around the instruction, up to
and including what follows the assistant header, e.g. DeepSeek-R1's `<think>\\n`) and the full
generated text with the end-of-sequence token. The conversational files lose the reasoning under
the DeepSeek-R1 chat template (it removes everything up to `</think>` from assistant turns, and its
generation prompt ends before `<think>\\n`), so a reasoning model trains on these instead.

The texts come from run.json (models.TemplateTexts, frozen at launch), so the merge needs no
tokenizer. The BOS that the template starts with is left out: TRL tokenizes a standard prompt with
the tokenizer's own special tokens, which add it again (a second BOS would be defect 2 of SPEC.md).
"""

from __future__ import annotations

from . import registry
from .models import TemplateTexts
from .quality.dpo import DpoPair

__all__ = ["TextFormats", "model_revision", "empty_tables"]

PLACEHOLDER = "{instruction}"


def model_revision(manifest: dict, key: str) -> str | None:
    """The revision provenance recorded at launch (run.json `provenance.<key>.revision`), if any."""
    entry = (manifest.get("provenance") or {}).get(key) or {}
    revision = entry.get("revision") if isinstance(entry, dict) else None
    return revision if isinstance(revision, str) and revision else None


class TextFormats:
    """Standard-format prompt and completion texts of one run's generator."""

    def __init__(self, texts: TemplateTexts, family: str, eos_token: str | None = None):
        template = texts.response_prompt
        if template.count(PLACEHOLDER) != 1:
            raise ValueError(f"response prompt {template!r} must hold {PLACEHOLDER} exactly once")
        bos = registry.TEMPLATE_FAMILIES[family]["bos"]
        if bos and template.startswith(bos):
            template = template[len(bos) :]
        self.before, self.after = template.split(PLACEHOLDER)
        self.eos = eos_token if eos_token is not None else texts.eos_token
        if not self.eos:
            raise ValueError("the tokenizer's eos_token is not known; rerun `launch --resume` to record it")

    def prompt(self, instruction: str) -> str:
        """The generation prompt text as the generator saw it, without the BOS."""
        return self.before + instruction + self.after

    def completion(self, response: str) -> str:
        """The full generated text (reasoning, `</think>`, answer) ended by the EOS token, as the
        model emitted it (vLLM leaves the EOS out of the text it returns)."""
        return response if response.endswith(self.eos) else response + self.eos

    def sft_record(self, problem_id: str, instruction: str, response: str) -> dict:
        """One row of TRL SFTTrainer's standard prompt-completion format."""
        return {"id": problem_id, "prompt": self.prompt(instruction), "completion": self.completion(response)}

    def dpo_record(self, conversational: dict, instruction: str, responses: list[str], pair: DpoPair) -> dict:
        """One row of TRL DPOTrainer's standard preference format (explicit prompt), with the same
        scores, margin and indices as the conversational row it pairs with."""
        record = dict(conversational)
        record.update(
            prompt=self.prompt(instruction),
            chosen=self.completion(responses[pair.chosen]),
            rejected=self.completion(responses[pair.rejected]),
        )
        return record


def empty_tables(names: dict[str, str], counts: dict, count_keys: dict[str, str]) -> list[str]:
    """File names of the tables without records: their JSON file is `[]` and they have no Parquet
    file, because `datasets` refuses every Parquet file without rows."""
    return [names[key] for key, count in count_keys.items() if counts.get(count, 0) == 0]
