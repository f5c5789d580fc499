"""Mutual TLS through the real server and gRPC's Python client (its C core,
not rustls, on the client side): the test makes its own small PKI with the
`cryptography` package, never a committed key. A port's certificate names
its port (a URI SAN spiffe://DOMAIN/facegate/port/ID); no certificate is
UNAUTHENTICATED, another port's claim PERMISSION_DENIED, another CA's
certificate fails the handshake (UNAVAILABLE), a port's certificate on the
back office is PERMISSION_DENIED."""

import datetime
import ipaddress
import grpc
import numpy as np
import pytest
from conftest import TAG, mpb, mrpc, pb, rpc, serve
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Ca:
    def __init__(self, name):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        self.cert = self._builder(subject, self.key.public_key(), subject).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(self.key, hashes.SHA256())
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def _builder(self, subject, public_key, issuer):
        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30)))

    def issue(self, sans, usage):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facegate test")])
        cert = (self._builder(subject, key.public_key(), self.cert.subject)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    def client(self, role, name):
        uri = x509.UniformResourceIdentifier(f"spiffe://test.example/facegate/{role}/{name}")
        return self.issue([uri], ExtendedKeyUsageOID.CLIENT_AUTH)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    agency, stranger = Ca("agency"), Ca("stranger")
    cert, key = agency.issue([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                             ExtendedKeyUsageOID.SERVER_AUTH)
    for name, data in [("ca.pem", agency.pem), ("server.pem", cert), ("server.key", key)]:
        (d / name).write_bytes(data)
    return d, agency, stranger


@pytest.fixture(scope="module")
def tls_server(population, pki):
    d, _, _ = pki
    yield from serve(population / "g.fgal", d / "data", "--tls-cert", d / "server.pem", "--tls-key", d / "server.key",
                     "--port-client-ca", d / "ca.pem", "--admin-client-ca", d / "ca.pem")


def channel(addr, ca_pem, identity=None):
    cert, key = identity or (None, None)
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", "localhost")])


def request(population, port=""):
    probe = np.load(population / "probes.npy")[0].tolist()
    return pb.IdentifyRequest(probe=probe, top_k=3, model_tag=TAG, capture=pb.CaptureContext(port_id=port))


def code_of(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


def test_a_port_certificate_is_served_for_its_own_port_only(tls_server, pki, population):
    _, agency, _ = pki
    with channel(tls_server[0], agency.pem, agency.client("port", "JFK-T4")) as ch:
        matcher = rpc.MatcherStub(ch)
        answer = matcher.Identify(request(population, "JFK-T4"), timeout=10)
        assert len(answer.candidates) == 3
        denied = code_of(lambda: matcher.Identify(request(population, "SEA-1"), timeout=10))
        assert denied == grpc.StatusCode.PERMISSION_DENIED


def test_missing_or_foreign_certificates_are_refused(tls_server, pki, population):
    _, agency, stranger = pki
    with channel(tls_server[0], agency.pem) as ch:
        code = code_of(lambda: rpc.MatcherStub(ch).Identify(request(population), timeout=10))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    with channel(tls_server[0], agency.pem, stranger.client("port", "JFK-T4")) as ch:
        code = code_of(lambda: rpc.MatcherStub(ch).Identify(request(population), timeout=10))
        assert code == grpc.StatusCode.UNAVAILABLE


def test_a_port_certificate_may_not_use_the_back_office(tls_server, pki):
    _, agency, _ = pki
    get = mpb.GetManifestRequest(manifest_id="BA117")
    with channel(tls_server[1], agency.pem, agency.client("port", "JFK-T4")) as ch:
        assert code_of(lambda: mrpc.ManifestsStub(ch).Get(get, timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
    with channel(tls_server[1], agency.pem, agency.client("operator", "ops-1")) as ch:
        assert code_of(lambda: mrpc.ManifestsStub(ch).Get(get, timeout=10)) == grpc.StatusCode.NOT_FOUND
