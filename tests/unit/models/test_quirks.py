"""Architecture quirks: GPT-2 padded with eos on the right, and the fused GELU that is the same function."""

from __future__ import annotations

import numpy as np

from tests.unit.models.conftest import TWEETS
from tuneops.models.loading import predict_logits
from tuneops.models.quirks import fuse_gelu


def test_the_pipeline_pads_gpt2_with_eos_on_the_right(sample):
    from transformers import AutoTokenizer

    from tuneops.models.loading import load_tokenizer

    assert AutoTokenizer.from_pretrained(sample.model_dir).pad_token is None  # GPT-2's quirk: no pad token
    tokenizer = load_tokenizer(str(sample.model_dir))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id is not None
    assert tokenizer.padding_side == "right"
    batch = tokenizer(["a much longer text than the other", "short"], padding=True)
    assert batch["input_ids"][1][-1] == tokenizer.eos_token_id and batch["attention_mask"][1][-1] == 0


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
