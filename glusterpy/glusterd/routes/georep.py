"""The REST routes of geo-replication (glusterd/georep.py does the work):

    POST /api/v1/volumes/{name}/geo-replication
         {secondary: "[USER@]HOST[:PORT]::VOL", action: create|start|stop|pause|
          resume|delete|config, force?, push_pem?, reset_sync_time?, key?, value?,
          reset?}                               the session command; answers the session
    GET  /api/v1/volumes/{name}/geo-replication?secondary=S    status: a row per
                                                primary brick (every node's), the sessions
    GET  /api/v1/geo-replication                status of every session of every volume
    GET  /api/v1/local/georep/{name}            this node's rows (between peers)
    POST /api/v1/volumes/{name}/geo-replication/primaries {certs: [PEM], primary}
                                                on a secondary: admit a primary pool's
                                                certificates (push-pem; admin or
                                                geo-replication token; glusterd/georep_pem.py)
    DELETE /api/v1/volumes/{name}/geo-replication/primaries {certs: [PEM], session}
                                                on a secondary: withdraw what push-pem
                                                admitted (`delete` of a push-pem session)

`create push-pem` takes the secondary's token in the body ("secondary_token"),
sends it to the secondary only (georep_pem.push) and neither stores nor audits it;
`delete` of a session created with push-pem takes the same token and asks the
secondary to withdraw the certificates (refused or unreachable: the session is
kept, unless `force`, which deletes it and says what was left admitted).

A status row: {primary_node, primary_volume, primary_brick, secondary_user,
secondary, secondary_node, status, crawl_status, last_synced, entry, data,
meta, failures, checkpoint_time, checkpoint_completed,
checkpoint_completion_time, faulty_reason} - GlusterFS's columns.
"""

from __future__ import annotations

import errno
import re

from ...gfapi.exceptions import LibgfapiException
from ..common import OpFailed
from ..georep import ACTIONS, parse_secondary, prepare_georep, session_key
from ..georep_pem import (ADMIT_PATH, Refused, admit, admitted, pool_certificates, token_pin,
                          withdraw)
from ..http import ApiError, Response
from .handlers import flag, peer_of, run_transaction, volume_or_404, who_asked

#: what `create push-pem` did (GlusterFS pushes the workers' SSH keys)
PUSH_PEM_NOTE = ("push-pem: the secondary admitted this pool's node certificates ({names}) "
                 "to {volume} (its glusterfs.ca, auth.ssl-allow {allow}); the workers "
                 "connect with TLS.")
_REMOTE_HOST = re.compile(r"^\s*option\s+remote-host\s+(\S+)\s*$", re.M)


async def probe_secondary(host: str, port: int, volume: str) -> tuple[list[str], str]:
    """The secondary's hosts (the named one, then its bricks' hosts, from its
    client volfile) and its volume id; ValueError when it cannot be asked or
    the volume does not exist there."""
    from ...gfapi import mgmt
    servers = mgmt.volfile_servers([host], port)
    try:
        fetched = await mgmt.fetch_volfile(servers, volume, timeout=10)
    except LibgfapiException as e:
        raise ValueError(f"secondary {host}::{volume} cannot be used: {e}") from None
    try:
        volume_id = await mgmt.fetch_volume_id(servers, volume, timeout=10)
    except LibgfapiException:
        volume_id = ""  # a volfile server without GET_VOLUME_INFO: the id stays unknown
    hosts = [host] + [h for h in _REMOTE_HOST.findall(fetched.text) if h != host]
    return list(dict.fromkeys(hosts)), volume_id


