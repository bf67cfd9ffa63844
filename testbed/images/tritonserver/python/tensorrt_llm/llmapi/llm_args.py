"""Stand-in for `tensorrt_llm/llmapi/llm_args.py`: TensorRT-LLM's argument classes, rebuilt as pydantic models
from llm_args.json (every class, field, default, constraint, alias, Literal and enum of the upstream file, read
by `python -m testbed.llm_args`; the version it was read at is in the JSON: the "1.2-era" stored version, id
7019226376 of the file index, release/1.2 content). Validation is pydantic's own, so a refused argument gives the
message upstream gives, e.g. for `moe_config: {backend: NOPE}`:

    1 validation error for MoeConfig
    backend
      Input should be 'AUTO', 'CUTLASS', 'CUTEDSL', 'WIDEEP', 'TRTLLM', 'DEEPGEMM', 'VANILLA' or 'TRITON' [...]

Classes the file imports from elsewhere (QuantConfig, BuildConfig, LoraConfig, CpType, ...) are not checked (any
value passes). Of the validators (not data, so not in the JSON) the ones that decide what LLM() refuses on a
testbed are written out below, each with its upstream text: dtype (it asks the GPU: no GPU, no LLM), gpus_per_node
(defaults to the GPUs this process sees), TorchLlmArgs.load_format and the speculative decoding types the PyTorch
backend refuses.

This module imports nothing of the package (tests/unit/test_recipes.py loads the package's __init__ by file path
for the argument check alone, and it loads this file the same way).
"""

from __future__ import annotations

import builtins
import enum
import json
import typing
from pathlib import Path
from typing import Any

import pydantic
from pydantic import AliasChoices, BaseModel, ConfigDict, field_validator, model_validator

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "llm_args.json").read_text(encoding="utf-8"))
CLASSES: dict[str, dict[str, Any]] = SCHEMA["classes"]
ROOT = SCHEMA["root"]


