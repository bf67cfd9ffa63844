"""Mirroring between two front doors on loopback, each in front of its own fake Triton: a "stable" one (revision
rev-a) that the order on its metrics port points at a "canary" one (rev-b). The order's clock and the draw are
injected; requests are held and released by events; counters are polled (bounded), never timed."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from deepseek_operator.frontend.metrics import Metrics
from deepseek_operator.frontend.mirror import MAX_IN_FLIGHT, MIRROR_HEADER, OrderError, parse_order
from tests.fake_triton import FakeTriton, write_checkpoint
from tests.unit.test_frontend_http import MODEL, QUESTION, Stack, _free_port, _wait_until

GENERATE = "/v2/models/tensorrt_llm/generate"


class Clock:
    """The mirror order's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Draws(random.Random):
    """A random.Random whose draws are given."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = iter(values)

    def random(self) -> float:
        return next(self.values)


class Pair:
    def __init__(self, checkpoint: Path, rng: random.Random | None = None) -> None:
        self.clock = Clock()
        self.stable = Stack(checkpoint, FakeTriton(stream_interval=2), revision="rev-a",
                            options={"monotonic": self.clock, "rng": rng or random.Random(1)})
        self.canary = Stack(checkpoint, FakeTriton(stream_interval=2), revision="rev-b")

    def close(self) -> None:
        self.stable.close()
        self.canary.close()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return write_checkpoint(tmp_path / "checkpoint")


@pytest.fixture
def pair(checkpoint: Path) -> Iterator[Pair]:
    p = Pair(checkpoint)
    yield p
    p.close()


def _control(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.metrics_port}/mirror"


def put(stack: Stack, order: Any) -> requests.Response:
    return requests.put(_control(stack), json=order, timeout=10)


def state(stack: Stack) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(_control(stack), timeout=10).json()
    return answer


def order_to(target: Stack, fraction: float = 1.0, ttl: float = 60) -> dict[str, Any]:
    return {"target": target.url, "fraction": fraction, "ttl_seconds": ttl}


def generate(stack: Stack, prompt: str = "w1 w2", path: str = GENERATE, **headers: str) -> requests.Response:
    return requests.post(f"{stack.url}{path}", json={"text_input": prompt}, headers=headers, timeout=30)


def settled(stack: Stack, sent: int, dropped: int = 0, failed: int = 0) -> None:
    """The stable pod's mirrored requests have all ended with these outcomes."""
    want = {"in_flight": 0, "sent": sent, "dropped": dropped, "failed": failed}
    _wait_until(lambda: {k: state(stack)[k] for k in want} == want)
    for outcome, n in (("sent", sent), ("dropped", dropped), ("failed", failed)):
        assert stack.sample("deepseek_frontend_mirrored_total", outcome=outcome, revision="rev-a") == n


# ------------------------------------------------------------------------------------------------ mirroring

