"""The serving decisions that need no model: parsing model ids, the ids a registered model lists, which requests
may share a call, and how a body that does not parse becomes OpenAI's 400."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tuneops.inference.batching import InferenceRequest as Job
from tuneops.inference.batching import group_requests as group_jobs
from tuneops.inference.sampling import SamplingParams as Sampling
from tuneops.registry.catalog import Card, Ref, parse_model_id
from tuneops.registry.mlflow_registry import model_cards
from tuneops.serve.errors import validation_error


@pytest.mark.parametrize(
    ("model_id", "ref"),
    [
        ("sentiment@champion", Ref(name="sentiment", alias="champion")),
        ("sentiment@challenger", Ref(name="sentiment", alias="challenger")),
        ("sentiment:3", Ref(name="sentiment", version="3")),
        ("sentiment:03", Ref(name="sentiment", version="3")),
        ("sentiment", Ref(name="sentiment", alias="champion")),
        ("my:model", Ref(name="my:model", alias="champion")),
        ("ft:gpt2:tuneops:spans:4", Ref(fine_tuned="ft:gpt2:tuneops:spans:4")),
    ],
)
def test_model_ids(model_id, ref):
    assert parse_model_id(model_id, "champion") == ref


def test_a_registered_model_lists_its_aliases_versions_and_fine_tuned_ids():
    versions = [
        SimpleNamespace(
            version="2", creation_timestamp=2_000_500, tags={"tuneops.fine_tuned_model": "ft:gpt2:tuneops:x:2"}
        ),
        SimpleNamespace(version="1", creation_timestamp=1_000_000, tags={}),
    ]
    assert model_cards("m", versions, {"champion": "2"}) == [
        Card("m@champion", 2000, "m", "2"),
        Card("m:1", 1000, "m", "1"),
        Card("m:2", 2000, "m", "2"),
        Card("ft:gpt2:tuneops:x:2", 2000, "m", "2"),
    ]


def job(model: object, sampling: Sampling | None) -> Job:
    return Job(SimpleNamespace(model=model), ["p"], sampling, loop=None, events=None)


def test_requests_share_a_call_only_with_compatible_settings():
    a, b = object(), object()
    greedy = job(a, Sampling(16, temperature=0.0, top_p=0.5, seed=1))
    greedy_other_seed = job(a, Sampling(16, temperature=0.0, top_p=1.0, seed=2))
    sampled = job(a, Sampling(16, temperature=0.8, seed=1))
    sampled_other_seed = job(a, Sampling(16, temperature=0.8, seed=9))
    longer = job(a, Sampling(32, temperature=0.0))
    stopped = job(a, Sampling(16, stop=("\n",), temperature=0.0))
    other_model = job(b, Sampling(16, temperature=0.0))
    classify, classify_too = job(a, None), job(a, None)
    jobs = [
        greedy,
        sampled,
        longer,
        greedy_other_seed,
        stopped,
        other_model,
        classify,
        sampled_other_seed,
        classify_too,
    ]
    assert group_jobs(jobs) == [
        [greedy, greedy_other_seed],
        [sampled, sampled_other_seed],
        [longer],
        [stopped],
        [other_model],
        [classify, classify_too],
    ]


def test_a_seed_gives_each_row_its_own_repeatable_seed():
    assert Sampling(4, temperature=1.0, seed=10).seeds(3) == [10, 11, 12]
    assert len(set(Sampling(4, temperature=1.0).seeds(3))) == 3


@pytest.mark.parametrize(
    ("error", "message", "param", "code"),
    [
        (
            {"type": "extra_forbidden", "loc": ("body", "temprature"), "msg": "x"},
            "Unrecognized request argument supplied: temprature",
            "temprature",
            "unknown_parameter",
        ),
        (
            {"type": "missing", "loc": ("body", "model"), "msg": "x"},
            "Missing required parameter: 'model'.",
            "model",
            "missing_required_parameter",
        ),
        (
            {
                "type": "less_than_equal",
                "loc": ("body", "temperature"),
                "msg": "Input should be less than or equal to 2",
            },
            "Invalid value for 'temperature': Input should be less than or equal to 2",
            "temperature",
            "invalid_value",
        ),
        (
            {"type": "string_type", "loc": ("body", "messages", 0, "content"), "msg": "bad"},
            "Invalid value for 'messages.0.content': bad",
            "messages",
            "invalid_value",
        ),
    ],
)
def test_a_body_that_does_not_parse_is_a_400_naming_the_parameter(error, message, param, code):
    refused = validation_error([error])
    assert (refused.status, refused.message, refused.param, refused.code) == (400, message, param, code)


def test_every_parameter_openais_client_sends_is_a_field_so_never_an_unknown_one():
    """Each parameter openai-python's create() takes is decided here (used, ignored or refused by name); a new
    one in a newer client shows up in this test, not as a client's 400 unknown_parameter."""
    from openai.types import completion_create_params as completion
    from openai.types.chat import completion_create_params as chat
    from openai.types.chat.chat_completion_stream_options_param import ChatCompletionStreamOptionsParam

    from tuneops.serve.openai.protocol import ChatCompletionRequest, CompletionRequest, StreamOptions

    for params, request in (
        (chat.CompletionCreateParamsBase, ChatCompletionRequest),
        (completion.CompletionCreateParamsBase, CompletionRequest),
        (ChatCompletionStreamOptionsParam, StreamOptions),
    ):
        assert set(params.__annotations__) <= set(request.model_fields), request.__name__


def test_what_changes_nothing_is_named_and_what_would_change_the_answer_is_refused():
    from tuneops.serve.openai.protocol import ChatCompletionRequest

    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    quiet = ChatCompletionRequest(
        **base, service_tier="priority", reasoning_effort="none", stream_options={"include_obfuscation": True}
    )
    assert quiet.ignored() == ["service_tier", "reasoning_effort", "stream_options.include_obfuscation"]
    assert quiet.refused() is None
    assert ChatCompletionRequest(**base, modalities=["text", "audio"]).refused().param == "modalities"
    assert ChatCompletionRequest(**base).ignored() == []
    assert Sampling(4, top_logprobs=2).normalized() != Sampling(4).normalized()  # their calls differ: never shared
