"""Reward scoring with transformers (ArmoRM on clusters, the tiny Llama reward model in tests).

Fixes the original's scorer (defect 8): batches sorted by length with attention masks instead of one
forward pass per response, and the model's full context instead of a 4096-token cut.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .. import registry
from .base import Scorer


class TransformersScorer(Scorer):
    name = "transformers"

    def __init__(self, model_path: str, *, hub_id: str, max_length: int, batch_tokens: int, dtype: str):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        started = time.monotonic()
        trust = hub_id in registry.TRUSTED_REMOTE_CODE  # remote code only for allow-listed models
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = getattr(torch, dtype) if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_path, trust_remote_code=trust, dtype=torch_dtype
        ).to(self.device).eval()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self.load_seconds = time.monotonic() - started

    def _encode(self, conversation: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_length:
            return ids
        # Too long: shorten the answer, never the template around it (ArmoRM needs its headers).
        *head, last = conversation
        keep = max(1, int(len(last["content"]) * self.max_length / len(ids) * 0.95))
        return self._encode([*head, {**last, "content": last["content"][:keep]}])

    def score(self, conversations: Sequence[list[dict[str, str]]]) -> list[float]:
        import torch

        encoded = [self._encode(conv) for conv in conversations]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        scores: list[float] = [0.0] * len(encoded)
        start = 0
        while start < len(order):
            # Grow the batch while its padded size stays under the token budget.
            end = start + 1
            while end < len(order) and len(encoded[order[end]]) * (end + 1 - start) <= self.batch_tokens:
                end += 1
            batch = [encoded[i] for i in order[start:end]]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            with torch.inference_mode():
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            # ArmoRM's custom output has .score; plain sequence classifiers give logits.
            values = out.score if getattr(out, "score", None) is not None else out.logits[:, 0]
            for i, value in zip(order[start:end], values.float().view(-1).tolist()):
                scores[i] = value
            start = end
        return scores

    def close(self) -> None:
        self.__dict__.pop("model", None)
