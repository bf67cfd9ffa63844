"""Kubernetes' own checks of names, label keys and values, quantities and regular expressions, twice: as CEL
the API server runs at admission (its `format` library, `isQuantity`, and RE2 compiling the pattern), and as the
same checks in Python for specs the operator reads (what k8s.io/apimachinery's validation package and
resource.Quantity accept). Pure."""

from __future__ import annotations

import re

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_PART = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = rf"({_QUALIFIED_NAME_PART})?"
# resource.Quantity: a signed decimal, then a binary (Ki..Ei), decimal (n..E) or exponent suffix.
_QUANTITY = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
# What Go's regexp (RE2) refuses and Python's re accepts: lookaround, backreferences, possessive and atomic forms.
_NOT_RE2 = re.compile(r"\(\?[=!]|\(\?<[=!]|\(\?>|\\[1-9]|\\g<|\(\?P=|[*+?}]\+")


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and re.fullmatch(DNS1123_SUBDOMAIN, value) is not None


def is_qualified_name(value: str) -> bool:
    """A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain, the name 63 characters at most."""
    prefix, slash, name = value.rpartition("/")
    if slash and not is_dns1123_subdomain(prefix):
        return False
    return len(name) <= 63 and re.fullmatch(_QUALIFIED_NAME_PART, name) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and re.fullmatch(_LABEL_VALUE, value) is not None


def is_quantity(value: str) -> bool:
    return re.fullmatch(_QUANTITY, value) is not None


def re2_problem(pattern: str) -> str | None:
    """Why RE2 (what the API server, Gateway API implementations and Prometheus run) refuses `pattern`."""
    try:
        re.compile(pattern)
    except re.error as err:
        return f"error parsing regexp: {err}"
    if found := _NOT_RE2.search(pattern):
        return f"invalid or unsupported Perl syntax: `{found.group(0)}`"
    return None


# CEL of the same checks, with {} for the value checked.
CEL_QUALIFIED_NAME = "!format.qualifiedName().validate({}).hasValue()"
CEL_LABEL_VALUE = "!format.labelValue().validate({}).hasValue()"
CEL_DNS1123_SUBDOMAIN = "!format.dns1123Subdomain().validate({}).hasValue()"
CEL_QUANTITY = "isQuantity({})"
# `''.matches(p)` compiles p with the API server's RE2 and fails the rule with RE2's own error when it cannot.
CEL_RE2 = "''.matches({0}) || !''.matches({0})"


def cel(template: str, value: str) -> str:
    return template.format(value)