def test_a_mirrored_request_reaches_the_canary_counted_apart_and_the_client_gets_the_stable_answer(
        pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    r = put(a, order_to(b))
    assert r.status_code == 200 and r.json() == {"target": b.url, "fraction": 1.0, "ttl_seconds": 60.0}
    assert state(a)["order"] == {**r.json(), "expires_in_seconds": 60.0}
    answer = a.client.chat.completions.create(model=MODEL, messages=QUESTION)  # type: ignore[arg-type]
    assert answer.system_fingerprint == "rev-a" and answer.choices[0].message.content == " w3 w2 w1"
    settled(a, sent=1)
    chat = {"api": "chat", "revision": "rev-b"}
    assert b.sample("deepseek_frontend_requests_total", code="200", mirrored="true", **chat) == 1
    assert b.sample("deepseek_frontend_requests_total", mirrored="false") == 0
    assert b.sample("deepseek_frontend_time_to_first_token_seconds_count", mirrored="true", **chat) == 1
    assert b.sample("deepseek_frontend_prompt_tokens_total", mirrored="true", **chat) == 7
    assert b.sample("deepseek_frontend_output_tokens_total", mirrored="true", **chat) == 8
    assert b.sample("deepseek_frontend_output_tokens_total", mirrored="false") == 0
    assert a.sample("deepseek_frontend_requests_total", code="200", mirrored="false", api="chat") == 1
    assert a.sample("deepseek_frontend_requests_total", mirrored="true") == 0
    assert len(a.fake.seen) == len(b.fake.seen) == 1  # each engine answered once
    assert a.fake.seen[0]["body"] == b.fake.seen[0]["body"]


def test_the_mirrored_request_has_the_same_method_path_query_body_and_content_type_and_nothing_else(
        pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    put(a, order_to(b))
    body = b'{"text_input": "w1 w2", "sampling_param_exclude_input_from_output": true}'
    r = requests.post(f"{a.url}/v2/models/tensorrt_llm/versions/1/generate?x=1&y=%2F", data=body, timeout=30,
                      headers={"Content-Type": "application/json; charset=utf-8", "Authorization": "Bearer secret",
                               "X-Request-Id": "abc"})
    assert r.status_code == 200 and r.json()["text_output"] == " w2 w1"
    settled(a, sent=1)
    seen = b.fake.seen[0]  # what the canary's front door passed on to its Triton: what it got, less hop-by-hop
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/v2/models/tensorrt_llm/versions/1/generate"
                                                            "?x=1&y=%2F", body)
    assert seen["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert seen["headers"][MIRROR_HEADER] == "rev-a"
    assert "Authorization" not in seen["headers"] and "X-Request-Id" not in seen["headers"]
    assert b.sample("deepseek_frontend_requests_total", api="generate", code="200", mirrored="true") == 1
    assert b.sample("deepseek_frontend_output_tokens_total", api="generate", mirrored="true") == 2


def test_streamed_requests_are_mirrored_and_read_to_the_end(pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    put(a, order_to(b))
    chunks = list(a.client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == " w3 w2 w1"
    r = requests.post(f"{a.url}/v2/models/tensorrt_llm/generate_stream", timeout=30,
                      json={"text_input": "w1 w2 w3", "streaming": True})
    assert r.status_code == 200 and r.content.count(b"data: ") == 2  # 3 tokens, stream_interval 2
    settled(a, sent=2)
    for api in ("chat", "generate_stream"):
        labels = {"api": api, "mirrored": "true", "revision": "rev-b"}
        client = {"api": api, "mirrored": "false", "revision": "rev-a"}  # the stable pod's, of the same answer
        assert b.sample("deepseek_frontend_requests_total", code="200", **labels) == 1
        assert b.sample("deepseek_frontend_time_to_first_token_seconds_count", **labels) == 1
        gaps = b.sample("deepseek_frontend_inter_token_latency_seconds_count", **labels)
        assert gaps == a.sample("deepseek_frontend_inter_token_latency_seconds_count", **client) > 0
        assert b.sample("deepseek_frontend_requests_in_flight", **labels) == 0
    assert b.sample("deepseek_frontend_output_tokens_total", api="generate_stream", mirrored="true") == 3


def test_infer_other_routes_and_openai_models_are_not_mirrored(pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    put(a, order_to(b))
    infer = {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["w1"]}]}
    assert requests.post(f"{a.url}/v2/models/tensorrt_llm/infer", json=infer, timeout=10).status_code == 200
    assert requests.get(f"{a.url}/v2/models/tensorrt_llm", timeout=10).status_code == 200
    assert requests.post(f"{a.url}/v2/repository/index", json={}, timeout=10).status_code == 200
    assert a.client.models.list().data[0].id == MODEL
    assert requests.get(f"{a.url}/health/ready", timeout=10).status_code == 200
    settled(a, sent=0)  # nothing was chosen: the choice is made before the client's answer
    assert b.fake.seen == []


def test_a_mirrored_request_is_not_mirrored_again(pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    put(a, order_to(b))
    r = generate(a, **{MIRROR_HEADER: "rev-z"})  # as if rev-z had mirrored it here
    assert r.status_code == 200
    settled(a, sent=0)
    assert a.sample("deepseek_frontend_requests_total", api="generate", mirrored="true", code="200") == 1
    assert b.fake.seen == []


def test_the_draw_takes_fraction_of_the_requests(checkpoint: Path) -> None:
    p = Pair(checkpoint, rng=Draws([0.2, 0.5, 0.7, 0.49]))  # mirrored when the draw is under the fraction
    try:
        put(p.stable, order_to(p.canary, fraction=0.5))
        for _ in range(4):
            assert generate(p.stable).status_code == 200
        settled(p.stable, sent=2)
        assert p.canary.sample("deepseek_frontend_requests_total", mirrored="true") == 2
    finally:
        p.close()


def test_fraction_zero_or_delete_stops_mirroring(pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    put(a, order_to(b))
    r = put(a, order_to(b, fraction=0))
    assert r.status_code == 200 and r.json()["fraction"] == 0
    assert state(a)["order"] is None
    assert generate(a).status_code == 200
    settled(a, sent=0)
    put(a, order_to(b))
    r = requests.delete(_control(a), timeout=10)
    assert r.status_code == 200 and r.json()["order"] is None
    assert generate(a).status_code == 200
    settled(a, sent=0)
    assert put(a, {"fraction": 0}).json() == {"target": None, "fraction": 0.0, "ttl_seconds": None}  # a bare stop
    assert b.fake.seen == [] and b.sample("deepseek_frontend_requests_total") == 0


def test_an_order_expires_unless_renewed(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="deepseek_operator.frontend")
    a, b = pair.stable, pair.canary
    put(a, order_to(b, ttl=10))
    pair.clock.now += 9.5
    assert state(a)["order"]["expires_in_seconds"] == 0.5
    assert generate(a).status_code == 200
    settled(a, sent=1)
    put(a, order_to(b, ttl=10))  # renewed: 10 s from now
    pair.clock.now += 9.5
    assert generate(a).status_code == 200
    settled(a, sent=2)
    pair.clock.now += 0.5  # no renewal within ttl_seconds
    assert state(a)["order"] is None
    assert generate(a).status_code == 200
    settled(a, sent=2)
    assert b.sample("deepseek_frontend_requests_total", mirrored="true") == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "deepseek_operator.frontend"]
    assert len(messages) == 2, messages  # the order once (not its renewal), its expiry once
    assert b.url in messages[0] and "expired" in messages[1]


def test_each_change_of_the_order_is_logged_once(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="deepseek_operator.frontend")
    a, b = pair.stable, pair.canary
    for order in (order_to(b), order_to(b), order_to(b, fraction=0.5), order_to(b, fraction=0.5, ttl=30),
                  order_to(b, fraction=0), order_to(b, fraction=0)):
        assert put(a, order).status_code == 200
    requests.delete(_control(a), timeout=10)
    messages = [r.getMessage() for r in caplog.records if r.name == "deepseek_operator.frontend"]
    assert len(messages) == 3, messages  # fraction 1, fraction 0.5, stopped
    assert "stopped" in messages[2]


def test_a_request_mirrored_back_to_its_own_revision_is_answered_204_and_not_counted(pair: Pair) -> None:
    b = pair.canary  # its Service is the target, but it serves the sender's revision (no canary left)
    r = generate(b, **{MIRROR_HEADER: "rev-b"})
    assert (r.status_code, r.content) == (204, b"")
    assert b.fake.seen == []
    assert b.sample("deepseek_frontend_requests_total") == 0
    assert b.sample("deepseek_frontend_request_duration_seconds_count") == 0
    put(b, order_to(b))  # an order pointing back at itself
    r = generate(b)
    assert r.status_code == 200 and r.json()["text_output"] == "w1 w2 w2 w1"
    _wait_until(lambda: state(b)["sent"] == 1 and state(b)["in_flight"] == 0)  # answered: the 204
    assert len(b.fake.seen) == 1  # the client's request only
    assert b.sample("deepseek_frontend_requests_total") == 1
    assert b.sample("deepseek_frontend_requests_total", mirrored="true") == 0


@pytest.mark.parametrize(("order", "field"), [
    ({"target": "https://canary:8000", "fraction": 1, "ttl_seconds": 60}, "target"),
    ({"target": "http://canary", "fraction": 1, "ttl_seconds": 60}, "target"),
    ({"target": "http://canary:8000/v1", "fraction": 1, "ttl_seconds": 60}, "target"),
    ({"target": "http://canary:8000?x=1", "fraction": 1, "ttl_seconds": 60}, "target"),
    ({"target": "http://user:pw@canary:8000", "fraction": 1, "ttl_seconds": 60}, "target"),
    ({"target": "http://:8000", "fraction": 1, "ttl_seconds": 60}, "target"),
    ({"target": "canary:8000", "fraction": 1, "ttl_seconds": 60}, "target"),
    ({"target": 8000, "fraction": 1, "ttl_seconds": 60}, "target"),
    ({"fraction": 1, "ttl_seconds": 60}, "target"),
    ({"target": "http://canary:8000", "fraction": 1.5, "ttl_seconds": 60}, "fraction"),
    ({"target": "http://canary:8000", "fraction": -0.1, "ttl_seconds": 60}, "fraction"),
    ({"target": "http://canary:8000", "fraction": "1", "ttl_seconds": 60}, "fraction"),
    ({"target": "http://canary:8000", "fraction": True, "ttl_seconds": 60}, "fraction"),
    ({"target": "http://canary:8000", "ttl_seconds": 60}, "fraction"),
    ({"target": "http://canary:8000", "fraction": 1, "ttl_seconds": 0}, "ttl_seconds"),
    ({"target": "http://canary:8000", "fraction": 1, "ttl_seconds": 3601}, "ttl_seconds"),
    ({"target": "http://canary:8000", "fraction": 1}, "ttl_seconds"),
    ({"target": "http://canary:8000", "fraction": 1, "ttl_seconds": 60, "ttl": 5}, "ttl"),
    ([], "body"),
])
def test_a_bad_order_is_a_400_naming_the_field(pair: Pair, order: Any, field: str) -> None:
    a = pair.stable
    r = put(a, order)
    assert r.status_code == 400 and r.json()["field"] == field, r.text
    assert field in r.json()["error"]
    assert state(a)["order"] is None
    r = requests.put(_control(a), data=b"{not json", timeout=10)
    assert r.status_code == 400 and r.json()["field"] == "body"


def test_accepted_orders_are_normalised() -> None:
    order = parse_order({"target": "http://canary.ns.svc:8000/", "fraction": 1, "ttl_seconds": 3600})
    assert order.as_json() == {"target": "http://canary.ns.svc:8000", "fraction": 1.0, "ttl_seconds": 3600.0}
    assert parse_order({"target": "http://[::1]:80", "fraction": 0.25, "ttl_seconds": 0.5}).target == "http://[::1]:80"
    with pytest.raises(OrderError) as caught:
        parse_order({"target": "http://canary:0", "fraction": 1, "ttl_seconds": 1})
    assert caught.value.field == "target"


def test_the_mirror_endpoint_is_not_on_the_client_port(pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    for method in ("GET", "PUT", "DELETE"):
        r = requests.request(method, f"{a.url}/mirror", json=order_to(b), timeout=10)
        assert r.status_code == 404, method
    assert state(a)["order"] is None


# ------------------------------------------------------------------------------------------------ bounds, load, drain

def test_beyond_64_in_flight_a_mirrored_request_is_dropped(pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    hold = b.event()
    b.fake.hold_first = hold  # the canary's engine holds every answer
    put(a, order_to(b))
    try:
        for _ in range(MAX_IN_FLIGHT):
            assert generate(a).status_code == 200  # the client never waits for its mirrored request
        assert state(a)["in_flight"] == MAX_IN_FLIGHT == state(a)["max_in_flight"]
        assert generate(a).status_code == 200
        assert state(a)["dropped"] == 1 and state(a)["in_flight"] == MAX_IN_FLIGHT
    finally:
        b.release(hold)
    settled(a, sent=MAX_IN_FLIGHT, dropped=1)
    _wait_until(lambda: b.sample("deepseek_frontend_requests_total", mirrored="true") == MAX_IN_FLIGHT)
    assert a.sample("deepseek_frontend_requests_total", api="generate", mirrored="false") == MAX_IN_FLIGHT + 1


def test_mirrored_requests_are_load_for_the_inference_extension_gauges(pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    hold = b.event()
    b.fake.hold_first = hold
    put(a, order_to(b))
    try:
        assert generate(a).status_code == 200
        _wait_until(lambda: b.sample("nv_trt_llm_request_metrics", request_type="waiting") == 1)
        assert b.sample("deepseek_frontend_requests_waiting_first_token", api="generate", mirrored="true") == 1
        assert b.sample("deepseek_frontend_requests_in_flight", api="generate", mirrored="true") == 1
        assert b.sample("deepseek_frontend_requests_in_flight", mirrored="false") == 0
    finally:
        b.release(hold)
    settled(a, sent=1)
    assert b.sample("nv_trt_llm_request_metrics", request_type="waiting") == 0


def test_an_unreachable_target_counts_failed_and_the_client_is_answered(pair: Pair) -> None:
    a = pair.stable
    put(a, {"target": f"http://127.0.0.1:{_free_port()}", "fraction": 1, "ttl_seconds": 60})  # nothing listens
    assert generate(a).status_code == 200
    assert generate(a).status_code == 200
    settled(a, sent=0, failed=2)


def test_drain_cancels_the_mirrored_requests_in_flight_and_starts_none(pair: Pair) -> None:
    a, b = pair.stable, pair.canary
    hold = b.event()
    b.fake.hold_first = hold
    put(a, order_to(b))
    try:
        assert generate(a).status_code == 200
        assert state(a)["in_flight"] == 1
        assert asyncio.run_coroutine_threadsafe(a.frontend.drain(5), a.loop).result(timeout=30) == 0
        assert state(a)["in_flight"] == 0 and state(a)["failed"] == 1  # cancelled
        a.frontend.mirror.offer("POST", GENERATE, "application/json", b"{}")  # as a request arriving now would
        assert state(a)["in_flight"] == 0
    finally:
        b.release(hold)


# ------------------------------------------------------------------------------------------------ the series

def test_every_series_with_api_has_mirrored_and_the_gauges_of_the_picker_do_not() -> None:
    metrics = Metrics("m", "r")
    names: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).add(sample.labels.get("mirrored", "-"))
            if "api" in sample.labels:
                assert sample.labels["mirrored"] in ("true", "false"), sample
            else:
                assert "mirrored" not in sample.labels, sample
    with_api = {n for n in names if n.startswith("deepseek_frontend_") and "_mirrored_" not in n}
    assert {"deepseek_frontend_requests_total", "deepseek_frontend_request_failures_total",
            "deepseek_frontend_request_duration_seconds_count", "deepseek_frontend_time_to_first_token_seconds_count",
            "deepseek_frontend_inter_token_latency_seconds_count", "deepseek_frontend_prompt_tokens_total",
            "deepseek_frontend_output_tokens_total", "deepseek_frontend_requests_in_flight",
            "deepseek_frontend_requests_waiting_first_token"} <= with_api
    assert all(names[n] == {"true", "false"} for n in with_api), names  # both exist from the start
    assert names["nv_trt_llm_request_metrics"] == {"-"}
    outcomes = {s.labels["outcome"]: s.value for f in metrics.registry.collect() for s in f.samples
                if s.name == "deepseek_frontend_mirrored_total"}
    assert outcomes == {"sent": 0, "dropped": 0, "failed": 0}
