"""The server's certificate: self-signed for ``localhost`` unless one is configured.

Upstream generates a fresh self-signed ECDSA P-256 certificate at every start and
clients skip verification; we do the same by default and
print its SHA-256 fingerprint, and accept a real certificate and key instead.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtara import errors


@attrs.frozen
class Identity:
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    private_key: object
    self_signed: bool

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate, as colon-separated hex pairs."""
        digest = self.certificate.fingerprint(hashes.SHA256())
        return ":".join(f"{byte:02X}" for byte in digest)


def self_signed(host_name: str = "localhost") -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runtara-core self-signed")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(certificate, [], key, self_signed=True)


def load(cert_path: Path, key_path: Path) -> Identity:
    """Read a PEM certificate chain and its PEM private key (unencrypted)."""
    try:
        chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except (OSError, ValueError) as error:
        raise errors.ConfigError(f"--tls-cert / RUNTARA_TLS_CERT {cert_path}: {error}") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise errors.ConfigError(f"--tls-key / RUNTARA_TLS_KEY {key_path}: {error}") from None
    if chain[0].public_key().public_numbers() != key.public_key().public_numbers():
        raise errors.ConfigError(
            f"--tls-key / RUNTARA_TLS_KEY {key_path} does not belong to the certificate {cert_path}"
        )
    # A certificate that signed itself needs its clients to skip verification
    # (or to trust it by name), as the generated one does.
    self_signed = len(chain) == 1 and chain[0].issuer == chain[0].subject
    return Identity(chain[0], chain[1:], key, self_signed=self_signed)


def write_pem(identity: Identity, cert_path: Path, key_path: Path) -> None:
    """Save an identity (used by tests and for trying ``--tls-cert``)."""
    cert_path.write_bytes(
        b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in [identity.certificate, *identity.chain]
        )
    )
    key_path.write_bytes(
        identity.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
