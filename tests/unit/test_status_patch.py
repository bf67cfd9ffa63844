"""The status write sends the merge patch that makes the stored status equal to the planned one."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek_operator.k8s.client import merge_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


CASES = [
    # A nested key that is gone (a Running preflight has no figures yet; an analysis without p99).
    ({"preflight": {"state": "Failed", "backend": "gloo", "busBandwidthGBps": 0.6}, "phase": "Degraded"},
     {"preflight": {"state": "Running"}, "phase": "Progressing"}),
    ({"analysis": {"p99LatencySeconds": 0.2, "counters": {"a": 1.0}}}, {"analysis": {"counters": {"b": 2.0}}}),
    ({"history": [{"revision": "a"}, {"revision": "b"}]}, {"history": [{"revision": "b"}]}),
    ({"preflight": {"state": "Passed"}}, {}),
    ({}, {"preflight": {"state": "Running", "nodes": 2}}),
]


@pytest.mark.parametrize(("old", "new"), CASES, ids=["nested key gone", "deeper", "list", "object gone", "new"])
def test_patch_turns_old_status_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply_merge_patch(old, merge_patch(old, new)) == new


def test_patch_names_only_what_changed() -> None:
    old = {"phase": "Healthy", "quantization": {"key": "k", "state": "Complete"}, "replicas": 2}
    assert merge_patch(old, {**old, "replicas": 3}) == {"replicas": 3}
    assert merge_patch(old, old) == {}
