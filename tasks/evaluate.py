"""Stage `evaluate`: test metrics, the generalisation gap, the base model, and the promotion gate.

    python -m tasks.evaluate          (dvc.yaml runs it)

params: task, data.seed, model.name, model.revision (the base), evaluate, train.objective, generation.stop,
        generation.max_new_tokens, generation.chat_template (the base's prompts where its tokenizer has no
        template), register.model_name, register.alias, register.tracking_uri (the champion's registry)
reads:  models/candidate, data/processed (both checked against their hashes in dvc.lock first), the base model
        (model.name: a Hub id, from the Hugging Face cache once train has fetched it, a folder or a .gguf), and the
        registry's champion (models/registered.json tells a lost registry from a first run)
writes: reports/metrics.json (classification: accuracy, macro-F1, per class, loss; generation: loss,
        perplexity, token accuracy, exact match, Jaccard, the baselines, dpo: preference accuracy; on test, a
        train sample, their gap;
        `base`: the base model's numbers on the same test rows),
        reports/gate.json (every check, observed and threshold, and the verdict),
        reports/samples.jsonl (held-out inputs with the expected answer, the candidate's and the base's; the
        first evaluate.samples_kept of them),
        reports/confusion_matrix.json (DVC's confusion plot; generation: when completions are labels) and
        reports/evaluation.png (the confusion matrix; generation: how close each completion came)

Classification scores the candidate on `test` and on a seeded sample of `train` as large as test, asks the base
model the test texts zero-shot through its chat template (answer with a label name: tuneops.evaluation.zero_shot),
then checks the gate: quality floor, overfitting gap, loss gap, beating the base by `base_margin` and the champion
by `min_improvement`. Generation measures loss and token accuracy teacher-forced on both, generates completions
for a seeded sample of test prompts (greedy, up to a stop sequence or max_new_tokens), does the same with the base
model on the same prompts, and gates on their metric, the loss gap, beating the trivial answers (copying the
prompt's text, the most frequent completion), the base and the champion. train.objective: dpo also scores
held-out preference accuracy (the share of test pairs whose preferred reply has the higher summed log-probability
given the prompt) for candidate and base, and gates on the candidate's beating the base's by base_margin. Exits 0
on a failed gate, so the evidence is kept; `register` enforces the verdict. A registry that does not answer stops
the stage as transient (exit 75), and nothing is written: a plain `dvc repro` asks again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tuneops.config.errors import UserError
from tuneops.config.params import Params, load_params
from tuneops.config.paths import (
    CANDIDATE_DIR,
    CONFUSION_JSON_PATH,
    DVC_LOCK_PATH,
    EVALUATION_PNG_PATH,
    GATE_PATH,
    METRICS_PATH,
    PROCESSED_DIR,
    REGISTERED_PATH,
    SAMPLES_PATH,
)
from tuneops.config.records import (
    BaseGenerationScores,
    BaseLabelScores,
    Gap,
    GateVerdict,
    GenerationMetrics,
    GenerationSample,
    GenerationScores,
    Metrics,
)
from tuneops.config.runner import run_main, stage_parser
from tuneops.data.chat import with_chat_template
from tuneops.data.splits import LABEL_LIKE  # completions that are labels: a confusion plot fits
from tuneops.data.tokenization import load_processed
from tuneops.evaluation.gate import gate, gate_generation
from tuneops.evaluation.lm_scoring import (
    answer,
    answer_stops,
    baselines,
    perplexity,
    preference_accuracy,
    samples,
    teacher_forced,
    text_scores,
)
from tuneops.evaluation.metrics import confusion_rows, gap, plot_confusion, plot_scores, score
from tuneops.evaluation.zero_shot import answer_stop, answer_tokens, label_prompts, label_scores, read_label
from tuneops.inference.generation import Completion, generate
from tuneops.io.files import write_json, write_jsonl
from tuneops.io.integrity import verify_outputs
from tuneops.models.hardware import set_threads
from tuneops.models.loading import load_base, load_trained, predict_logits, saved_task
from tuneops.registry.store import champion, registered_before

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("tuneops.evaluate")
Splits = dict[str, "Dataset"]  # test, and the seeded sample of train


def evaluate(params: Params, candidate_dir: Path = CANDIDATE_DIR, processed_dir: Path = PROCESSED_DIR) -> GateVerdict:
    verify_outputs(DVC_LOCK_PATH, candidate_dir, processed_dir)
    if saved_task(candidate_dir) != params.task:
        raise UserError(f"{candidate_dir}: not a {params.task} model (task: {params.task}); run `dvc repro train`")
    set_threads(None)
    model, tokenizer = load_trained(candidate_dir)
    data = load_processed(processed_dir)
    size = min(params.evaluate.train_sample_size or len(data["test"]), len(data["train"]))
    splits = {"test": data["test"], "train": data["train"].shuffle(seed=params.data.seed).select(range(size))}
    the_champion = champion(params.register_, registered_before(REGISTERED_PATH))
    if params.task == "generation":
        metrics, shown = score_generation(params, model, tokenizer, splits)
        verdict = gate_generation(metrics, params.evaluate, the_champion)
    else:
        metrics, shown = score_classification(params, model, tokenizer, splits)
        verdict = gate(metrics, params.evaluate, the_champion)
    write_json(METRICS_PATH, metrics)
    write_json(GATE_PATH, verdict)
    write_jsonl(SAMPLES_PATH, shown[: params.evaluate.samples_kept])  # None keeps every row
    for c in verdict.checks:
        result = "ok" if c.passed else "FAIL"
        log.info("gate %-16s %-6s observed %s, threshold %s %s", c.check, result, c.observed, c.threshold, c.detail)
    log.info("gate verdict: %s", verdict.verdict)
    return verdict


def base_name(params: Params) -> str:
    """The base model as metrics.json and the gate name it: model.name, @revision when one is pinned."""
    return params.model.name + (f"@{params.model.revision}" if params.model.revision else "")


def complete(
    params: Params,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    stop: Sequence[str],
) -> list[Completion]:
    """The one decoding candidate and base are both scored with: greedy, up to a stop sequence or max_new_tokens."""
    return generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=params.generation.max_new_tokens,
        stop=stop,
        batch_size=params.evaluate.batch_size,
    )


def score_classification(
    params: Params, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, splits: Splits
) -> tuple[Metrics, list[GenerationSample]]:
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scores, test_logits = {}, None
    for name, split in splits.items():
        logits = predict_logits(model, tokenizer, split["input_ids"], params.evaluate.batch_size)
        scores[name] = s = score(logits, np.asarray(split["labels"]), names)
        test_logits = logits if name == "test" else test_logits
        log.info(
            "%s: accuracy %.4f, macro-F1 %.4f, loss %.4f (%d rows)", name, s.accuracy, s.macro_f1, s.loss, len(split)
        )
    test = splits["test"]
    # processed data keeps token ids only; the base's tokenizer is the candidate's, so decoding gives the texts back
    texts = tokenizer.batch_decode(list(test["input_ids"]), skip_special_tokens=True)
    expected = [int(label) for label in test["labels"]]
    answers, predicted, base = base_labels(params, names, texts, expected)
    metrics = Metrics(test=scores["test"], train=scores["train"], gap=gap(scores["train"], scores["test"]), base=base)
    write_json(CONFUSION_JSON_PATH, confusion_rows(metrics.test.confusion_matrix, names))
    plot_confusion(metrics.test.confusion_matrix, names, EVALUATION_PNG_PATH)
    ours = [int(row.argmax()) for row in test_logits]
    shown = [
        GenerationSample(
            prompt=text,
            expected=names[label],
            generated=names[mine],
            finish_reason="stop",
            exact_match=mine == label,
            jaccard=float(mine == label),
            base=said,
            base_exact_match=theirs == label,
            base_jaccard=float(theirs == label),
        )
        for text, label, mine, said, theirs in zip(texts, expected, ours, answers, predicted, strict=True)
    ]
    return metrics, shown


def base_labels(
    params: Params, labels: list[str], texts: list[str], expected: list[int]
) -> tuple[list[str], list[int | None], BaseLabelScores]:
    """The base model's zero-shot answers to the test texts (asked through its chat template to name a label),
    the labels they name, and their scores. Candidate and base are both in memory: training held more."""
    base, tokenizer = load_base(params.model.name, params.model.revision)
    tokenizer = with_chat_template(tokenizer, params.generation.chat_template)  # GPT-2 ships none: the declared one
    completions = generate(
        base,
        tokenizer,
        label_prompts(tokenizer, labels, texts),
        max_new_tokens=answer_tokens(tokenizer, labels),
        stop=answer_stop(tokenizer),
        batch_size=params.evaluate.batch_size,
        truncate_prompt=True,  # a text near the model's positions loses its first tokens, not the stage
    )
    answers = [c.text.strip() for c in completions]
    predicted = [read_label(a, labels) for a in answers]
    scores = label_scores(base_name(params), predicted, expected, labels)
    log.info(
        "base %s, zero-shot on test: accuracy %.4f, macro-F1 %.4f, a label name in %.1f%% of answers",
        scores.model,
        scores.accuracy,
        scores.macro_f1,
        100 * scores.answered,
    )
    return answers, predicted, scores


def score_generation(
    params: Params, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, splits: Splits
) -> tuple[GenerationMetrics, list[GenerationSample]]:
    ev = params.evaluate
    scores: dict[str, GenerationScores] = {}
    for name, split in splits.items():
        loss, accuracy = teacher_forced(model, tokenizer, split, ev.batch_size)
        scores[name] = GenerationScores(loss=loss, perplexity=perplexity(loss), token_accuracy=accuracy)
        log.info("%s: loss %.4f, perplexity %.2f, token accuracy %.4f", name, loss, perplexity(loss), accuracy)
    test = splits["test"]
    if ev.generation.sample_size and ev.generation.sample_size < len(test):
        test = test.shuffle(seed=params.data.seed).select(range(ev.generation.sample_size))
    stop = answer_stops(params.generation.stop, tokenizer)
    prompts, expected = list(test["prompt"]), [answer(c, stop) for c in test["completion"]]
    completions = complete(params, model, tokenizer, prompts, stop)
    generated = text_scores(expected, [c.text for c in completions])
    preferences = params.train.objective == "dpo"
    preferred = held_out_preferences(model, tokenizer, splits["test"], ev.batch_size) if preferences else None
    scores["test"] = scores["test"].model_copy(
        update={
            "exact_match": generated.exact_match,
            "jaccard": generated.jaccard,
            "generated": len(test),
            "preference_accuracy": preferred,
        }
    )
    base, base_completions = base_generation(params, splits["test"], prompts, expected, stop, preferences)
    train_answers = [answer(c, stop) for c in splits["train"]["completion"]]
    metrics = GenerationMetrics(
        test=scores["test"],
        train=scores["train"],
        gap=Gap(
            accuracy=scores["train"].token_accuracy - scores["test"].token_accuracy,
            loss=scores["test"].loss - scores["train"].loss,
        ),
        baselines=baselines(test["source_text"], train_answers, expected),
        base=base,
    )
    log.info(
        "test, generated for %d prompts: exact match %.4f, Jaccard %.4f; baselines %s",
        len(test),
        generated.exact_match,
        generated.jaccard,
        {k: round(b.jaccard, 4) for k, b in metrics.baselines.items()},
    )
    shown = samples(prompts, expected, completions, base_completions)
    labels = sorted(set(expected))
    label_like = len(labels) <= LABEL_LIKE
    rows = [{"actual": s.expected, "predicted": s.generated} for s in shown] if label_like else []
    write_json(CONFUSION_JSON_PATH, rows)
    plot_scores(shown, metrics, ev.generation.primary_metric, EVALUATION_PNG_PATH)
    return metrics, shown


def held_out_preferences(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, test: Dataset, batch_size: int, who: str = "candidate"
) -> float:
    """Preference accuracy on the whole test split (train.objective: dpo), logged."""
    accuracy = preference_accuracy(model, tokenizer.pad_token_id, test, batch_size)
    log.info("%s: test preference accuracy %.4f (%d pairs, preferred reply likelier)", who, accuracy, len(test))
    return accuracy


def base_generation(
    params: Params,
    test: Dataset,
    prompts: Sequence[str],
    expected: Sequence[str],
    stop: Sequence[str],
    preferences: bool = False,
) -> tuple[BaseGenerationScores, list[Completion]]:
    """The base model on what the candidate was scored on: teacher-forced on the whole test split (the same
    token ids: tokenize used model.name's tokenizer), and generating for the same sampled prompts with the same
    stops; `preferences` (train.objective: dpo), its preference accuracy on the same pairs. Chat prompts are
    rendered text already, so the base reads exactly what the candidate read."""
    base, tokenizer = load_base(params.model.name, params.model.revision)
    loss, accuracy = teacher_forced(base, tokenizer, test, params.evaluate.batch_size)
    batch = params.evaluate.batch_size
    preferred = held_out_preferences(base, tokenizer, test, batch, base_name(params)) if preferences else None
    completions = complete(params, base, tokenizer, prompts, stop)
    generated = text_scores(expected, [c.text for c in completions])
    scores = BaseGenerationScores(
        model=base_name(params),
        loss=loss,
        perplexity=perplexity(loss),
        token_accuracy=accuracy,
        exact_match=generated.exact_match,
        jaccard=generated.jaccard,
        generated=len(prompts),
        preference_accuracy=preferred,
    )
    log.info(
        "base %s: loss %.4f, token accuracy %.4f; generated for %d prompts: exact match %.4f, Jaccard %.4f",
        scores.model,
        loss,
        accuracy,
        len(prompts),
        generated.exact_match,
        generated.jaccard,
    )
    return scores, completions


def main() -> None:
    evaluate(load_params(stage_parser(__doc__).parse_args().params))


if __name__ == "__main__":
    run_main(main)
