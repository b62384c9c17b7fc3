"""Loading and batched classification: dynamic padding changes cost, not results; models bringing code are refused;
a .gguf loads as a plain float32 model that says what it was, or fails in one line saying what to give instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.models.conftest import TWEETS
from tuneops.models.loading import predict_logits, predict_texts


def test_dynamic_padding_gives_the_logits_of_max_length_padding(gpt2):
    model, tokenizer = gpt2
    with torch.inference_mode():
        seed_way = tokenizer(TWEETS, padding="max_length", max_length=1024, truncation=True, return_tensors="pt")
        reference = model(**seed_way).logits.numpy()
    encoded = tokenizer(TWEETS)["input_ids"]
    dynamic = predict_logits(model, tokenizer, encoded, batch_size=4)  # length-sorted, padded per batch
    assert seed_way["input_ids"].shape[1] == 1024 and max(map(len, encoded)) < 100
    np.testing.assert_allclose(dynamic, reference, atol=1e-4)


def test_classifier_reads_the_last_real_token_not_a_pad(gpt2):
    model, tokenizer = gpt2
    with torch.inference_mode():
        alone = model(**tokenizer(TWEETS[2:3], return_tensors="pt")).logits
        padded = model(**tokenizer(TWEETS[2:4], padding=True, return_tensors="pt")).logits[0:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=0)


def test_predictions_keep_input_order_and_are_probabilities(gpt2):
    model, tokenizer = gpt2
    model.config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
    results = predict_texts(model, tokenizer, TWEETS + [""], max_length=128, batch_size=3)
    assert len(results) == len(TWEETS) + 1
    singles = [predict_texts(model, tokenizer, [t], max_length=128)[0] for t in TWEETS[:2]]
    assert [r["label"] for r in results[:2]] == [s["label"] for s in singles]
    for r in results:
        assert set(r["probabilities"]) == {"negative", "neutral", "positive"}
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4


EVIL = "import pathlib\npathlib.Path(__file__).with_name('RAN').write_text('code from the artifact ran')\n"


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_a_model_folder_with_its_own_code_is_refused_and_nothing_runs(gpt2, tmp_path, where):
    """An artifact with an auto_map and a .py beside it (a planted registry entry) never runs its code."""
    import json

    from tuneops.config.errors import UserError
    from tuneops.models.loading import load_trained

    model, tokenizer = gpt2
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / where).read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (tmp_path / where).write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"has an auto_map .* tuneops loads no code"):
        load_trained(tmp_path)
    (tmp_path / "evil.py").write_text(EVIL)
    with pytest.raises(UserError, match=r"carries Python code \(evil\.py\)"):
        load_trained(tmp_path)
    assert not (tmp_path / "RAN").exists()


def write_gguf(path, arch: str, tensors: dict) -> None:
    """A GGUF file written by the gguf package's own writer: header, metadata, tensors (no real model needed)."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch=arch)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def loaders():
    from tuneops.models.loading import load_causal_lm, load_classifier, load_tokenizer, max_positions

    return {
        "tokenizer": load_tokenizer,
        "config": max_positions,
        "causal LM": lambda name: load_causal_lm(name, tokenizer=None),
        "classifier": lambda name: load_classifier(name, ["a", "b"], tokenizer=None),
    }


@pytest.mark.parametrize("what", ["tokenizer", "config", "causal LM", "classifier"])
def test_a_gguf_of_junk_bytes_fails_in_one_line_saying_what_to_give(tmp_path, what):
    from tuneops.config.errors import UserError

    junk = tmp_path / "x.gguf"
    junk.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UserError, match=r"model x\.gguf: not a GGUF file \(ValueError: .*\); give model\.name") as info:
        loaders()[what](str(junk))
    assert "\n" not in str(info.value)


def test_a_missing_gguf_file_is_named(tmp_path):
    from tuneops.config.errors import UserError

    with pytest.raises(UserError, match=r"model '.*nowhere\.gguf': no such file \(model\.name: a Hub id"):
        loaders()["tokenizer"](str(tmp_path / "nowhere.gguf"))


