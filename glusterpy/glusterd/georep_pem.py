"""`create push-pem`: the primary pool's identities admitted to the secondary's volume.

GlusterFS's push-pem copies the primary nodes' SSH public keys into the
secondary's authorized_keys.  Here the workers reach the secondary over the
GlusterFS protocol with TLS (glusterpy/georep/worker.py says why), so what
is pushed is certificates, and what the secondary grants is TLS trust:

* **Which identity**: each primary node's own node certificate
  (WORKDIR/trust/node.pem, the one its peers pin and `tls setup` installs
  as its glusterfs.pem; its common name is the node's name).  A private key
  then never leaves the node that made it - a per-session certificate
  would need its key copied to every primary node (through the volume
  document, which a read-only token may read, or a second channel) - the
  certificates are already known pool-wide (every member pins every
  other's), and the primary needs no `tls setup` of its own.  A node that
  joins the primary later is admitted by `create push-pem force` again.
* **The credential**: a token the secondary's admin made once on any of its
  nodes, `glusterpy token create NAME --role geo-replication --volume
  SVOL` (without --volume: to any volume; an admin token works too), handed to the primary's admin, who gives it to
  `create push-pem` (`$GLUSTERPY_SECONDARY_TOKEN`, or typed when asked).
  The primary's glusterpyd sends it, over TLS, only to a secondary whose
  node certificate matches the pin the token carries (glusterd/trust.py),
  then forgets it: it is not stored, audited or sent to peers.  A
  geo-replication token admits certificates and does nothing else.
* **What the secondary does** (`admit`, on the node the token belongs to):
  refuses unless its pool has `tls setup` done and the volume has
  client.ssl and server.ssl on; refuses a certificate that is a CA (it
  could sign any name) or whose common name another certificate of its
  pool or of its clients already has (it would pass for that one in every
  volume's auth.ssl-allow); then adds the new certificates to its pool's
  client certificates (every node's glusterfs.ca, tls_setup.pool_wide) and
  their names to the volume's auth.ssl-allow (kept as it was when it is
  unset or already matches them - both admit any trusted certificate - and
  extended otherwise).  It answers its CA list, which the workers trust for
  the secondary's bricks.  When writing a node's files or setting the
  option fails, what was written is put back.  The bricks read the new CA
  list at the next connection (xlators/protocol/server.py).
* **The workers**: the session keeps the secondary's CA list
  (Session.secondary_ca); each node writes WORKDIR/geo-replication/
  SESSION/ssl/glusterfs.{pem,key,ca} - its node certificate and key, that
  CA list plus its own glusterfs.ca (for a primary volume using TLS) - and
  the worker uses that directory as its OpenSSL directory
  ($GLUSTERPY_SSL_CERT_DIR), so its client of the secondary volume speaks
  TLS (the secondary's volfile says client.ssl) with the node's identity.
* **Taken back** (`withdraw`, the DELETE of the same route, asked by the
  primary's `delete` of the session with the same token): the secondary
  records each admission beside its client certificates
  (WORKDIR/trust/georep-admitted.json: volume, the primary's session - its
  volume's id -, name, fingerprint, the admitting token and its volume,
  whether push-pem added the certificate to clients.pem and the name to
  auth.ssl-allow).  A token withdraws only what it, or a token limited to
  the same volume, admitted (an admin anything).  The names leave the
  volume's auth.ssl-allow (the others kept) unless another admission to
  that volume still names them; the certificates leave every node's
  glusterfs.ca unless another admission (any volume) still needs them or
  they were trusted before push-pem (`tls client`).  The primary keeps the
  session when the secondary cannot be asked or refuses, unless `delete
  force` (which says what it left admitted).

Departures: the secondary's glusterfs.ca is the pool's, not the volume's:
an admitted primary node may also mount any volume of the secondary whose
auth.ssl-allow is unset or "*" (as any `tls client` may).  If the primary's
transaction fails after the secondary admitted the certificates (a primary
peer down at that moment), the secondary keeps them; `create push-pem`
again completes it.  The record of admissions is the admitting node's
only (the node the token belongs to, which `delete` asks again with the
same token; a token of another node of the secondary finds nothing
recorded and is refused - `delete force`, then the secondary's admin
edits WORKDIR/trust/clients.pem, runs `tls setup` and edits
auth.ssl-allow).  Admissions made before the record existed are not in it
and are not withdrawn either.  Withdrawing the last names of an
auth.ssl-allow would leave it empty (no client at all): it is then kept as
it is and the names stay in it.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from pathlib import Path

import trio
from cryptography import x509

from .. import pki
from ..rpc import tls
from . import tls_setup, volgen
from .common import OpFailed
from .store import write_atomic

log = logging.getLogger("glusterpy.glusterd.georep")

#: the REST route on the secondary that `admit` serves (routes/georep.py)
ADMIT_PATH = "/api/v1/volumes/{name}/geo-replication/primaries"
#: where `create push-pem` takes the secondary's token from (else it asks)
TOKEN_ENV = "GLUSTERPY_SECONDARY_TOKEN"


class Refused(ValueError):
    """The secondary will not admit the certificates; the message says why."""


# -- the primary's side ------------------------------------------------------------


def pool_certificates(gd) -> list[str]:
    """Every member's node certificate, this node's first."""
    certs = [gd.trust.cert_pem] + [p["cert"] for p in gd.peers.values() if p.get("cert")]
    return [c if c.endswith("\n") else c + "\n" for c in certs]


def token_pin(token) -> str:
    """The pin a secondary's token carries (its node certificate's
    fingerprint, as a prefix); ValueError when it is no such token."""
    from .trust import PIN_DIGITS, parse_token
    if not isinstance(token, str) or not token.strip():
        raise ValueError("push-pem needs the secondary's token: on a node of the secondary, "
                         "`glusterpy token create NAME --role geo-replication --volume VOL`; "
                         f"give it here as ${TOKEN_ENV}")
    try:
        _, _, pin = parse_token(token)
    except ValueError:
        raise ValueError("the secondary's token is not a glusterpy token (NAME.SECRET.PIN, as "
                         "`glusterpy token create` printed it on the secondary)") from None
    if pin is None or not re.fullmatch(f"[0-9a-f]{{{PIN_DIGITS}}}", pin.lower()):
        raise ValueError("the secondary's token has no pin (its third part): use it as "
                         "`glusterpy token create` printed it")
    return pin.lower()


def admitted(status: int, doc, where: str) -> dict:
    """The secondary's answer to the push ({ca, added, ssl_allow}), checked;
    ValueError with its refusal otherwise."""
    doc = doc if isinstance(doc, dict) else {}
    if status >= 400:
        raise ValueError(f"push-pem: the secondary {where} refused: "
                         f"{doc.get('error', f'HTTP {status}')}")
    if not isinstance(doc.get("ca"), str) or not doc["ca"].strip():
        raise ValueError(f"push-pem: the secondary {where} answered no CA list")
    try:
        pki.load_certs(doc["ca"].encode())
    except ValueError:
        raise ValueError(f"push-pem: the secondary {where} answered a CA list that is "
                         "not PEM certificates") from None
    return doc


def write_worker_tls(gd, session_dir: Path, secondary_ca: str) -> Path:
    """The OpenSSL directory of this node's workers of one session (module
    docstring), rewritten only when it changed; its path."""
    d = session_dir / "ssl"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    own_ca = Path(tls.default_ca_list())
    try:
        local = own_ca.read_text()
    except OSError:
        local = ""
    files = {"glusterfs.pem": (gd.trust.cert_pem, 0o644),
             "glusterfs.ca": (secondary_ca + ("" if secondary_ca.endswith("\n") else "\n")
                              + local, 0o644)}
    for name, (text, mode) in files.items():
        path = d / name
        if not path.exists() or path.read_text() != text:
            write_atomic(path, text, mode)
    key = d / "glusterfs.key"
    data = gd.trust.key_path.read_bytes()
    if not key.exists() or key.read_bytes() != data:
        pki.write_private(key, data)
    return d


# -- the secondary's side ------------------------------------------------------------


def _on(vol, key: str) -> bool:
    setting = volgen.lookup_key(key)
    try:
        return bool(setting.parse(vol.options.get(key, setting.option.default)))
    except Exception:  # noqa: BLE001 - an unparsable stored value counts as off
        return False


def check_admission(gd, vol, certs) -> tuple[list[str], list[str]]:
    """(the certificates to add, their common names) - without the ones
    already trusted; Refused (nothing changed) when they may not be."""
    if not tls_setup.is_set_up(gd):
        raise Refused("this pool has no TLS set up: run `glusterpy tls setup` on one of its "
                      f"nodes, then `volume set {vol.name} client.ssl on` and `volume set "
                      f"{vol.name} server.ssl on`")
    off = [k for k in ("client.ssl", "server.ssl") if not _on(vol, k)]
    if off:
        raise Refused(f"volume {vol.name} does not use TLS ({' and '.join(off)} off): `volume "
                      f"set {vol.name} client.ssl on` and `server.ssl on` first, or create the "
                      "session without push-pem")
    if not isinstance(certs, list) or not certs or len(certs) > 256 or \
            not all(isinstance(c, str) and len(c) < 65536 for c in certs):
        raise Refused("certs must be a list of PEM certificates")
    known: dict[str, str] = {}  # common name -> fingerprint, of what is trusted now
    for cert in pki.load_certs(tls_setup.ca_bundle(gd, tls_setup.client_certs(gd)).encode()):
        known.setdefault(pki.common_name(cert) or "", pki.fingerprint(cert))
    add, names, seen = [], [], set()
    for text in certs:
        try:
            loaded = pki.load_certs(text.encode())
        except ValueError:
            raise Refused("a certificate that is not PEM") from None
        for cert in loaded:
            name, fp = pki.common_name(cert), pki.fingerprint(cert)
            if not name:
                raise Refused("a certificate without a common name (auth.ssl-allow lists "
                              "names)")
            try:
                ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                ca = False
            if ca:
                raise Refused(f"the certificate of {name!r} is a CA: it could sign any name")
            if known.get(name) not in (None, fp) or name in seen:
                raise Refused(f"another certificate is already trusted under the name {name!r}: "
                              "it would pass for that one")
            seen.add(name)
            names.append(name)
            if known.get(name) != fp:
                add.append(pki.cert_pem(cert).decode())
    return add, names


def ssl_allow_with(current: str | None, names: list[str]) -> str | None:
    """The volume's auth.ssl-allow admitting `names` too; None when it
    already does (unset, or a pattern matching each)."""
    if current is None:
        return None
    patterns = [p for p in re.split(r"[ ,]+", current.strip()) if p]
    missing = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not missing:
        return None
    return ",".join(patterns + missing)



#: one admission or withdrawal at a time (a glusterpyd is one process):
#: each reads the record and the CA list, awaits the pool and the volume's
#: option, and writes the record back - two at once would lose one's entries
_SERIAL = trio.Lock()


async def admit(gd, vol, certs, set_option, session: str = "", who: dict | None = None) -> dict:
    async with _SERIAL:
        return await _admit(gd, vol, certs, set_option, session, who)


async def _admit(gd, vol, certs, set_option, session: str, who: dict | None) -> dict:
    """Admit `certs` to volume `vol` (module docstring); `set_option(value)`
    sets the volume's auth.ssl-allow through the cluster transaction;
    `session` names the primary's session (its volume's id), `who` the
    caller (api.principal), both kept in the record `withdraw` reads.
    Refused or OpFailed, with nothing changed, when it cannot."""
    if not isinstance(session, str) or len(session) > 200:
        raise Refused("session must be a string (the primary volume's id)")
    add, names = check_admission(gd, vol, certs)
    old_clients = tls_setup.client_certs(gd)
    old_allow = vol.options.get("auth.ssl-allow")
    allow = ssl_allow_with(old_allow, names)
    await _apply(gd, old_clients, old_clients + "".join(add) if add else None,
                 set_option, allow)
    _record_admission(gd, vol, certs, session, who or {}, add,
                      old_allow if allow is not None else None)
    return {"ca": Path(tls.default_ca_list()).read_text(), "added": names,
            "ssl_allow": allow if allow is not None else old_allow}


# -- who admitted what, and taking it back ------------------------------------------


def record_path(gd) -> Path:
    """The admissions push-pem made on this node, beside its client
    certificates: {"admissions": [{volume, session, name, fingerprint,
    token, token_volume, owned, allow_added}]} - `owned`: the certificate
    was added to clients.pem by push-pem (not by `tls client`), so a
    withdrawal may remove it; `allow_added`: its name was added to the
    volume's auth.ssl-allow by push-pem."""
    return gd.trust.dir / "georep-admitted.json"