async def post_georep(gd, req):
    body = req.json()
    name = req.params["name"]
    action = body.get("action")
    if action not in ACTIONS:
        raise ApiError(400, f"geo-replication action must be one of {', '.join(ACTIONS)} "
                            "(status: GET)")
    args = {"name": name, "action": action, "secondary": body.get("secondary"),
            "force": flag(body.get("force"))}
    for k in ("key", "value"):
        if body.get(k) is not None:
            args[k] = body[k]
    if flag(body.get("reset")):
        args["reset"] = True
    try:
        user, host, port, svol = parse_secondary(body.get("secondary"))
    except ValueError as e:
        gd.audit(who_asked(req), "geo-replication", args, f"failed: {e}")
        raise ApiError(400, str(e)) from None
    if action == "create":
        volume_or_404(gd, name)
        args["push_pem"] = flag(body.get("push_pem"))
        try:
            args["secondary_hosts"], args["secondary_id"] = await probe_secondary(
                host, port, svol)
            if args["push_pem"]:
                # the session's own checks first ("already created", ...), so
                # that the secondary is asked only for a session that will be
                prepare_georep(gd.cluster(), args)
                pushed = await push(gd, host, port, svol, body.get("secondary_token"),
                                    f"{name} on {gd.names[0]}", gd.volumes[name].id)
                args["secondary_ca"] = pushed["ca"]
        except ValueError as e:
            gd.audit(who_asked(req), "geo-replication", args, f"failed: {e}")
            raise ApiError(400, str(e)) from None
    if action == "delete" and flag(body.get("reset_sync_time")):
        args["reset_sync_time"] = True
        try:
            await reset_sync_time(gd, name, session_key(host, port, svol))
        except ValueError as e:
            gd.audit(who_asked(req), "geo-replication", args, f"failed: {e}")
            raise ApiError(400, str(e)) from None
    withdrawn = None
    if action == "delete":
        withdrawn = await _withdraw_for_delete(gd, req, args, body, host, port, svol)
    result = await run_transaction(gd, req, "geo-replication", args)
    vol = result["volume"]
    key = session_key(host, port, svol)
    session = vol.georep.get(key)
    doc = {"volume": vol.name, "session": session.to_json() if session else None,
           "secondary": key}
    if args.get("push_pem"):
        doc["push_pem"] = PUSH_PEM_NOTE.format(
            names=", ".join(pushed.get("added") or []) or "none new", volume=svol,
            allow=pushed.get("ssl_allow") or "unset: any certificate its CA list trusts")
    if withdrawn is not None:
        doc["push_pem"] = withdrawn
    return Response(200, doc)


async def _withdraw_for_delete(gd, req, args, body, host, port, svol) -> str | None:
    """Before `delete` of a session created with push-pem: the secondary
    withdraws this pool's certificates.  What to tell the user, or None for
    a session without push-pem; ApiError 400 (session kept) when the
    secondary cannot be asked or refuses, unless force."""
    vol = volume_or_404(gd, args["name"])
    s = vol.georep.get(session_key(host, port, svol))
    if s is None or not s.secondary_ca:
        return None
    try:
        prepare_georep(gd.cluster(), args)  # "still active" before the secondary is asked
    except ValueError as e:
        gd.audit(who_asked(req), "geo-replication", args, f"failed: {e}")
        raise ApiError(400, str(e)) from None
    try:
        answer = await revoke(gd, host, port, svol, body.get("secondary_token"), vol.id)
    except ValueError as e:
        if not args["force"]:
            message = (f"{e}; the session is kept (`delete force` deletes it and leaves this "
                       "pool's certificates admitted on the secondary)")
            gd.audit(who_asked(req), "geo-replication", args, f"failed: {message}")
            raise ApiError(400, message) from None
        return (f"push-pem: {e}; deleted anyway (force): this pool's node certificates "
                f"({', '.join(_names(pool_certificates(gd)))}) are left admitted to {svol}")
    note = (f"push-pem: the secondary withdrew {', '.join(answer.get('withdrawn') or [])} "
            f"from {svol} (auth.ssl-allow {answer.get('ssl_allow') or 'unset'})")
    if answer.get("kept"):
        note += (f"; still trusted by its CA list for another session or volume: "
                 f"{', '.join(answer['kept'])}")
    return note + "."


def _names(certs: list[str]) -> list[str]:
    from ... import pki
    return [pki.common_name(c) or "?" for text in certs for c in pki.load_certs(text.encode())]


async def revoke(gd, host: str, port: int, volume: str, token, session: str) -> dict:
    """Ask the secondary to withdraw what push-pem admitted of this pool's
    certificates to `volume`: its answer, or ValueError saying why not (the
    token travels as in `push`)."""
    from ..http import PeerUnreachable, request
    try:
        pin = token_pin(token)
    except ValueError as e:
        raise ValueError(f"delete of a push-pem session: {e}") from None
    try:
        reply = await request(host, port, "DELETE", ADMIT_PATH.format(name=volume),
                              {"certs": pool_certificates(gd), "session": session},
                              headers={"authorization": f"Bearer {token.strip()}"},
                              tls=gd.trust.client_context(anonymous=True), pin=pin,
                              timeout=60)
    except PeerUnreachable as e:
        raise ValueError(f"the secondary {host}:{port} cannot be asked to withdraw this "
                         f"pool's certificates: {e}") from None
    doc = reply.doc if isinstance(reply.doc, dict) else {}
    if reply.status >= 400:
        raise ValueError(f"the secondary {host}:{port} refused to withdraw this pool's "
                         f"certificates: {doc.get('error', f'HTTP {reply.status}')}")
    return doc


