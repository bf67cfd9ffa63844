"""What Kubernetes reports of the Jobs the operator runs, read: how a Job ended, and what a container wrote to
its termination message (the preflight's verdict, the downloader's outcome). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def termination_message(pod: Mapping[str, Any], container: str | None = None) -> str:
    """What the pod's terminated container (the one named, or the first that has one) wrote to its
    termination message; "" when none has."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        text = ((cs.get("state") or {}).get("terminated") or {}).get("message")
        if text and container in (None, cs.get("name")):
            return str(text)
    return ""


def finished_condition(job: Mapping[str, Any]) -> dict[str, Any] | None:
    """The condition that ended a Job (Complete or Failed, status True), or None while it runs."""
    return next((dict(c) for c in (job.get("status") or {}).get("conditions") or []
                 if c.get("status") == "True" and c.get("type") in ("Complete", "Failed")), None)
