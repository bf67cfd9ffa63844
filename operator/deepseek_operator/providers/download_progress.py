"""The download Job's progress endpoint (deepseek_operator.download serves it on the pod's IP)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

TIMEOUT_S = 2.0


def read(pod_ip: str, port: int) -> dict[str, Any] | None:
    """What the downloader reports (bytesDone, bytesTotal, bytesPerSecond, file), or None when it does not
    answer: the pod is starting or has just ended, and the next pass looks again."""
    try:
        with urllib.request.urlopen(f"http://{pod_ip}:{port}/progress", timeout=TIMEOUT_S) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None
