"""Certificates and keys for one control plane, generated fresh for every start.

One CA signs the API server's serving certificate and a client certificate per component; the
API server authenticates clients by that CA and authorizes them by RBAC, as kubeadm sets things up.
The identities are the ones the bootstrap RBAC policy knows (system:kube-controller-manager,
system:kube-scheduler), so every component runs with its real, limited permissions. A separate RSA
key pair signs and verifies service-account tokens.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The first address of the service range the API server is started with (its in-cluster Service IP).
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClientIdentity:
    """Who a client certificate says it is: the user (CN) and groups (O) RBAC sees."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = ClientIdentity("admin", "kubeformer-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("kube-controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("kube-scheduler", "system:kube-scheduler")
# kwok plays every kubelet at once (nodes, leases, pod status), which no single bootstrap role covers.
KWOK = ClientIdentity("kwok", "kwok-controller", ("system:masters",))
CLIENTS = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, KWOK)


@dataclass(frozen=True)
class Pki:
    ca: CertPair
    serving: CertPair
    clients: dict[str, CertPair]  # by ClientIdentity.file_stem
    service_account_key: Path
    service_account_pub: Path
    # The aggregation layer's pair: the API server proxies to extension servers as FRONT_PROXY_CLIENT,
    # and components that delegate authentication find its CA instead of logging that it is missing.
    front_proxy_ca: CertPair
    front_proxy_client: CertPair


FRONT_PROXY_CLIENT = "front-proxy-client"


def create_pki(directory: Path) -> Pki:
    """Write the CAs, the API server's serving pair, client pairs and the service-account keys."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key, ca = _ca(directory, "ca", "kubeformer-test-ca")
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    names.append("kubernetes.default.svc.cluster.local")
    sans = [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", KUBERNETES_SERVICE_IP)
    ]
    serving = _leaf(
        directory,
        "apiserver",
        _name("kube-apiserver"),
        (ca_cert, ca_key),
        ExtendedKeyUsageOID.SERVER_AUTH,
        sans,
    )
    clients = {
        identity.file_stem: _leaf(
            directory,
            identity.file_stem,
            _name(identity.user, identity.groups),
            (ca_cert, ca_key),
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        for identity in CLIENTS
    }
    proxy_cert, proxy_key, front_proxy_ca = _ca(directory, "front-proxy-ca", "kubeformer-test-front-proxy-ca")
    front_proxy_client = _leaf(
        directory,
        FRONT_PROXY_CLIENT,
        _name(FRONT_PROXY_CLIENT),
        (proxy_cert, proxy_key),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )

    # Service-account tokens are RS256 by default; the controller manager signs, the API server verifies.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path, sa_pub_path = directory / "sa.key", directory / "sa.pub"
    sa_key_path.write_bytes(_private_bytes(sa_key))
    sa_key_path.chmod(0o600)
    public = sa_key.public_key()
    sa_pub_path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return Pki(ca, serving, clients, sa_key_path, sa_pub_path, front_proxy_ca, front_proxy_client)


def _ca(
    directory: Path, stem: str, common_name: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, CertPair]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    usage = x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=True,
        crl_sign=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key, _write(directory, stem, cert, key)


def _leaf(
    directory: Path,
    stem: str,
    subject: x509.Name,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(subject, issuer[0].subject, key).add_extension(
        x509.ExtendedKeyUsage([usage]), critical=False
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _write(directory, stem, builder.sign(issuer[1], hashes.SHA256()), key)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + VALIDITY)
    )


def _private_bytes(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertPair:
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(_private_bytes(key))
    pair.key.chmod(0o600)
    return pair
