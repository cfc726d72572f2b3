"""Per-request journal: no finished response is generated twice.

A response or multi-response shard attempt appends each request (one prompt, all its `n`
completions) as the engine finishes it to `journal-<attempt>.jsonl` in the shard folder, one JSON
line each, flushed and fsynced at most every SYNC_SECONDS (a kill loses at most that much). A
restarted attempt reads every journal of the shard, takes the finished requests of the chunks not
yet committed from there, and asks the engine only for the rest. Chunk commits stay atomic and are
the only thing the merge reads; journals are deleted once the shard is done. A torn last line (a
kill mid-write) or any line that does not decode is ignored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .engine import Completion, PromptResult

SYNC_SECONDS = 2.0
PATTERN = "journal-*.jsonl"


class RequestJournal:
    def __init__(self, path: Path, sync_seconds: float = SYNC_SECONDS):
        self.path = path
        self.sync_seconds = sync_seconds
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._synced = time.monotonic()

    def append(self, chunk: int, index: int, result: PromptResult) -> None:
        record = {
            "chunk": chunk,
            "index": index,
            "prompt_tokens": result.prompt_tokens,
            "completions": [[c.text, c.output_tokens, c.finish_reason] for c in result.completions],
        }
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        if time.monotonic() - self._synced >= self.sync_seconds:
            self.sync()

    def sync(self) -> None:
        if self._fh.closed:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._synced = time.monotonic()

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()


def read_journals(folder: Path, from_chunk: int = 0) -> dict[tuple[int, int], PromptResult]:
    """(chunk, index in chunk) -> result, from every attempt's journal; chunks below `from_chunk`
    (committed already) are skipped."""
    found: dict[tuple[int, int], PromptResult] = {}
    for path in sorted(folder.glob(PATTERN)):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    r = json.loads(line)
                    key = (int(r["chunk"]), int(r["index"]))
                    result = PromptResult(
                        int(r["prompt_tokens"]), [Completion(str(t), int(n), str(f)) for t, n, f in r["completions"]]
                    )
                except (ValueError, KeyError, TypeError):
                    continue  # a torn tail, or a line cut by a full disk
                if key[0] >= from_chunk:
                    found.setdefault(key, result)
    return found


def remove_journals(folder: Path) -> None:
    for path in folder.glob(PATTERN):
        path.unlink(missing_ok=True)
