"""Batched generation (tuneops.generation) against transformers' own generate, on the sample's tiny GPT-2.

The weights are random, so the text is junk, but deterministic junk: batched, left-padded, cached greedy
decoding must give exactly the tokens that `model.generate` gives each prompt alone.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tuneops.inference.detokenize import find_stop, held_back
from tuneops.inference.generation import Completion, generate
from tuneops.inference.sampling import top_p_filter
from tuneops.models.batches import left_pad

# different lengths, so batches are left-padded; one holds eos (GPT-2's pad id) as a real token
PROMPTS = [
    "I love the concert tonight!",
    "my laptop",
    "heading out to the gym at 5pm with my sister and the neighbours, again",
    "the pizza place is <|endoftext|> awful",
    "ugh",
    "anyone know when the game last night starts?",
]
MAX_NEW = 12


def hf_greedy(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> list[int]:
    """transformers' own greedy generate on one prompt alone: no padding at all."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.eos_token_id,
    )
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def reference(lm: Any, tokenizer: Any) -> list[list[int]]:
    return [hf_greedy(lm, tokenizer, p, MAX_NEW) for p in PROMPTS]


def test_left_pad_builds_mask_and_positions_by_position_even_where_a_prompt_holds_the_pad_id() -> None:
    eos = 9
    ids, mask, positions = left_pad([[5, eos, 7], [eos]], pad_id=eos)
    assert ids.tolist() == [[5, eos, 7], [eos, eos, eos]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]  # the real eos in both rows is attended
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]  # each row counts from its own first token
    ids, mask, positions = left_pad([[1, 2, 3]], pad_id=0, multiple=8)
    assert ids.shape == (1, 8) and mask[0].tolist() == [0] * 5 + [1] * 3 and positions[0, 5:].tolist() == [0, 1, 2]


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_greedy_batched_equals_transformers_generate_one_prompt_at_a_time(
    lm: Any, tokenizer: Any, reference: list[list[int]], batch_size: int
) -> None:
    out = generate(lm, tokenizer, PROMPTS, max_new_tokens=MAX_NEW, batch_size=batch_size, logprobs=True)
    for completion, ref, prompt in zip(out, reference, PROMPTS, strict=True):
        assert completion.text == tokenizer.decode(
            [t for t in ref if t != tokenizer.eos_token_id], skip_special_tokens=True
        )
        assert completion.completion_tokens == len(ref)
        assert completion.prompt_tokens == len(tokenizer(prompt)["input_ids"])
        assert completion.finish_reason == ("stop" if tokenizer.eos_token_id in ref else "length")
        assert completion.tokens == [tokenizer.decode([t]) for t in ref]
        assert len(completion.token_logprobs) == len(ref) and all(lp <= 0 for lp in completion.token_logprobs)


SAMPLED = {"max_new_tokens": MAX_NEW, "temperature": 1.0, "seed": 3}  # varied junk (greedy junk repeats a token)


