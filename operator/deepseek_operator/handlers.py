"""kopf registrations only: each handler hands over to k8s/ and the pure planners."""

from __future__ import annotations

from typing import Any

import kopf

from deepseek_operator import __version__


def load() -> None:
    """Importing this module registers the handlers; the function makes that explicit at start-up."""


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: Any, **_: Any) -> None:
    # Server-side apply uses one field manager; kopf's own annotations stay out of our children.
    settings.persistence.finalizer = "serving.deepseek.ai/finalizer"
    settings.posting.level = 20  # INFO and up become Kubernetes events
    logger.info("deepseek-operator %s starting", __version__)
