"""The kopf registrations: the operator has only event and index handlers, which is what lets it skip kopf's
per-event copy of every body (handlers.NoDiffBase)."""

from __future__ import annotations

import kopf

from deepseek_operator import handlers
from deepseek_operator.k8s import kinds


def test_no_handler_needs_kopf_to_track_what_changed() -> None:
    registry = kopf.get_default_registry()
    assert registry._changing.get_all_handlers() == []  # no on.create / on.update / on.resume / on.delete
    assert registry._spawning.get_all_handlers() == []  # no timers or daemons
    assert len(registry._watching.get_all_handlers()) >= len(kinds.OWNED) + 1


def test_kopf_watches_exactly_what_the_charts_rules_let_the_operator_list_and_watch() -> None:
    registry = kopf.get_default_registry()
    watches = {(h.selector.group, h.selector.version, h.selector.any_name)
               for h in [*registry._indexing.get_all_handlers(), *registry._watching.get_all_handlers()]}
    listable = {(r.group, r.version, r.plural) for r in kinds.RESOURCES if {"list", "watch"} <= set(r.verbs)}
    assert watches - listable == set(), "watched without the rights to: add them to deepseek_operator/k8s/kinds.py"
    assert listable - watches == set(), "the right to list and watch what the operator never watches"


def test_the_diff_base_keeps_nothing() -> None:
    body = kopf.Body({"metadata": {"name": "r1", "annotations": {"a": "b"}}, "spec": {"x": 1}})
    storage = handlers.NoDiffBase()
    assert storage.build(body=body) == {} == storage.fetch(body=body)


def test_the_events_index_keeps_only_the_kubelets_warnings_about_pods() -> None:
    def event(type_: str, reason: str, kind: str = "Pod") -> kopf.Body:
        return kopf.Body({"metadata": {"name": "r1-0.17", "namespace": "llm"}, "type": type_, "reason": reason,
                          "message": "m", "lastTimestamp": "2026-12-01T00:00:00Z",
                          "involvedObject": {"kind": kind, "name": "r1-0", "uid": "u-1"}})

    assert handlers._pod_warning(body=event("Warning", "FailedMount"))
    assert handlers._pod_warning(body=event("Warning", "FailedToRetrieveImagePullSecret"))
    assert not handlers._pod_warning(body=event("Normal", "Pulled"))
    assert not handlers._pod_warning(body=event("Warning", "BackOff"))  # a crash loop: in the pod's own status
    assert not handlers._pod_warning(body=event("Warning", "FailedMount", kind="DeepSeekDeployment"))
    indexed = handlers.pod_warnings(body=event("Warning", "FailedMount"), namespace="llm")
    assert indexed == {("llm", "r1-0"): {"uid": "u-1", "reason": "FailedMount", "message": "m", "count": 1,
                                         "last": "2026-12-01T00:00:00Z"}}
