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


def stage_settings(cfg: RunConfig, model_name: str, stage: str, domain: str) -> dict | None:
    """The settings one chunk of `stage` is generated (or scored) with; None for select. Models by
    label (hub id or folder name): these reach the records and the card, where a path does not belong."""
    d, model_name = cfg.domain(domain), model_label(model_name)
    if stage == "instructions":
        return {"temperature": d.instruction_temperature, "top_p": cfg.instructions.top_p,
                "max_tokens": d.max_tokens_instruction, "samples_per_prompt": cfg.instructions.samples_per_prompt,
                "max_difficulty": cfg.instructions.max_difficulty, "input_generator": model_name,
                "engine": cfg.engine.kind}
    if stage == "responses":
        return {"temperature": d.response_temperature, "top_p": cfg.responses.top_p,
                "repetition_penalty": cfg.responses.repetition_penalty, "max_tokens": d.max_tokens_response,
                "n": 1, "output_generator": model_name, "engine": cfg.engine.kind}
    if stage == "multi_responses":
        m = cfg.multi_responses
        return {"temperature": m.temperature, "top_p": m.top_p, "repetition_penalty": cfg.responses.repetition_penalty,
                "max_tokens": m.max_tokens, "n": m.num_responses, "output_generator": model_name,
                "engine": cfg.engine.kind}
    if stage == "rewards":
        return {"reward_model": model_label(cfg.reward_model), "max_length": cfg.rewards.max_length,
                "score_reasoning": cfg.rewards.score_reasoning, "engine": cfg.engine.reward_kind}
    return None


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

