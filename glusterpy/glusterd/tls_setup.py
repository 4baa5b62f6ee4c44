"""`glusterpy tls setup` and `tls client`: GlusterFS's TLS files, made for the pool.

GlusterFS's TLS wants, on every server and client, glusterfs.pem
(own certificate), glusterfs.key (its key) and glusterfs.ca (every
certificate to trust - in practice each node's and client's self-signed
certificate, concatenated by hand and copied everywhere).  The pool already
knows what that list is: every member's node certificate is pinned on every
node (glusterd/trust.py).  So:

    glusterpy tls setup [--management on|off]

run once on any node (as root) writes, on every node of the pool,
glusterfs.key and glusterfs.pem (that node's own key and certificate - the
one its peers pin, so management TLS, peers and the I/O path share one
identity) and glusterfs.ca (all members' certificates plus the clients'
below), in GlusterFS's directory (OpenSSL's: /usr/lib/ssl on Debian;
rpc/tls.py's cert_dir()).  Then
`volume set VOL client.ssl on` and `server.ssl on` turn TLS on for a
volume's I/O (rpc/tls.py).  `--management on` also makes every node's
glusterpyd serve RPC and REST on its port over TLS only (WORKDIR/
secure-access - glusterd's /var/lib/glusterd/secure-access); processes of
the node itself (its bricks, self-heal and rebalance daemons) may still
sign in without TLS, since they can read its key anyway.

    glusterpy tls client NAME --out DIR

makes a key and a self-signed certificate (common name NAME, for
`auth.ssl-allow`) for a client machine, adds the certificate to every
node's glusterfs.ca, and writes DIR/glusterfs.{key,pem,ca} to copy to the
client's OpenSSL directory (plus /var/lib/glusterd/secure-access there when
management TLS is on).

Once set up, the files follow the pool: a probe or detach rewrites every
node's glusterfs.ca (`refresh`), so a new member is trusted and a detached
one is not.  The routes are glusterd/routes/tls_setup.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import pki
from ..rpc import tls
from .common import OpFailed
from .store import read_json, write_atomic, write_json

log = logging.getLogger("glusterpy.glusterd.tls")


def state_path(gd) -> Path:
    return gd.trust.dir / "tls.json"


def _clients_path(gd) -> Path:
    return gd.trust.dir / "clients.pem"


def is_set_up(gd) -> bool:
    return state_path(gd).exists()


def client_certs(gd) -> str:
    """The client certificates `tls client` added, as PEM text."""
    path = _clients_path(gd)
    return path.read_text() if path.exists() else ""


def ca_bundle(gd, clients: str) -> str:
    """Every member's certificate (this node's first), then the clients'."""
    certs = [gd.trust.cert_pem] + [p["cert"] for p in gd.peers.values() if p.get("cert")]
    return "".join(c if c.endswith("\n") else c + "\n" for c in certs) + clients


def apply_locally(gd, clients: str, management: bool | None) -> dict:
    """Write this node's GlusterFS TLS files (and its management TLS switch);
    what was written, for the caller's report."""
    for pem in pki.load_certs(clients.encode()) if clients.strip() else []:
        if pki.common_name(pem) is None:
            raise ValueError("a client certificate without a common name")
    key_path, cert_path, ca_path = (Path(tls.default_private_key()),
                                    Path(tls.default_own_cert()), Path(tls.default_ca_list()))
    pki.write_private(key_path, gd.trust.key_path.read_bytes())
    write_atomic(cert_path, gd.trust.cert_pem, 0o644)
    write_atomic(ca_path, ca_bundle(gd, clients), 0o644)
    write_atomic(_clients_path(gd), clients, 0o600)
    state = read_json(state_path(gd)) if is_set_up(gd) else {"management": False}
    if management is not None:
        state["management"] = management
        marker = gd.workdir / "secure-access"
        if management:
            marker.write_text("")
        elif marker.exists():
            marker.unlink()
        gd.export_secure_access()
    write_json(state_path(gd), state)
    return {"node": gd.names[0], "key": str(key_path), "cert": str(cert_path),
            "ca": str(ca_path), "management": state["management"],
            "fingerprint": gd.trust.fingerprint}


async def pool_wide(gd, clients: str, management: bool | None) -> list[dict]:
    """Apply on this node and every peer; a peer that fails is reported,
    not hidden (its files are rewritten at the next setup or refresh)."""
    results = [apply_locally(gd, clients, management)]
    for peer in list(gd.peers.values()):
        try:
            results.append(await gd.call_peer(peer, "POST", "/api/v1/cluster/tls",
                                              {"clients": clients,
                                               "management": management}))
        except OpFailed as e:
            results.append({"node": peer["hostnames"][0], "error": str(e)})
    return results


async def refresh(gd) -> None:
    """After the pool changed: rewrite glusterfs.ca everywhere, if TLS was
    set up here."""
    if is_set_up(gd):
        for r in await pool_wide(gd, client_certs(gd), None):
            if "error" in r:
                log.warning("TLS files on %s not refreshed: %s", r["node"], r["error"])


__all__ = ["refresh", "is_set_up", "apply_locally", "ca_bundle", "client_certs", "pool_wide",
           "state_path"]
