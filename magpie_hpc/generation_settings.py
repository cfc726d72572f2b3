"""Which sampling settings produced each record: recorded with every chunk when it is committed
(store.ShardStore.commit, `settings` in chunks.jsonl), read back by the merge per record.

A run relaunched with `--resume --force` after a sampling change keeps the chunks generated before
it: their records must state the settings they were generated with, not the new ones, and the card
must list every configuration the run was generated under.
"""

from __future__ import annotations

import json

from .config import RunConfig
from .models import model_label
from .pipeline import stage as stage_spec


def stage_settings(cfg: RunConfig, model_name: str, stage: str, domain: str) -> dict | None:
    """The settings one chunk of `stage` is generated (or scored) with (each stage's work class
    says which); None for select. Models by label (hub id or folder name): these reach the records
    and the card, where a path does not belong."""
    return stage_spec(stage).work_class().recorded_settings(cfg, model_label(model_name), domain)


def shard_settings(store) -> list[dict]:
    """The distinct settings recorded for a shard's chunks, in commit order (empty: none recorded)."""
    seen, out = set(), []
    for records in (store.chunk_records() or {}).values():
        for rec in records:
            settings = rec.get("settings")
            if isinstance(settings, dict):
                key = json.dumps(settings, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    out.append(settings)
    return out
