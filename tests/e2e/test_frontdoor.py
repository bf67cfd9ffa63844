"""The serving pod's front door as its users see it, on the testbed: traffic through the Traefik gateway to a
DeepSeekDeployment's stand-in Triton pods (real tritonserver, the stand-in LLM, and this checkout's
deepseek_operator.frontend), the counters the pod exports on :8003 (read directly, and as Prometheus scrapes
them), the autoscaler's inFlightRequests signal, failures (never counted as successes), the pod's counts against
the gateway's, and the official `openai` client, unmodified, against the served API.

Two resources in one namespace, each one replica behind its own hostname on the shared Gateway:
- `fd-slow`: every generated token TOKEN_INTERVAL_MS apart (testbed.deepseek.ai/token-interval-ms), so a long
  answer is a stream held open for seconds;
- `fd-faulty`: testbed.deepseek.ai/error-rate FAULT_RATE, the stand-in LLM's injected failure. It raises before
  the first token, and tritonserver answers such a failure with an error status (400) on every route, streams
  included: an error event inside a 200 comes only after a stream's first response, which here only the engine
  dying mid-answer (tritonserver SIGKILLed, the last test) gives.

What the testbed's gateway does to streams: its Traefik reads a whole answer before handing it on (the Buffering
middleware testbed/cluster.py puts on every entry point buffers responses too), so a client behind it gets a
stream only once it is complete, and a client that leaves is not seen by the pod. The tests that need a live
stream's client therefore talk to the pod's port straight, as a client of its Service would; one strict xfail
states the gateway's part.

Load is bounded: every request has a timeout, counts are fixed and small, and every thread a test starts is
joined before it returns. Nothing here asserts on wall-clock time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from deepseek_operator.api.spec import Autoscaling
from deepseek_operator.providers.gateway import traefik_service_pattern
from deepseek_operator.render import autoscaling
from deepseek_operator.render.children import FRONTEND_METRICS_PORT, HTTP_PORT, Owner
from testbed import podrunner
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_rollout import canary_cr
from tests.e2e.test_serving import Resources, kubectl_apply, model_store_namespace

pytestmark = pytest.mark.e2e
SLOW, FAULTY = "fd-slow", "fd-faulty"
MODEL = "deepseek-r1-distill-qwen-1.5b"  # canary_cr's model: the served name
TOKEN_INTERVAL_MS = 50
FAULT_RATE = "0.5"
LONG_PROMPT = " ".join(f"word{n}" for n in range(200))  # ~210 tokens at 50 ms: a stream open for ~10 s
TIMEOUT_S = 120  # any one request


@dataclass
class Pod:
    name: str
    uid: str
    ip: str
    host: str  # the Host header the gateway routes to it by


@dataclass
class Served:
    ns: str
    slow: Pod
    faulty: Pod


def _host(ns: str, name: str) -> str:
    return f"{name}.{ns}.test"


def front_door_cr(ns: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    """One replica behind an HTTPRoute of its own hostname on the shared Gateway (the operator writes it)."""
    cr = canary_cr(ns, replicas=1)
    cr["metadata"]["name"] = name
    cr["spec"]["rollout"]["trafficRouting"]["gatewayAPI"]["hostnames"] = [_host(ns, name)]
    cr["spec"]["serving"]["podAnnotations"] = annotations
    return cr


@pytest.fixture(scope="module")
def served(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[Served]:
    namespaces = model_store_namespace(testbed, "fd")
    ns = next(namespaces)
    try:
        res = Resources(testbed, ns)
        crs = [front_door_cr(ns, SLOW, {"testbed.deepseek.ai/token-interval-ms": str(TOKEN_INTERVAL_MS)}),
               # Where the stand-in takes a seed, it draws the same failures every run; else at random.
               front_door_cr(ns, FAULTY, {"testbed.deepseek.ai/error-rate": FAULT_RATE,
                                          "testbed.deepseek.ai/fault-seed": "2026"})]
        out = kubectl_apply(crs)
        assert out.returncode == 0, out.stderr
        pods = {}
        for name in (SLOW, FAULTY):
            res.wait_phase(name, "Healthy", timeout=300)
            [pod] = eventually(f"{name}'s Ready pod", lambda n=name: testbed.ready_pods(
                ns, f"serving.deepseek.ai/deployment={n}"), timeout=60)
            pods[name] = Pod(pod.metadata.name, pod.metadata.uid, pod.status.pod_ip, _host(ns, name))
            # /v1/models touches no model (the faulty one fails generations): the route is up when it answers.
            eventually(f"the gateway to route {name}", lambda n=name: requests.get(
                f"{testbed.gateway}/v1/models", headers={"Host": _host(ns, n)}, timeout=10).ok, timeout=90)
        yield Served(ns, pods[SLOW], pods[FAULTY])
    finally:
        next(namespaces, None)  # the namespace deleted (model_store_namespace's cleanup)


# ------------------------------------------------------------------------------------------------ reading

def scrape(url: str) -> list[Sample]:
    text = requests.get(url, timeout=10).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def front_door(pod: Pod) -> list[Sample]:
    return scrape(f"http://{pod.ip}:{FRONTEND_METRICS_PORT}/metrics")


def delta(before: list[Sample], after: list[Sample], name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def by_code(samples: list[Sample], name: str, **labels: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            out[s.labels["code"]] += int(s.value)  # counters of whole requests
    return out


def gateway_by_code(testbed: TestbedClient, ns: str, name: str) -> Counter[str]:
    """Traefik's traefik_service_requests_total for the resource's HTTPRoute backends, by status code."""
    pattern = re.compile("|".join(traefik_service_pattern(ns, f"{name}-{role}", (HTTP_PORT,))
                                  for role in ("stable", "canary")))
    out: Counter[str] = Counter()
    for s in scrape(f"{testbed.traefik_metrics}/metrics"):
        if s.name == "traefik_service_requests_total" and pattern.search(s.labels.get("service", "")):
            out[s.labels["code"]] += int(s.value)  # counters of whole requests
    return out


def prom_value(testbed: TestbedClient, query: str) -> float | None:
    result = testbed.prom_query(query)
    return float(result[0]["value"][1]) if result else None


def in_flight_query(ns: str, name: str) -> str:
    """The PromQL of the autoscaler's inFlightRequests signal for the resource, as the operator renders it."""
    return autoscaling.query(Owner(name, ns, ""), Autoscaling.model_validate({"maxReplicas": 1, "target": 1}))


