"""bench/serve_load.py's parts: what it measures of a server's processes (CPU time, peak memory, readiness), the
shared-CPU condition it measures them under, the (b) baseline server, and the greedy answers compared."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STARTUP_S = 900  # vLLM's start alone is 80-110 s here; beside other work, more


def tree(pid: int) -> list[int]:
    """The process and its descendants (from /proc/<pid>/task/*/children)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process and its descendants have used so far, threads included."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}: {log.read_text()[-1500:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise RuntimeError(f"not ready after {STARTUP_S} s: {log.read_text()[-1500:]}")


@contextlib.contextmanager
def condition(name: str) -> Iterator[None]:
    """idle: nothing else; shared: another process busy on one core (a Python loop) throughout."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if name == "shared" else None
    try:
        yield
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


# --- (b): the plain baseline, a FastAPI endpoint calling transformers.pipeline per request ---------------------


def baseline_app(model_dir: str) -> Any:
    from fastapi import FastAPI
    from transformers import pipeline

    generator = pipeline("text-generation", model=model_dir, tokenizer=model_dir)
    app = FastAPI()

    @app.post("/generate")
    def generate(body: dict[str, Any]) -> dict[str, Any]:  # a plain def: FastAPI runs each on a thread of its own
        out = generator(body["prompt"], max_new_tokens=body["max_tokens"], do_sample=False, return_full_text=False)
        return {"text": out[0]["generated_text"]}

    return app


def run_baseline(model_dir: str, port: int) -> None:
    import uvicorn

    uvicorn.run(baseline_app(model_dir), host="127.0.0.1", port=port, log_level="warning")


def agreement(runs: list[Any]) -> list[str]:
    """How many of each server's greedy answers equal (a)'s (or the first server's), prompt by prompt."""
    reference = next((r for r in runs if r.texts), None)
    lines = []
    for run in runs:
        if run is reference or not run.texts or reference is None:
            continue
        same = sum(run.texts.get(p) == t for p, t in reference.texts.items())
        lines.append(f"{run.server.label}: {same}/{len(reference.texts)} answers equal to {reference.server.label}'s")
    return lines
