"""The pipeline definition (pipeline.py) is the one list of stages: these tests hold the code to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from magpie_hpc import pipeline
from magpie_hpc.config import ShardingConfig, load_config
from magpie_hpc.pipeline import PIPELINE, STAGE_NAMES, rebuilt_with, stage
from magpie_hpc.plan import estimated_tokens, stage_shards
from magpie_hpc.stages.base import ShardWork

PACKAGE = Path(pipeline.__file__).parent


def test_each_stage_reads_a_stage_listed_before_it():
    seen: set[str] = set()
    for spec in PIPELINE:
        assert spec.upstream is None or spec.upstream in seen, spec
        assert (spec.upstream is None) == (spec.dependency is None), spec
        seen.add(spec.name)


def test_work_classes_resolve_and_name_their_own_stage():
    for spec in PIPELINE:
        work = spec.work_class()
        assert issubclass(work, ShardWork)
        assert work.stage == spec.name
        # the engine a work class asks the runner for is the one the planner sizes GPUs for
        assert work.engine_kind == spec.engine, spec.name


def test_sharding_keys_are_config_fields_and_aftercorr_keeps_the_upstream_ranges():
    fields = set(ShardingConfig.model_fields)
    for spec in PIPELINE:
        assert spec.sharding is None or spec.sharding in fields, spec
        if spec.dependency == "aftercorr":  # task i after task i: the same shard ranges
            assert spec.sharding == stage(spec.upstream).sharding, spec


def _config(**overrides):
    return load_config(overrides={"domains": "algebra", **overrides}, count=10)


def test_aftercorr_shards_match_upstream_shards():
    cfg = _config(sharding={"multi_responses": 3})
    for spec in PIPELINE:
        if spec.dependency == "aftercorr":
            assert stage_shards(cfg, spec.name, "algebra") == stage_shards(cfg, spec.upstream, "algebra")


def test_unknown_stage_names_the_pipeline():
    with pytest.raises(KeyError, match="instructions, select"):
        stage("judge")


def test_redone_shards_invalidate_what_was_built_on_them():
    rebuilt = {name: {(s.name, same) for s, same in rebuilt_with(name)} for name in STAGE_NAMES}
    # select keeps its own copy of the instructions it chose: a redone instruction shard changes nothing after it
    assert rebuilt[pipeline.INSTRUCTIONS] == set()
    assert rebuilt[pipeline.SELECT] == {
        (pipeline.RESPONSES, False),
        (pipeline.MULTI_RESPONSES, False),
        (pipeline.REWARDS, False),
    }
    assert rebuilt[pipeline.MULTI_RESPONSES] == {(pipeline.REWARDS, True)}  # reward shard i scored shard i
    assert rebuilt[pipeline.REWARDS] == set()


def test_estimated_tokens_follow_the_specs():
    cfg = _config()
    d, t, m = cfg.domain("algebra"), cfg.throughput, cfg.multi_responses
    instruction = d.max_tokens_instruction * t.instruction_fill
    assert estimated_tokens(cfg, pipeline.RESPONSES, "algebra") == pytest.approx(
        10 * d.max_tokens_response * t.response_fill
    )
    assert estimated_tokens(cfg, pipeline.MULTI_RESPONSES, "algebra") == pytest.approx(
        10 * m.num_responses * m.max_tokens * t.response_fill
    )
    assert estimated_tokens(cfg, pipeline.REWARDS, "algebra") == pytest.approx(
        10 * m.num_responses * (instruction + m.max_tokens * t.response_fill)
    )
    assert estimated_tokens(cfg, pipeline.INSTRUCTIONS, "algebra") == pytest.approx(
        10 * (1 + cfg.instructions.oversample) / t.keep_rate * instruction
    )
    assert estimated_tokens(cfg, pipeline.SELECT, "algebra") == 0


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_stage_names_are_literals_only_in_the_pipeline_and_their_own_modules():
    """A stage's name as a string literal outside pipeline.py and stages/ means a second list of stages."""
    offenders = {}
    literal = re.compile(r"""["'](%s)["']""" % "|".join(n for n in STAGE_NAMES if n != pipeline.SELECT))
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "pipeline.py" or rel.startswith("stages/"):
            continue
        hits = {m.group(1) for m in literal.finditer(path.read_text())}
        # "responses", "instructions" and "rewards" are also column, file-kind and field names
        hits -= {pipeline.RESPONSES, pipeline.INSTRUCTIONS, pipeline.REWARDS}
        if hits:
            offenders[rel] = sorted(hits)
    assert offenders == {}


def test_no_module_is_longer_than_400_lines():
    long = {p.relative_to(PACKAGE).as_posix(): n for p in _modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
