"""Kubernetes' own checks of names, label keys and values, quantities and regular expressions, twice: as CEL
the API server runs at admission (its `format` library, `isQuantity`, and RE2 compiling the pattern), and as the
same checks in Python for specs the operator reads (what k8s.io/apimachinery's validation package and
resource.Quantity accept). Pure."""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal, InvalidOperation

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


_SUFFIXES = {"Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
             "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60, "n": Decimal("1e-9"), "u": Decimal("1e-6"),
             "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
             "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18")}


def quantity_value(value: str) -> Decimal | None:
    """The value of a resource.Quantity (`500m` -> 0.5, `2Gi` -> 2147483648); None when it is not one."""
    if not is_quantity(value):
        return None
    number = re.match(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", value)
    assert number is not None
    suffix = value[number.end():]
    try:
        if suffix[:1] in ("e", "E") and suffix not in _SUFFIXES:
            return Decimal(number.group(0)) * Decimal(10) ** int(suffix[1:])
        return Decimal(number.group(0)) * _SUFFIXES[suffix]
    except (InvalidOperation, KeyError, ValueError):
        return None


# An http(s) URL whose host is a DNS name or an IP address (IPv6 in brackets), with a port, if any, in 1-65535,
# and no whitespace: what an address field of the spec must be.
_URL_HOST = r"([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])"
_URL_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
HTTP_URL = rf"^https?://{_URL_HOST}(:{_URL_PORT})?([/?#][^\s]*)?$"


def is_http_url(value: str) -> bool:
    """An address of the form HTTP_URL, an IPv6 host a real one (the twin of CEL_HTTP_URL, whose isURL is Go's
    url.ParseRequestURI)."""
    found = re.fullmatch(HTTP_URL, value)
    if found is None:
        return False
    host = re.match(r"https?://(\[[^]]*\])?", value)
    if host is not None and host.group(1):
        try:
            ipaddress.IPv6Address(host.group(1)[1:-1])
        except ValueError:
            return False
    return True


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
# An http(s) URL as Go's url.ParseRequestURI parses it (CEL's isURL) and of the form HTTP_URL.
CEL_HTTP_URL = ("(isURL({0}) && {0}.matches('"
                + HTTP_URL.replace("\\", "\\\\").replace("{", "{{").replace("}", "}}") + "'))")
# `''.matches(p)` compiles p with the API server's RE2 and fails the rule with RE2's own error when it cannot.
CEL_RE2 = "''.matches({0}) || !''.matches({0})"


def cel(template: str, value: str) -> str:
    return template.format(value)
