"""Architecture quirks: GPT-2 padded with eos on the right, the fused GELU that is the same function, LoRA's
targets per architecture, and a GGUF's pad id that is no token."""

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


def test_lora_targets_gpt2_as_always_and_every_linear_layer_of_other_architectures():
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    from tuneops.models.quirks import lora_target_modules

    assert lora_target_modules(GPT2Config(), "auto") == ["c_attn", "c_proj"]  # params.yaml's list before `auto`
    assert lora_target_modules(LlamaConfig(), "auto") == "all-linear"  # GPT-2's names do not exist in a Llama
    assert lora_target_modules(Qwen2Config(), "auto") == "all-linear"
    assert lora_target_modules(LlamaConfig(), ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]  # a list is obeyed


def test_lora_on_a_llama_adapts_its_attention_and_mlp_not_its_head():
    """What `all-linear` means on a Llama: PEFT finds the 7 linear layers of each block by type, not by name."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from tuneops.models.quirks import lora_target_modules

    sizes = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_key_value_heads": 2}
    config = LlamaConfig(vocab_size=32, num_hidden_layers=2, num_labels=3, **sizes)
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=lora_target_modules(config, "auto"))
    net = get_peft_model(LlamaForSequenceClassification(config), lora)
    adapted = {name.rsplit(".", 2)[-2] for name, _ in net.named_modules() if name.endswith(".lora_A")}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert sum(name.endswith(".lora_A") for name, _ in net.named_modules()) == 7 * 2


def test_a_gguf_pad_id_outside_the_vocabulary_is_dropped_and_a_real_one_kept():
    from tuneops.models.quirks import gguf_pad_id

    assert gguf_pad_id(2**32 - 1, 512) == {"pad_token_id": None}  # stories260K: llama2.c's -1 as uint32
    assert gguf_pad_id(2, 49_152) == {}  # SmolLM2: <|im_end|>, its eos
    assert gguf_pad_id(None, 512) == {}