async def push(gd, host: str, port: int, volume: str, token, primary: str,
               session: str = "") -> dict:
    """Ask the secondary's glusterpyd at host:port to admit this pool's
    certificates to `volume` (glusterd/georep_pem.py): its answer, or
    ValueError saying why not.  The token goes only to the node whose
    certificate its pin names, and we show no certificate of ours (a node
    of another pool would fail the handshake on one it never pinned)."""
    from ..http import PeerUnreachable, request
    pin = token_pin(token)
    try:
        reply = await request(host, port, "POST", ADMIT_PATH.format(name=volume),
                              {"certs": pool_certificates(gd), "primary": primary,
                               "session": session},
                              headers={"authorization": f"Bearer {token.strip()}"},
                              tls=gd.trust.client_context(anonymous=True), pin=pin,
                              timeout=60)
    except PeerUnreachable as e:
        raise ValueError(f"push-pem: the secondary {host}:{port} cannot be asked: {e}") from None
    return admitted(reply.status, reply.doc, f"{host}:{port}")


def _scope_check(gd, req, args: dict, what: str) -> None:
    scope = (req.conn.get("principal") or {}).get("volume")
    if scope is not None and scope != req.params["name"]:
        message = f"this geo-replication token admits certificates to volume {scope} only"
        gd.audit(who_asked(req), what, args, f"refused: {message}")
        raise ApiError(403, message)


async def delete_primaries(gd, req):
    """On a secondary: withdraw what push-pem admitted of a primary pool's
    certificates to a volume (glusterd/georep_pem.withdraw); answers
    {withdrawn, removed, ssl_allow, kept}."""
    body = req.json()
    session = body.get("session", "")
    args = {"volume": req.params["name"],
            "session": session if isinstance(session, str) else None}
    what = "geo-replication push-pem withdraw"
    _scope_check(gd, req, args, what)
    vol = volume_or_404(gd, req.params["name"])

    async def set_allow(value: str) -> None:
        await run_transaction(gd, req, "set", {"name": vol.name,
                                               "options": {"auth.ssl-allow": value}})
    try:
        doc = await withdraw(gd, vol, body.get("certs"), set_allow, session,
                             req.conn.get("principal"))
    except Refused as e:
        gd.audit(who_asked(req), what, args, f"failed: {e}")
        raise ApiError(403 if "did not admit" in str(e) else 400, str(e)) from None
    except OpFailed as e:
        gd.audit(who_asked(req), what, args, f"failed: {e}")
        raise ApiError(502, str(e)) from None
    gd.audit(who_asked(req), what, dict(args, names=doc["withdrawn"]), "success")
    return Response(200, doc)


async def post_primaries(gd, req):
    """On a secondary: admit a primary pool's certificates to a volume
    (glusterd/georep_pem.py); answers {ca, added, ssl_allow}."""
    body = req.json()
    primary = body.get("primary")
    args = {"volume": req.params["name"],
            "primary": primary if isinstance(primary, str) else None}
    _scope_check(gd, req, args, "geo-replication push-pem")
    vol = volume_or_404(gd, req.params["name"])

    async def set_allow(value: str) -> None:
        await run_transaction(gd, req, "set", {"name": vol.name,
                                               "options": {"auth.ssl-allow": value}})
    session = body.get("session", "")
    try:
        doc = await admit(gd, vol, body.get("certs"), set_allow, session,
                          req.conn.get("principal"))
    except Refused as e:
        gd.audit(who_asked(req), "geo-replication push-pem", args, f"failed: {e}")
        raise ApiError(400, str(e)) from None
    except OpFailed as e:
        gd.audit(who_asked(req), "geo-replication push-pem", args, f"failed: {e}")
        raise ApiError(502, str(e)) from None
    gd.audit(who_asked(req), "geo-replication push-pem", dict(args, names=doc["added"]),
             "success")
    return Response(200, doc)


