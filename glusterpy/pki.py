"""Keys and X.509 certificates: the one place glusterpy makes or reads them.

Used by glusterpyd's node identity (glusterd/trust.py: the certificate peers
pin), `glusterpy tls setup` (GlusterFS's /etc/ssl/glusterfs.pem|key|ca) and
the tests.  Built on `cryptography` (pyca): it is what Python's ssl module
cannot do - make keys and certificates - and it is kept by the people who
keep Python's OpenSSL bindings, so nothing here is hand-written crypto.

Keys are RSA 2048: every OpenSSL a GlusterFS 10 client links accepts them
under GlusterFS's default cipher list, where an EC key needs ECDSA suites a
site's `ssl.cipher-list` may have removed.

A certificate's *fingerprint* is the SHA-256 of its DER encoding, written
as lower-case hex; that is what peers pin, so a certificate that was
re-made - even for the same name and key - is a different identity.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_BITS = 2048
#: self-signed identities live long: replacing one means re-pinning it
VALID_DAYS = 3650


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(data: bytes):
    return serialization.load_pem_private_key(data, password=None)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certs(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (ValueError when there is none)."""
    certs = x509.load_pem_x509_certificates(data)
    if not certs:
        raise ValueError("no certificate in the PEM data")
    return certs


def _alt_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def self_signed(common_name: str, key, *, alt_names: list[str] = (),
                days: int = VALID_DAYS, ca: bool = False) -> x509.Certificate:
    """A self-signed certificate for `key`, usable as a TLS server and
    client certificate (and as its own trust anchor: OpenSSL accepts a
    self-signed certificate listed in a CA file, which is how GlusterFS's
    glusterfs.ca works)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(list(alt_names))),
                                        critical=False)
    return builder.sign(key, hashes.SHA256())


def issue(ca_key, ca_cert: x509.Certificate, common_name: str, key, *,
          alt_names: list[str] = (), days: int = VALID_DAYS,
          ca: bool = False) -> x509.Certificate:
    """A certificate for `key` signed by a CA (for tests of cert-depth and of
    CA-issued identities); `ca` makes it an intermediate CA that may sign
    others."""
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(list(alt_names))),
                                        critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 of the DER encoding, lower-case hex; `cert` may be DER bytes
    (what ssl's getpeercert(binary_form=True) gives) or a certificate."""
    der = cert if isinstance(cert, (bytes, bytearray)) else \
        cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def fingerprint_of_pem(pem: str | bytes) -> str:
    data = pem.encode() if isinstance(pem, str) else pem
    return fingerprint(load_certs(data)[0])


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only, created so (never
    world-readable for an instant)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


__all__ = ["new_key", "key_pem", "load_key", "cert_pem", "load_certs", "self_signed", "issue",
           "fingerprint", "fingerprint_of_pem", "common_name", "write_private"]
