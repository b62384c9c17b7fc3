"""The device decisions, pure: precision (bf16 where native, else fp16 on a GPU, else fp32) and pinned loading."""

from __future__ import annotations

import pytest

from tuneops.training.devices import Hardware, precision, training_settings

GPU_BF16, GPU_OLD = Hardware(True, True, False), Hardware(True, False, False)
CPU_AMX, CPU_PLAIN = Hardware(False, False, True), Hardware(False, False, False)


@pytest.mark.parametrize(
    "hw, bf16, fp16",
    [(GPU_BF16, True, False), (GPU_OLD, False, True), (CPU_AMX, True, False), (CPU_PLAIN, False, False)],
    ids=["gpu-bf16", "gpu-without-bf16-fp16", "cpu-amx", "cpu-fp32"],
)
def test_bf16_where_native_else_fp16_with_loss_scaling_on_a_gpu_else_fp32(hw, bf16, fp16):
    chosen = precision(True, hw)
    assert (chosen.bf16, chosen.fp16) == (bf16, fp16)
    assert (chosen.why is None) == bf16  # a change from what params asked is said
    assert precision(False, hw)[:2] == (False, False)  # fp32 asked: fp32 everywhere


def test_batches_are_pinned_for_the_copy_to_a_gpu_only():
    assert training_settings(True, GPU_BF16)[0]["dataloader_pin_memory"] is True
    assert training_settings(True, CPU_AMX)[0]["dataloader_pin_memory"] is False
