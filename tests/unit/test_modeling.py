"""GPT-2's pad handling, and the proof that dynamic padding changes cost, not results."""

import numpy as np
import pytest
import torch

from tuneops.models.loading import fuse_gelu, length_sorted_batches, predict_logits, predict_texts

TWEETS = [
    " I`d have responded, if I were going",
    "Sooo SAD I will miss you here in San Diego!!!",
    "my boss is bullying me...",
    " what interview! leave me alone",
    "http://www.dothebouncy.com/smf - some shameless plugging for the best Rangers forum on earth",
    "2am feedings for the baby are fun when he is all smiles and coos",
]


@pytest.fixture(scope="module")
def gpt2(tokenizer):
    """GPT-2's architecture with the sample's byte-level BPE tokenizer, which, like GPT-2's, has no pad token."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_layer=2, n_embd=64, n_head=4, num_labels=3, pad_token_id=tokenizer.pad_token_id
    )
    return GPT2ForSequenceClassification(config).eval(), tokenizer


def test_the_pipeline_pads_gpt2_with_eos_on_the_right(sample):
    from transformers import AutoTokenizer

    from tuneops.models.loading import load_tokenizer

    assert AutoTokenizer.from_pretrained(sample.model_dir).pad_token is None  # GPT-2's quirk: no pad token
    tokenizer = load_tokenizer(str(sample.model_dir))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id is not None
    assert tokenizer.padding_side == "right"
    batch = tokenizer(["a much longer text than the other", "short"], padding=True)
    assert batch["input_ids"][1][-1] == tokenizer.eos_token_id and batch["attention_mask"][1][-1] == 0


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


def test_fused_gelu_is_the_same_function_in_one_kernel(gpt2, tmp_path):
    from transformers import GPT2ForSequenceClassification
    from transformers.activations import GELUTanh, NewGELUActivation

    model, tokenizer = gpt2
    encoded = tokenizer(TWEETS)["input_ids"]
    before = predict_logits(model, tokenizer, encoded)
    fused = fuse_gelu(GPT2ForSequenceClassification(model.config).eval())
    fused.load_state_dict(model.state_dict())
    acts = [type(m) for m in fused.modules() if isinstance(m, (NewGELUActivation, GELUTanh))]
    assert acts == [GELUTanh] * model.config.n_layer
    np.testing.assert_allclose(predict_logits(fused, tokenizer, encoded), before, atol=1e-5)
    fused.save_pretrained(tmp_path)  # a saved model still says gelu_new, so it loads the same without us
    assert GPT2ForSequenceClassification.from_pretrained(tmp_path).config.activation_function == "gelu_new"


def test_length_sorted_batches_cover_every_index_once():
    batches = length_sorted_batches([5, 1, 9, 3, 7], batch_size=2)
    assert sorted(np.concatenate(batches).tolist()) == [0, 1, 2, 3, 4]
    assert batches[0].tolist() == [1, 3]


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
