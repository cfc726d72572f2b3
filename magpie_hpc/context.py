"""A run as stage code sees it: the frozen config, the resolved model and the prompt builder.

Loaded from run.json, never from the live CLI or config file, so every task of a run (on any node,
on any retry) works from exactly what launch validated.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pyarrow as pa
from pydantic import ValidationError

from .config import RunConfig
from .errors import CorruptFileError
from .models import PromptBuilder, ResolvedModel, TemplateTexts
from .pipeline import SELECT
from .store import RunStore, RunView


class RunContext:
    def __init__(self, run_dir: Path):
        self.store = RunStore(run_dir)
        self.manifest = self.store.read_manifest()
        try:
            self.cfg = RunConfig.model_validate(self.manifest["config"])
            self.model = ResolvedModel(
                **{
                    **self.manifest["model"],
                    "expected_stop_token_ids": tuple(self.manifest["model"].get("expected_stop_token_ids", ())),
                }
            )
        except (ValidationError, TypeError, ValueError) as exc:  # a hand-edited or damaged run.json
            first = exc.errors()[0] if isinstance(exc, ValidationError) else None
            what = f"config.{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc).splitlines()[0]
            raise CorruptFileError(
                f"{self.store.manifest_path}: the run manifest is damaged ({what[:200]}); "
                "restore it from a copy; nothing was changed"
            ) from None
        self.reward_path: str = self.manifest["reward_model_path"]
        self._selections: dict[str, pa.Table] = {}

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir

    @cached_property
    def view(self) -> RunView:
        """How the run directory is read (store/view.py)."""
        return RunView(self.store)

    @cached_property
    def prompts(self) -> PromptBuilder:
        return PromptBuilder(self.model)

    @cached_property
    def template_texts(self) -> TemplateTexts:
        """Frozen at launch; rendered from the tokenizer for a run.json written before they were."""
        frozen = self.manifest.get("templates")
        return TemplateTexts.from_json(frozen) if frozen else TemplateTexts.render(self.prompts, self.cfg)

    def selection(self, domain: str) -> pa.Table:
        """The domain's final instruction list (id, index, instruction, ...), read once per process."""
        if domain not in self._selections:
            self._selections[domain] = self.store.shard(SELECT, domain, 0).read_all()
        return self._selections[domain]
