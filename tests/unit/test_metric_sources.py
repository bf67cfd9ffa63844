"""The analysis reads only the metric sources the operator is installed with: a resource names one, and the
operator sends that source's own credentials to that source's own address, verifying its certificate."""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deepseek_operator.api.sources import MetricSource, parse_sources
from deepseek_operator.providers.base import ProviderError, source_reader
from tests.unit.test_plan import T0, Cluster, cond, edited, example


def test_sources_parse_and_bad_ones_say_what_is_wrong() -> None:
    sources = parse_sources("sources:\n- {name: prom, provider: prometheus, address: 'https://p:9090', "
                            "bearerTokenFile: /etc/t/token, caFile: /etc/t/ca.crt}\n")
    assert sources["prom"].bearer_token_file == "/etc/t/token" and sources["prom"].ca_file == "/etc/t/ca.crt"
    assert parse_sources("") == {}
    with pytest.raises(ValueError, match="unique: prom"):
        parse_sources("sources:\n- {name: prom, provider: prometheus, address: 'http://a'}\n"
                      "- {name: prom, provider: gateway, address: 'http://b'}\n")
    with pytest.raises(ValueError, match="address"):
        parse_sources("sources: [{name: prom, provider: prometheus, address: 'file:///etc/passwd'}]")


@pytest.mark.parametrize(("analysis", "says"), [
    ({"provider": "prometheus", "prometheus": {"source": "elsewhere"}},
     "no prometheus metric source named 'elsewhere' (it has prometheus;"),
    # A source of another kind is no answer either: a gateway page is not a PromQL API.
    ({"provider": "prometheus", "prometheus": {"source": "traefik"}},
     "no prometheus metric source named 'traefik' (it has prometheus;"),
    ({"provider": "gateway", "gateway": {"source": "prometheus"}},
     "no gateway metric source named 'prometheus' (it has traefik;"),
])
def test_a_resource_naming_a_source_the_operator_lacks_is_invalid_and_changes_nothing(
        analysis: dict[str, object], says: str) -> None:
    # The gateway provider measures the HTTPRoute's backends: a spec that names it routes through a Gateway.
    routing = {"gatewayAPI": {"parentRefs": [{"name": "llm-gateway"}]}}
    body = edited(example("r1-distill-qwen-7b-a100"), {"rollout": {"strategy": "canary", "analysis": analysis,
                                                                   "trafficRouting": routing}})
    p = Cluster().reconcile(body, T0)
    valid = cond(p, "SpecValid")
    assert valid["status"] == "False" and valid["reason"] == "InvalidSpec"
    assert says in valid["message"] and "metricSources" in valid["message"]
    assert p.apply == []


def test_the_default_provider_scrapes_the_pods_front_doors_and_needs_no_source() -> None:
    body = edited(example("r1-distill-qwen-7b-a100"), {"rollout": {"strategy": "canary", "analysis": {}}})
    p = Cluster(metric_sources={}).reconcile(body, T0)
    assert cond(p, "SpecValid")["status"] == "True" and p.apply


# ------------------------------------------------------------------ reading a source for real


def _cert(subject: str, issuer_key: ec.EllipticCurvePrivateKey | None = None, issuer: x509.Name | None = None,
          san: str = "localhost") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1)))
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        body = b'{"status": "success", "data": {"result": []}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTPS server with a certificate of a CA made here; yields its URL and the CA's PEM file."""
    ca_key, ca = _cert("test CA")
    key, cert = _cert("localhost", ca_key, ca.subject)
    (tmp_path / "ca.crt").write_bytes(_pem(ca))
    (tmp_path / "tls.crt").write_bytes(_pem(cert))
    (tmp_path / "tls.key").write_bytes(_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}", tmp_path / "ca.crt"
    finally:
        server.shutdown()
        server.server_close()


def test_a_source_gets_its_own_token_over_tls_verified_against_its_ca(https_server: tuple[str, Path],
                                                                      tmp_path: Path) -> None:
    url, ca = https_server
    token = tmp_path / "token"
    token.write_text("s3cr3t\n")
    source = MetricSource(name="prom", provider="prometheus", address=url, bearer_token_file=str(token),
                          ca_file=str(ca))
    source_reader("prometheus", source)("/api/v1/query?query=up")
    assert _Recorder.seen == [("/api/v1/query?query=up", "Bearer s3cr3t")]
    token.write_text("rotated")  # read at each measurement: a rotated Secret is used without a restart
    source_reader("prometheus", source)("/api/v1/query?query=up")
    assert _Recorder.seen[-1][1] == "Bearer rotated"


def test_a_server_the_ca_did_not_sign_gets_nothing(https_server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = https_server
    _, other_ca = _cert("another CA")
    (tmp_path / "other.crt").write_bytes(_pem(other_ca))
    token = tmp_path / "token"
    token.write_text("s3cr3t")
    for ca_file in (str(tmp_path / "other.crt"), None):  # a foreign CA, and the system's store
        source = MetricSource(name="prom", provider="prometheus", address=url, bearer_token_file=str(token),
                              ca_file=ca_file)
        with pytest.raises(ProviderError, match="CERTIFICATE_VERIFY_FAILED"):
            source_reader("prometheus", source)("/api/v1/query?query=up")
    assert _Recorder.seen == []  # the TLS handshake failed before any request (and its token) was sent


def test_a_source_missing_from_the_configuration_is_never_read() -> None:
    with pytest.raises(ProviderError, match="not in the operator's configuration"):
        source_reader("gateway metrics", None)
