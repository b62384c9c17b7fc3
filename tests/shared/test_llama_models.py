"""Models beyond GPT-2, on real pretrained Llamas: stories260K (GGUF and Hub format) and SmolLM2-135M-Instruct's
4-bit GGUF, loaded through model.name as the stages load them, adapted by LoRA, saved in Hub format, and a
conversation rendered alike in training and serving (`dvc repro` with a Llama: tests/pipeline/test_llama_pipeline.py,
on the copy of stories260K the tests ship)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import ROOT, SMOLLM2_GGUF, STORIES
from tuneops.config.params import load_params
from tuneops.models.loading import load_causal_lm, load_tokenizer, load_trained


@pytest.fixture(scope="module")
def stories_tokenizer():
    """stories260K's tokenizer from its Hub folder: transformers cannot build one from the GGUF (pad id -1)."""
    return load_tokenizer(str(STORIES / "hub"))


def test_stories260k_from_its_gguf_continues_exactly_as_from_its_hub_folder(stories_tokenizer):
    """The GGUF, dequantised by transformers (q/k un-permuted from llama.cpp's layout), is the same model as the
    Hub folder made from it: the same logits, and the same 20 greedy tokens from bos."""
    gguf = load_causal_lm(str(STORIES / "stories260K.gguf"), stories_tokenizer).eval()
    hub = load_causal_lm(str(STORIES / "hub"), stories_tokenizer).eval()
    bos = torch.tensor([[stories_tokenizer.bos_token_id]])
    with torch.inference_mode():
        torch.testing.assert_close(gguf(bos).logits, hub(bos).logits, atol=1e-5, rtol=0)
        greedy = {"max_new_tokens": 20, "do_sample": False}
        from_gguf, from_hub = gguf.generate(bos, **greedy), hub.generate(bos, **greedy)
    assert from_gguf.tolist() == from_hub.tolist() and from_gguf.shape == (1, 21)
    assert len(stories_tokenizer.decode(from_gguf[0], skip_special_tokens=True).split()) > 3  # a story, in words


@pytest.mark.parametrize("generator", [True, False], ids=["causal LM", "classifier"])
def test_lora_auto_on_a_llama_adapts_every_linear_layer_of_its_blocks(stories_tokenizer, generator):
    from tuneops.training.trainer import build_model

    params = load_params(ROOT / "params.yaml")  # target_modules: auto
    train = params.train.model_copy(update={"method": "lora"})
    model = params.model.model_copy(update={"name": str(STORIES / "hub")})
    net = build_model(model, train, ["negative", "neutral", "positive"], stories_tokenizer, generator)
    adapted = [name for name, _ in net.named_modules() if name.endswith(".lora_A")]
    kinds = {name.rsplit(".", 2)[-2] for name in adapted}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(adapted) == 7 * 5  # stories260K's 5 layers
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    assert all("lora_" in name or ".score." in name for name in trainable)  # the classifier's head in full


def test_smollm2_from_its_4bit_gguf_saves_as_safetensors_and_loads_back_identical(tmp_path):
    """135M parameters dequantised to float32, saved in Hub format as the train stage saves a candidate, and loaded
    back as the registry and the server load it: one forward pass each, the same logits, still knowing Paris."""
    tokenizer = load_tokenizer(str(SMOLLM2_GGUF))
    model = load_causal_lm(str(SMOLLM2_GGUF), tokenizer).eval()
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>" and model.dtype == torch.float32
    model.save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    saved, saved_tokenizer = load_trained(tmp_path)
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    assert saved_tokenizer("The capital of France is")["input_ids"] == ids[0].tolist()
    with torch.inference_mode():
        before, after = model(ids).logits, saved(ids.to(saved.device)).logits.cpu()
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert tokenizer.decode(after[0, -1].argmax()) == " Paris"  # shared/README: the pretrained model's answer


@pytest.mark.parametrize("model", ["smollm2", "stories260k"])
def test_a_conversation_renders_to_the_same_ids_in_training_and_serving(model, stories_tokenizer):
    """SmolLM2's own ChatML template, and stories260K's Llama tokenizer (a BOS in front) with the declared one."""
    import pandas as pd

    from tests.unit.data.test_chat import TALK
    from tuneops.data.chat import render, with_chat_template
    from tuneops.data.splits import to_pairs
    from tuneops.data.tokenization import encode_pairs

    gen = load_params(ROOT / "params.yaml").generation
    if model == "smollm2":
        tokenizer = load_tokenizer(str(SMOLLM2_GGUF))
        assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template  # its own, kept
    else:
        tokenizer = with_chat_template(stories_tokenizer, gen.chat_template)
    pairs = to_pairs(pd.DataFrame({"messages": [TALK]}), "chat.jsonl", gen, tokenizer)
    columns, _ = encode_pairs(pairs, tokenizer, max_length=512)
    served = tokenizer(render(tokenizer, TALK[:-1], add_generation_prompt=True))["input_ids"]
    assert columns["input_ids"][0][: columns["prompt_length"][0]] == served
    if model == "stories260k":  # one BOS, in front, though the pieces are tokenized apart
        assert columns["input_ids"][0].count(tokenizer.bos_token_id) == 1 == columns["input_ids"][0][:1].count(1)
