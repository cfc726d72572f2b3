"""Reward scoring with torch (ArmoRM on clusters, its tiny double in tests) or a plain classifier.

Fixes the original's scorer (defect 8): batches sorted by length with attention masks instead of one
forward pass per response, and the model's full context instead of a 4096-token cut.

What runs is decided by the folder's config.json `architectures`, never by the model's name:
ArmoRM's `LlamaForRewardModelWithGating` is the package's own implementation (engine/armorm.py);
a `*ForSequenceClassification` model goes through transformers; anything else is refused. No code
from the folder is executed (trust_remote_code is false), and every tensor must match: a missing
or unexpected key is an error, never the warning transformers would print.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..model_checks import model_config, reward_kind
from .base import Scorer


class MissingGatingPattern(ValueError):
    """An ArmoRM conversation without an assistant header after a user turn: the gating input
    (the prompt's last hidden state) does not exist. `index` is the conversation's position."""

    def __init__(self, index: int):
        super().__init__(
            "has no '<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n' (end of a user turn, "
            "then an assistant header) in the reward model's chat template; ArmoRM reads its gating input there"
        )
        self.index = index


class TransformersScorer(Scorer):
    name = "transformers"

    def __init__(self, model_path: str, *, max_length: int, batch_tokens: int, dtype: str):
        import torch
        from transformers import AutoTokenizer

        started = time.monotonic()
        folder = Path(model_path)
        # The same checks as at launch: a folder may have changed since, and tests build scorers directly.
        self.kind = reward_kind(folder)
        config = model_config(folder, "reward_model")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = getattr(torch, dtype) if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
        # The model's pad id, not the tokenizer's: ArmoRM's [PAD] is known to config.json only, and
        # the tokenizer's fallback (EOS = <|eot_id|>) also closes every turn.
        self.pad_id = int(config["pad_token_id"])
        if self.kind == "armorm":
            from .armorm import GATING_PATTERN_TEXT, load_armorm

            self.model = load_armorm(folder, dtype=torch_dtype, device=self.device)
            self.gating_pattern = self.tokenizer(GATING_PATTERN_TEXT, add_special_tokens=False)["input_ids"]
        else:
            self.model = self._load_classifier(model_path, config, torch_dtype)
            self.gating_pattern = None
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self.load_seconds = time.monotonic() - started

    def _load_classifier(self, model_path: str, config: dict, torch_dtype):
        from transformers import AutoModelForSequenceClassification

        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_path, trust_remote_code=False, dtype=torch_dtype, output_loading_info=True
        )
        problems = [
            f"{what} {', '.join(sorted(map(str, info.get(key) or [])))}"
            for key, what in (
                ("missing_keys", "missing"),
                ("unexpected_keys", "unexpected"),
                ("mismatched_keys", "wrong shape"),
                ("error_msgs", "errors"),
            )
            if info.get(key)
        ]
        if problems:
            raise ConfigError(
                f"reward_model: {model_path}: weights do not match {config['architectures'][0]}: " + "; ".join(problems)
            )
        if type(model).__name__ != config["architectures"][0]:
            raise ConfigError(
                f"reward_model: {model_path} names {config['architectures'][0]} but transformers "
                f"builds {type(model).__name__} for its model_type; pass a consistent folder"
            )
        if model.config.pad_token_id != self.pad_id:
            raise ConfigError(
                f"reward_model: {model_path}: transformers reads pad_token_id "
                f"{model.config.pad_token_id}, config.json says {self.pad_id}"
            )
        return model.to(self.device).eval()

    def _encode(self, conversation: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_length:
            return ids
        # Too long: shorten the answer, never the template around it (ArmoRM needs its headers).
        *head, last = conversation
        keep = max(1, int(len(last["content"]) * self.max_length / len(ids) * 0.95))
        return self._encode([*head, {**last, "content": last["content"][:keep]}])

    def _gating_positions(self, encoded: list[list[int]]) -> list[int]:
        from .armorm import gating_position

        positions = []
        for index, ids in enumerate(encoded):
            at = gating_position(ids, self.gating_pattern)
            if at is None:
                raise MissingGatingPattern(index)
            positions.append(at)
        return positions

    def score(self, conversations: Sequence[list[dict[str, str]]]) -> list[float]:
        """Raises armorm.MissingGatingPattern (with the conversation's index) for ArmoRM when a
        conversation has no assistant header after a user turn."""
        import torch

        encoded = [self._encode(conv) for conv in conversations]
        gating = self._gating_positions(encoded) if self.gating_pattern is not None else None
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        scores: list[float] = [0.0] * len(encoded)
        start = 0
        while start < len(order):
            # Grow the batch while its padded size stays under the token budget.
            end = start + 1
            while end < len(order) and len(encoded[order[end]]) * (end + 1 - start) <= self.batch_tokens:
                end += 1
            rows = order[start:end]
            batch = [encoded[i] for i in rows]
            width = max(map(len, batch))
            # Right padding with the model's pad id: ArmoRM reads the last real token through the
            # mask; a classifier reads the last token that is not config.pad_token_id.
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            with torch.inference_mode():
                if gating is not None:
                    values = self.model(ids, mask, torch.tensor([gating[i] for i in rows]))["score"]
                else:
                    values = self.model(input_ids=ids, attention_mask=mask).logits[:, 0]
            for i, value in zip(rows, values.float().view(-1).tolist()):
                scores[i] = value
            start = end
        return scores

    def close(self) -> None:
        self.__dict__.pop("model", None)
