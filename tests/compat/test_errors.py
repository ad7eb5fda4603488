"""Keel's errors raise the SDKs' own error classes: each SDK parses the status
and the body, so the body must be in the caller's API shape."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from conftest import APP_KEY, LIMITED_RETRY_AFTER_S, PROVIDER_KEYS

# Both limited models answer 429; LIMITED allows only them, so every
# attempt (primary and fallbacks) is rate limited.
LIMITED_MODELS = ["gpt-limited", "claude-limited"]
# Keel must answer at once, not sit out the provider's Retry-After (30 s);
# the margin is for a loaded machine running debug builds.
PROMPT_S = 10



@pytest.fixture
def user(request) -> list[dict]:
    """A one-message conversation (valid in both APIs) of this test's own:
    Keel recognises conversations by their opening."""
    return [{"role": "user", "content": f"hi ({request.node.name})"}]


def assert_openai_error_body(e: openai.APIStatusError) -> None:
    body = e.response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["type"], str)


def assert_anthropic_error_body(e: anthropic.APIStatusError) -> None:
    body = e.response.json()
    assert body["type"] == "error", body
    assert isinstance(body["error"]["type"], str)
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_retry_after(resp) -> None:
    # The provider's Retry-After, or what is left of it while Keel keeps the
    # key cooling down and answers without asking the provider again.
    secs = int(resp.headers["retry-after"])
    assert 1 <= secs <= LIMITED_RETRY_AFTER_S, secs


def assert_limited_key(tried: list[dict]) -> None:
    """Whatever reached the limited provider carried this host's key in the
    header of the provider's API, never the app's key."""
    for r in tried:
        if r["path"] == "/v1/chat/completions":
            assert r["authorization"] == f"Bearer {PROVIDER_KEYS['KEEL_KEY_LIMITED']}"
        else:
            assert r["x_api_key"] == PROVIDER_KEYS["KEEL_KEY_LIMITED"]
        assert APP_KEY not in str(r)


# --- OpenAI SDK ------------------------------------------------------------


def test_openai_unknown_profile_is_bad_request(openai_client, user):
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.chat.completions.create(
            model="gpt-compat",
            messages=user,
            extra_headers={"x-router-profile": "NO-SUCH-PROFILE"},
        )
    assert err.value.status_code == 400
    assert "NO-SUCH-PROFILE" in err.value.message
    assert_openai_error_body(err.value)


def test_openai_oversized_conversation_id_is_bad_request(openai_client, user):
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.chat.completions.create(
            model="gpt-compat",
            messages=user,
            extra_headers={"x-conversation-id": "c" * 1000},
        )
    assert_openai_error_body(err.value)


def test_openai_unknown_model_is_not_found(openai_client, user):
    with pytest.raises(openai.NotFoundError) as err:
        openai_client.chat.completions.create(model="no-such-model", messages=user)
    assert err.value.status_code == 404
    assert "no-such-model" in err.value.message
    assert_openai_error_body(err.value)


@pytest.mark.parametrize("model", LIMITED_MODELS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_rate_limited(openai_client, keel, model, stream, user):
    log_before = len(keel.fakes["limited"].requests())
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as err:
        openai_client.chat.completions.create(
            model=model,
            messages=user,
            stream=stream,
            extra_headers={"x-router-profile": "LIMITED"},
        )
    elapsed = time.monotonic() - started
    assert elapsed < PROMPT_S, f"429 took {elapsed:.1f}s"
    assert err.value.status_code == 429
    assert_retry_after(err.value.response)
    assert_openai_error_body(err.value)
    assert_limited_key(keel.fakes["limited"].requests()[log_before:])


# --- Anthropic SDK ---------------------------------------------------------


def test_anthropic_unknown_profile_is_bad_request(anthropic_client, user):
    with pytest.raises(anthropic.BadRequestError) as err:
        anthropic_client.messages.create(
            model="claude-compat",
            max_tokens=16,
            messages=user,
            extra_headers={"x-router-profile": "NO-SUCH-PROFILE"},
        )
    assert err.value.status_code == 400
    assert "NO-SUCH-PROFILE" in err.value.message
    assert_anthropic_error_body(err.value)
    assert err.value.body["error"]["type"] == "invalid_request_error"


def test_anthropic_missing_max_tokens_is_bad_request(anthropic_client, user):
    # The SDK insists on max_tokens; send a raw body through the SDK's client.
    with pytest.raises(anthropic.BadRequestError) as err:
        anthropic_client.post(
            "/v1/messages",
            body={"model": "claude-compat", "messages": user},
            cast_to=anthropic.types.Message,
        )
    assert_anthropic_error_body(err.value)


def test_anthropic_unknown_model_is_not_found(anthropic_client, user):
    with pytest.raises(anthropic.NotFoundError) as err:
        anthropic_client.messages.create(
            model="no-such-model", max_tokens=16, messages=user
        )
    assert err.value.status_code == 404
    assert "no-such-model" in err.value.message
    assert_anthropic_error_body(err.value)
    assert err.value.body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("model", LIMITED_MODELS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_rate_limited(anthropic_client, keel, model, stream, user):
    log_before = len(keel.fakes["limited"].requests())
    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as err:
        anthropic_client.messages.create(
            model=model,
            max_tokens=16,
            messages=user,
            stream=stream,
            extra_headers={"x-router-profile": "LIMITED"},
        )
    elapsed = time.monotonic() - started
    assert elapsed < PROMPT_S, f"429 took {elapsed:.1f}s"
    assert err.value.status_code == 429
    assert_retry_after(err.value.response)
    assert_anthropic_error_body(err.value)
    assert err.value.body["error"]["type"] == "rate_limit_error"
    assert_limited_key(keel.fakes["limited"].requests()[log_before:])


# --- A provider's own error, in the caller's shape --------------------------


@pytest.fixture
def broken(keel):
    """`broken(status)` makes the broken fake answer every request with
    `status`; reset afterwards."""
    fake = keel.fakes["broken"]
    yield lambda status: fake.set_behavior(fail_status=status)
    fake.set_behavior()


BROKEN_MODELS = ["gpt-broken", "claude-broken"]
BROKEN = {"x-router-profile": "BROKEN"}


@pytest.mark.parametrize("model", BROKEN_MODELS)
def test_openai_sdk_sees_provider_errors_in_openai_shape(openai_client, broken, model, user):
    broken(400)
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.chat.completions.create(
            model=model, messages=user, extra_headers=BROKEN
        )
    assert_openai_error_body(err.value)
    broken(503)
    with pytest.raises(openai.InternalServerError) as err:
        openai_client.chat.completions.create(
            model=model, messages=user, extra_headers=BROKEN
        )
    assert err.value.status_code in (502, 503)
    assert_openai_error_body(err.value)


@pytest.mark.parametrize("model", BROKEN_MODELS)
def test_anthropic_sdk_sees_provider_errors_in_anthropic_shape(
    anthropic_client, broken, model, user
):
    broken(400)
    with pytest.raises(anthropic.BadRequestError) as err:
        anthropic_client.messages.create(
            model=model, max_tokens=16, messages=user, extra_headers=BROKEN
        )
    assert_anthropic_error_body(err.value)
    broken(503)
    with pytest.raises(anthropic.InternalServerError) as err:
        anthropic_client.messages.create(
            model=model, max_tokens=16, messages=user, extra_headers=BROKEN
        )
    assert err.value.status_code in (502, 503)
    assert_anthropic_error_body(err.value)


# --- A stream that breaks off mid-way ---------------------------------------

# Frames are spaced so the head and first frames are on the wire before the
# cut (with none, the fake may abort before its head is flushed).
CUT = {"cut_after_frames": 3, "frame_delay_ms": 20}


@pytest.mark.parametrize("model", BROKEN_MODELS)
def test_openai_sdk_raises_on_a_broken_stream(openai_client, keel, model, user):
    keel.fakes["broken"].set_behavior(**CUT)
    try:
        stream = openai_client.chat.completions.create(
            model=model, messages=user, stream=True, extra_headers=BROKEN
        )
        got = []
        with pytest.raises(openai.APIError) as err:
            for chunk in stream:
                got.append(chunk)
    finally:
        keel.fakes["broken"].set_behavior()
    assert got, "the chunks before the break were relayed"
    assert "broke off" in err.value.message


@pytest.mark.parametrize("model", BROKEN_MODELS)
def test_anthropic_sdk_raises_on_a_broken_stream(anthropic_client, keel, model, user):
    keel.fakes["broken"].set_behavior(**CUT)
    try:
        got = []
        with pytest.raises(anthropic.APIStatusError) as err:
            with anthropic_client.messages.stream(
                model=model, max_tokens=16, messages=user, extra_headers=BROKEN
            ) as stream:
                for event in stream:
                    got.append(event)
    finally:
        keel.fakes["broken"].set_behavior()
    assert got and got[0].type == "message_start"
    assert "broke off" in str(err.value)
