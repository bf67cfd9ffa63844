"""What every part of the DeepSeekDeployment spec is built from: the API's names, the shared patterns and
defaults, and `Schema`, the models' base, with its `Rule`s (a CEL rule and its Python twin, one message)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    model_validator,
)
from pydantic.alias_generators import to_camel

from deepseek_operator.api import images
from deepseek_operator.api import names as k8s

GROUP = "serving.deepseek.ai"
VERSION = "v1alpha1"
KIND = "DeepSeekDeployment"
PLURAL = "deepseekdeployments"
SINGULAR = "deepseekdeployment"
SHORT_NAMES = ["dsd"]

DEFAULT_MODEL_CACHE_PVC = "deepseek-model-cache"
# NVIDIA's 26.07 Triton + TensorRT-LLM 1.2.1 image with what its `llmapi` model needs to load (Dockerfile target
# `tritonserver`).
DEFAULT_IMAGE = images.TRITON_IMAGE
# The operator image built with the `preflight` extra (Dockerfile target `preflight`): PyTorch and NCCL.
DEFAULT_PREFLIGHT_IMAGE = images.PREFLIGHT_IMAGE
# The weights downloader (Dockerfile target `downloader`): huggingface_hub and boto3, nothing of the operator's.
DEFAULT_DOWNLOADER_IMAGE = images.DOWNLOADER_IMAGE
# The serving pod's front door (Dockerfile target `frontend`): the OpenAI API and Triton's HTTP API, counted.
DEFAULT_FRONTEND_IMAGE = images.FRONTEND_IMAGE
# The catalog keys of render/catalog.py; the CRD enumerates them so `kubectl apply` rejects a typo.
MODEL_NAMES = (
    "deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b", "deepseek-r1-distill-llama-8b", "deepseek-r1-distill-llama-70b",
    "deepseek-r1", "custom",
)
GPU_TYPES = ("A10-24GB", "L4-24GB", "L40S-48GB", "A100-40GB", "A100-80GB", "H100-80GB", "H100-PCIe-80GB",
             "H100-NVL-94GB", "H200-141GB", "H20-96GB", "B200-180GB", "B300-288GB", "GB200-186GB",
             "RTX-PRO-6000-96GB")

K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# An image reference as the container runtime parses it (distribution/reference's grammar: [domain[:port]/]path
# of lowercase components, :tag, @digest). A reference outside it (an upper-case path, an empty tag) passes the
# API server and then fails on the node with InvalidImageName.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = (rf"^(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
         r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
         r":[0-9a-fA-F]{32,})?$")
NO_SPACE_PATH = r"^/[^\s]*$"
# Map-valued fields are bounded so that the API server can price their CEL rules.
MAX_MAP_ENTRIES = 64

DURATION = r"^([0-9]+(s|m|h))+$"


def duration_seconds(text: str) -> int:
    """`90s`, `5m`, `1h30m` as seconds (the format the CRD's pattern admits)."""
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)([smh])", text))


@dataclass(frozen=True)
class Rule:
    """A rule across fields, declared once: the CEL rule the API server checks at `kubectl apply`, the same
    check in Python for every object the operator parses (one written before the rule existed, or a revision's
    spec from history), and one message for both."""

    cel: str
    message: str
    holds: Callable[[Any], bool]
    field_path: str | None = None  # where the API server reports it (`.podLabels`), when it is one field's


def map_keys(field: str, attr: str, cel_check: str, check: Callable[[str], bool], what: str) -> Rule:
    """Every key of the map `field` (wire name; `attr` in Python; it may be unset) passes one of Kubernetes'
    checks (api/names.py)."""
    return Rule(f"!has(self.{field}) || self.{field}.all(k, {k8s.cel(cel_check, 'k')})",
                f"{field}: every key must be {what}", lambda o: all(check(k) for k in getattr(o, attr) or {}),
                f".{field}")


def map_values(field: str, attr: str, cel_check: str, check: Callable[[str], bool], what: str) -> Rule:
    return Rule(f"!has(self.{field}) || self.{field}.all(k, {k8s.cel(cel_check, f'self.{field}[k]')})",
                f"{field}: every value must be {what}",
                lambda o: all(check(v) for v in (getattr(o, attr) or {}).values()), f".{field}")


LABEL_KEY = "a label key: [prefix/]name, name of at most 63 of [A-Za-z0-9-_.] starting and ending alphanumeric"
LABEL_VALUE = "a label value: at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric"
QUANTITY = "a quantity, e.g. 500m, 2, 16Gi"


def exactly_one(names: tuple[str, ...], message: str) -> Rule:
    """Exactly one of the fields named (as on the wire) is set."""
    has = ", ".join(f"has(self.{n})" for n in names)

    def holds(obj: BaseModel) -> bool:
        attribute = {field.alias or name: name for name, field in type(obj).model_fields.items()}
        return sum(getattr(obj, attribute[n]) is not None for n in names) == 1

    return Rule(f"[{has}].filter(x, x).size() == 1", message, holds)


def _with_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    if rules := getattr(cls, "rules", ()):
        schema["x-kubernetes-validations"] = [
            {"rule": r.cel, "message": r.message, **({"fieldPath": r.field_path} if r.field_path else {})}
            for r in rules]


def positive_duration(cel_field: str, attr: str, message: str, also: str = "") -> Rule:
    """A duration field (DURATION's format) longer than 0s; `also` is a CEL value that passes as it is."""
    passes = f"self.{cel_field} == '{also}' || " if also else ""
    return Rule(f"!has(self.{cel_field}) || {passes}duration(self.{cel_field}) > duration('0s')", message,
                lambda o: getattr(o, attr) is None or getattr(o, attr) == also
                or duration_seconds(getattr(o, attr)) > 0, f".{cel_field}")


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              use_enum_values=False, frozen=True, json_schema_extra=_with_rules)
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _rules_hold(self) -> Self:
        for rule in type(self).rules:
            if not rule.holds(self):
                raise ValueError(rule.message)
        return self
