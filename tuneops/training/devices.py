"""Which hardware a training runs on and in what precision: the decisions pure, the hardware asked once.

On a GPU: bf16 mixed precision where it has bf16 (Ampere and later), else fp16 with loss scaling (the Trainer's
GradScaler: fp16's narrow range would underflow small gradients without it); batches loaded into pinned memory
(page-locked, so the copy to the GPU is one DMA that overlaps the step). On a CPU: bf16 only where it is native
(AMX, AVX512-BF16; emulated it is several times slower than fp32), nothing pinned (there is nowhere to copy to).
"""

from __future__ import annotations

from typing import NamedTuple

from tuneops.models.hardware import native_bf16


class Hardware(NamedTuple):
    """What the precision decision needs to know about this machine."""

    cuda: bool
    cuda_bf16: bool  # the GPU computes in bf16 (compute capability 8.0+)
    cpu_bf16: bool  # the CPU has native bf16 matmuls


class Precision(NamedTuple):
    bf16: bool
    fp16: bool
    why: str | None  # said in the log when the params asked for something else


def precision(bf16_requested: bool, hw: Hardware) -> Precision:
    """The mixed precision to train in, given params.yaml's `train.args.bf16` and the hardware."""
    if not bf16_requested:
        return Precision(False, False, None)
    if hw.cuda and hw.cuda_bf16:
        return Precision(True, False, None)
    if hw.cuda:
        return Precision(False, True, "bf16: this GPU has no bf16: training in fp16 with loss scaling")
    if hw.cpu_bf16:
        return Precision(True, False, None)
    return Precision(False, False, "bf16: this machine has no native bf16 (AMX/AVX512-BF16 or a bf16 GPU): fp32")


def hardware() -> Hardware:
    import torch

    cuda = torch.cuda.is_available()
    return Hardware(cuda=cuda, cuda_bf16=cuda and torch.cuda.is_bf16_supported(), cpu_bf16=not cuda and native_bf16())


def training_settings(bf16_requested: bool, hw: Hardware) -> tuple[dict[str, bool], str | None]:
    """TrainingArguments that depend on the device: precision, pinned-memory loading. And why, if it differs."""
    chosen = precision(bf16_requested, hw)
    return {"bf16": chosen.bf16, "fp16": chosen.fp16, "dataloader_pin_memory": hw.cuda}, chosen.why
