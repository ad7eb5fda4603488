"""A Keel gateway for the agent-harness tests: one scripted fake provider
(`keel-fake-provider --script`: a two-step shell task in either wire format),
a control plane and a sidecar, on ephemeral ports.

Catalog: `ant-strong` (tier 3) and `ant-small` (tier 1) on an Anthropic
provider, `oai-strong` / `oai-small` on an OpenAI one. Profiles lock the
session with quality floor 3: ANT allows the Anthropic models, OAI the OpenAI
ones. Wildcard aliases resolve the names harnesses send by default.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc

from conftest import BIN, ROOT, Fake, Proc, wait_healthy

APP_KEY = "harness-app-key"
PROVIDER_KEYS = {"KEEL_KEY_ANT_MAIN": "sk-ant-harness", "KEEL_KEY_OAI_MAIN": "sk-oai-harness"}
RPC_TIMEOUT_S = 10.0

# What the scripted model makes the harness do, and how it ends.
PROOF_FILE = "keel-proof.txt"
PROOF_TEXT = "keel-step-1"
DONE = f"DONE: {PROOF_TEXT}"
TASK = f"Write {PROOF_TEXT} into {PROOF_FILE} with the shell, then read it back."


def _model(name: str, provider: str, tier: int) -> str:
    return f"""
[[models]]
name = "{name}"
provider = "{provider}"
upstream_model = "{name}-up"
tier = {tier}
input_usd_per_mtok = 1.0
output_usd_per_mtok = 4.0
context_tokens = 200000
capabilities = ["tools"]
"""


def _config(data: Path, fake: Fake) -> str:
    return f"""
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[store]
path = "{data}"
session_idle_ttl = "1h"

[[providers]]
name = "ant"
api = "anthropic"
base_url = "{fake.anthropic_base_url}"
keys = [{{ ref = "ant-main" }}]

[[providers]]
name = "oai"
api = "openai"
base_url = "{fake.openai_base_url}"
keys = [{{ ref = "oai-main" }}]
{_model("ant-strong", "ant", 3)}{_model("ant-small", "ant", 1)}
{_model("oai-strong", "oai", 3)}{_model("oai-small", "oai", 1)}
[aliases]
"claude-*" = "auto"
"gpt-5*" = "auto"

[profiles.ANT]
session_lock = true
quality_floor = 3
allowed_models = ["ant-strong", "ant-small"]

[profiles.OAI]
session_lock = true
quality_floor = 3
allowed_models = ["oai-strong", "oai-small"]
"""


def _stubs(out: Path) -> dict:
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
         f"--python_out={out}", f"--grpc_python_out={out}", *protos],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"
    sys.path.insert(0, str(out))
    try:
        return {
            "admin": importlib.import_module("keel.v1.admin_pb2"),
            "admin_grpc": importlib.import_module("keel.v1.admin_pb2_grpc"),
        }
    finally:
        sys.path.remove(str(out))


@dataclass
class Gateway:
    fake: Fake
    cp: Proc
    sidecar: Proc
    stubs: dict

    @property
    def url(self) -> str:
        return f"http://{self.sidecar.addr('listen')}"

    def conversation(self, conversation_id: str):
        """`Admin.GetConversation` (default tenant)."""
        admin, admin_grpc = self.stubs["admin"], self.stubs["admin_grpc"]
        with grpc.insecure_channel(self.cp.addr("grpc")) as ch:
            stub = admin_grpc.AdminStub(ch)
            return stub.GetConversation(
                admin.GetConversationRequest(conversation_id=conversation_id),
                timeout=RPC_TIMEOUT_S,
            )

    def kinds(self, conversation_id: str) -> list[str]:
        """The conversation's decision kinds, oldest first, as lower-case names."""
        c = self.conversation(conversation_id)
        names = {1: "initialize", 2: "retain", 3: "switch", 4: "unpinned", 5: "side"}
        return [names.get(d.kind, str(d.kind)) for d in c.decisions]


def start(tmp: Path) -> tuple[Gateway, list[Proc]]:
    """Starts the gateway; the caller stops the returned processes."""
    procs: list[Proc] = []
    try:
        fp = Proc(
            "keel-fake-provider",
            [str(BIN / "keel-fake-provider"), "--listen", "127.0.0.1:0", "--script"],
            tmp / "fake.log",
        )
        procs.append(fp)
        fake = Fake(fp)
        wait_healthy(fake.addr)
        cfg = tmp / "keel.toml"
        cfg.write_text(_config(tmp / "sessions", fake))
        cp = Proc("keel-control-plane", [str(BIN / "keel-control-plane"), "--config", str(cfg)],
                  tmp / "control-plane.log")
        procs.append(cp)
        wait_healthy(cp.addr("http"))
        sidecar = Proc(
            "keel-sidecar",
            [str(BIN / "keel-sidecar"), "--listen", "127.0.0.1:0",
             "--control-plane", f"http://{cp.addr('grpc')}", "--api-key", APP_KEY,
             "--route-timeout", "5s"],
            tmp / "sidecar.log",
            env=PROVIDER_KEYS,
        )
        procs.append(sidecar)
        wait_healthy(sidecar.addr("listen"))
        gen = tmp / "grpc-gen"
        gen.mkdir()
        return Gateway(fake=fake, cp=cp, sidecar=sidecar, stubs=_stubs(gen)), procs
    except BaseException:
        for p in reversed(procs):
            p.stop()
        raise
