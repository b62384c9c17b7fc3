"""Data-parallel training speed: the train stage's Trainer in 1 process vs N under torchrun, same effective batch.

    python bench/ddp_speed.py [--nproc 2] [--batch 32] [--steps 3,12]   (needs ../shared; minutes on 2 cores)

GPT-2 small (random init) on 1,000 real tweets with the real GPT-2 tokenizer, through bench/train_speed.py's
stage_trainer (tuneops.training.build_trainer with params.yaml's `train` section). One process trains batch B;
N processes under `torchrun --standalone` train B/N each (gloo on a CPU, NCCL on GPUs), so each optimizer step
sees the same rows. Each run warms up, then is timed over a fixed number of steps; samples/s and tokens/s are
of the whole job (all ranks). On a CPU the processes share its cores (tuneops.modeling.set_threads gives each
cores / N threads), so DDP only pays where one process cannot keep all cores busy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train_speed import TOKENIZER, TWEETS, Timer, gpt2_small, stage_trainer, tweets  # noqa: E402


def worker(batch: int, warmup: int, measured: int) -> dict | None:
    """Train in this process (a torchrun worker, or alone); rank 0 returns the numbers."""
    from tuneops.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(TOKENIZER))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    with tempfile.TemporaryDirectory() as out:
        trainer = stage_trainer(
            gpt2_small(tokenizer),
            tokenizer,
            tweets(),
            Path(out),
            warmup + measured,
            {"per_device_train_batch_size": batch // world, "gradient_accumulation_steps": 1},
        )
        timer = Timer(warmup)
        trainer.add_callback(timer.callback)
        trainer.train()
    if not trainer.is_world_process_zero():
        return None
    seconds = timer.end - timer.start
    return {
        "processes": world,
        "batch": f"{batch // world}x{world}",
        "samples_per_s": measured * batch / seconds,
        "tokens_per_s": (timer.tokens1 - timer.tokens0) / seconds,  # the Trainer sums tokens over ranks
        "seconds": seconds,
    }


def spawn(nproc: int, batch: int, steps: tuple[int, int]) -> dict:
    own = [__file__, "--worker", f"--batch={batch}", f"--steps={steps[0]},{steps[1]}"]
    if nproc == 1:
        cmd = [sys.executable, *own]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *own]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{nproc} process(es) failed:\n{out.stderr[-3000:]}")
    result = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    return {**result, "wall_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel run (default: 2)")
    parser.add_argument("--batch", type=int, default=32, help="effective batch, split across processes (32)")
    parser.add_argument("--steps", default="3,12", help="warm-up and timed optimizer steps (default: 3,12)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = tuple(int(n) for n in args.steps.split(","))
    if args.worker:
        result = worker(args.batch, *steps)
        if result is not None:
            print(json.dumps(result))
        return
    if not (TWEETS.is_file() and TOKENIZER.is_dir()):
        sys.exit(f"needs the real data and tokenizer under {TWEETS.parents[2]}")
    rows = [spawn(1, args.batch, steps), spawn(args.nproc, args.batch, steps)]
    print(f"GPT-2 small, effective batch {args.batch}, {steps[1]} timed steps after {steps[0]}; {os.cpu_count()} cores")
    print(f"{'processes':<11}{'batch':>8}{'samples/s':>11}{'tokens/s':>10}{'wall s':>8}")
    for r in rows:
        print(
            f"{r['processes']:<11}{r['batch']:>8}{r['samples_per_s']:>11.2f}{r['tokens_per_s']:>10.0f}{r['wall_s']:>8.0f}"
        )
    print(f"{args.nproc} processes / 1: {rows[1]['samples_per_s'] / rows[0]['samples_per_s']:.2f}x samples/s")


if __name__ == "__main__":
    main()
