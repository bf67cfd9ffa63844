"""Times as status holds them (RFC 3339) and as the rollout machine counts them (seconds). Pure."""

from __future__ import annotations

import datetime as dt


def epoch(text: str) -> float:
    """RFC 3339 (as status holds it) to seconds; the empty string is the epoch."""
    if not text:
        return 0.0
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rfc3339(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
