"""params.yaml's typed view: strict keys with rename hints, values checked where read, generation's templates."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.config.params import load_params, parse_params


def raw_params() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            lambda p: p.update(task="generation") or p["train"]["args"].update(metric_for_best_model="macro_f1"),
            "macro_f1 is a classification metric",
        ),
        (lambda p: p["generation"].update(stop=["\n", ""]), "generation.stop: an empty stop sequence"),
        (
            lambda p: p["generation"]["chat_template"].update(user="User: "),
            r"generation.chat_template.user: needs \{content\}",
        ),
        (lambda p: p["generation"].update(prompt_template="no fields"), "generation.prompt_template: names no column"),
        (lambda p: p.update(task="translation"), "task: Input should be 'classification' or 'generation'"),
    ],
)
def test_generation_params_are_checked(edit, says):
    raw = raw_params()
    edit(raw)
    with pytest.raises(UserError, match=says):
        parse_params(raw)


RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def edited(edit) -> dict:
    raw = copy.deepcopy(RAW)
    edit(raw)
    return raw


def test_repository_params_load_with_the_seed_defaults():
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "mteb/tweet_sentiment_extraction"
    assert params.model.name == "gpt2"
    assert params.data.labels == ["negative", "neutral", "positive"]
    assert (params.data.max_train_samples, params.data.max_eval_samples, params.data.seed) == (1000, 1000, 42)
    assert params.train.args.learning_rate == 5.0e-5
    assert (params.evaluate.base_margin, params.evaluate.samples_kept) == (0.0, 200)


def test_unknown_key_names_the_key():
    with pytest.raises(UserError, match=r"train\.args\.learning_rte: unknown key"):
        parse_params(edited(lambda r: r["train"]["args"].update(learning_rte=1.0e-4)))


def test_a_training_argument_transformers_5_renamed_says_the_new_name():
    with pytest.raises(UserError, match=r"train\.args\.gradient_checkpointing: transformers 5 renamed .* activation_"):
        parse_params(edited(lambda r: r["train"]["args"].update(gradient_checkpointing=True)))


def test_wrong_type_names_the_key_and_value():
    with pytest.raises(UserError, match=r"data\.seed: .*got 'forty-two'"):
        parse_params(edited(lambda r: r["data"].update(seed="forty-two")))


def test_float_written_as_5e_5_is_caught():
    # PyYAML reads `5e-5` as the string '5e-5': the loader must refuse it, not train with a string.
    raw = edited(lambda r: None)
    raw["train"]["args"]["learning_rate"] = yaml.safe_load("x: 5e-5")["x"]
    assert raw["train"]["args"]["learning_rate"] == "5e-5"
    with pytest.raises(UserError, match=r"train\.args\.learning_rate"):
        parse_params(raw)


def test_missing_section_is_named():
    with pytest.raises(UserError, match=r"evaluate: missing"):
        parse_params(edited(lambda r: r.pop("evaluate")))


def test_invalid_choice_is_named():
    with pytest.raises(UserError, match=r"flow\.review_data"):
        parse_params(edited(lambda r: r["flow"].update(review_data="sometimes")))


def test_missing_params_file_says_where_to_run(tmp_path):
    with pytest.raises(UserError, match="run from the project root"):
        load_params(tmp_path / "params.yaml")


def test_broken_yaml_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML") as info:
        load_params(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["train"]["args"].update(learning_rate=float("inf")), r"train\.args\.learning_rate: .*finite"),
        (lambda r: r["train"]["args"].update(optim="adam_w"), r"train\.args\.optim: not one transformers knows; .*"),
        (lambda r: r["train"]["args"].update(lr_scheduler_type="cosin"), r"train\.args\.lr_scheduler_type: not one"),
        (lambda r: r["data"].update(seed=-1), r"data\.seed: .*greater than or equal to 0"),
        (lambda r: r["train"]["args"].update(seed=-1), r"train\.args\.seed: .*greater than or equal to 0"),
        (lambda r: r["data"].update(labels=["neg", "pos", "Neg"]), r"data\.labels: each label once .*\['neg'\]"),
        (lambda r: r["evaluate"].update(samples_kept=0), r"evaluate\.samples_kept: .*greater than 0"),
        (lambda r: r["evaluate"].update(base_margin=float("nan")), r"evaluate\.base_margin: .*finite"),
        (lambda r: r["evaluate"].pop("base_margin"), r"evaluate\.base_margin: missing"),
    ],
    ids=[
        "infinite learning rate",
        "unknown optim",
        "unknown scheduler",
        "data seed",
        "train seed",
        "dup labels",
        "no samples kept",
        "NaN base margin",
        "no base margin",
    ],
)
def test_values_that_would_fail_late_fail_at_load_naming_the_key(edit, message):
    with pytest.raises(UserError, match=message) as info:
        parse_params(edited(edit))
    assert "\n" not in str(info.value)


def test_a_less_common_name_transformers_knows_is_accepted():
    params = parse_params(edited(lambda r: r["train"]["args"].update(lr_scheduler_type="cosine_with_restarts")))
    assert params.train.args.lr_scheduler_type == "cosine_with_restarts"


def test_lora_target_modules_take_auto_or_a_list_and_nothing_else():
    assert load_params(ROOT / "params.yaml").train.lora.target_modules == "auto"
    listed = parse_params(edited(lambda r: r["train"]["lora"].update(target_modules=["q_proj", "v_proj"])))
    assert listed.train.lora.target_modules == ["q_proj", "v_proj"]
    with pytest.raises(UserError, match=r"train\.lora\.target_modules"):
        parse_params(edited(lambda r: r["train"]["lora"].update(target_modules="all-linear")))
