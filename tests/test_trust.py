"""No code from a model folder runs, and launch refuses models the package cannot run faithfully.

Model folders are planted the way a user (or an attacker) would: given by path, and under the
default reward model's hub id as a relative folder in the working directory. Every planted file
of code writes a marker if it is ever imported; the marker never appears. Refusals are one line,
exit 2, before anything is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from magpie_hpc.cli import main
from magpie_hpc.registry import ARMORM
from magpie_hpc.fixtures import REMOTE_CODE_MARKER, REMOTE_CODE_MARKER_ENV

from helpers import small_config

EVIL_CODE = """import os
open(os.environ["{env}"], "a").write("evil imported\\n")
"""


@pytest.fixture()
def marker(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "remote-code-was-imported"
    monkeypatch.setenv(REMOTE_CODE_MARKER_ENV, str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return path


def _config(tmp_path: Path, reward_kind: str = "transformers") -> Path:
    # Synthetic generator, real reward model: the reward stage loads whatever the folder holds.
    return small_config(
        tmp_path / "run.toml", max_tokens=(48, 48), engine={"kind": "synthetic", "reward_kind": reward_kind}
    )


def _launch(
    tmp_path, capsys, *args: str, reward: str | None = None, model: str | None = None, config: Path | None = None
) -> tuple[int, str, str]:
    argv = [
        "launch",
        "--executor",
        "local",
        "--domains",
        "algebra",
        "--count",
        "2",
        "--config",
        str(config or _config(tmp_path)),
        "--output-root",
        str(tmp_path / "data"),
        *args,
    ]
    if model is not None:
        argv += ["--model", model]
    if reward is not None:
        argv += ["--reward-model", reward]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _plant(src: Path, dst: Path, *, config_edit=None, tok_edit=None, code: dict[str, str] | None = None) -> Path:
    shutil.copytree(src, dst)
    for name, edit in (("config.json", config_edit), ("tokenizer_config.json", tok_edit)):
        if edit is not None:
            data = json.loads((dst / name).read_text())
            edit(data)
            (dst / name).write_text(json.dumps(data))
    for name, text in (code or {}).items():
        (dst / name).write_text(text)
    return dst


def _assert_package_scores(run_dir: Path, folder: Path) -> None:
    """The run's scores are those of the package's ArmoRM on the same conversations."""
    from magpie_hpc.engine.reward_engine import TransformersScorer

    records = json.loads((run_dir / "algebra" / "algebra_ins_7res_armorm.json").read_text())
    convs = [
        [{"role": "user", "content": rec["instruction"]}, {"role": "assistant", "content": answer or full}]
        for rec in records
        for full, answer in zip(rec["responses"], rec["answers"])
    ]
    got = [s for rec in records for s in rec["scores"]]
    scorer = TransformersScorer(str(folder), max_length=4096, batch_tokens=4096, dtype="bfloat16")
    assert type(scorer.model).__module__ == "magpie_hpc.engine.armorm"
    assert got == pytest.approx(scorer.score(convs), abs=1e-4)
    assert len(set(got)) > 1


def _assert_refused(code: int, err: str, tmp_path: Path, *words: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    assert not (tmp_path / "data").exists()


def test_armorm_by_path_runs_the_package_implementation(tiny_models, tmp_path, capsys, marker):
    folder = _plant(tiny_models.reward, tmp_path / "reward")
    code, out, err = _launch(tmp_path, capsys, model=str(tiny_models.deepseek), reward=str(folder))
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    assert json.loads((run_dir / "run.json").read_text())["reward_model_path"] == str(folder.resolve())
    _assert_package_scores(run_dir, folder)
    assert not marker.exists() and not (folder / REMOTE_CODE_MARKER).exists()


def test_folder_under_the_hub_id_name_is_never_executed(tiny_models, tmp_path, capsys, marker, monkeypatch):
    # ArmoRM is the default: a folder of its hub id's relative name in the working directory is
    # what a bare `launch` finds. It runs as the package's ArmoRM; its code never runs.
    work = tmp_path / "cwd"
    planted = _plant(tiny_models.reward, work / ARMORM)
    monkeypatch.chdir(work)
    code, out, err = _launch(tmp_path, capsys, model=str(tiny_models.deepseek))
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    assert json.loads((run_dir / "run.json").read_text())["reward_model_path"] == str(planted.resolve())
    _assert_package_scores(run_dir, planted)
    assert not marker.exists() and not (planted / REMOTE_CODE_MARKER).exists()


def test_hub_id_from_the_cache_runs_the_package_implementation(tiny_models, tmp_path, capsys, marker, monkeypatch):
    # The default reward model by hub id, found in the Hugging Face cache (as on compute nodes): the
    # same config.json decides, the snapshot's remote code never runs.
    import huggingface_hub.constants

    repo = tmp_path / "hub" / ("models--" + ARMORM.replace("/", "--"))
    snapshot = _plant(tiny_models.reward, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    code, out, err = _launch(tmp_path, capsys, model=str(tiny_models.deepseek))
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    assert json.loads((run_dir / "run.json").read_text())["reward_model_path"] == str(snapshot)
    _assert_package_scores(run_dir, snapshot)
    assert not marker.exists() and not (snapshot / REMOTE_CODE_MARKER).exists()


@pytest.mark.parametrize("variant", ["config_auto_map", "tokenizer_auto_map", "causal_lm_with_code"])
def test_planted_folder_naming_other_code_is_refused(variant, tiny_models, tmp_path, capsys, marker, monkeypatch):
    work = tmp_path / "cwd"
    evil = {
        "modeling_evil.py": EVIL_CODE.format(env=REMOTE_CODE_MARKER_ENV),
        "tokenization_evil.py": EVIL_CODE.format(env=REMOTE_CODE_MARKER_ENV),
    }
    if variant == "config_auto_map":
        _plant(
            tiny_models.reward,
            work / ARMORM,
            code=evil,
            config_edit=lambda c: c.update(
                auto_map={"AutoModelForSequenceClassification": "modeling_evil.EvilRewardModel"}
            ),
        )
        words = ("LlamaForRewardModelWithGating", "remote code", "modeling_evil.EvilRewardModel")
    elif variant == "tokenizer_auto_map":
        _plant(
            tiny_models.reward,
            work / ARMORM,
            code=evil,
            tok_edit=lambda c: c.update(auto_map={"AutoTokenizer": [None, "tokenization_evil.EvilTokenizer"]}),
        )
        words = ("tokenizer_config.json", "remote code")
    else:
        _plant(
            tiny_models.deepseek,
            work / ARMORM,
            code=evil,
            config_edit=lambda c: c.update(auto_map={"AutoModelForCausalLM": "modeling_evil.EvilLM"}),
        )
        words = ("Qwen2ForCausalLM", "not a reward model", "LlamaForRewardModelWithGating")
    monkeypatch.chdir(work)
    code, _, err = _launch(tmp_path, capsys, model=str(tiny_models.deepseek))
    _assert_refused(code, err, tmp_path, "reward_model", *words)
    assert not marker.exists()


def test_causal_lm_as_reward_model_is_refused(tiny_models, tmp_path, capsys):
    code, _, err = _launch(tmp_path, capsys, model=str(tiny_models.deepseek), reward=str(tiny_models.deepseek))
    _assert_refused(code, err, tmp_path, "reward_model", "Qwen2ForCausalLM", "ForSequenceClassification")


@pytest.mark.parametrize(
    "keep, missing", [(("config.json",), "weights"), (("config.json", "model.safetensors"), "tokenizer")]
)
def test_incomplete_reward_folder_is_refused(keep, missing, tiny_models, tmp_path, capsys):
    folder = tmp_path / "partial"
    folder.mkdir()
    for name in keep:
        shutil.copy(tiny_models.reward / name, folder / name)
    code, _, err = _launch(tmp_path, capsys, model=str(tiny_models.deepseek), reward=str(folder))
    _assert_refused(code, err, tmp_path, "reward_model", missing)


def test_reward_weights_that_do_not_match_are_refused_at_launch(tiny_models, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = _plant(tiny_models.reward, tmp_path / "extra")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["score.weight"] = tensors.pop("regression_layer.weight")[:1]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    code, _, err = _launch(tmp_path, capsys, model=str(tiny_models.deepseek), reward=str(folder))
    _assert_refused(code, err, tmp_path, "reward_model", "missing regression_layer.weight", "unexpected score.weight")


def test_reward_model_without_pad_id_is_refused(tiny_models, tmp_path, capsys):
    folder = _plant(tiny_models.reward, tmp_path / "nopad", config_edit=lambda c: c.pop("pad_token_id"))
    code, _, err = _launch(tmp_path, capsys, model=str(tiny_models.deepseek), reward=str(folder))
    _assert_refused(code, err, tmp_path, "reward_model", "pad_token_id")


def test_classifier_as_generator_is_refused(tiny_models, tmp_path, capsys):
    folder = _plant(
        tiny_models.reward,
        tmp_path / "cls",
        config_edit=lambda c: (c.update(architectures=["LlamaForSequenceClassification"]), c.pop("auto_map")),
    )
    code, _, err = _launch(tmp_path, capsys, model=str(folder), reward=str(tiny_models.reward))
    _assert_refused(code, err, tmp_path, "model", "LlamaForSequenceClassification", "ForCausalLM")


def test_generator_with_remote_code_is_refused(tiny_models, tmp_path, capsys, marker):
    folder = _plant(
        tiny_models.deepseek,
        tmp_path / "gen",
        code={"modeling_evil.py": EVIL_CODE.format(env=REMOTE_CODE_MARKER_ENV)},
        config_edit=lambda c: c.update(auto_map={"AutoModelForCausalLM": "modeling_evil.EvilLM"}),
    )
    code, _, err = _launch(tmp_path, capsys, model=str(folder), reward=str(tiny_models.reward))
    _assert_refused(code, err, tmp_path, "model", "Qwen2ForCausalLM", "remote code", "modeling_evil.EvilLM")
    assert not marker.exists()


# A chat template without the Llama-3 assistant header: ArmoRM has no gating input there.
OTHER_TEMPLATE = (
    "{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n'"
    " + m['content'] + '<|eot_id|>' }}{% endfor %}"
)


def test_reward_template_without_assistant_header_is_refused_at_launch(tiny_models, tmp_path, capsys):
    folder = _plant(
        tiny_models.reward, tmp_path / "otherchat", tok_edit=lambda c: c.update(chat_template=OTHER_TEMPLATE)
    )
    code, _, err = _launch(tmp_path, capsys, model=str(tiny_models.deepseek), reward=str(folder))
    _assert_refused(code, err, tmp_path, "reward_model", "chat template", "LlamaForRewardModelWithGating")


def test_a_conversation_without_assistant_header_names_the_record(tiny_models, tmp_path, marker):
    # The folder changes after launch (launch would refuse it): the reward task fails naming the
    # record, instead of reading the gating input at some other token.
    from magpie_hpc.config import load_config
    from magpie_hpc.errors import MagpieError
    from magpie_hpc.executors.local import LocalExecutor
    from magpie_hpc.launch import create_run, validate

    folder = _plant(tiny_models.reward, tmp_path / "reward")
    cfg = load_config(
        small_config(
            tmp_path / "run.toml",
            max_tokens=(48, 48),
            fault_tolerance={"max_attempts": 1},
            engine={"kind": "synthetic", "reward_kind": "transformers"},
        ),
        {
            "domains": "algebra",
            "model": str(tiny_models.deepseek),
            "reward_model": str(folder),
            "output_root": str(tmp_path / "data"),
            "executor": "local",
        },
        count=2,
    )
    run_dir = create_run(cfg, *validate(cfg))
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**tok, "chat_template": OTHER_TEMPLATE}))
    with pytest.raises(MagpieError, match=r"rewards algebra shard 0: record algebra-\d+ response 0: .*assistant"):
        LocalExecutor().launch(run_dir)
    assert not marker.exists()