# ------------------------------------------------------------------------------------------------ traffic

def post(host: str, base: str, path: str, body: dict[str, Any], stream: bool = False) -> requests.Response:
    return requests.post(f"{base}{path}", json=body, headers={"Host": host}, timeout=TIMEOUT_S, stream=stream)


def events(response: requests.Response) -> list[dict[str, Any]]:
    """The JSON events of a server-sent event stream (`[DONE]` left out)."""
    return [json.loads(line[len("data:"):]) for line in response.iter_lines(decode_unicode=True)
            if line.startswith("data:") and line[len("data:"):].strip() != "[DONE]"]


def generate(base: str, host: str, prompt: str, *, stream: bool, max_tokens: int = 8) -> tuple[int, str, bool]:
    """Triton's generate or generate_stream: (status, text, an error inside the answer)."""
    path = "/v2/models/tensorrt_llm/generate_stream" if stream else "/v2/models/tensorrt_llm/generate"
    body = {"text_input": prompt, "sampling_param_max_tokens": max_tokens, "streaming": stream,
            "sampling_param_exclude_input_from_output": True}
    with post(host, base, path, body, stream=stream) as r:
        if not stream:
            answer = r.json()
            return r.status_code, str(answer.get("text_output", "")), "error" in answer
        got = events(r)
        return r.status_code, str(got[-1].get("text_output", "")) if got else "", any("error" in e for e in got)


