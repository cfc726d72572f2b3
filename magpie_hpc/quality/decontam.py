"""Decontamination against evaluation benchmarks, at select (before any response is generated):
an instruction that reproduces a benchmark problem is dropped, and select takes the next one.

Two tests, either one matches:
* word n-grams (13 by default, the usual width for math decontamination): the instruction shares
  at least one n-gram of words with a benchmark problem. Words are runs of letters and digits after
  NFKC and casefolding, so spacing, punctuation and `$` delimiters do not hide a copy; a text with
  fewer than n words contributes its whole word sequence as its one n-gram.
* the MinHash estimate of quality/neardup.py (character 5-grams, 128 permutations): estimated
  Jaccard >= `threshold` with a benchmark problem. It catches light rewording that touches every
  13-word window of a short problem.

Benchmark files are local JSON (a list of records, or {"data": [...]} / {"rows": [...]}), JSONL or
Parquet, read by `load_benchmark`; the compute nodes cannot download them, so launch reads each
once (`check_benchmark_files`) and refuses a missing or unreadable one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .neardup import _band_shape, _estimated_jaccard, minhash_signatures

__all__ = ["BenchmarkMatch", "Decontaminator", "check_benchmark_files", "load_benchmark", "word_ngrams"]

_WORD = re.compile(r"\w+")
NUM_PERM = 128


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def word_ngrams(text: str, n: int) -> set[str]:
    """The text's word n-grams, each as its words joined by one space."""
    words = _words(text)
    if not words:
        return set()
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def load_benchmark(path: str | Path, field: str) -> list[str]:
    """The problem texts of one benchmark file; ConfigError (one line) when it cannot be used."""
    path = Path(path)
    hint = "fix quality.decontamination_files (local JSON, JSONL or Parquet files; nothing is downloaded)"
    if not path.is_file():
        raise ConfigError(f"quality.decontamination_files: {path} does not exist or is not a file; {hint}")
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            if field not in table.column_names:
                raise ConfigError(
                    f"quality.decontamination_files: {path} has no column {field!r} (columns: "
                    f"{', '.join(table.column_names[:10])}); set quality.decontamination_field"
                )
            records = [{field: v} for v in table.column(field).to_pylist()]
        elif path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                records = [json.loads(line) for line in fh if line.strip()]
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
            records = data.get("data", data.get("rows")) if isinstance(data, dict) else data
    except ConfigError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, ImportError) as exc:
        raise ConfigError(
            f"quality.decontamination_files: cannot read {path} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); {hint}"
        ) from None
    if not isinstance(records, list):
        raise ConfigError(f"quality.decontamination_files: {path} holds no list of records; {hint}")
    texts = [r.get(field) for r in records if isinstance(r, dict)]
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ConfigError(
            f"quality.decontamination_files: {path} has no record with a text field {field!r}; "
            "set quality.decontamination_field to the field that holds the problem"
        )
    return texts


def check_benchmark_files(files: Sequence[str], field: str) -> dict[str, int]:
    """Launch's check: every file readable, with problems; {path: number of problems}."""
    return {str(path): len(load_benchmark(path, field)) for path in files}


@dataclass(frozen=True)
class BenchmarkMatch:
    """Instruction `index` reproduces problem `problem` of benchmark file `file` (an index)."""

    index: int
    file: int
    problem: int
    method: str  # "ngram" or "minhash"
    similarity: float  # estimated Jaccard (MinHash), whatever the method


class Decontaminator:
    """The benchmark problems of several files, ready to match instructions against."""

    def __init__(self, files: Sequence[str], field: str, *, ngram: int = 13, threshold: float = 0.85, seed: int = 0):
        self.files = [str(f) for f in files]
        self.ngram, self.threshold, self.seed = ngram, threshold, seed
        texts, owners = [], []
        for f_index, path in enumerate(self.files):
            problems = load_benchmark(path, field)
            texts += problems
            owners += [(f_index, p) for p in range(len(problems))]
        self.sizes = [sum(1 for o in owners if o[0] == i) for i in range(len(self.files))]
        self.owners = owners
        self.grams: dict[str, int] = {}  # n-gram -> first benchmark text holding it
        for t_index, text in enumerate(texts):
            for gram in word_ngrams(text, ngram):
                self.grams.setdefault(gram, t_index)
        self.signatures, self.has_shingles = minhash_signatures(texts, num_perm=NUM_PERM, seed=seed)
        self.bands, self.rows = _band_shape(threshold, NUM_PERM)
        self.band_keys = [self._keys(self.signatures, band) for band in range(self.bands)]

    def _keys(self, signatures: np.ndarray, band: int) -> np.ndarray:
        keys = np.zeros(len(signatures), dtype=np.uint64)
        for column in signatures[:, band * self.rows : (band + 1) * self.rows].astype(np.uint64).T:
            keys = (keys ^ column) * np.uint64(0x9E3779B97F4A7C15)
        return keys

    def match(self, instructions: Sequence[str]) -> list[BenchmarkMatch]:
        """The instructions that reproduce a benchmark problem, ascending by index (one match each:
        the n-gram test first, else the most similar benchmark text by MinHash)."""
        if not instructions or not self.owners:
            return []
        signatures, has = minhash_signatures(instructions, num_perm=NUM_PERM, seed=self.seed)
        found: dict[int, tuple[int, str]] = {}
        for i, text in enumerate(instructions):
            hit = next((self.grams[g] for g in word_ngrams(text, self.ngram) if g in self.grams), None)
            if hit is not None:
                found[i] = (hit, "ngram")
        # MinHash: LSH band keys equal to a benchmark text's propose a pair; the estimate decides.
        left, right = [], []
        valid = np.flatnonzero(self.has_shingles)
        for band in range(self.bands):
            bench = self.band_keys[band][valid]
            order = np.argsort(bench, kind="stable")
            sorted_keys = bench[order]
            keys = self._keys(signatures, band)
            lo = np.searchsorted(sorted_keys, keys, side="left")
            hi = np.searchsorted(sorted_keys, keys, side="right")
            for i in np.flatnonzero((hi > lo) & has):
                for j in order[lo[i] : hi[i]]:
                    left.append(i)
                    right.append(valid[j])
        best: dict[int, tuple[float, int]] = {}
        if left:
            pairs = np.unique(np.array(left, dtype=np.int64) * len(self.owners) + np.array(right, dtype=np.int64))
            li, ri = pairs // len(self.owners), pairs % len(self.owners)
            both = np.vstack([signatures, self.signatures])  # one array for _estimated_jaccard
            similarity = _estimated_jaccard(both, li, ri + len(signatures))
            for i, j, s in zip(li.tolist(), ri.tolist(), similarity.tolist()):
                if s >= self.threshold and s > best.get(i, (-1.0, 0))[0]:
                    best[i] = (s, j)
        out = []
        for i in sorted(set(found) | set(best)):
            if i in found:
                j, method = found[i]
                sim = float(
                    _estimated_jaccard(
                        np.vstack([signatures[i : i + 1], self.signatures[j : j + 1]]), np.array([0]), np.array([1])
                    )[0]
                )
            else:
                (sim, j), method = best[i], "minhash"
            f_index, problem = self.owners[j]
            out.append(BenchmarkMatch(i, f_index, problem, method, round(sim, 4)))
        return out
