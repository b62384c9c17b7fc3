"""The decisions around torchrun (who launches, its command line, which rank's failure to report), pure."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import ROOT
from tuneops.config.params import load_params
from tuneops.training.launch import exit_code, failure_line, root_cause, torchrun_args, wants_torchrun

TRAIN = load_params(ROOT / "params.yaml").train


TORCHRUN = TRAIN.model_copy(update={"launcher": "torchrun", "nproc_per_node": 2})


def test_only_the_first_process_launches_torchrun_and_only_when_asked():
    assert wants_torchrun(TORCHRUN, env={})
    assert not wants_torchrun(TORCHRUN, env={"LOCAL_RANK": "0", "RANK": "0"})  # a worker trains
    assert not wants_torchrun(TORCHRUN, env={"RANK": "3"})
    assert not wants_torchrun(TRAIN.model_copy(update={"launcher": "single"}), env={})


def test_one_machine_uses_a_standalone_rendezvous_and_passes_the_stage_arguments_on():
    args = torchrun_args(TORCHRUN, "tasks.train", ["--params", "other.yaml"])
    assert args == ["--nproc_per_node=2", "--standalone", "-m", "tasks.train", "--params", "other.yaml"]


def test_several_machines_meet_at_the_c10d_endpoint():
    nodes = TORCHRUN.model_copy(update={"nnodes": 3, "rdzv_endpoint": "node0:29400", "rdzv_id": "job7"})
    assert torchrun_args(nodes, "tasks.train", []) == [
        "--nproc_per_node=2",
        "--nnodes=3",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=node0:29400",
        "--rdzv_id=job7",
        "-m",
        "tasks.train",
    ]


def test_params_refuse_several_machines_without_a_meeting_point():
    import yaml

    from tuneops.config.errors import UserError
    from tuneops.config.params import parse_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(launcher="torchrun", nnodes=2, rdzv_endpoint=None)
    with pytest.raises(UserError, match="train.rdzv_endpoint: nnodes > 1 needs the host:port"):
        parse_params(raw)


def test_the_rank_that_failed_first_on_its_own_is_the_cause_not_those_torchrun_stopped():
    sigterm = -int(signal.SIGTERM)
    # both ranks met the same bad input; rank 1 wrote its error first but was stopped before it exited
    assert root_cause({0: (2, 100.0), 1: (sigterm, 99.0)}) == 0
    assert root_cause({0: (sigterm, 100.0), 1: (-int(signal.SIGKILL), 101.0)}) == 1  # killed: the cause
    assert root_cause({0: (1, 101.0), 1: (2, 100.0)}) == 1
    assert root_cause({0: (sigterm, 100.0), 1: (sigterm, 100.0)}) == 0  # all stopped from outside


def test_a_failed_rank_is_one_line_with_its_error_and_its_exit_code():
    recorded = {"message": "UserError: model 'x': not found\n (set model.name)", "extraInfo": {"py_callstack": "..."}}
    line = failure_line(1, 2, 2, recorded, recorded=True)
    assert line == "rank 1 of 2 failed (exit code 2): model 'x': not found (set model.name)"
    assert failure_line(0, 4, 1, {"message": "RuntimeError: boom"}, True).endswith("(exit code 1): RuntimeError: boom")
    assert (
        failure_line(1, 2, -9, "Signal 9 (SIGKILL) received by PID 7", False)
        == "rank 1 of 2 failed (killed by SIGKILL)"
    )
    assert "no error recorded" in failure_line(0, 2, 3, "To enable traceback see: ...", False)
    assert [exit_code(c) for c in (2, 75, -9, -15)] == [2, 75, 137, 143]


def test_mfu_counts_six_flops_per_parameter_and_token_plus_attention_against_the_gpus_bf16_peak():
    from bench.train_speed import flops_per_token, gpu_bf16_peak, mfu

    assert gpu_bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert gpu_bf16_peak("NVIDIA H200") == 989e12
    assert gpu_bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_bf16_peak("NVIDIA L4") == 121e12
    assert gpu_bf16_peak("Tesla T4") is None  # no bf16: no peak to measure against
    # GPT-2 small: 85M non-embedding params, 12 layers of 768, 32-token tweets
    per_token = flops_per_token(85_000_000, 12, 768, 32.0)
    assert per_token == 6 * 85_000_000 + 12 * 12 * 768 * 32
    assert mfu(100_000, per_token, 989e12) == pytest.approx(100_000 * 513_538_944 / 989e12)
