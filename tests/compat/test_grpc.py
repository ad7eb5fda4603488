"""Keel's routing contract from another language: a Python client generated
from `proto/` with grpcio-tools (which also proves the protos compile with
plain protoc) calls `Route` and `Report` on the real control plane."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import ROOT

RPC_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """Generates the Python modules for every proto under `proto/` and
    imports them."""
    out = tmp_path_factory.mktemp("grpc-gen")
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    assert "keel/v1/router.proto" in protos
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(ROOT / "proto"),
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"
    sys.path.insert(0, str(out))
    try:
        yield {
            "router": importlib.import_module("keel.v1.router_pb2"),
            "router_grpc": importlib.import_module("keel.v1.router_pb2_grpc"),
            "admin": importlib.import_module("keel.v1.admin_pb2"),
            "admin_grpc": importlib.import_module("keel.v1.admin_pb2_grpc"),
        }
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="module")
def channel(keel):
    with grpc.insecure_channel(keel.grpc_addr) as ch:
        grpc.channel_ready_future(ch).result(timeout=RPC_TIMEOUT_S)
        yield ch


def test_route_pins_then_retains_and_report_is_accepted(pb, channel, keel):
    r = pb["router"]
    router = pb["router_grpc"].RouterStub(channel)
    conversation = f"py-{uuid.uuid4()}"
    # Only what the contract says is enough: a conversation, a profile, `auto`.
    request = r.RouteRequest(conversation_id=conversation, profile="AGENT", model="auto")

    first = router.Route(request, timeout=RPC_TIMEOUT_S)
    assert first.decision_id
    assert first.pinned is True
    assert first.turn == 1
    assert first.kind == r.DECISION_KIND_INITIALIZE
    assert first.profile == "AGENT"
    t = first.target
    # AGENT with floor 3 takes the strongest model: claude-compat (tier 4).
    assert t.model == "claude-compat"
    assert t.provider == "ant"
    assert t.upstream_model == "claude-compat-up"
    assert t.base_url == keel.fakes["ant"].anthropic_base_url
    assert t.wire_format == r.WIRE_FORMAT_ANTHROPIC
    assert t.key_ref == "ant-main"
    assert t.tier == 4

    second = router.Route(request, timeout=RPC_TIMEOUT_S)
    assert second.target.model == t.model
    assert second.target.provider == t.provider
    assert second.pinned is True
    assert second.turn == 2
    assert second.kind == r.DECISION_KIND_RETAIN
    assert second.decision_id != first.decision_id

    outcome = r.Outcome(
        decision_id=first.decision_id,
        conversation_id=conversation,
        profile=first.profile,
        attempts=[r.Attempt(target=t, status=200, latency_ms=120, ttft_ms=180)],
        usage=r.Usage(input_tokens=1200, output_tokens=80, cached_input_tokens=1000),
        success=True,
        stream_completed=True,
        total_latency_ms=900,
        model=t.model,
    )
    ack = router.Report(r.ReportBatch(outcomes=[outcome]), timeout=RPC_TIMEOUT_S)
    assert ack.accepted == 1


def test_route_without_conversation_is_unpinned(pb, channel):
    r = pb["router"]
    router = pb["router_grpc"].RouterStub(channel)
    d = router.Route(r.RouteRequest(model="gpt-compat"), timeout=RPC_TIMEOUT_S)
    assert d.target.model == "gpt-compat"
    assert d.target.wire_format == r.WIRE_FORMAT_OPENAI
    assert d.target.base_url.endswith("/v1")
    assert d.pinned is False
    assert d.turn == 0


def test_route_errors_are_grpc_status_codes(pb, channel):
    r = pb["router"]
    router = pb["router_grpc"].RouterStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        router.Route(r.RouteRequest(model="no-such-model"), timeout=RPC_TIMEOUT_S)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        router.Route(r.RouteRequest(profile="NO-SUCH-PROFILE"), timeout=RPC_TIMEOUT_S)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_admin_catalog(pb, channel):
    admin = pb["admin_grpc"].AdminStub(channel)
    catalog = admin.GetCatalog(pb["admin"].GetCatalogRequest(), timeout=RPC_TIMEOUT_S)
    names = {m.target.model for m in catalog.models}
    assert {"gpt-compat", "claude-compat", "gpt-limited", "claude-limited"} <= names
    assert "AGENT" in catalog.profiles and "LIMITED" in catalog.profiles


def test_grpc_health(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "keel.v1.Router"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, service
