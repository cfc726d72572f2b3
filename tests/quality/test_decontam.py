"""Decontamination against benchmark files (quality/decontam.py): the matcher on a small benchmark
file the test writes, file loading and launch's check, and one synthetic-engine run in which a
planted benchmark problem is dropped at select while the domain keeps its exact count."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import local_launch, small_config
from magpie_hpc.cli import main
from magpie_hpc.context import RunContext
from magpie_hpc.errors import ConfigError
from magpie_hpc.plan import stage_shards
from magpie_hpc.quality.decontam import Decontaminator, check_benchmark_files, load_benchmark, word_ngrams
from magpie_hpc.store import RunStore

# The synthetic engine's fixed low-entropy sample (engine/synthetic.py, `_instruction`).
SYNTHETIC_REPEAT = "Let $G$ be a finite group of order 12. How many Sylow 3-subgroups can $G$ have?"
LONG = (
    "Find all positive integers $n$ such that $n^2 + 3n + 5$ is divisible by $121$, and prove that no "
    "other positive integer has this property, using only congruences modulo $11$."
)
SHORT = "Compute $\\int_0^1 x^2 \\sin(\\pi x)\\,dx$ exactly, in closed form."
BENCH = [SYNTHETIC_REPEAT, LONG, SHORT]
UNRELATED = "A fair die is rolled until a six appears. What is the expected number of rolls?"


def _jsonl(path: Path, texts: list[str], field: str = "problem") -> Path:
    path.write_text("".join(json.dumps({field: t, "answer": "x"}) + "\n" for t in texts))
    return path


@pytest.fixture
def bench_file(tmp_path) -> Path:
    return _jsonl(tmp_path / "bench.jsonl", BENCH)


def test_exact_copy_reworded_copy_and_unrelated_problem(bench_file) -> None:
    d = Decontaminator([str(bench_file)], "problem")
    exact = "  " + LONG.upper()  # case and spacing do not hide a copy
    reworded = LONG.replace("such that", "for which").replace("using only", "with nothing but")
    short_reworded = SHORT.replace("exactly, in closed form", "exactly in closed form")  # < 13 words changed
    matches = d.match([UNRELATED, exact, reworded, short_reworded, "Prove that $\\sqrt{2}$ is irrational."])
    assert [m.index for m in matches] == [1, 2, 3]
    by_index = {m.index: m for m in matches}
    assert by_index[1].method == "ngram" and by_index[1].problem == 1 and by_index[1].similarity == 1.0
    assert by_index[2].method == "ngram" and by_index[2].problem == 1  # one 13-word window survived
    assert by_index[3].problem == 2 and by_index[3].similarity >= 0.85
    assert all(m.file == 0 for m in matches)


def test_minhash_catches_what_13_grams_miss(tmp_path) -> None:
    # A short problem with a typo in its middle word has no 13-word window in common; MinHash matches.
    base = "Show that $2$ is a quadratic residue modulo every prime $p \\equiv 7 \\pmod 8$."
    d = Decontaminator([str(_jsonl(tmp_path / "b.jsonl", [base]))], "problem", ngram=13, threshold=0.8)
    changed = base.replace("residue", "residu")
    assert not (word_ngrams(changed, 13) & word_ngrams(base, 13))
    (m,) = d.match([changed])
    assert m.method == "minhash" and m.similarity >= 0.8
    # Off for MinHash (threshold 1.0) and a smaller n: the n-gram test finds it alone.
    d = Decontaminator([str(tmp_path / "b.jsonl")], "problem", ngram=5, threshold=1.0)
    assert [m.method for m in d.match([changed])] == ["ngram"]


def test_word_ngrams() -> None:
    assert word_ngrams("a b c", 2) == {"a b", "b c"}
    assert word_ngrams("Only three words", 13) == {"only three words"}  # shorter than n: one gram
    assert word_ngrams("$x$, y; Z", 3) == {"x y z"}
    assert word_ngrams("  ", 13) == set()


def test_counts_per_file_and_formats(tmp_path) -> None:
    second = tmp_path / "second.parquet"
    pq.write_table(pa.table({"question": [SHORT, UNRELATED]}), second)
    third = tmp_path / "third.json"
    third.write_text(json.dumps({"data": [{"question": SYNTHETIC_REPEAT}]}))
    with pytest.raises(ConfigError, match="no column 'problem'"):
        load_benchmark(second, "problem")
    assert load_benchmark(second, "question") == [SHORT, UNRELATED]
    assert load_benchmark(third, "question") == [SYNTHETIC_REPEAT]
    d = Decontaminator([str(_jsonl(tmp_path / "q.jsonl", [LONG], "question")), str(second), str(third)], "question")
    assert d.sizes == [1, 2, 1]
    matches = d.match([SYNTHETIC_REPEAT, "unrelated text about nothing", UNRELATED, LONG])
    assert [(m.index, m.file, m.problem) for m in matches] == [(0, 2, 0), (2, 1, 1), (3, 0, 0)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "cannot read"),
        ('{"problem": 3}\n', "cannot read|no record"),
        ('[{"text": "a problem"}]', "no record with a text field 'problem'"),
    ],
)
def test_unusable_files_are_one_line_errors(tmp_path, content, message) -> None:
    path = tmp_path / ("b.json" if content is None or content.startswith(("[", "{n")) else "b.jsonl")
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        check_benchmark_files([str(path)], "problem")
    assert "\n" not in str(err.value) and str(err.value).startswith("quality.decontamination_files:")


def test_launch_refuses_a_missing_benchmark_file(tiny_models, tmp_path, capsys) -> None:
    cfg = small_config(tmp_path / "c.toml", quality={"decontamination_files": [str(tmp_path / "missing.jsonl")]})
    rc = main(local_launch(tiny_models, tmp_path / "data", "algebra", 2, cfg))
    err = capsys.readouterr().err
    assert rc == 2 and "missing.jsonl does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()


def test_planted_benchmark_problem_is_dropped_and_replaced(tiny_models, tmp_path, monkeypatch, capsys) -> None:
    count = 24
    bench = _jsonl(tmp_path / "planted.jsonl", [SYNTHETIC_REPEAT, UNRELATED])
    monkeypatch.chdir(tmp_path)  # a relative path is taken from launch's directory, frozen absolute
    cfg = small_config(tmp_path / "c.toml", max_tokens=(64, 64), quality={"decontamination_files": ["planted.jsonl"]})
    assert main(local_launch(tiny_models, tmp_path / "data", "algebra", count, cfg)) == 0
    (run,) = (tmp_path / "data").iterdir()
    store = RunStore(run)
    assert store.read_manifest()["config"]["quality"]["decontamination_files"] == [str(bench)]
    candidates = [
        t
        for shard in stage_shards(RunContext(run).cfg, "instructions", "algebra")
        for t in store.shard("instructions", "algebra", shard.shard).read_all()["instruction"].to_pylist()
    ]
    assert SYNTHETIC_REPEAT in candidates  # the engine wrote it: the test is not vacuous
    chosen = store.shard("select", "algebra", 0).read_all()["instruction"].to_pylist()
    assert len(chosen) == count and SYNTHETIC_REPEAT not in chosen
    record = json.loads((run / "work" / "select" / "algebra" / "decontamination.json").read_text())
    assert record["dropped"] == 1 and record["files"] == {str(bench): {"problems": 2, "dropped": 1}}
    assert record["matches"][0]["instruction"] == SYNTHETIC_REPEAT and record["matches"][0]["method"] == "ngram"
    info = json.loads((run / "algebra" / "dataset_info.json").read_text())
    assert info["quality"]["decontamination"]["files"] == {str(bench): {"problems": 2, "dropped": 1}}
    assert info["counts"]["benchmark_problems_dropped"] == 1
    assert len(json.loads((run / "algebra" / "algebra_ins.json").read_text())) == count
    card = (run / "README.md").read_text()
    assert "**Decontamination**" in card and "| `planted.jsonl` | 2 | 1 |" in card
    assert "grouped by mathematical equivalence" in card  # the agreement paragraph
    capsys.readouterr()
    assert main(["report", str(run), "--json"]) in (0, 1)  # 1: flagged (tiny limits truncate), never 2
    figures = json.loads(capsys.readouterr().out)["domains"]["algebra"]
    assert figures["decontamination"]["dropped"] == 1
    assert main(["report", str(run)]) in (0, 1)
    assert "algebra: benchmark problems dropped: 1 (planted.jsonl 1 of 2)" in capsys.readouterr().out
