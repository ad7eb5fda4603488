"""Runs the real Keel binaries for the compatibility suite.

One control plane, one sidecar and three fake providers per test session,
each on an ephemeral port read back from its ready line. Readiness is a poll
of `/healthz`, never a sleep. Everything is killed at the end of the session.

Catalog (model = catalog name the app requests):
  gpt-compat     provider `oai`  (api = "openai",    fake `oai`)
  claude-compat  provider `ant`  (api = "anthropic", fake `ant`)
  gpt-limited    provider `oai-limited` (fake `limited`, always 429)
  claude-limited provider `ant-limited` (fake `limited`, always 429)
  gpt-broken     provider `oai-broken`  (fake `broken`, fails as a test says)
  claude-broken  provider `ant-broken`  (fake `broken`)
Profiles LIMITED and BROKEN allow only their two models, so a request under
one cannot fall back to a healthy provider.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("KEEL_BIN_DIR", ROOT / "target" / "debug"))

# Generous: debug builds on a loaded 2-core machine start slowly.
START_TIMEOUT_S = 60.0
CLIENT_TIMEOUT_S = 30.0

APP_KEY = "app-key"
# Provider secrets the sidecar reads from `KEEL_KEY_<REF>`; the app never
# sends them and the control plane never sees them.
PROVIDER_KEYS = {
    "KEEL_KEY_OAI_MAIN": "sk-oai-main-secret",
    "KEEL_KEY_ANT_MAIN": "sk-ant-main-secret",
    "KEEL_KEY_LIMITED": "sk-limited-secret",
    "KEEL_KEY_BROKEN": "sk-broken-secret",
}
# The limited fake answers every request with this.
LIMITED_RETRY_AFTER_S = 30


class Proc:
    """A child process whose ready line has been read."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = log
        prefix = f"{name} ready"
        full_env = {**os.environ, "RUST_LOG": "info", "NO_COLOR": "1", **(env or {})}
        self._log_file = open(log, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=full_env,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def drain() -> None:
            # Keeps reading so the child never blocks on a full pipe.
            assert self.popen.stdout is not None
            for raw in self.popen.stdout:
                lines.put(raw.decode(errors="replace").strip())
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                line = None
                remaining = 0
            if line is not None and line.startswith(prefix):
                break
            if line is None:
                self.stop()
                raise RuntimeError(
                    f"{name} printed no ready line (exit {self.popen.poll()}); log:\n{self.logs()}"
                )
        self.ready = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)

    def addr(self, key: str) -> str:
        return self.ready[key]

    def logs(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def stop(self) -> None:
        # SIGKILL: graceful shutdown is tested elsewhere, and draining the
        # SDKs' idle keep-alive connections would only slow the suite down.
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self._log_file.close()


def wait_healthy(addr: str) -> None:
    """Polls `http://addr/healthz` until it answers 200."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{addr}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.02)
    raise RuntimeError(f"{addr} never became healthy: {last}")


def http_json(method: str, url: str, body: object | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=CLIENT_TIMEOUT_S) as r:
        return json.loads(r.read())


@dataclass
class Fake:
    """A running `keel-fake-provider`."""

    proc: Proc

    @property
    def addr(self) -> str:
        return self.proc.addr("listen")

    @property
    def openai_base_url(self) -> str:
        return f"http://{self.addr}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://{self.addr}"

    def requests(self) -> list[dict]:
        """What the fake received so far (`GET /_fake/requests`)."""
        return http_json("GET", f"http://{self.addr}/_fake/requests")  # type: ignore[return-value]

    def set_behavior(self, **behavior: object) -> None:
        http_json("POST", f"http://{self.addr}/_fake/behavior", behavior)


@dataclass
class Keel:
    cp: Proc
    sidecar: Proc
    fakes: dict[str, Fake]

    @property
    def url(self) -> str:
        return f"http://{self.sidecar.addr('listen')}"

    @property
    def grpc_addr(self) -> str:
        return self.cp.addr("grpc")


def config(data: Path, fakes: dict[str, Fake]) -> str:
    oai, ant, limited, broken = (fakes[n] for n in ("oai", "ant", "limited", "broken"))

    def model(name: str, provider: str, tier: int, usd_in: float, usd_out: float) -> str:
        return f"""
[[models]]
name = "{name}"
provider = "{provider}"
upstream_model = "{name}-up"
tier = {tier}
input_usd_per_mtok = {usd_in}
output_usd_per_mtok = {usd_out}
context_tokens = 200000
capabilities = ["tools", "vision"]
"""

    return f"""
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[store]
path = "{data}"
session_idle_ttl = "1h"

[[providers]]
name = "oai"
api = "openai"
base_url = "{oai.openai_base_url}"
keys = [{{ ref = "oai-main" }}]

[[providers]]
name = "ant"
api = "anthropic"
base_url = "{ant.anthropic_base_url}"
keys = [{{ ref = "ant-main" }}]

[[providers]]
name = "oai-limited"
api = "openai"
base_url = "{limited.openai_base_url}"
keys = [{{ ref = "limited" }}]

[[providers]]
name = "ant-limited"
api = "anthropic"
base_url = "{limited.anthropic_base_url}"
keys = [{{ ref = "limited" }}]

[[providers]]
name = "oai-broken"
api = "openai"
base_url = "{broken.openai_base_url}"
keys = [{{ ref = "broken" }}]

[[providers]]
name = "ant-broken"
api = "anthropic"
base_url = "{broken.anthropic_base_url}"
keys = [{{ ref = "broken" }}]
{model("gpt-compat", "oai", 3, 2.5, 10.0)}
{model("claude-compat", "ant", 4, 3.0, 15.0)}
{model("gpt-limited", "oai-limited", 1, 0.1, 0.4)}
{model("claude-limited", "ant-limited", 1, 0.1, 0.4)}
{model("gpt-broken", "oai-broken", 1, 0.1, 0.4)}
{model("claude-broken", "ant-broken", 1, 0.1, 0.4)}

[profiles.AGENT]
session_lock = true
quality_floor = 3

[profiles.LIMITED]
allowed_models = ["gpt-limited", "claude-limited"]

[profiles.BROKEN]
allowed_models = ["gpt-broken", "claude-broken"]
"""


@pytest.fixture(scope="session")
def keel(tmp_path_factory: pytest.TempPathFactory):
    for name in ("keel-control-plane", "keel-sidecar", "keel-fake-provider"):
        if not (BIN / name).exists():
            pytest.exit(f"{BIN / name} is missing: run `cargo build --workspace --bins` first", 2)
    tmp = tmp_path_factory.mktemp("keel")
    procs: list[Proc] = []
    try:
        fakes = {}
        for name in ("oai", "ant", "limited", "broken"):
            p = Proc(
                "keel-fake-provider",
                [str(BIN / "keel-fake-provider"), "--listen", "127.0.0.1:0"],
                tmp / f"fake-{name}.log",
            )
            procs.append(p)
            fakes[name] = Fake(p)
        for f in fakes.values():
            wait_healthy(f.addr)
        fakes["limited"].set_behavior(fail_status=429, retry_after=LIMITED_RETRY_AFTER_S)

        cfg = tmp / "keel.toml"
        cfg.write_text(config(tmp / "sessions", fakes))
        cp = Proc(
            "keel-control-plane",
            [str(BIN / "keel-control-plane"), "--config", str(cfg)],
            tmp / "control-plane.log",
        )
        procs.append(cp)
        wait_healthy(cp.addr("http"))
        sidecar = Proc(
            "keel-sidecar",
            [
                str(BIN / "keel-sidecar"),
                "--listen", "127.0.0.1:0",
                "--control-plane", f"http://{cp.addr('grpc')}",
                "--api-key", APP_KEY,
                # Generous route deadline: a loaded 2-core machine runs debug
                # builds; degraded mode is not what this suite tests.
                "--route-timeout", "5s",
            ],
            tmp / "sidecar.log",
            env=PROVIDER_KEYS,
        )
        procs.append(sidecar)
        wait_healthy(sidecar.addr("listen"))
        _running.append((cp, sidecar))
        yield Keel(cp=cp, sidecar=sidecar, fakes=fakes)
    finally:
        _running.clear()
        for p in reversed(procs):
            p.stop()


# The processes of the running session, for failure reports.
_running: list[tuple[Proc, Proc]] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and _running:
        cp, sidecar = _running[0]
        for proc in (sidecar, cp):
            tail = "\n".join(proc.logs().splitlines()[-40:])
            report.sections.append((f"{proc.name} log (tail, full: {proc.log})", tail))
    return report


@pytest.fixture(scope="session")
def openai_client(keel: Keel) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=keel.url + "/v1", api_key=APP_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


@pytest.fixture(scope="session")
def anthropic_client(keel: Keel) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=keel.url, api_key=APP_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


class Seen:
    """The requests a fake received during one test."""

    def __init__(self, fake: Fake):
        self.fake = fake
        self.before = len(fake.requests())

    def new(self) -> list[dict]:
        return self.fake.requests()[self.before :]


@pytest.fixture
def seen(keel: Keel):
    """`seen(name)` marks where a fake's request log stands; `.new()` reads
    what arrived since."""
    return lambda name: Seen(keel.fakes[name])


# The two targets a test can pick by naming a catalog model.
TARGETS = {
    "openai-target": {"model": "gpt-compat", "provider": "oai", "fake": "oai", "api": "openai"},
    "anthropic-target": {
        "model": "claude-compat",
        "provider": "ant",
        "fake": "ant",
        "api": "anthropic",
    },
}


def answer_model(target: dict, caller_api: str) -> str:
    """The model an answer names: a same-API answer is relayed as the
    provider sent it (its upstream id); a translated one names the catalog
    model the app asked for."""
    return target["model"] + "-up" if target["api"] == caller_api else target["model"]


@pytest.fixture(params=list(TARGETS), ids=list(TARGETS))
def target(request) -> dict:
    return TARGETS[request.param]


def assert_provider_key(req: dict, fake_name: str) -> None:
    """The provider got this host's key in its own API's header, never the
    app's credential."""
    if req["path"] == "/v1/chat/completions":
        assert req["authorization"] == f"Bearer {PROVIDER_KEYS['KEEL_KEY_OAI_MAIN']}", req
        assert req["x_api_key"] is None
    else:
        assert req["path"] == "/v1/messages"
        assert req["x_api_key"] == PROVIDER_KEYS["KEEL_KEY_ANT_MAIN"], req
        assert req["anthropic_version"], "anthropic-version header is required"
        assert req["authorization"] is None
    assert APP_KEY not in json.dumps(req)


def openai_tool_turns(messages: list[dict]) -> list[tuple[list[str], list[str]]]:
    """(tool call ids, answered ids) of each assistant turn with tool calls,
    checking the shape OpenAI insists on: the `tool` messages answering a
    turn follow it directly, and no `tool` message stands anywhere else."""
    turns = []
    i = 0
    while i < len(messages):
        m = messages[i]
        assert m["role"] != "tool", f"tool message {i} does not follow its tool calls"
        i += 1
        if m["role"] == "assistant" and m.get("tool_calls"):
            answered = []
            while i < len(messages) and messages[i]["role"] == "tool":
                answered.append(messages[i]["tool_call_id"])
                i += 1
            turns.append(([c["id"] for c in m["tool_calls"]], answered))
    return turns


def anthropic_tool_turns(messages: list[dict]) -> list[tuple[list[str], list[str]]]:
    """(tool_use ids, answered ids) of each assistant turn with tool_use,
    checking the shape Anthropic insists on: the next message is the user's
    and opens with the tool_result blocks."""
    turns = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or isinstance(m["content"], str):
            continue
        uses = [b["id"] for b in m["content"] if b["type"] == "tool_use"]
        if not uses:
            continue
        reply = messages[i + 1]
        assert reply["role"] == "user"
        answered = []
        for b in reply["content"]:
            if b["type"] != "tool_result":
                break
            answered.append(b["tool_use_id"])
        assert all(b["type"] != "tool_result" for b in reply["content"][len(answered) :]), (
            "tool_result blocks come first"
        )
        turns.append((uses, answered))
    return turns
