"""Near-duplicate removal: planted near-copies are found and point at the earlier text;
distinct texts are left alone; the threshold is respected; results are deterministic."""

from __future__ import annotations

import random

import pytest

from magpie_hpc.quality.neardup import NearDuplicate, find_near_duplicates, minhash_signatures

_SYLLABLES = ["ka", "lo", "mi", "ner", "tu", "vex", "qua", "rin", "sol", "dem", "pha", "zor"]
_LATEX = [r"$\mathbb{Z}_p$", r"$H^1(X,\mathcal{O}_X)$", r"$\int_0^1 f$", r"$G$", r"$\zeta(s)$"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))


def _paragraph(rng: random.Random, chars: int = 300) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(_LATEX) if rng.random() < 0.08 else _word(rng))
    return " ".join(words) + "."


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    rng = random.Random(7)
    return [_paragraph(rng) for _ in range(200)]


def _change_one_word(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    index = rng.randrange(1, len(words) - 1)
    words[index] = "zzyzx" if words[index] != "zzyzx" else "quux"
    return " ".join(words)


def _change_punctuation(text: str) -> str:
    return text.replace(".", "!").replace(" ", ", ", 3)


def _change_whitespace(text: str) -> str:
    return "  " + text.replace(" ", "\n", 5).replace(" ", "   ", 5) + "\t"


def test_planted_near_duplicates_are_found(corpus: list[str]) -> None:
    rng = random.Random(3)
    # One planted copy sits inside the corpus, not only at the end.
    texts = corpus[:150] + [_change_one_word(corpus[10], rng)] + corpus[150:]
    planted: dict[int, int] = {150: 10}
    for source, change in ((5, "word"), (40, "punct"), (77, "space"), (120, "word"), (200, "space")):
        variant = {
            "word": _change_one_word(texts[source], rng),
            "punct": _change_punctuation(texts[source]),
            "space": _change_whitespace(texts[source]),
        }[change]
        assert variant != texts[source]
        planted[len(texts)] = source
        texts.append(variant)

    found = find_near_duplicates(texts)
    assert {d.index: d.duplicate_of for d in found} == planted
    for duplicate in found:
        assert duplicate.duplicate_of < duplicate.index
        assert 0.85 <= duplicate.similarity <= 1.0


def test_distinct_texts_are_not_flagged(corpus: list[str]) -> None:
    assert find_near_duplicates(corpus) == []


def test_earlier_index_is_kept_and_clusters_map_to_their_first(corpus: list[str]) -> None:
    base = corpus[0]
    texts = [corpus[1], base, corpus[2], base.upper(), _change_whitespace(base), corpus[3]]
    found = find_near_duplicates(texts)
    assert [(d.index, d.duplicate_of) for d in found] == [(3, 1), (4, 1)]
    assert all(d.similarity == 1.0 for d in found)


def test_half_overlap_is_not_flagged() -> None:
    rng = random.Random(11)
    shared = _paragraph(rng, 150)
    first = shared + " " + _paragraph(rng, 150)
    second = shared + " " + _paragraph(rng, 150)
    assert find_near_duplicates([first, second], threshold=0.85) == []
    # ...while a low enough threshold does pair them (so the test above means something).
    low = find_near_duplicates([first, second], threshold=0.2)
    assert [(d.index, d.duplicate_of) for d in low] == [(1, 0)]
    assert 0.2 <= low[0].similarity < 0.85


def test_deterministic_for_a_seed(corpus: list[str], monkeypatch) -> None:
    rng = random.Random(5)
    texts = corpus[:50] + [_change_one_word(t, rng) for t in corpus[:20]]
    first = find_near_duplicates(texts, seed=42)
    assert first == find_near_duplicates(texts, seed=42, workers=1)
    # Units of work of 8 texts and blocks of 64 shingles: 70 texts make 9 tasks that 3 threads
    # share, each over several blocks, so the threaded result must match the one-thread one.
    import threading

    from magpie_hpc.quality import neardup

    single_sig, single_mask = minhash_signatures(texts, seed=42, workers=1)
    monkeypatch.setattr(neardup, "_CHUNK_TEXTS", 8)
    monkeypatch.setattr(neardup, "_BLOCK_SHINGLES", 64)
    tasks, threads, real = [], set(), neardup._shingle_hashes

    def counted(chunk):
        tasks.append(len(chunk))
        threads.add(threading.get_ident())
        return real(chunk)

    monkeypatch.setattr(neardup, "_shingle_hashes", counted)
    assert first == find_near_duplicates(texts, seed=42, workers=3)
    assert sorted(tasks) == sorted([8] * 8 + [6]) and threading.get_ident() not in threads
    threaded_sig, threaded_mask = minhash_signatures(texts, seed=42, workers=3)
    assert (threaded_sig == single_sig).all() and (threaded_mask == single_mask).all()
    monkeypatch.undo()
    signatures, _ = minhash_signatures(texts, seed=42)
    assert (signatures == minhash_signatures(texts, seed=42)[0]).all()
    assert not (signatures == minhash_signatures(texts, seed=43)[0]).all()
    assert {d.index for d in first} == set(range(50, 70))


def test_empty_and_tiny_inputs() -> None:
    assert find_near_duplicates([]) == []
    assert find_near_duplicates(["only one"]) == []
    # Texts with nothing left after normalisation are never reported.
    assert find_near_duplicates(["", "  ", "?!", ""]) == []
    # Short texts (under one shingle) still compare by their characters.
    assert find_near_duplicates(["abc", "ABC", "abd"]) == [NearDuplicate(1, 0, 1.0)]


def test_threshold_is_validated() -> None:
    with pytest.raises(ValueError):
        find_near_duplicates(["a", "b"], threshold=0.0)


def test_large_cluster_maps_to_its_first_member(corpus: list[str]) -> None:
    # More copies than the all-pairs bucket limit, interleaved with distinct texts.
    rng = random.Random(9)
    texts: list[str] = []
    for i in range(60):
        texts.append(corpus[i])
        texts.append(_change_whitespace(corpus[0]) if i % 2 else _change_one_word(corpus[0], rng))
    found = find_near_duplicates(texts)
    assert {d.index for d in found} == set(range(1, 120, 2))
    assert {d.duplicate_of for d in found} == {0}
