"""The kopf registrations: the operator has only event and index handlers, which is what lets it skip kopf's
per-event copy of every body (handlers.NoDiffBase)."""

from __future__ import annotations

import kopf

from deepseek_operator import handlers


def test_no_handler_needs_kopf_to_track_what_changed() -> None:
    registry = kopf.get_default_registry()
    assert registry._changing.get_all_handlers() == []  # no on.create / on.update / on.resume / on.delete
    assert registry._spawning.get_all_handlers() == []  # no timers or daemons
    assert len(registry._watching.get_all_handlers()) >= len(handlers.OWNED) + 1


def test_the_diff_base_keeps_nothing() -> None:
    body = kopf.Body({"metadata": {"name": "r1", "annotations": {"a": "b"}}, "spec": {"x": 1}})
    storage = handlers.NoDiffBase()
    assert storage.build(body=body) == {} == storage.fetch(body=body)