def test_stop_sequence_cuts_the_text_before_it_and_ends_the_row(lm: Any, tokenizer: Any) -> None:
    full = generate(lm, tokenizer, PROMPTS, **SAMPLED)
    row = max(range(len(PROMPTS)), key=lambda i: len(full[i].text))
    text = full[row].text
    stop = text[len(text) // 2 : len(text) // 2 + 3]  # a piece from the middle of the output itself
    out = generate(lm, tokenizer, PROMPTS, stop=[stop, "never appears \x00"], **SAMPLED)
    assert out[row].text == text[: text.index(stop)] and stop not in out[row].text
    assert out[row].finish_reason == "stop"
    assert out[row].completion_tokens < full[row].completion_tokens
    for other, before in zip(out, full, strict=True):  # rows the stop does not occur in are untouched
        if stop not in before.text:
            assert other == before


def test_on_text_deltas_join_into_the_text_and_never_carry_the_stop(lm: Any, tokenizer: Any) -> None:
    full = generate(lm, tokenizer, PROMPTS, **SAMPLED)
    # stops found in the outputs, and stops whose beginnings occur but that never complete (held, then sent)
    stops = [c.text[5:8] for c in full[:3]] + [c.text[:2] + "\x00" for c in full[3:]]
    deltas: dict[int, list[str]] = {}
    out = generate(
        lm, tokenizer, PROMPTS, stop=stops, on_text=lambda i, d, _: deltas.setdefault(i, []).append(d), **SAMPLED
    )
    for i, completion in enumerate(out):
        assert "".join(deltas.get(i, [])) == completion.text
        assert all(deltas.get(i, []))  # no empty chunks
        assert not any(s in d for d in deltas.get(i, []) for s in stops)
    assert [c.finish_reason for c in out[:3]] == ["stop"] * 3
    assert all(c == f for c, f in zip(out[3:], full[3:], strict=True))
    assert all(len(deltas[i]) > 2 for i in range(3, len(PROMPTS)))  # streamed a piece at a time, not at the end


def test_echo_puts_the_prompt_first_and_scores_its_tokens(lm: Any, tokenizer: Any) -> None:
    plain = generate(lm, tokenizer, PROMPTS[:2], max_new_tokens=4, logprobs=True)
    echoed = generate(lm, tokenizer, PROMPTS[:2], max_new_tokens=4, logprobs=True, echo=True)
    for prompt, a, b in zip(PROMPTS, plain, echoed, strict=False):
        n = len(tokenizer(prompt)["input_ids"])
        assert b.text == prompt + a.text
        assert b.tokens[n:] == a.tokens and "".join(b.tokens[:n]) == prompt
        assert b.token_logprobs[0] is None and len(b.token_logprobs) == n + 4
        assert b.token_logprobs[n:] == pytest.approx(a.token_logprobs, abs=1e-4)
    scored = generate(lm, tokenizer, PROMPTS[:1], max_new_tokens=0, logprobs=True, echo=True)[0]
    assert scored.text == PROMPTS[0] and scored.completion_tokens == 0 and scored.finish_reason == "length"
    assert scored.token_logprobs == pytest.approx(echoed[0].token_logprobs[: scored.prompt_tokens], abs=1e-4)


def test_seeded_sampling_repeats_whatever_the_batching_and_differs_across_seeds(lm: Any, tokenizer: Any) -> None:
    def texts(**kwargs: Any) -> list[str]:
        return [
            c.text for c in generate(lm, tokenizer, PROMPTS, max_new_tokens=8, temperature=1.0, top_p=0.9, **kwargs)
        ]

    first = texts(seed=7, batch_size=32)
    assert texts(seed=7, batch_size=2) == first
    assert texts(seed=8) != first
    greedy = [c.text for c in generate(lm, tokenizer, PROMPTS, max_new_tokens=8)]
    assert first != greedy


def test_a_prompt_longer_than_the_model_allows_is_refused_or_cut_from_the_left(lm: Any, tokenizer: Any) -> None:
    long = " ".join(["the concert"] * 200)
    positions = lm.config.n_positions
    with pytest.raises(ValueError, match=r"prompt 1: \d+ tokens \+ max_new_tokens 8 .* 256 positions"):
        generate(lm, tokenizer, ["ok", long], max_new_tokens=8)
    out = generate(lm, tokenizer, ["ok", long], max_new_tokens=8, truncate_prompt=True)
    assert out[1].prompt_tokens == positions - 8 and out[1].completion_tokens == 8


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"max_new_tokens": -1}, "max_new_tokens"), ({"top_p": 0.0}, "top_p"), ({"temperature": -1.0}, "temperature")],
)
def test_bad_arguments_are_value_errors_naming_them(lm: Any, tokenizer: Any, kwargs: dict, param: str) -> None:
    with pytest.raises(ValueError, match=param):
        generate(lm, tokenizer, ["hi"], **{"max_new_tokens": 4, **kwargs})
    with pytest.raises(ValueError, match="stop"):
        generate(lm, tokenizer, ["hi"], max_new_tokens=4, stop=[""])


def test_stop_helpers() -> None:
    assert find_stop("abc###def", ["###", "c#"]) == 2
    assert find_stop("abc", ["x"]) is None
    assert held_back("hello ##", ["###"]) == 2  # could still become ###
    assert held_back("hello #", ["\n\n", "###"]) == 1
    assert held_back("hello", ["###"]) == 0


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert (top_p_filter(probs, 0.7) > 0).tolist() == [[True, True, False, False]]
    assert (top_p_filter(probs, 0.1) > 0).tolist() == [[True, False, False, False]]
    assert (top_p_filter(probs, 1.0) > 0).all()


def test_completion_is_a_frozen_record() -> None:
    c = Completion(text="x", finish_reason="stop", prompt_tokens=1, completion_tokens=1)
    with pytest.raises(AttributeError):
        c.text = "y"  # type: ignore[misc]
    assert c.tokens is None and c.token_logprobs is None


def test_a_classifier_is_refused(tokenizer: Any, sample: Any) -> None:
    from tuneops.models.loading import load_classifier

    classifier = load_classifier(str(sample.model_dir), ["a", "b"], tokenizer)
    with pytest.raises(ValueError, match="does not generate"):
        generate(classifier, tokenizer, ["hi"], max_new_tokens=2)