def chat(base: str, host: str, content: str, *, stream: bool, **extra: Any) -> tuple[int, str, bool]:
    """OpenAI's chat completions over plain HTTP: (status, content, an error event inside the 200)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": stream, **extra}
    with post(host, base, "/v1/chat/completions", body, stream=stream) as r:
        if r.status_code != 200:
            return r.status_code, r.text, False
        if not stream:
            return 200, str(r.json()["choices"][0]["message"]["content"]), False
        got = events(r)
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in got if c.get("choices"))
        return 200, text, any("error" in c for c in got)


def completion(base: str, host: str, prompt: str, *, stream: bool) -> tuple[int, str, bool]:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 4, "stream": stream}
    with post(host, base, "/v1/completions", body, stream=stream) as r:
        if r.status_code != 200:
            return r.status_code, r.text, False
        if not stream:
            return 200, str(r.json()["choices"][0]["text"]), False
        got = events(r)
        return 200, "".join(c["choices"][0]["text"] for c in got if c.get("choices")), any("error" in c for c in got)


@dataclass
class SlowStream:
    """One streamed request to `base` (the gateway, or the pod's port) in a thread of its own: when its first text
    came, whether it ended, and how. It reads to the end (the stand-in's answer is bounded) unless `stop` is set
    first."""

    base: str
    host: str
    path: str
    body: dict[str, Any]
    first_text: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    status: int = 0
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        try:
            with post(self.host, self.base, self.path, self.body, stream=True) as r:
                self.status = r.status_code
                for line in r.iter_lines(decode_unicode=True):
                    if self.stop.is_set():
                        break
                    if not line.startswith("data:") or line.endswith("[DONE]"):
                        continue
                    event = json.loads(line[len("data:"):])
                    if "error" in event:
                        self.errors.append(str(event["error"]))
                    choice = (event.get("choices") or [{}])[0]
                    if event.get("text_output") or (choice.get("delta") or {}).get("reasoning_content") or \
                            (choice.get("delta") or {}).get("content"):
                        self.first_text.set()
        except (requests.RequestException, ValueError) as err:
            self.errors.append(f"{type(err).__name__}: {err}")
        finally:
            self.ended.set()
            self.first_text.set()  # never leave a waiter hanging


class Streams:
    """Slow streams opened at once, each in its own thread; all joined on exit."""

    def __init__(self, streams: list[SlowStream]) -> None:
        self.streams = streams
        self.threads = [threading.Thread(target=s.run, daemon=True) for s in streams]

    def __enter__(self) -> Streams:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        for s in self.streams:
            s.stop.set()
        for t in self.threads:
            t.join(timeout=TIMEOUT_S)

    def all_streaming(self) -> bool:
        return all(s.first_text.is_set() for s in self.streams)

    def any_ended(self) -> bool:
        return any(s.ended.is_set() for s in self.streams)

    def wait_ended(self) -> None:
        for s in self.streams:
            s.ended.wait(TIMEOUT_S)


# ------------------------------------------------------------------------------------------------ (a) counters

def test_generate_and_openai_traffic_through_the_gateway_move_the_pods_counters(testbed: TestbedClient,
                                                                              served: Served) -> None:
    """Each API through the gateway, a few times: the pod's requests, time to first token, inter-token latency
    and token counters move by exactly what was sent, and Prometheus scrapes the same numbers."""
    pod, base, n = served.slow, testbed.gateway, 3
    calls = {
        "generate": lambda i: generate(base, pod.host, f"count me {i}", stream=False),
        "generate_stream": lambda i: generate(base, pod.host, f"count me {i}", stream=True),
        "chat": lambda i: chat(base, pod.host, f"count me {i}", stream=i % 2 == 0),
        "completions": lambda i: completion(base, pod.host, f"count me {i}", stream=i % 2 == 0),
    }
    before = front_door(pod)
    with ThreadPoolExecutor(4) as pool:
        results = {api: list(pool.map(call, range(n))) for api, call in calls.items()}
    after = front_door(pod)
    for api, answers in results.items():
        assert [(status, error) for status, _, error in answers] == [(200, False)] * n, (api, answers)
        assert all(f"[{served.ns}/{pod.name}]" in text for _, text, _ in answers), (api, answers)
        labels = {"api": api, "mirrored": "false"}
        assert delta(before, after, "deepseek_frontend_requests_total", code="200", **labels) == n, api
        assert delta(before, after, "deepseek_frontend_request_failures_total", **labels) == 0, api
        assert delta(before, after, "deepseek_frontend_time_to_first_token_seconds_count", **labels) == n, api
        assert delta(before, after, "deepseek_frontend_request_duration_seconds_count", **labels) == n, api
        assert delta(before, after, "deepseek_frontend_prompt_tokens_total", **labels) >= n * 3, api
        assert delta(before, after, "deepseek_frontend_output_tokens_total", **labels) >= n, api
    # Streamed answers have gaps between their responses; a non-streamed generate has none.
    assert delta(before, after, "deepseek_frontend_inter_token_latency_seconds_count", api="generate_stream") > 0
    assert delta(before, after, "deepseek_frontend_inter_token_latency_seconds_count", api="chat") > 0
    assert delta(before, after, "deepseek_frontend_inter_token_latency_seconds_count", api="generate") == 0
    # Nothing left in flight or waiting once every answer is read.
    assert total(after, "deepseek_frontend_requests_in_flight") == 0
    assert total(after, "nv_trt_llm_request_metrics") == 0

    # Prometheus scrapes the pod's :8003: once a scrape after the traffic is in, its numbers are the pod's.
    selector = f'namespace="{served.ns}",pod="{pod.name}",mirrored="false",code="200"'
    for api in calls:
        want = total(after, "deepseek_frontend_requests_total", api=api, code="200", mirrored="false")
        eventually(f"Prometheus to have {api}'s count", lambda a=api, w=want: prom_value(
            testbed, f'sum(deepseek_frontend_requests_total{{{selector},api="{a}"}})') == w, timeout=60)


def test_in_flight_requests_follow_slow_streams_on_the_pod_and_in_the_autoscalers_signal(
        testbed: TestbedClient, served: Served) -> None:
    """Streams held open through the gateway (a token every TOKEN_INTERVAL_MS): while they answer, the pod's
    deepseek_frontend_requests_in_flight and the inference extension's `scheduled` gauge count exactly them, and
    the autoscaler's inFlightRequests query over Prometheus sees them; once they end, all of it is back to 0."""
    pod, base = served.slow, testbed.gateway
    query = in_flight_query(served.ns, SLOW)
    chats = [SlowStream(base, pod.host, "/v1/chat/completions",
                        {"model": MODEL, "messages": [{"role": "user", "content": LONG_PROMPT}], "stream": True})
             for _ in range(2)]
    raw = SlowStream(base, pod.host, "/v2/models/tensorrt_llm/generate_stream",
                     {"text_input": LONG_PROMPT, "streaming": True, "sampling_param_max_tokens": 1024,
                      "sampling_param_exclude_input_from_output": True})
    with Streams([*chats, raw]) as open_streams:
        # The pod's view, not the client's: this gateway hands a stream over only when it is whole (below).
        during = eventually("the pod to answer all three past their first token", lambda: (
            m if total(m := front_door(pod), "nv_trt_llm_request_metrics", request_type="scheduled") == 3
            or open_streams.any_ended() else None), timeout=60, interval=0.1)
        seen_by_prometheus: float | None = None
        deadline = time.monotonic() + 60  # Prometheus scrapes every 2 s; the streams last ~10 s
        while time.monotonic() < deadline and not open_streams.any_ended():
            seen_by_prometheus = prom_value(testbed, query)
            if seen_by_prometheus == 3:
                break
            time.sleep(0.5)
        still_open = not open_streams.any_ended()
        open_streams.wait_ended()
    outcomes = [(s.status, s.errors) for s in (*chats, raw)]
    assert outcomes == [(200, [])] * 3, outcomes
    assert still_open, "a stream ended before Prometheus saw it: the streams are too short for this machine"
    print(f"\nin flight while 3 streams answered: pod {total(during, 'deepseek_frontend_requests_in_flight'):.0f}, "
          f"autoscaler's query {seen_by_prometheus} ({query})")
    assert total(during, "deepseek_frontend_requests_in_flight", api="chat", mirrored="false") == 2
    assert total(during, "deepseek_frontend_requests_in_flight", api="generate_stream", mirrored="false") == 1
    assert total(during, "deepseek_frontend_requests_in_flight") == 3
    assert total(during, "nv_trt_llm_request_metrics", request_type="scheduled") == 3  # past their first token
    assert total(during, "nv_trt_llm_request_metrics", request_type="waiting") == 0
    assert total(during, "deepseek_frontend_requests_waiting_first_token") == 0
    assert seen_by_prometheus == 3
    after = eventually("the pod to count nothing in flight", lambda: (
        s if total(s := front_door(pod), "deepseek_frontend_requests_in_flight") == 0 else None), timeout=30)
    assert total(after, "nv_trt_llm_request_metrics") == 0
    eventually("the autoscaler's query to fall back to 0", lambda: prom_value(testbed, query) == 0, timeout=60)


def first_text_while(base: str, pod: Pod) -> float:
    """Opens a slow streamed chat at `base` and, at its first text, reads how many chats the pod is still
    answering; then leaves (the answer's rest is not read)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": LONG_PROMPT}], "stream": True}
    with post(pod.host, base, "/v1/chat/completions", body, stream=True) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data: {") and '"reasoning_content"' in line:
                return total(front_door(pod), "deepseek_frontend_requests_in_flight", api="chat")
    raise AssertionError("the stream ended without text")


@pytest.mark.xfail(strict=True, reason="the testbed's Traefik buffers whole responses (its `request-buffer` "
                   "Buffering middleware in testbed/cluster.py buffers the response body as well as the request's), "
                   "so a stream reaches the client only once the pod has finished it")
def test_a_stream_through_the_gateway_reaches_its_client_while_the_pod_still_answers(testbed: TestbedClient,
                                                                                   served: Served) -> None:
    """What a streaming client needs from the path: the first text arrives while the answer is still being
    generated (the pod still counts the chat in flight), not after the whole answer. Straight to the pod's
    Service port it does; through the gateway it must too."""
    pod = served.slow
    seen = {where: first_text_while(base, pod) for where, base in (
        ("straight to the pod", f"http://{pod.ip}:{HTTP_PORT}"), ("through the gateway", testbed.gateway))}
    print(f"\nchats the pod still answered when the client got its first text: {seen}")
    eventually("the pod to be done with both", lambda: total(
        front_door(pod), "deepseek_frontend_requests_in_flight") == 0, timeout=60)
    assert seen == {"straight to the pod": 1, "through the gateway": 1}


# ------------------------------------------------------------------------------------------------ (b) failures

def outcome(status: int, error_inside: bool) -> str:
    """How the pod must count what a client got: its status, and a failure reason or none."""
    if status >= 500:
        return "http_5xx"
    if status >= 400:  # Triton's 400 carrying the engine's "Error generating request: ..." is the engine's failure
        return "engine_error" if error_inside else "http_4xx"
    return "error_in_200" if error_inside else "success"


def test_every_injected_failure_is_counted_as_a_failure_never_a_success(testbed: TestbedClient,
                                                                       served: Served) -> None:
    """The faulty pod fails FAULT_RATE of its generations (the stand-in raises before the first token). Whatever
    form a failure reaches the client in (an error status, or an error inside a 200), the pod counts it as a
    failure of that reason and never as a success, its successes are exactly the clients' clean answers, and
    the gateway's status codes agree with the pod's."""
    pod, base = served.faulty, testbed.gateway
    calls = {
        "generate_stream": lambda i: generate(base, pod.host, f"fail me maybe {i}", stream=True),
        "generate": lambda i: generate(base, pod.host, f"fail me maybe {i}", stream=False),
        "chat": lambda i: chat(base, pod.host, f"fail me maybe {i}", stream=i % 2 == 0),
    }
    sizes = {"generate_stream": 16, "generate": 8, "chat": 8}
    before, gateway_before = front_door(pod), gateway_by_code(testbed, served.ns, FAULTY)
    with ThreadPoolExecutor(4) as pool:
        got = {api: list(pool.map(call, range(sizes[api]))) for api, call in calls.items()}
    sent = sum(sizes.values())

    def counted() -> tuple[list[Sample], Counter[str]] | None:
        gateway = gateway_by_code(testbed, served.ns, FAULTY)
        gateway.subtract(gateway_before)
        return (front_door(pod), +gateway) if sum(gateway.values()) >= sent else None

    after, gateway = eventually("the gateway to count every answer", counted, timeout=30)
    statuses: Counter[str] = Counter()
    print(f"\nerror-rate {FAULT_RATE}, what the clients got -> what the pod counted:")
    for api, answers in got.items():
        labels = {"api": api, "mirrored": "false"}
        seen = Counter(outcome(status, error) for status, _, error in answers)
        statuses.update(str(status) for status, _, _ in answers)
        pod_counts = {reason: delta(before, after, "deepseek_frontend_request_failures_total", reason=reason,
                                    **labels) for reason in ("http_4xx", "http_5xx", "error_in_200", "engine_error")}
        answered_200 = delta(before, after, "deepseek_frontend_requests_total", code="200", **labels)
        pod_counts["success"] = answered_200 - pod_counts["error_in_200"]
        print(f"  {api:<16} clients {dict(seen)}  pod {pod_counts}")
        assert pod_counts == {k: float(seen[k]) for k in ("http_4xx", "http_5xx", "error_in_200", "engine_error",
                                                          "success")}, api
        by_status = by_code(after, "deepseek_frontend_requests_total", **labels)
        by_status.subtract(by_code(before, "deepseek_frontend_requests_total", **labels))
        assert +by_status == Counter(str(status) for status, _, _ in answers), api
        # Only a clean answer has a first token: a failed one observes no time to first token.
        assert delta(before, after, "deepseek_frontend_time_to_first_token_seconds_count", **labels) == seen["success"]
    failures = sum(1 for answers in got.values() for status, _, error in answers if status != 200 or error)
    assert 0 < failures < sent, f"{failures} of {sent} failed at error-rate {FAULT_RATE}"
    print(f"  the gateway counted {dict(gateway)}: a failure inside a 200 is a 200 to it")
    assert gateway == statuses


# ------------------------------------------------------------------------------------------------ (c) vs Traefik

def test_the_pods_counts_agree_with_the_gateways_for_the_same_traffic(testbed: TestbedClient,
                                                                     served: Served) -> None:
    """A mixed batch through the gateway (every API, streamed and not, refusals and an unknown model): once every
    answer was read in full, the pod's deepseek_frontend_requests_total and Traefik's
    traefik_service_requests_total moved by the same count for each status code. Both count a request when its
    answer is complete, and every request of the batch completes, so the agreement is exact; a request cut by its
    client mid-answer would count 499 at both, but none is cut here."""
    pod, base = served.slow, testbed.gateway
    batch: list[Callable[[], int]] = [
        *(lambda i=i: generate(base, pod.host, f"agree {i}", stream=i % 2 == 0)[0] for i in range(4)),
        *(lambda i=i: chat(base, pod.host, f"agree {i}", stream=i % 2 == 0)[0] for i in range(4)),
        *(lambda i=i: completion(base, pod.host, f"agree {i}", stream=i % 2 == 0)[0] for i in range(2)),
        lambda: chat(base, pod.host, "agree", stream=False, tools=[{"type": "function",
                                                                    "function": {"name": "f"}}])[0],
        lambda: chat(base, pod.host, "agree", stream=True, logprobs=True)[0],
        lambda: post(pod.host, base, "/v1/chat/completions", {"model": "gpt-4o", "messages": []}).status_code,
        lambda: requests.get(f"{base}/v1/models", headers={"Host": pod.host}, timeout=TIMEOUT_S).status_code,
    ]
    pod_before, gateway_before = front_door(pod), gateway_by_code(testbed, served.ns, SLOW)
    with ThreadPoolExecutor(4) as pool:
        statuses = Counter(str(code) for code in pool.map(lambda call: call(), batch))
    assert statuses == {"200": 11, "400": 2, "404": 1}, statuses

    def both() -> tuple[Counter[str], Counter[str]] | None:
        pod_delta = by_code(front_door(pod), "deepseek_frontend_requests_total", mirrored="false")
        pod_delta.subtract(by_code(pod_before, "deepseek_frontend_requests_total", mirrored="false"))
        gateway = gateway_by_code(testbed, served.ns, SLOW)
        gateway.subtract(gateway_before)
        pod_delta, gateway = +pod_delta, +gateway  # the codes that moved
        return (pod_delta, gateway) if sum(gateway.values()) >= len(batch) else None

    pod_counts, gateway_counts = eventually("the gateway to count the whole batch", both, timeout=30)
    codes = sorted(set(pod_counts) | set(gateway_counts))
    print("\ncode   clients   pod   gateway   pod - gateway")
    for code in codes:
        print(f"{code:>4} {statuses[code]:>9.0f} {pod_counts[code]:>5.0f} {gateway_counts[code]:>9.0f} "
              f"{pod_counts[code] - gateway_counts[code]:>15.0f}")
    assert pod_counts == gateway_counts == statuses


# ------------------------------------------------------------------------------------------------ (d) openai

@pytest.fixture
def client(testbed: TestbedClient, served: Served) -> Iterator[openai.OpenAI]:
    """The official client, unmodified, pointed at the gateway with the slow pod's hostname."""
    with openai.OpenAI(base_url=f"{testbed.gateway}/v1", api_key="unused-by-the-front-door", max_retries=0,
                       timeout=TIMEOUT_S, default_headers={"Host": served.slow.host}) as c:
        yield c


def test_the_official_openai_client_chats_and_completes_through_the_gateway(client: openai.OpenAI,
                                                                            served: Served) -> None:
    pod = served.slow
    identity = f"[{served.ns}/{pod.name}]"
    assert [m.id for m in client.models.list()] == [MODEL]

    before = front_door(pod)
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "what is served here"}])
    after = front_door(pod)
    message = answer.choices[0].message
    assert message.content == f"{identity} here served is what" and answer.choices[0].finish_reason == "stop"
    assert getattr(message, "reasoning_content", None) == "The user wrote 4 words.\n"  # R1's thought, apart
    assert answer.object == "chat.completion" and answer.model == MODEL and answer.id.startswith("chatcmpl-")
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 4 and usage.completion_tokens > 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # The usage the client got is what the pod counted for that request.
    assert delta(before, after, "deepseek_frontend_prompt_tokens_total", api="chat") == usage.prompt_tokens
    assert delta(before, after, "deepseek_frontend_output_tokens_total", api="chat") == usage.completion_tokens

    chunks = list(client.chat.completions.create(model=MODEL, stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "what is served here"}]))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # the usage chunk, apart, last
    assert all(c.usage is None for c in chunks[:-1]) and all(c.object == "chat.completion.chunk" for c in chunks)
    deltas = [c.choices[0].delta for c in chunks[:-1]]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == message.content
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "The user wrote 4 words.\n"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.model_dump() == usage.model_dump()  # the same answer, the same usage

    plain = list(client.chat.completions.create(model=MODEL, stream=True, max_tokens=3,
                                                messages=[{"role": "user", "content": "what is served here"}]))
    assert all(c.usage is None and c.choices for c in plain)  # no include_usage: no usage chunk
    assert plain[-1].choices[0].finish_reason == "length"

    completion = client.completions.create(model=MODEL, prompt="one two three", max_tokens=2)
    assert completion.choices[0].text == f"{identity} three" and completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    streamed = list(client.completions.create(model=MODEL, prompt="one two three", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == f"{identity} three two one"
    assert streamed[-1].choices[0].finish_reason == "stop"
    with_usage = list(client.completions.create(model=MODEL, prompt="one two three", max_tokens=2, stream=True,
                                                stream_options={"include_usage": True}))
    assert with_usage[-1].usage is not None and with_usage[-1].usage.model_dump() == completion.usage.model_dump()


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "lookup"}}]}, "tools"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"n": 2}, "n"),
    ({"extra_body": {"no_such_field": 1}}, "no_such_field"),
])
def test_the_official_openai_client_gets_each_unsupported_field_refused_by_name(
        client: openai.OpenAI, served: Served, kwargs: dict[str, Any], param: str) -> None:
    before = front_door(served.slow)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], **kwargs)
    assert caught.value.status_code == 400 and caught.value.param == param, caught.value
    after = front_door(served.slow)
    assert delta(before, after, "deepseek_frontend_requests_total", api="chat", code="400") == 1
    assert delta(before, after, "deepseek_frontend_request_failures_total", api="chat", reason="http_4xx") == 1
    assert delta(before, after, "deepseek_frontend_prompt_tokens_total", api="chat") == 0  # refused before it


