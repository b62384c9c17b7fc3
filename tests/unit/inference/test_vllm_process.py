"""vLLM's processes: the command tuneops starts, the watchdog's decisions (pure), and the restart logic run against
a stand-in process. The stand-in (a few lines of http.server answering GET /health) is NOT vLLM and tests no
serving: tests/api/test_vllm_engine.py kills a real vLLM under load."""

from __future__ import annotations

import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tuneops.config.errors import UserError
from tuneops.config.params import VllmParams
from tuneops.inference.vllm_process import Fleet, Seen, State, command, model_len, plan, served_name, vllm_python
from tuneops.registry.served import ModelInfo, Served

SETTINGS = VllmParams(
    python=None,
    dtype="float32",
    max_model_len=512,
    kv_cache_space_gib=1.0,
    tensor_parallel_size=1,
    startup_timeout_s=60.0,
    request_timeout_s=30.0,
    max_restarts=1,
    extra_args=["--enforce-eager"],
)


def test_command_starts_the_openai_server_module_on_loopback() -> None:
    cmd = command(SETTINGS, "/venv/bin/python", Path("/m"), "tiny:2", 8123, context=1024)
    assert cmd[:4] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model"]
    flags = dict(zip(cmd[3:-1:2], cmd[4:-1:2], strict=True))
    assert flags["--served-model-name"] == "tiny:2" and flags["--host"] == "127.0.0.1" and flags["--port"] == "8123"
    assert flags["--max-model-len"] == "512" and flags["--generation-config"] == "vllm"
    assert cmd[-1] == "--enforce-eager"


@pytest.mark.parametrize(("configured", "context", "expected"), [(512, 1024, 512), (512, 128, 128), (None, 64, 64)])
def test_model_len_never_past_the_models_context(configured: int | None, context: int, expected: int) -> None:
    assert model_len(configured, context) == expected


def test_vllm_python(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"serve\.vllm\.python: .* does not exist"):
        vllm_python(str(tmp_path / "nope"))
    (tmp_path / "python").touch()
    assert vllm_python(str(tmp_path / "python")) == str(tmp_path / "python")
    with pytest.raises(UserError, match="serve.engine: vllm needs vLLM"):  # the test venv has no vllm
        vllm_python(None)
    assert served_name(("m", "3")) == "m:3"


A, B, C = ("m", "1"), ("m", "2"), ("n", "1")


def test_plan_stops_what_left_the_cache_and_restarts_the_dead() -> None:
    ready, dead = Seen(State.READY, False, 0), Seen(State.READY, True, 0)
    decided = plan({A: ready, B: dead, C: ready}, live={A, B}, max_restarts=3)
    assert decided.stop == [C] and decided.restart == [B] and decided.give_up == []


def test_plan_gives_up_after_max_restarts_and_leaves_the_stopped_alone() -> None:
    seen = {A: Seen(State.READY, True, 3), B: Seen(State.STOPPED, False, 0), C: Seen(State.FAILED, False, 3)}
    decided = plan(seen, live={A, B, C}, max_restarts=3)
    assert decided == plan(seen, live={A, B, C}, max_restarts=3)
    assert decided.give_up == [A] and decided.restart == [] and decided.stop == []
    assert plan(seen, live=set(), max_restarts=3).stop == [A, C]  # a failed one's leftovers go too


STAND_IN = """#!{python}
# a stand-in for vLLM's server in the restart tests: GET /health answers 200, nothing else
import http.server, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_fleet_restart_logic_with_a_stand_in_process(tmp_path: Path, lm: Any, tokenizer: Any) -> None:
    """Started, killed: restarted once and reported; killed again: given up; out of the cache: stopped."""
    script = tmp_path / "stand_in_vllm"
    script.write_text(STAND_IN.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    fleet = Fleet(SETTINGS.model_copy(update={"python": str(script)}), str(script), tmp_path, tmp_path)
    info = ModelInfo(name="m", version="1", alias=None, model_uri="models:/m/1")
    served = Served(lm, tokenizer, info)
    live = {A}
    fleet.live = lambda: live
    try:
        assert fleet.wait_ready(served)
        runner = fleet.runner(served)
        first = runner.proc.pid
        assert (tmp_path / "jobs" / "exported").is_dir()  # exported as registry/export.py exports

        os.kill(first, signal.SIGKILL)
        wait_for(lambda: runner.state is State.READY and runner.proc.pid != first)
        assert runner.restarts == 1

        os.kill(runner.proc.pid, signal.SIGKILL)
        wait_for(lambda: runner.state is State.FAILED)  # max_restarts: 1
        assert not fleet.ready(served) or runner.state is State.FAILED

        live.clear()
        wait_for(lambda: runner.state is State.STOPPED)
        assert runner.proc.poll() is not None
    finally:
        fleet.close()