class StrictBaseModel(BaseModel):
    """tensorrt_llm/llmapi/utils.py StrictBaseModel: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())


# ------------------------------------------------------------------------------------------------ validators
# Written out from the 1.2-era llm_args.py (id 7019226376); the schema carries data only.


def _device_count() -> int:
    import testbed_gpus  # the image's GPUs (the stand-ins' helper module)

    return testbed_gpus.device_count()


def _validate_dtype(cls: type, v: Any) -> Any:
    # BaseLlmArgs.validate_dtype: `if torch.cuda.get_device_properties(0).major < 8:` -- with no GPU visible, torch's
    # lazy CUDA init raises first (the testbed's GPUs stand for SM >= 80 parts).
    if _device_count() == 0:
        raise RuntimeError("No CUDA GPUs are available")
    return v


def _validate_gpus_per_node(cls: type, v: Any, info: pydantic.ValidationInfo) -> Any:
    # BaseLlmArgs.validate_gpus_per_node (mode="before", validate_default=True).
    import os

    if os.getenv("RAY_LOCAL_WORLD_SIZE") is not None:
        return info.data.get("tensor_parallel_size")
    if v is None:
        v = _device_count()
        print(f"[TRT-LLM] [W] Using default gpus_per_node: {v}", flush=True)
    return v


def _convert_load_format(cls: type, v: Any) -> Any:
    # TorchLlmArgs.convert_load_format (mode="before").
    load_format_enum = _NAMESPACE["LoadFormat"]
    if isinstance(v, load_format_enum):
        return v
    load_format = v.upper()
    if load_format not in load_format_enum.__members__:
        raise ValueError(f"Invalid LoadFormat: {v}")
    return load_format_enum[load_format]


def _validate_speculative_config(self: Any) -> Any:
    # TorchLlmArgs.validate_speculative_config: supports_backend() is False on "pytorch" for Medusa and Lookahead.
    spec = self.speculative_config
    if spec is not None and type(spec).__name__ in ("MedusaDecodingConfig", "LookaheadDecodingConfig"):
        raise ValueError(f"Speculation type {spec.decoding_type} does not support backend {self.backend}")
    return self


def _validators(name: str, gpu: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name == "BaseLlmArgs" and gpu:
        out["validate_dtype"] = field_validator("dtype")(_validate_dtype)
        out["validate_gpus_per_node"] = field_validator("gpus_per_node", mode="before")(_validate_gpus_per_node)
    if name == "TorchLlmArgs":
        out["convert_load_format"] = field_validator("load_format", mode="before")(_convert_load_format)
        out["validate_speculative_config"] = model_validator(mode="after")(_validate_speculative_config)
    return out


# ------------------------------------------------------------------------------------------------ the models

_TYPING = {name: getattr(typing, name) for name in ("Annotated", "Any", "Dict", "List", "Literal", "Optional", "Set",
                                                    "Tuple", "Type", "Union")}
_PYDANTIC = {"Field": pydantic.Field, "PydanticField": pydantic.Field, "AliasChoices": AliasChoices,
             "NonNegativeInt": pydantic.NonNegativeInt, "NonNegativeFloat": pydantic.NonNegativeFloat,
             "PositiveInt": pydantic.PositiveInt, "StrictInt": pydantic.StrictInt, "Path": Path}


class _Namespace(dict):  # type: ignore[type-arg]
    """Names an annotation may use: typing's and pydantic's, the file's classes, enums and aliases (built on first
    use), builtins; anything else the file imports from elsewhere is `Any`."""

    gpu = True

    def __missing__(self, name: str) -> Any:
        if name in CLASSES and CLASSES[name]["kind"] in ("model", "enum"):
            value = _build(name)
        elif name in SCHEMA["aliases"]:
            value = eval(SCHEMA["aliases"][name], {"__builtins__": builtins}, self)
        elif hasattr(builtins, name):
            return getattr(builtins, name)
        else:
            return Any
        self[name] = value
        return value


_NAMESPACE = _Namespace(_TYPING | _PYDANTIC)


def _build(name: str) -> Any:
    cls = CLASSES[name]
    if cls["kind"] == "enum":
        members = [tuple(m) for m in cls["members"]]
        return enum.Enum(name, members, type=str) if "StrEnum" in cls["bases"] else enum.Enum(name, members)
    base = next((_NAMESPACE[b] for b in cls["bases"] if b in CLASSES and CLASSES[b]["kind"] == "model"),
                StrictBaseModel)
    fields: dict[str, Any] = {}
    for field_name, field in cls["fields"].items():
        annotation = eval(field["annotation"], {"__builtins__": builtins}, _NAMESPACE)
        kwargs: dict[str, Any] = dict(field.get("constraints", {}))
        if field.get("aliases"):
            kwargs["validation_alias"] = AliasChoices(*field["aliases"])
        if name == "BaseLlmArgs" and field_name == "gpus_per_node":
            kwargs["validate_default"] = True  # upstream's Field(..., validate_default=True): the validator fills it
        if "factory" in field:
            kwargs["default_factory"] = eval(field["factory"], {"__builtins__": builtins}, _NAMESPACE)
            fields[field_name] = (annotation, pydantic.Field(**kwargs))
            continue
        default: Any = ...
        if not field.get("required"):
            try:
                default = eval(field["default"], {"__builtins__": builtins}, _NAMESPACE)
            except Exception:  # a default computed by a binding (LookaheadDecodingConfig): not checked here
                default = None
        fields[field_name] = (annotation, pydantic.Field(default, **kwargs))
    return pydantic.create_model(name, __base__=base, __validators__=_validators(name, _NAMESPACE.gpu), **fields)


def model(name: str) -> type[BaseModel]:
    """The pydantic model of an upstream class (TorchLlmArgs, MoeConfig, KvCacheConfig, ...)."""
    if CLASSES.get(name, {}).get("kind") != "model":
        raise KeyError(f"{name} is not an argument class of tensorrt_llm/llmapi/llm_args.py")
    return typing.cast(type[BaseModel], _NAMESPACE[name])


def without_gpu_validators() -> None:
    """For a checker with no image around it (tests/unit/test_recipes.py): build the models without the validators
    that ask the GPUs. Call before the first model() call."""
    _NAMESPACE.gpu = False


def __getattr__(name: str) -> Any:  # `from tensorrt_llm.llmapi.llm_args import TorchLlmArgs, MoeConfig, ...`
    if name in CLASSES and CLASSES[name]["kind"] in ("model", "enum"):
        return _NAMESPACE[name]
    raise AttributeError(name)


# ------------------------------------------------------------------------------------------------ key check


def _fields(name: str) -> dict[str, dict[str, Any]]:
    cls = CLASSES[name]
    out: dict[str, dict[str, Any]] = {}
    for base in cls["bases"]:
        if base in CLASSES:
            out |= _fields(base)
    return out | cls["fields"]


def _classes_in(annotation: str, seen: frozenset[str] = frozenset()) -> list[str]:
    """The classes an annotation names, through the module's type aliases."""
    import re

    found = []
    for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", annotation):
        if name in CLASSES and CLASSES[name]["kind"] == "model":
            found.append(name)
        elif name in SCHEMA["aliases"] and name not in seen:
            found += _classes_in(SCHEMA["aliases"][name], seen | {name})
    return found


def unknown_arguments(args: dict[str, Any], root: str | None = None, prefix: str = "") -> list[str]:
    """Dotted paths of the keys in `args` that the argument classes do not define, [] when all are known (keys
    only: values are pydantic's business, see model())."""
    fields = _fields(root or ROOT)
    known = set(fields) | {a for f in fields.values() for a in f.get("aliases", [])}
    unknown = []
    for key, value in args.items():
        path = f"{prefix}{key}"
        if key not in known:
            unknown.append(path)
            continue
        if not isinstance(value, dict) or key not in fields:
            continue
        classes = _classes_in(fields[key]["annotation"])
        kind = value.get("decoding_type")  # a discriminated union (speculative_config): the member it names
        if kind is not None:
            classes = [c for c in classes if f"'{kind}'" in _fields(c).get("decoding_type", {}).get("annotation", "")]
        if classes:  # else a free-form mapping (dict[str, ...])
            unknown += min((unknown_arguments(value, c, f"{path}.") for c in classes), key=len)
    return unknown