def test_the_official_openai_client_gets_a_prompt_beyond_the_context_window_refused(client: openai.OpenAI,
                                                                                   served: Served) -> None:
    """canary_cr's runtime.maxSeqLen is 2048 tokens: a longer prompt, or an answer that cannot fit after it, is
    refused with OpenAI's context_length_exceeded before it reaches the engine."""
    words = " ".join(f"w{n}" for n in range(2100))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": words}])
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "messages")
    assert "maximum context length is 2048 tokens" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt=words, stream=True)
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "prompt")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4000)
    assert caught.value.code == "context_length_exceeded" and "4000 in the completion" in str(caught.value)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.param == "model"


# ------------------------------------------------------------------------------------------------ cut streams

def test_a_stream_its_client_leaves_is_counted_499_not_as_a_failure(served: Served) -> None:
    """A client that goes away mid-answer (straight to the pod: the testbed's gateway reads every answer whole
    before it hands it on, so behind it the pod never sees the client leave): the pod counts it 499 and no
    failure, and nothing stays in flight."""
    pod = served.slow
    before = front_door(pod)
    stream = SlowStream(f"http://{pod.ip}:{HTTP_PORT}", pod.host, "/v1/chat/completions",
                        {"model": MODEL, "messages": [{"role": "user", "content": LONG_PROMPT}], "stream": True})
    with Streams([stream]) as one:
        eventually("the stream's first text", one.all_streaming, timeout=60, interval=0.1)
        stream.stop.set()  # the next line read leaves: the connection is closed mid-answer
        one.wait_ended()
    after = eventually("the pod to count the request", lambda: (
        s if delta(before, s := front_door(pod), "deepseek_frontend_requests_total", api="chat") == 1 else None),
        timeout=60)
    assert delta(before, after, "deepseek_frontend_requests_total", api="chat", code="499") == 1
    assert delta(before, after, "deepseek_frontend_request_failures_total", api="chat") == 0
    assert total(after, "deepseek_frontend_requests_in_flight") == 0