def test_text_decoded_a_token_at_a_time_equals_decoding_all_and_waits_for_whole_characters(tokenizer: Any) -> None:
    from tuneops.inference.detokenize import IncrementalText as _Text

    source = "café 🎉 naïve — 東京 ok"
    ids = tokenizer(source)["input_ids"]
    assert len(ids) > len(source.split())  # the sample's vocabulary splits these characters into byte tokens
    text, pieces = _Text(tokenizer, ()), []
    for n, token in enumerate(ids, start=1):
        text.ids.append(token)
        before, after = tokenizer.batch_decode(list(text.windows()), skip_special_tokens=True)
        text.take(before, after, final=n == len(ids))
        pieces.append(text.ready(final=n == len(ids)))
    assert "".join(pieces) == text.text == tokenizer.decode(ids) == source
    assert not any("\ufffd" in p for p in pieces)  # half characters were held, never sent


def test_logprobs_are_the_models_own_with_the_k_most_likely_tokens(lm: Any, tokenizer: Any) -> None:
    """Scoring a prompt (echo, no new tokens) gives each token's log-probability given the ones before it and the
    k most likely tokens there, exactly as the model's forward pass has them; the first token has none."""
    prompt = PROMPTS[2]
    scored = generate(lm, tokenizer, [prompt], max_new_tokens=0, echo=True, logprobs=True, top_logprobs=3)[0]
    ids = tokenizer(prompt)["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(lm(torch.tensor([ids])).logits[0].float(), dim=-1)
    lp = scored.logprobs
    assert (
        scored.text == prompt
        and scored.completion_tokens == 0
        and lp.tokens == tokenizer.batch_decode([[i] for i in ids])
    )
    assert lp.logprobs[0] is None and lp.top[0] == []
    assert lp.logprobs[1:] == pytest.approx([logp[i - 1, ids[i]].item() for i in range(1, len(ids))], abs=1e-4)
    for i in range(1, len(ids)):
        values, best = logp[i - 1].topk(3)
        assert [t for t, _ in lp.top[i]] == tokenizer.batch_decode([[b] for b in best.tolist()])
        assert [v for _, v in lp.top[i]] == pytest.approx(values.tolist(), abs=1e-4)


def test_logprobs_are_taken_before_temperature(lm: Any, tokenizer: Any) -> None:
    """The first new token's alternatives depend on the prompt only: the same whatever the temperature."""

    def first_place(temperature: float) -> list[tuple[str, float]]:
        out = generate(
            lm, tokenizer, PROMPTS[:1], max_new_tokens=1, temperature=temperature, logprobs=True, seed=2, top_logprobs=5
        )
        return out[0].logprobs.top[0]

    greedy, hot = first_place(0.0), first_place(2.0)
    assert [t for t, _ in hot] == [t for t, _ in greedy]
    assert [v for _, v in hot] == pytest.approx([v for _, v in greedy], abs=1e-5)
    chosen = generate(lm, tokenizer, PROMPTS[:1], max_new_tokens=1, logprobs=True, top_logprobs=5)[0].logprobs
    assert (chosen.tokens[0], chosen.logprobs[0]) == (greedy[0][0], pytest.approx(greedy[0][1], abs=1e-5))


def test_a_token_id_prompt_is_seen_exactly_as_given(lm: Any, tokenizer: Any) -> None:
    ids = tokenizer(PROMPTS[0])["input_ids"]
    as_ids, as_text = generate(lm, tokenizer, [ids, PROMPTS[0]], max_new_tokens=6, logprobs=True)
    assert as_ids == as_text
    # "hello" spelled a byte at a time: not how the tokenizer would split it, and the model sees those 5 tokens
    spelled = tokenizer.convert_tokens_to_ids(list("hello"))
    assert spelled != tokenizer("hello")["input_ids"]
    echoed = generate(lm, tokenizer, [spelled], max_new_tokens=0, echo=True, logprobs=True)[0]
    assert echoed.text == "hello" and echoed.prompt_tokens == 5 and echoed.tokens == list("hello")
    with pytest.raises(ValueError, match="token id 99999 is not in the model's vocabulary"):
        generate(lm, tokenizer, [[1, 99999]], max_new_tokens=2)


def triples(tokens: Any) -> list[tuple[str, float | None, list]]:
    return list(zip(tokens.tokens, tokens.logprobs, tokens.top, strict=True))


def test_streamed_deltas_carry_the_logprobs_of_their_own_tokens(lm: Any, tokenizer: Any) -> None:
    deltas: dict[int, list[Any]] = {}
    out = generate(
        lm,
        tokenizer,
        PROMPTS[:3],
        logprobs=True,
        top_logprobs=2,
        echo=True,
        on_text=lambda i, d, tokens: deltas.setdefault(i, []).append(tokens),
        **SAMPLED,
    )
    for i, completion in enumerate(out):
        sent = [t for tokens in deltas[i] for t in triples(tokens)]
        whole = triples(completion.logprobs)
        assert all(len(tokens) > 0 for tokens in deltas[i]) and len(deltas[i]) > 2
        assert sent == whole[: len(sent)]  # in order, none twice; what is left brought no text (an eos)
        assert "".join(t for t, _, _ in whole[len(sent) :]) in ("", tokenizer.eos_token)