async def reset_sync_time(gd, name: str, key: str) -> None:
    """`delete reset-sync-time`: remove the session's sync times (stime)
    from the secondary's root, where the workers keep them, so that a new
    session of this pair starts without them (GlusterFS removes its stime
    xattrs from the primary's bricks).  Done before the delete is
    committed: a session that is not stopped, or a secondary that cannot
    be reached, fails the command and nothing changes."""
    from ...gfapi.aio import AsyncVolume
    from ...georep.worker import stime_key
    vol = volume_or_404(gd, name)
    s = vol.georep.get(key)
    if s is None or s.status in ("Started", "Paused"):
        return  # the operation itself refuses it, with glusterd's message
    sets = max(len(vol.bricks) // max(vol.replica * vol.stripe, 1), 1)
    try:
        async with AsyncVolume.from_server(s.secondary_hosts or [s.secondary_host],
                                           s.secondary_volume, s.secondary_port) as sec:
            for i in range(sets):
                try:
                    await sec.removexattr("/", stime_key(vol.id, s.secondary_id or s.id, i))
                except OSError as e:
                    if e.errno not in (errno.ENODATA, getattr(errno, "ENOATTR", errno.ENODATA)):
                        raise
    except (OSError, LibgfapiException) as e:
        raise ValueError(f"reset-sync-time: the secondary {key} cannot be changed ({e}); "
                         "the session is kept") from None


async def _rows(gd, name: str, key: str | None) -> list[dict]:
    rows = gd.georep.local_status(name, key)
    for peer in gd.peers.values():
        try:
            doc = await gd.call_peer(peer, "GET", f"/api/v1/local/georep/{name}", timeout=5)
            rows.extend(r for r in doc["rows"] if key is None or r["session"] == key)
        except OpFailed:
            vol = gd.volumes[name]
            for s in vol.georep.values():
                if key is not None and s.key != key:
                    continue
                for b in vol.bricks:
                    if b.node == peer["uuid"]:
                        rows.append({"primary_node": b.host, "primary_volume": name,
                                     "primary_brick": b.path, "secondary_user":
                                     s.secondary_user, "secondary": s.key,
                                     "secondary_node": "N/A", "status": "Faulty",
                                     "crawl_status": "N/A", "last_synced": None,
                                     "faulty_reason": "its node does not answer",
                                     "session": s.key})
    order = {(b.host, b.path): i for i, b in enumerate(gd.volumes[name].bricks)}
    rows.sort(key=lambda r: (r["session"], order.get((r["primary_node"], r["primary_brick"]),
                                                      0)))
    return rows


async def get_georep(gd, req):
    vol = volume_or_404(gd, req.params["name"])
    key = None
    if req.arg("secondary"):
        try:
            _, host, port, svol = parse_secondary(req.arg("secondary"))
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        key = session_key(host, port, svol)
        if key not in vol.georep:
            raise ApiError(404, f"Geo-replication session between {vol.name} and {key} "
                                "does not exist.")
    from ..georep import effective_config
    sessions = {k: dict(s.to_json(), effective_config=effective_config(s))
                for k, s in vol.georep.items() if key is None or k == key}
    return Response(200, {"volume": vol.name, "sessions": sessions,
                          "rows": await _rows(gd, vol.name, key)})


async def get_all(gd, req):
    rows, sessions = [], {}
    for name, vol in sorted(gd.volumes.items()):
        if vol.georep:
            rows += await _rows(gd, name, None)
            sessions[name] = {k: s.to_json() for k, s in vol.georep.items()}
    return Response(200, {"sessions": sessions, "rows": rows})


async def local_georep(gd, req):
    peer_of(gd, req)
    volume_or_404(gd, req.params["name"])
    return Response(200, {"rows": gd.georep.local_status(req.params["name"])})


def routes(Route) -> list:
    return [
        Route("POST", "/api/v1/volumes/{name}/geo-replication", post_georep,
              "volume geo-replication NAME [USER@]HOST::VOL create [push-pem] [force] | "
              "start [force] | stop [force] | pause | resume | delete [reset-sync-time] [force] | "
              "config KEY VALUE | config checkpoint now",
              {"type": "object", "required": ["secondary", "action"],
               "properties": {"secondary": {"type": "string",
                                            "pattern": "^([^@]+@)?[^:]+(:[0-9]+)?::[^:]+$"},
                              "action": {"type": "string", "enum": list(ACTIONS)},
                              "force": {"type": "boolean"}, "push_pem": {"type": "boolean"},
                              "reset_sync_time": {"type": "boolean"},
                              "secondary_token": {"type": "string"},
                              "key": {"type": "string"}, "value": {"type": "string"},
                              "reset": {"type": "boolean"}}}),
        Route("GET", "/api/v1/volumes/{name}/geo-replication", get_georep,
              "volume geo-replication NAME [HOST::VOL] status [detail] | config",
              query=("secondary",)),
        Route("GET", "/api/v1/geo-replication", get_all,
              "volume geo-replication status: every session"),
        Route("GET", "/api/v1/local/georep/{name}", local_georep,
              "this node's geo-replication status rows", internal=True),
        Route("POST", "/api/v1/volumes/{name}/geo-replication/primaries", post_primaries,
              "on a secondary: admit a primary pool's node certificates to the volume "
              "(create push-pem)",
              {"type": "object", "required": ["certs"],
               "properties": {"certs": {"type": "array", "items": {"type": "string"}},
                              "primary": {"type": "string"},
                              "session": {"type": "string"}}}, access="georep"),
        Route("DELETE", "/api/v1/volumes/{name}/geo-replication/primaries", delete_primaries,
              "on a secondary: withdraw what push-pem admitted of a primary pool's "
              "certificates (geo-replication delete)",
              {"type": "object", "required": ["certs"],
               "properties": {"certs": {"type": "array", "items": {"type": "string"}},
                              "session": {"type": "string"}}}, access="georep"),
    ]


__all__ = ["routes", "probe_secondary"]
