"""params.yaml's `validate` section: each data check's threshold and severity (the checks themselves are
tuneops/quality's; one definition per check, here its knobs)."""

from __future__ import annotations

from pydantic import Field

from tuneops.config.records import Severity
from tuneops.config.strict import Strict


class Check(Strict):
    threshold: float
    severity: Severity


class LengthCheck(Strict):
    min: int = Field(ge=0)
    max: int = Field(gt=0)
    severity: Severity


class CharLimitCheck(Strict):
    max_chars: int = Field(gt=0)
    threshold: float = Field(ge=0, le=1)
    severity: Severity


class GenerationChecks(Strict):
    """validate on generation data: OpenAI's prepare_data checks (tuneops/quality/measures.py) with thresholds.
    A `..._rate` threshold is the share of a split's rows allowed to offend."""

    min_train_examples: Check
    max_empty_completion_rate: Check
    max_duplicate_pair_rate: Check
    long_example: CharLimitCheck
    min_distinct_prompts: Check
    max_missing_separator_rate: Check
    max_separator_inside_rate: Check
    max_no_leading_space_rate: Check
    max_missing_stop_rate: Check
    max_stop_inside_rate: Check
    max_prompt_prefix_chars: Check
    max_completion_prefix_chars: Check
    max_upper_case_share: Check


class ValidateParams(Strict):
    min_rows: Check
    min_class_share: Check
    max_class_ratio: Check
    max_class_share_drift: Check
    max_empty_text_rate: Check
    text_length: LengthCheck
    max_duplicate_rate: Check
    max_leakage_rate: Check
    max_only_urls_mentions_rate: Check
    max_mojibake_rate: Check
    generation: GenerationChecks
