"""What a refused child or a failed pass does to the status: Degraded with the reason and the API server's words,
an event only when the message is news, and a retry that backs off the longer the trouble lasts."""

from __future__ import annotations

from deepseek_operator.plan.status import rejected_children_message, retry_after, with_trouble

T0, T1, T2 = "2026-12-01T10:00:00Z", "2026-12-01T10:00:40Z", "2026-12-01T11:00:00Z"
HEALTHY = {"phase": "Healthy", "conditions": [
    {"type": "Ready", "status": "True", "observedGeneration": 1, "lastTransitionTime": T0, "reason": "ReplicasReady",
     "message": ""},
    {"type": "Degraded", "status": "False", "observedGeneration": 1, "lastTransitionTime": T0,
     "reason": "AsExpected", "message": ""}]}


def test_a_refused_child_degrades_the_resource_and_is_said_once() -> None:
    message = rejected_children_message([("Deployment r1-abc", 'admission policy "no-team-x" denied it')])
    assert message == 'the API server refused Deployment r1-abc: admission policy "no-team-x" denied it'
    status, event = with_trouble(HEALTHY, HEALTHY, "ChildRejected", message, 2, T1)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (status["phase"], degraded["status"], degraded["reason"]) == ("Degraded", "True", "ChildRejected")
    assert degraded["message"] == message and degraded["lastTransitionTime"] == T1
    assert degraded["observedGeneration"] == 2
    assert event is not None and (event.type, event.reason) == ("Warning", "ChildRejected")
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"  # the rest is kept
    again, repeated = with_trouble(HEALTHY, status, "ChildRejected", message, 2, T2)
    assert repeated is None  # the same error is not said again on every retry
    assert next(c for c in again["conditions"] if c["type"] == "Degraded")["lastTransitionTime"] == T1
    _, other = with_trouble(HEALTHY, status, "ChildRejected", message + " (another)", 2, T2)
    assert other is not None


def test_retries_back_off_with_how_long_the_trouble_has_lasted() -> None:
    assert retry_after(HEALTHY, "ChildRejected", T1) == 10
    started, _ = with_trouble(HEALTHY, HEALTHY, "ChildRejected", "x", 1, T0)
    assert retry_after(started, "ChildRejected", T0) == 10
    assert retry_after(started, "ChildRejected", T1) == 40
    assert retry_after(started, "ChildRejected", T2) == 300
    assert retry_after(started, "ReconcileError", T2) == 10  # another trouble starts over