def admissions(gd) -> list[dict]:
    path = record_path(gd)
    if not path.exists():
        return []
    return list(json.loads(path.read_text()).get("admissions", []))


def _write_admissions(gd, entries: list[dict]) -> None:
    write_atomic(record_path(gd), json.dumps({"admissions": entries}, indent=1) + "\n", 0o600)


def _named(certs) -> list[tuple[str, str]]:
    """(common name, fingerprint) of each certificate; Refused when it is not one."""
    if not isinstance(certs, list) or not certs or len(certs) > 256 or \
            not all(isinstance(c, str) and len(c) < 65536 for c in certs):
        raise Refused("certs must be a list of PEM certificates")
    out = []
    for text in certs:
        try:
            loaded = pki.load_certs(text.encode())
        except ValueError:
            raise Refused("a certificate that is not PEM") from None
        out += [(pki.common_name(c) or "", pki.fingerprint(c)) for c in loaded]
    return out


def _record_admission(gd, vol, certs, session: str, who: dict, added: list[str],
                      old_allow: str | None) -> None:
    entries = admissions(gd)
    added_fps = {pki.fingerprint(c) for text in added for c in pki.load_certs(text.encode())}
    patterns = [p for p in re.split(r"[ ,]+", (old_allow or "").strip()) if p]
    for name, fp in _named(certs):
        same = [e for e in entries if (e["volume"], e["session"], e["fingerprint"])
                == (vol.name, session, fp)]
        owned = fp in added_fps or any(e["fingerprint"] == fp and e["owned"] for e in entries)
        allow_added = (old_allow is not None and not any(fnmatch.fnmatchcase(name, p)
                                                         for p in patterns)) or \
            any(e["volume"] == vol.name and e["name"] == name and e["allow_added"]
                for e in entries)
        for e in same:
            entries.remove(e)
        entries.append({"volume": vol.name, "session": session, "name": name,
                        "fingerprint": fp, "token": who.get("token"),
                        "token_volume": who.get("volume"), "owned": owned,
                        "allow_added": allow_added})
    _write_admissions(gd, entries)


