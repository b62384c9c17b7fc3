"""Continued fine-tuning: a fine-tuned model or a job's checkpoint exported as a Hub-format folder a job trains from
(tuneops.registry.export), over a real MLflow registry and a finished job's workspace (fake_job.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.registry.fake_job import FT, FULL_STEP, LORA_STEP, NAME, checkpoint, make_project
from tuneops.config.errors import UserError
from tuneops.registry import export
from tuneops.registry.export import export_dir, export_for_training


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, sample: Any, tokenizer: Any) -> Any:
    return make_project(tmp_path_factory.mktemp("project"), sample, tokenizer)


def test_each_id_has_its_own_folder_named_after_it(tmp_path):
    assert export_dir(tmp_path, FT) == export_dir(tmp_path, FT)
    assert export_dir(tmp_path, FT).parent == tmp_path / "jobs" / "exported"
    assert export_dir(tmp_path, FT).name.startswith("ft_tiny-gpt2_tuneops_spans_2-")
    assert export_dir(tmp_path, "a:b") != export_dir(tmp_path, "a/b")  # the same once made file-name safe


def test_a_folder_appears_whole_or_not_at_all_and_the_first_of_two_exports_stays(tmp_path):
    target = tmp_path / "jobs" / "exported" / "m"

    def fail(staging: Any) -> None:
        (staging / "config.json").write_text("{}")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        export.publish(target, fail)
    assert not target.parent.exists() or not list(target.parent.iterdir())  # no half folder, no staging left
    export.publish(target, lambda staging: (staging / "config.json").write_text('{"first": true}'))
    export.publish(target, lambda staging: (staging / "config.json").write_text('{"second": true}'))
    assert (target / "config.json").read_text() == '{"first": true}' and list(target.parent.iterdir()) == [target]


def weights(folder: Any) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_a_fine_tuned_model_is_exported_once_as_a_folder_training_loads(project, monkeypatch):
    from tuneops.models.loading import load_causal_lm, load_tokenizer
    from tuneops.registry.store import load_registered

    folder = export_for_training(FT, project.root, project.register())
    assert not list(folder.parent.glob(".*"))  # no staging folder left behind
    tokenizer = load_tokenizer(str(folder))
    assert "Q: " in tokenizer.chat_template  # the version's template (from its tags) travels with it
    load_causal_lm(str(folder), tokenizer)  # what a job with model.name: <folder> loads
    registered, _ = load_registered(project.register(), 2)
    exported, state = weights(folder), registered.state_dict()
    assert exported and set(exported) <= set(state)
    assert all(exported[k].equal(state[k].cpu()) for k in exported)
    monkeypatch.setattr(export, "Catalog", None)  # a second export loads nothing
    assert export_for_training(FT, project.root, project.register()) == folder


def test_a_lora_checkpoint_is_exported_merged_into_its_base(project, sample):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = export_for_training(checkpoint(FT, LORA_STEP), project.root, project.register())
    assert not (folder / "adapter_config.json").exists() and (folder / "tokenizer_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(sample.model_dir).state_dict()
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(sample.model_dir), str(project.checkpoint_dir(LORA_STEP))
    )
    merged = adapted.merge_and_unload().state_dict()
    exported = weights(folder)
    assert set(exported) <= set(merged)
    assert all(exported[k].allclose(merged[k], atol=1e-6) for k in exported)
    attention = "transformer.h.0.attn.c_attn.weight"
    assert not exported[attention].allclose(base[attention])  # the adapters moved it


@pytest.mark.parametrize(
    ("model_id", "why"),
    [
        (f"{NAME}@champion", "an alias moves"),
        (NAME, "an alias moves"),
        ("ft:tiny-gpt2:tuneops:spans:9", "no registered version or job checkpoint"),
        (checkpoint(FT, FULL_STEP + 1), "no registered version or job checkpoint"),
    ],
)
def test_an_alias_or_an_id_that_names_nothing_is_refused(project, model_id, why):
    with pytest.raises(UserError, match=why):
        export_for_training(model_id, project.root, project.register())
    assert not export_dir(project.root, model_id).exists()