def test_a_stream_cut_by_the_engine_dying_mid_answer_is_a_failure_inside_the_200(testbed: TestbedClient,
                                                                                served: Served) -> None:
    """The stand-in fails only before its first token; a failure after it, inside the 200, comes here from the engine
    dying mid-answer: tritonserver SIGKILLed while a generate_stream and a streamed chat are answering (straight
    to the pod: the testbed's gateway would hold both answers until they end). The generate_stream client sees
    its body cut, the chat client OpenAI's error event, and the pod counts both as error_in_200, not as
    successes. The kubelet restarts the container; the test waits for the pod to serve again."""
    pod, direct = served.slow, f"http://{served.slow.ip}:{HTTP_PORT}"
    raw = SlowStream(direct, pod.host, "/v2/models/tensorrt_llm/generate_stream",
                     {"text_input": LONG_PROMPT, "streaming": True, "sampling_param_max_tokens": 1024,
                      "sampling_param_exclude_input_from_output": True})
    chat_stream = SlowStream(direct, pod.host, "/v1/chat/completions",
                             {"model": MODEL, "messages": [{"role": "user", "content": LONG_PROMPT}],
                              "stream": True})
    before = front_door(pod)
    with Streams([raw, chat_stream]) as open_streams:
        eventually("both streams' first text", open_streams.all_streaming, timeout=60, interval=0.1)
        assert not open_streams.any_ended()
        server = podrunner.container_pid1(pod.uid, "triton")
        assert server is not None
        os.kill(server, signal.SIGKILL)
        open_streams.wait_ended()
    after = eventually("the pod to count both", lambda: (
        m if total(m := front_door(pod), "deepseek_frontend_requests_in_flight") == 0 else None), timeout=60)
    print(f"\nengine killed mid-answer: generate_stream client got {raw.errors}, chat client {chat_stream.errors}")
    assert raw.status == 200 and raw.errors and "Error" in raw.errors[0]  # the body cut (ChunkedEncodingError)
    assert chat_stream.status == 200 and chat_stream.errors  # OpenAI's error event ends the 200 stream
    for api in ("generate_stream", "chat"):
        labels = {"api": api, "mirrored": "false"}
        assert delta(before, after, "deepseek_frontend_requests_total", code="200", **labels) == 1, api
        assert delta(before, after, "deepseek_frontend_request_failures_total", reason="error_in_200",
                     **labels) == 1, api
    eventually("the pod to serve again", lambda: generate(
        direct, pod.host, "back again", stream=False)[0] == 200, timeout=180)