def _may_withdraw(who: dict, entry: dict) -> bool:
    """An admin (or the local root) may withdraw anything; a token what it
    admitted itself, or what a token limited to the same volume admitted."""
    if who.get("kind") == "local" or who.get("role") == "admin":
        return True
    if who.get("role") != "geo-replication":
        return False
    return entry["token"] == who.get("token") or (
        who.get("volume") is not None and entry["token_volume"] == who.get("volume")
        == entry["volume"])


async def withdraw(gd, vol, certs, set_option, session: str = "",
                   who: dict | None = None) -> dict:
    async with _SERIAL:
        return await _withdraw(gd, vol, certs, set_option, session, who)


async def _withdraw(gd, vol, certs, set_option, session: str, who: dict | None) -> dict:
    """Take back what push-pem admitted of `certs` to volume `vol` for the
    primary's `session` (`delete` of the session): the names leave the
    volume's auth.ssl-allow unless another admission of this volume still
    names them, the certificates leave the pool's client certificates
    unless another admission (any volume) still needs them or they were
    there before push-pem.  Answers {withdrawn, removed, ssl_allow, kept};
    Refused or OpFailed with nothing changed when it cannot."""
    if not isinstance(session, str) or len(session) > 200:
        raise Refused("session must be a string (the primary volume's id)")
    who = who or {}
    fps = {fp for _, fp in _named(certs)}
    entries = admissions(gd)
    mine = [e for e in entries if e["volume"] == vol.name and e["session"] == session
            and e["fingerprint"] in fps]
    if not mine:
        raise Refused(f"no certificate of this primary is recorded as admitted to volume "
                      f"{vol.name} on this node (push-pem admits on the node its token "
                      "was made on)")
    denied = sorted({e["name"] for e in mine if not _may_withdraw(who, e)})
    if denied:
        raise Refused(f"this token did not admit {', '.join(denied)} to volume {vol.name} "
                      "(only the token that admitted them, a token of the same volume or "
                      "an admin may withdraw them)")
    remaining = [e for e in entries if e not in mine]
    drop_names = {e["name"] for e in mine if e["allow_added"]} - {
        e["name"] for e in remaining if e["volume"] == vol.name}
    drop_fps = {e["fingerprint"] for e in mine if e["owned"]} - {
        e["fingerprint"] for e in remaining}
    old_clients = tls_setup.client_certs(gd)
    kept_certs = [c for c in (pki.load_certs(old_clients.encode()) if old_clients.strip()
                              else []) if pki.fingerprint(c) not in drop_fps]
    new_clients = "".join(pki.cert_pem(c).decode() for c in kept_certs)
    current = vol.options.get("auth.ssl-allow")
    allow = None
    if current is not None and drop_names:
        patterns = [p for p in re.split(r"[ ,]+", current.strip()) if p]
        left = [p for p in patterns if p not in drop_names]
        # an empty auth.ssl-allow would refuse every client: keep it as it is
        allow = ",".join(left) if left and left != patterns else None
    changed_clients = len(kept_certs) != len(pki.load_certs(old_clients.encode())
                                             if old_clients.strip() else [])
    await _apply(gd, old_clients, new_clients if changed_clients else None, set_option, allow)
    _write_admissions(gd, remaining)
    names = sorted({e["name"] for e in mine})
    removed = sorted({e["name"] for e in mine if e["fingerprint"] in drop_fps})
    return {"withdrawn": names, "removed": removed,
            "ssl_allow": allow if allow is not None else current,
            "kept": sorted(set(names) - set(removed))}


async def _apply(gd, old_clients: str, new_clients: str | None, set_option,
                 allow: str | None) -> None:
    """Write the pool's client certificates (`new_clients`; None: as they
    are) on every node, then the volume's auth.ssl-allow (`allow`; None: as
    it is); if either fails the certificates are put back."""
    if new_clients is not None:
        failed = [r for r in await tls_setup.pool_wide(gd, new_clients, None) if "error" in r]
        if failed:
            await _put_back(gd, old_clients)
            raise OpFailed("the CA list could not be written on "
                           + "; ".join(f"{r['node']}: {r['error']}" for r in failed))
    if allow is not None:
        try:
            await set_option(allow)
        except BaseException:
            if new_clients is not None:
                await _put_back(gd, old_clients)
            raise


async def _put_back(gd, clients: str) -> None:
    for r in await tls_setup.pool_wide(gd, clients, None):
        if "error" in r:
            log.error("push-pem: the CA list on %s could not be put back: %s", r["node"],
                      r["error"])


__all__ = ["token_pin", "admitted", "admit", "withdraw", "admissions", "record_path",
           "check_admission", "ssl_allow_with", "pool_certificates", "write_worker_tls", "Refused", "ADMIT_PATH", "TOKEN_ENV"]