def test_an_architecture_transformers_cannot_read_from_a_gguf_is_named_with_those_it_can(tmp_path):
    from tuneops.config.errors import UserError

    write_gguf(tmp_path / "bert.gguf", "bert", {"w": np.zeros((2, 2), np.float32)})
    with pytest.raises(UserError, match=r"reads no GGUF of architecture 'bert' \(only .*llama.*\); give") as info:
        loaders()["causal LM"](str(tmp_path / "bert.gguf"))
    assert "general" not in str(info.value)  # a metadata section of transformers' table, not an architecture


def test_without_the_gguf_package_a_gguf_says_what_to_install(tmp_path, monkeypatch):
    import sys

    from tuneops.config.errors import UserError

    write_gguf(tmp_path / "m.gguf", "llama", {"w": np.zeros(4, np.float32)})
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError, as if not installed
    with pytest.raises(UserError, match=r"model m\.gguf: reading a GGUF needs the gguf package: pip install 'gguf"):
        loaders()["tokenizer"](str(tmp_path / "m.gguf"))


def test_the_quantisation_summary_counts_tensors_and_weights_per_type_most_weights_first(tmp_path):
    from tuneops.models.loading import read_gguf

    tensors = {"a": np.zeros(3, np.float32), "b": np.zeros((4, 8), np.float16), "c": np.zeros(5, np.float32)}
    write_gguf(tmp_path / "m.gguf", "llama", tensors)
    header = read_gguf(tmp_path / "m.gguf")
    assert (header.architecture, header.pad_id) == ("llama", None)
    assert header.quantisation() == "F16 (1 tensor, 32 weights), F32 (2 tensors, 8 weights)"


@pytest.mark.shared
def test_stories260k_gguf_is_all_f32_and_names_its_out_of_vocabulary_pad_id():
    from tests.conftest import STORIES
    from tuneops.config.errors import UserError
    from tuneops.models.loading import load_tokenizer, read_gguf

    header = read_gguf(STORIES / "stories260K.gguf")
    assert header.quantisation() == "F32 (48 tensors, 292,800 weights)"  # shared/README: 292,800 parameters
    assert (header.pad_id, header.vocab_size) == (2**32 - 1, 512)  # llama2.c's pad id -1, as uint32
    message = r"cannot load AutoTokenizer from this llama GGUF \(its pad token id 4294967295 lies outside its 512"
    with pytest.raises(UserError, match=message):
        load_tokenizer(str(STORIES / "stories260K.gguf"))


@pytest.mark.shared
def test_a_model_from_a_gguf_is_a_plain_float32_model_and_says_what_it_was(caplog, tmp_path):
    """stories260K's GGUF: its -1 pad id dropped (the model would not build), the quantiser gone, saved as
    safetensors in Hub format like any model."""
    import logging

    from tests.conftest import STORIES
    from tuneops.models.loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(str(STORIES / "hub"))
    with caplog.at_level(logging.INFO, logger="tuneops.modeling"):
        model = load_causal_lm(str(STORIES / "stories260K.gguf"), tokenizer)
    assert "stories260K.gguf: llama GGUF in F32 (48 tensors, 292,800 weights); dequantised to torch.float32" in (
        caplog.text
    )
    assert model.dtype == torch.float32 and getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in model.config.to_dict()
    assert model.config.pad_token_id == tokenizer.eos_token_id == 2  # no pad of its own: eos, as for GPT-2
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()


def test_a_revision_pinned_for_a_local_gguf_is_said_to_be_ignored(tmp_path, caplog):
    from tuneops.config.errors import UserError
    from tuneops.models.loading import load_tokenizer

    write_gguf(tmp_path / "bert.gguf", "bert", {"w": np.zeros((2, 2), np.float32)})
    with caplog.at_level("WARNING", logger="tuneops.modeling"), pytest.raises(UserError):
        load_tokenizer(str(tmp_path / "bert.gguf"), revision="v1")
    assert "model.revision 'v1' is ignored: bert.gguf is a local file" in caplog.text
