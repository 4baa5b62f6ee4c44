"""Who glusterpyd lets in: its node identity, the peers it pins, API tokens.

Three kinds of caller reach a glusterpyd, and each proves itself its own way
(the rules the API applies are in glusterd/routes/api.py, `authorize`):

* **Local administrators** come through the unix socket in the daemon's run
  directory (WORKDIR/run/glusterpyd.socket, mode 0600): the kernel tells us
  their uid (SO_PEERCRED), and uid 0 - or the daemon's own uid - is admin.
  This is gluster's /var/run/glusterd.socket.
* **Peers** come over TLS and present their node certificate, which every
  member pinned when the node joined (`peer probe`): a self-signed
  certificate made at the node's first start (WORKDIR/trust/node.pem|key),
  pinned by its SHA-256 fingerprint.  An address proves nothing; only the
  key does.  `peer detach` forgets the certificate on every remaining node,
  so the detached node is refused from that moment.
* **Remote administrators** send `Authorization: Bearer TOKEN`.  Tokens are
  made locally (`glusterpy token create NAME --role admin|read-only|
  geo-replication`), shown
  once and stored as SHA-256 hashes (WORKDIR/trust/tokens.json): the token
  carries 256 random bits, so a plain hash is as good as a slow one and
  lets every request be checked in microseconds.  A token reads
  `NAME.SECRET.PIN`, where PIN is the first 32 hex digits of the node
  certificate's fingerprint: the CLI checks the daemon's certificate
  against it before sending the token, so a token is never handed to an
  impostor, with nothing else to configure.  Tokens belong to the node
  that made them.  A geo-replication token is what a secondary pool's
  admin hands to a primary pool once: it may only admit the primary's
  node certificates to a volume (`create push-pem`, glusterd/georep_pem.py)
  and read nothing; made with `--volume VOL`, to that volume only.

Joining is the one unauthenticated peer call, as in GlusterFS: a node with
no peers and no volumes accepts the first pool that probes it, and pins its
members; a node already in a pool refuses every other pool.

The port speaks TLS (first byte 0x16) and plain text alike; the server
context asks for a client certificate without requiring one, and trusts
exactly the pinned peer certificates plus GlusterFS's CA list
(glusterfs.ca: bricks and GlusterFS clients speaking management
TLS), so any other certificate fails the handshake.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import time
from pathlib import Path

from .. import pki
from .store import read_json, write_json

log = logging.getLogger("glusterpy.glusterd.trust")

ROLES = ("admin", "read-only", "geo-replication")
TOKEN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: hex digits of the node certificate's fingerprint a token carries
PIN_DIGITS = 32
#: the server name (SNI) our own clients - peers and the CLI - ask for, to
#: be shown the node certificate even where the port's default certificate
#: is GlusterFS's glusterfs.pem (see NodeTrust.server_context)
NODE_SNI = "node.glusterpyd"


class TrustError(Exception):
    """A refused trust operation; the message is for people."""


def parse_token(text: str) -> tuple[str, str, str | None]:
    """(name, secret, pin or None); ValueError when it is no token of ours."""
    parts = text.strip().split(".")
    if len(parts) not in (2, 3) or not TOKEN_NAME.match(parts[0]) or not parts[1]:
        raise ValueError("not a glusterpy token (NAME.SECRET.PIN)")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """API tokens of one node, hashed on disk; changes take effect at once
    (every request reads the in-memory table, which is the file's copy)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.tokens: dict[str, dict] = read_json(path).get("tokens", {})
        except FileNotFoundError:
            self.tokens = {}

    def _save(self) -> None:
        write_json(self.path, {"tokens": self.tokens})

    def create(self, name: str, role: str, pin: str, volume: str | None = None) -> str:
        """A new token (shown once); `volume` limits a geo-replication
        token to admitting certificates to that volume."""
        from .common import check_volname
        if not isinstance(name, str) or not TOKEN_NAME.match(name):
            raise TrustError(f"token name {name!r}: use 1-64 letters, digits, '_' or '-'")
        if role not in ROLES:
            raise TrustError(f"role {role!r}: choose {' or '.join(ROLES)}")
        if volume is not None:
            if role != "geo-replication":
                raise TrustError("only a geo-replication token is limited to a volume")
            try:
                check_volname(volume)
            except ValueError as e:
                raise TrustError(f"volume {volume!r}: {e}") from None
        if name in self.tokens:
            raise TrustError(f"token {name} exists; revoke it first")
        secret = secrets.token_urlsafe(32)
        self.tokens[name] = {"role": role, "sha256": _hash(secret),
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if volume is not None:
            self.tokens[name]["volume"] = volume
        self._save()
        return f"{name}.{secret}.{pin[:PIN_DIGITS]}"

    def revoke(self, name: str) -> None:
        if name not in self.tokens:
            raise TrustError(f"no token named {name}")
        del self.tokens[name]
        self._save()

    def listing(self) -> list[dict]:
        return [{"name": n, "role": t["role"], "created": t["created"],
                 **({"volume": t["volume"]} if "volume" in t else {})}
                for n, t in sorted(self.tokens.items())]

    def volume_of(self, name: str) -> str | None:
        """The one volume a token is limited to, if any."""
        return self.tokens.get(name, {}).get("volume")

    def check(self, bearer: str) -> tuple[str, str] | None:
        """(name, role) of a valid token, None otherwise."""
        try:
            name, secret, _ = parse_token(bearer)
        except ValueError:
            return None
        entry = self.tokens.get(name)
        if entry is None or not hmac.compare_digest(entry["sha256"], _hash(secret)):
            return None
        return name, entry["role"]


class NodeTrust:
    """This node's certificate, its TLS contexts and its tokens."""

    def __init__(self, root: Path, common_name: str):
        self.dir = root / "trust"
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.key_path = self.dir / "node.key"
        self.cert_path = self.dir / "node.pem"
        if not (self.key_path.exists() and self.cert_path.exists()):
            key = pki.new_key()
            pki.write_private(self.key_path, pki.key_pem(key))
            pki.write_private(self.cert_path, pki.cert_pem(pki.self_signed(common_name, key)))
            log.info("made this node's certificate %s", self.cert_path)
        self.cert_pem = self.cert_path.read_text()
        self.fingerprint = pki.fingerprint_of_pem(self.cert_pem)
        self.tokens = TokenStore(self.dir / "tokens.json")
        self._server_ctx: tuple[tuple, ssl.SSLContext] | None = None
        self._client_ctx: dict[bool, ssl.SSLContext] = {}

    def server_context(self, peer_certs: list[str], extra_ca: Path | None = None,
                       glusterfs_identity: tuple[Path, Path] | None = None
                       ) -> ssl.SSLContext:
        """The context for TLS connections to our port.  A client
        certificate is asked for, optional, and must be one we pinned or
        one `extra_ca` (GlusterFS's CA list) vouches for.  The certificate
        shown is the node's; with `glusterfs_identity` (glusterfs.pem and
        .key, when they exist and are not the node's own) it is that one
        for GlusterFS's clients, which verify it against their
        glusterfs.ca, and the node's for ours, which ask for NODE_SNI."""
        extra = extra_ca.read_bytes() if extra_ca is not None and extra_ca.exists() else b""
        if glusterfs_identity is not None and not all(p.exists() for p in glusterfs_identity):
            glusterfs_identity = None
        if glusterfs_identity is not None and \
                glusterfs_identity[0].read_text() == self.cert_pem:
            glusterfs_identity = None  # `tls setup` made them: the same identity
        key = (tuple(sorted(peer_certs)), extra, glusterfs_identity and tuple(
            p.read_bytes() for p in glusterfs_identity))
        if self._server_ctx is None or self._server_ctx[0] != key:
            cadata = "".join(peer_certs) + extra.decode(errors="replace")
            node_ctx = self._new_server_context(self.cert_path, self.key_path, cadata)
            ctx = node_ctx
            if glusterfs_identity is not None:
                ctx = self._new_server_context(*glusterfs_identity, cadata)

                def ours_get_the_node_certificate(sslobj, server_name, _ctx):
                    if server_name == NODE_SNI:
                        sslobj.context = node_ctx
                ctx.sni_callback = ours_get_the_node_certificate
            self._server_ctx = (key, ctx)
        return self._server_ctx[1]

    @staticmethod
    def _new_server_context(cert: Path, key: Path, cadata: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        if cadata.strip():
            ctx.load_verify_locations(cadata=cadata)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        else:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def client_context(self, anonymous: bool = False) -> ssl.SSLContext:
        """The context for calling peers: we present our certificate (not
        when `anonymous`: a node of another pool would fail the handshake
        on a certificate it never pinned, where the probe wants its "no");
        the peer's is checked by fingerprint after the handshake
        (pinning), not by a CA."""
        if anonymous not in self._client_ctx:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if not anonymous:
                ctx.load_cert_chain(self.cert_path, self.key_path)
            self._client_ctx[anonymous] = ctx
        return self._client_ctx[anonymous]


def peer_fingerprint(stream) -> str | None:
    """The fingerprint of the certificate a TLS peer presented, if any."""
    getpeercert = getattr(stream, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        der = getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        return None
    return pki.fingerprint(der) if der else None


__all__ = ["NodeTrust", "TokenStore", "TrustError", "parse_token", "peer_fingerprint", "ROLES",
           "PIN_DIGITS", "NODE_SNI"]
