"""Without the Hub: a Hub id fails in seconds with one line that says how to go on, never after 25 s of retries."""

from __future__ import annotations

import sys
import time

import pytest

from tests.conftest import Project, free_port
from tuneops.config.errors import TransientError, UserError
from tuneops.io import hub


@pytest.fixture
def online(monkeypatch) -> None:
    """As on a user's machine: the offline switch off (the suite keeps it on everywhere else)."""
    monkeypatch.setattr(hub, "offline_switch", lambda: False)
    hub._connect.cache_clear()
    yield
    hub._connect.cache_clear()


def test_no_name_resolution_is_a_user_error_naming_both_ways_on(online, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.invalid")
    with pytest.raises(UserError, match=r"Hub \(huggingface\.invalid\) is unreachable: no name resolution") as info:
        hub.probe("Hub dataset 'mteb/tweet_sentiment_extraction'")
    assert "data.source and model.name" in str(info.value) and "make demo" in str(info.value)


def test_a_refused_connection_is_transient(online, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(TransientError, match="is unreachable"):
        hub.probe("model 'gpt2'")


def test_the_offline_switch_says_so():
    with pytest.raises(UserError, match=r"HF_HUB_OFFLINE=1.*make demo"):
        hub.probe("model 'gpt2'")


def test_a_hub_model_name_fails_the_same_way(online, monkeypatch):
    from tuneops.models.loading import load_tokenizer

    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.invalid")
    with pytest.raises(UserError, match=r"model 'no-such-org/never-cached': the Hugging Face Hub .* unreachable"):
        load_tokenizer("no-such-org/never-cached")


def test_make_run_without_the_hub_stops_at_once_with_the_hint(project: Project):
    """`make run` is `dvc repro` on the default params (the Hub's dataset and gpt2)."""
    env = {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_ENDPOINT": "https://huggingface.invalid"}
    start = time.monotonic()
    result = project.run(sys.executable, "-m", "dvc", "repro", check=False, env=env)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1 and "unreachable: no name resolution" in ours[0] and "make demo" in ours[0]
    assert elapsed < 25, f"took {elapsed:.0f} s: the Hub client's retries are back"  # they take 25 s and more
    assert not (project.path / "data" / "interim").exists()
