"""Kubernetes' checks of names, label keys and values, quantities and RE2 patterns, in Python (api/names.py),
and that every spec the API server refuses (tests/bad_specs.py) the operator's own parse refuses too."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from deepseek_operator.api import names
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from tests.bad_specs import REJECTED


@pytest.mark.parametrize(("value", "valid"), [
    ("team", True), ("app.kubernetes.io/name", True), ("example.com/a_b.c-d", True), ("a" * 63, True),
    ("team name", False), ("-team", False), ("a" * 64, False), ("Example.com/x", False), ("/x", False),
    ("a/b/c", False), ("", False),
])
def test_qualified_names(value: str, valid: bool) -> None:
    assert names.is_qualified_name(value) is valid


@pytest.mark.parametrize(("value", "valid"), [("", True), ("ml", True), ("v1.2_x-y", True), ("a b", False),
                                              ("x" * 64, False), ("-x", False)])
def test_label_values(value: str, valid: bool) -> None:
    assert names.is_label_value(value) is valid


@pytest.mark.parametrize(("value", "valid"), [("500m", True), ("2", True), ("16Gi", True), ("1.5Gi", True),
                                              ("1e3", True), (".5", True), ("lots", False), ("1.5.5Gi", False),
                                              ("16GB", False), ("", False)])
def test_quantities(value: str, valid: bool) -> None:
    assert names.is_quantity(value) is valid


@pytest.mark.parametrize(("pattern", "problem"), [("^b$", None), ("(b", "error parsing regexp"),
                                                  ("(?=b)", "unsupported Perl syntax"), (r"(a)\1", "unsupported"),
                                                  ("a++", "unsupported")])
def test_re2_problems(pattern: str, problem: str | None) -> None:
    found = names.re2_problem(pattern)
    assert (found is None) if problem is None else (found is not None and problem in found)


SPEC_REJECTIONS = [case for case in REJECTED if "metadata" not in case.patch]  # the name is the CRD's alone


@pytest.mark.parametrize("case", SPEC_REJECTIONS, ids=[c.id for c in SPEC_REJECTIONS])
def test_what_admission_refuses_the_operators_parse_refuses(case: object) -> None:
    doc = case.document("ns")  # type: ignore[attr-defined]
    assert json.loads(json.dumps(doc)) == doc  # plain data, as kubectl sends it (no patch marker left in it)
    with pytest.raises(ValidationError):
        DeepSeekDeploymentSpec.model_validate(doc.get("spec") or {})
