"""glusterpyd's REST routes: the ROUTES table that `make_app` serves and
`openapi` describes, who may call each (`ACCESS`, `authorize`), and the
handlers of node, peers, volumes, options, search, tokens and the peer
routes of the cluster transaction.  The routes of heal, rebalance,
clients, profile, tls and the console are in their own modules here and
join the table below; routes/__init__.py describes the whole API.
"""


from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

import trio

from ...options import OptionError
from .. import heal, heal_task, tls_setup, volgen
from ... import localsock
from ..common import VERSION, OpFailed
from ..http import ApiError, Request, Response
from ..trust import ROLES, TOKEN_NAME, TrustError
from .handlers import flag, peer_of, run_transaction, volume_or_404, volume_view, who_asked
from . import clients, console, georep, profile, rebalance
from . import heal as heal_routes, tls_setup as tls_setup_routes

if TYPE_CHECKING:
    from ..daemon import Glusterd
    from ..model import Volume


@dataclass
class Route:
    method: str
    pattern: str
    handler: Callable[[Glusterd, Request], Awaitable[Response]]
    summary: str
    body: dict | None = None  # JSON schema of the request body
    query: tuple[str, ...] = ()
    internal: bool = False
    #: see ACCESS; by default GET reads, other methods write, internal routes
    #: are for peers
    access: str | None = None

    def __post_init__(self):
        if self.access is None:
            self.access = "peer" if self.internal else \
                "read" if self.method == "GET" else "write"
        assert self.access in ACCESS, self.access

    def regex(self) -> re.Pattern:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


# -- who may do what ------------------------------------------------------------

#: what a route needs (Route.access):
#:   public  anyone (the API's description)
#:   read    a local administrator, any token, a peer
#:   write   a local administrator or an admin token
#:   local   a local administrator only (tokens are made and revoked on the node)
#:   peer    a member of this node's pool (its pinned certificate)
#:   join    anyone: the node itself refuses unless it is in no pool (glusterd/daemon.py)
#:   georep  what `write` admits, or a geo-replication token (push-pem's credential,
#:           which a secondary's admin hands to a primary pool; nothing else admits it)
ACCESS = ("public", "read", "write", "local", "peer", "join", "georep")


def principal(gd: Glusterd, req: Request) -> dict:
    """Who the caller is, from what the connection proved (glusterd/trust.py):
    {"kind": local|peer|token|bad-token|anonymous, "role": ..., ...}."""
    conn = req.conn
    if conn.get("transport") == "unix":
        uid = conn.get("uid")
        if uid is not None and localsock.trusted_uid(uid):
            return {"kind": "local", "role": "admin", "uid": uid}
        return {"kind": "anonymous", "uid": uid}
    cert = conn.get("cert")
    if cert:
        for peer in gd.peers.values():
            if peer.get("fingerprint") == cert:
                return {"kind": "peer", "role": "peer", "peer": peer["uuid"]}
    auth = req.headers.get("authorization", "")
    scheme, _, credential = auth.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        found = gd.trust.tokens.check(credential.strip())
        if found is None:
            return {"kind": "bad-token"}
        p = {"kind": "token", "role": found[1], "token": found[0]}
        volume = gd.trust.tokens.volume_of(found[0])
        return p if volume is None else dict(p, volume=volume)
    return {"kind": "anonymous"}


def authorize(gd: Glusterd, req: Request, access: str) -> None:
    """ApiError 401/403 unless the caller may use a route needing `access`;
    every refusal is written to the audit log."""
    p = principal(gd, req)
    req.conn["principal"] = p
    kind, role = p["kind"], p.get("role")
    if access in ("public", "join"):
        return
    if access == "peer":
        if kind == "peer":
            return
        refusal = (403, f"{req.path} is for members of this node's pool only")
    elif access == "local":
        if kind == "local":
            return
        refusal = (403, "tokens are managed on the node itself: run `glusterpy token ...` "
                        "there, as root")
    elif kind == "local" or role == "admin" or (access == "read" and role in ("read-only",
                                                                               "peer")):
        return
    elif access == "georep" and role == "geo-replication":
        return
    elif kind == "anonymous":
        refusal = (401, "authentication required: send Authorization: Bearer TOKEN (make "
                        "one on the node with `glusterpy token create NAME --role "
                        "admin|read-only`), or run the CLI on the node as root")
    elif kind == "bad-token":
        refusal = (401, "the token is not valid on this node (unknown, revoked or "
                        "mistyped)")
    elif role == "geo-replication":
        refusal = (403, "a geo-replication token may only admit a primary pool's "
                        f"certificates (create push-pem), not {req.method} {req.path}")
    else:
        refusal = (403, f"{'a read-only token' if role == 'read-only' else 'a peer'} may not "
                        f"change state ({req.method} {req.path})")
    gd.audit(who_asked(req), f"{req.method} {req.path}", {}, f"refused: {refusal[1]}")
    raise ApiError(*refusal)


# -- public handlers ---------------------------------------------------------


async def get_node(gd, req):
    return Response(200, gd.node_info())


async def get_openapi(gd, req):
    return Response(200, openapi())


async def _peer_states(gd) -> list[dict]:
    peers = list(gd.peers.values())
    connected = [False] * len(peers)

    async def check(i, p):
        connected[i] = await gd.peer_connected(p)
    async with trio.open_nursery() as n:
        for i, p in enumerate(peers):
            n.start_soon(check, i, p)
    return [{"uuid": p["uuid"], "hostname": p["hostnames"][0], "hostnames": p["hostnames"],
             "port": p["port"], "state": "Peer in Cluster",
             "connected": connected[i]} for i, p in enumerate(peers)]


async def get_peers(gd, req):
    return Response(200, {"peers": await _peer_states(gd)})


async def get_pool(gd, req):
    pool = await _peer_states(gd)
    pool.append({"uuid": gd.uuid, "hostname": "localhost", "hostnames": gd.names,
                 "port": gd.port, "state": "Peer in Cluster", "connected": True})
    return Response(200, {"pool": pool})


async def post_peer(gd, req):
    body = req.json()
    host = body.get("host")
    if not isinstance(host, str) or not host:
        raise ApiError(400, "peer probe needs a host")
    port = body.get("port", gd.port)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ApiError(400, f"port {port!r} is not a TCP port")
    who = who_asked(req)
    try:
        note = await gd.probe(host, port, who)
    except OpFailed as e:
        gd.audit(who, "peer probe", body, f"failed: {e}")
        raise ApiError(409 if "Another transaction" in str(e) else 400, str(e)) from None
    gd.audit(who, "peer probe", body, "success" + (f": {note}" if note else ""))
    await tls_setup.refresh(gd)
    return Response(200, {"message": note})


async def delete_peer(gd, req):
    host = req.params["host"]
    force = flag(req.arg("force"))
    who = who_asked(req)
    try:
        await gd.detach(host, force)
    except OpFailed as e:
        gd.audit(who, "peer detach", {"host": host, "force": force}, f"failed: {e}")
        raise ApiError(400, str(e)) from None
    gd.audit(who, "peer detach", {"host": host, "force": force}, "success")
    await tls_setup.refresh(gd)
    return Response(200, {"message": ""})


async def get_volumes(gd, req):
    return Response(200, {"volumes": [volume_view(gd, v) for _, v in
                                      sorted(gd.volumes.items())]})


async def get_volume(gd, req):
    return Response(200, volume_view(gd, volume_or_404(gd, req.params["name"])))


async def post_volume(gd, req):
    body = req.json()
    args = {k: body.get(k) for k in ("name", "bricks", "replica", "arbiter", "stripe",
                                     "transport", "device", "force")}
    result = await run_transaction(gd, req, "create", args)
    return Response(201, volume_view(gd, result["volume"]))


async def delete_volume(gd, req):
    await run_transaction(gd, req, "delete", {"name": req.params["name"]})
    return Response(200, {"message": f"{req.params['name']} deleted"})


async def post_start(gd, req):
    body = req.json()
    result = await run_transaction(gd, req, "start", {"name": req.params["name"],
                                                      "force": flag(body.get("force"))})
    return Response(200, volume_view(gd, result["volume"]))


async def post_stop(gd, req):
    body = req.json()
    result = await run_transaction(gd, req, "stop", {"name": req.params["name"],
                                                     "force": flag(body.get("force"))})
    return Response(200, volume_view(gd, result["volume"]))


async def _cluster_bricks(gd, name: str | None) -> list[dict]:
    out = gd.local_brick_status(name)
    for peer in gd.peers.values():
        try:
            doc = await gd.call_peer(peer, "GET", "/api/v1/local/bricks" +
                                     (f"?volume={name}" if name else ""), timeout=5)
            out.extend(doc["bricks"])
        except OpFailed:
            for vol in gd.volumes.values():
                if name is not None and vol.name != name:
                    continue
                out.extend({"volume": vol.name, "brick": volgen.brick_id(b),
                            "host": b.host, "path": b.path, "node": b.node,
                            "port": 0, "online": False, "pid": None, "unreachable": True}
                           for b in vol.bricks if b.node == peer["uuid"])
    return out


def _status_of(gd, vol: Volume, bricks: list[dict]) -> dict:
    # `bricks` are status rows (dicts); the volume's bricks are records
    mine = {(b["node"], b["path"]): b for b in bricks if b["volume"] == vol.name}
    rows = [mine.get((b.node, b.path), {"brick": volgen.brick_id(b), "port": 0,
                                               "online": False, "pid": None})
            for b in vol.bricks]
    return {"name": vol.name, "status": vol.status, "bricks": rows,
            "tasks": vol.tasks}


async def get_volume_status(gd, req):
    vol = volume_or_404(gd, req.params["name"])
    if vol.status != "Started":
        raise ApiError(400, f"Volume {vol.name} is not started")
    st = _status_of(gd, vol, await _cluster_bricks(gd, vol.name))
    await rebalance.annotate_tasks(gd, st)
    return Response(200, st)


async def get_status(gd, req):
    bricks = await _cluster_bricks(gd, None)
    sts = [_status_of(gd, v, bricks) for _, v in sorted(gd.volumes.items())
           if v.status == "Started"]
    for st in sts:
        await rebalance.annotate_tasks(gd, st)
    return Response(200, {"volumes": sts})


async def post_bricks(gd, req):
    body = req.json()
    result = await run_transaction(gd, req, "add-brick", {"name": req.params["name"],
                                                          "bricks": body.get("bricks"),
                                                          "replica": body.get("replica"),
                                                          "stripe": body.get("stripe"),
                                                          "force": flag(body.get("force"))})
    return Response(200, volume_view(gd, result["volume"]))


async def post_remove_brick(gd, req):
    body = req.json()
    result = await run_transaction(gd, req, "remove-brick", {"name": req.params["name"],
                                                             "bricks": body.get("bricks"),
                                                             "action": body.get("action")})
    vol = result["volume"]
    doc = {"volume": volume_view(gd, vol), "task": vol.tasks.get("remove-brick")}
    if doc["task"] and vol.name in gd.volumes:   # every node's migration
        doc["status"] = await gd.rebalance.cluster_status(vol.name)
    return Response(200, doc)


async def get_options(gd, req):
    vol = volume_or_404(gd, req.params["name"])
    key = req.arg("key", "all")
    keys = volgen.set_keys()
    if key != "all":
        try:
            volgen.lookup_key(key)
        except OptionError as e:
            raise ApiError(400, str(e)) from None
        wanted = [key]
    else:
        wanted = sorted(keys)
    return Response(200, {"options": [{"key": k, "value": vol.options.get(
        k, keys[k].option.default if k in keys else None), "set": k in vol.options}
        for k in wanted]})


async def post_options(gd, req):
    body = req.json()
    options = body.get("options")
    if not isinstance(options, dict) or not options:
        raise ApiError(400, "the body needs \"options\": {KEY: VALUE, ...}")
    result = await run_transaction(gd, req, "set",
                                   {"name": req.params["name"], "options": options})
    return Response(200, volume_view(gd, result["volume"]))


async def delete_option(gd, req):
    result = await run_transaction(gd, req, "reset", {"name": req.params["name"],
                                                      "key": req.params["key"]})
    return Response(200, volume_view(gd, result["volume"]))


async def get_option_help(gd, req):
    keys = volgen.set_keys()
    return Response(200, {"options": [
        {"key": k, "default": sk.option.default, "description": sk.option.description,
         "type": sk.option.type.value, "choices": list(sk.option.choices),
         "min": sk.option.min, "max": sk.option.max, "translators": list(sk.types),
         "help": sk.help()} for k, sk in sorted(keys.items())]})


async def get_log(gd, req):
    volume = req.arg("volume")
    try:
        limit = int(req.arg("limit", "0"))
    except ValueError:
        raise ApiError(400, "limit must be a number") from None
    entries = [e for e in gd.store.read_audit()
               if volume is None or (e.get("args") or {}).get("name") == volume]
    if limit > 0:
        entries = entries[-limit:]
    return Response(200, {"entries": entries})


async def get_search(gd, req):
    from ... import search
    text = req.arg("q", "")
    try:
        query = search.parse(text)
    except search.SearchError as e:
        raise ApiError(400, f"search: {e}", position=e.position) from None
    views = [volume_view(gd, v) for _, v in sorted(gd.volumes.items())]
    return Response(200, {"query": query.print(), "volumes": query.apply(views)})


async def get_whoami(gd, req):
    # the console's sign-in: what this token may do decides which buttons it shows
    p = dict(req.conn.get("principal") or {})
    return Response(200, {"kind": p.get("kind"), "role": p.get("role"),
                          "name": p.get("token") or (f"uid {p['uid']}" if "uid" in p else
                                                     p.get("peer")),
                          "node": gd.node_info()})


async def get_search_complete(gd, req):
    from ... import search
    return Response(200, search.complete(req.arg("q", "")))


# -- tokens (local administrators only) -----------------------------------------


async def get_tokens(gd, req):
    return Response(200, {"tokens": gd.trust.tokens.listing()})


async def post_token(gd, req):
    body = req.json()
    name, role, volume = body.get("name"), body.get("role", "read-only"), body.get("volume")
    args = {"name": name, "role": role, **({"volume": volume} if volume is not None else {})}
    try:
        token = gd.trust.tokens.create(name, role, gd.trust.fingerprint, volume)
    except TrustError as e:
        gd.audit(who_asked(req), "token create", args, f"failed: {e}")
        raise ApiError(409 if "exists" in str(e) else 400, str(e)) from None
    gd.audit(who_asked(req), "token create", args, "success")
    return Response(201, {"name": name, "role": role, "token": token,
                          **({"volume": volume} if volume is not None else {})})


async def delete_token(gd, req):
    name = req.params["name"]
    try:
        gd.trust.tokens.revoke(name)
    except TrustError as e:
        gd.audit(who_asked(req), "token revoke", {"name": name}, f"failed: {e}")
        raise ApiError(404, str(e)) from None
    gd.audit(who_asked(req), "token revoke", {"name": name}, "success")
    return Response(200, {"message": f"token {name} revoked"})


# -- peer handlers -------------------------------------------------------------


def _peer_op(fn):
    async def handler(gd, req):
        peer_of(gd, req)
        try:
            return Response(200, await fn(gd, req, req.json()) or {})
        except OpFailed as e:
            raise ApiError(409 if "Another transaction" in str(e) else 400, str(e)) from None
    handler.__doc__ = fn.__doc__
    return handler


@_peer_op
async def cluster_lock(gd, req, body):
    gd.take_lock(str(body.get("txn")), str(body.get("holder")))


@_peer_op
async def cluster_unlock(gd, req, body):
    gd.release_lock(str(body.get("txn")))


@_peer_op
async def cluster_stage(gd, req, body):
    return gd.stage(body)


@_peer_op
async def cluster_commit(gd, req, body):
    plan = body["plan"]
    await gd.commit(plan, rollback=bool(body.get("rollback")))
    if not body.get("rollback"):
        gd.audit(who_asked(req), plan["op"], plan["args"], "success (committed for a peer)")


@_peer_op
async def cluster_add_peer(gd, req, body):
    gd.check_lock(str(body.get("txn")))
    gd.add_peer(body["peer"])


@_peer_op
async def cluster_leave(gd, req, body):
    await gd.leave()
    gd.audit(who_asked(req), "peer detach", {}, "success (this node left the cluster)")


async def cluster_join(gd, req):
    body = req.json()
    nodes, volumes = body.get("nodes"), body.get("volumes", {})
    if not isinstance(nodes, list) or not nodes or not isinstance(volumes, dict):
        raise ApiError(400, "a join needs {\"nodes\": [...], \"volumes\": {...}}")
    if gd.peers or gd.volumes:
        why = (f"{gd.names[0]} is already part of another cluster" if gd.peers else
               f"{gd.names[0]} has volumes configured")
        gd.audit(who_asked(req), "peer probe", {}, f"refused: {why}")
        raise ApiError(403, why)
    try:
        info = await gd.join(nodes, volumes, req.peer[0] if req.peer else None)
    except OpFailed as e:
        gd.audit(who_asked(req), "peer probe", {}, f"refused: {e}")
        raise ApiError(400, str(e)) from None
    gd.audit(who_asked(req), "peer probe", {}, "success (this node joined the cluster)")
    return Response(200, info)


async def cluster_remove_peer(gd, req):
    peer_of(gd, req)
    gd.remove_peer(req.params["uuid"])
    return Response(200, {})


async def local_bricks(gd, req):
    return Response(200, {"bricks": gd.local_brick_status(req.arg("volume"))})


_BRICKS = {"type": "array", "items": {"type": "string", "pattern": "^[^:]+:/.*$"},
           "description": "HOST:/PATH of each brick"}
_COUNT = {"type": "integer", "minimum": 1}

ROUTES = [
    Route("GET", "/api/v1/openapi.json", get_openapi, "This document.", access="public"),
    Route("GET", "/api/v1/node", get_node, "This node's identity."),
    Route("GET", "/api/v1/peers", get_peers, "peer status"),
    Route("POST", "/api/v1/peers", post_peer, "peer probe",
          {"type": "object", "required": ["host"],
           "properties": {"host": {"type": "string"}, "port": {"type": "integer"}}}),
    Route("DELETE", "/api/v1/peers/{host}", delete_peer, "peer detach", query=("force",)),
    Route("GET", "/api/v1/pool", get_pool, "pool list"),
    Route("GET", "/api/v1/volumes", get_volumes, "volume info / volume list"),
    Route("POST", "/api/v1/volumes", post_volume, "volume create",
          {"type": "object", "required": ["name", "bricks"],
           "properties": {"name": {"type": "string"}, "bricks": _BRICKS,
                          "replica": _COUNT, "arbiter": {"type": "integer", "enum": [1]},
                          "stripe": _COUNT, "transport": {"type": "string", "enum": ["tcp"]},
                          "device": {"type": "string", "enum": ["lv", "vg"],
                                     "description": "bricks are LVM volume groups (storage/bd)"},
                          "force": {"type": "boolean"}}}),
    Route("GET", "/api/v1/volumes/{name}", get_volume, "volume info NAME"),
    Route("DELETE", "/api/v1/volumes/{name}", delete_volume, "volume delete"),
    Route("POST", "/api/v1/volumes/{name}/start", post_start, "volume start",
          {"type": "object", "properties": {"force": {"type": "boolean"}}}),
    Route("POST", "/api/v1/volumes/{name}/stop", post_stop, "volume stop",
          {"type": "object", "properties": {"force": {"type": "boolean"}}}),
    Route("GET", "/api/v1/volumes/{name}/status", get_volume_status, "volume status NAME"),
    Route("GET", "/api/v1/status", get_status, "volume status (all)"),
    Route("POST", "/api/v1/volumes/{name}/bricks", post_bricks, "volume add-brick",
          {"type": "object", "required": ["bricks"],
           "properties": {"bricks": _BRICKS, "replica": _COUNT, "force": {"type": "boolean"}}}),
    Route("POST", "/api/v1/volumes/{name}/remove-brick", post_remove_brick,
          "volume remove-brick",
          {"type": "object", "required": ["bricks", "action"],
           "properties": {"bricks": _BRICKS, "action": {
               "type": "string", "enum": ["start", "status", "stop", "commit", "force"]}}}),
    Route("GET", "/api/v1/volumes/{name}/options", get_options, "volume get", query=("key",)),
    Route("POST", "/api/v1/volumes/{name}/options", post_options, "volume set",
          {"type": "object", "required": ["options"],
           "properties": {"options": {"type": "object",
                                      "additionalProperties": {"type": "string"}}}}),
    Route("DELETE", "/api/v1/volumes/{name}/options/{key}", delete_option,
          "volume reset (key or all)"),
    Route("GET", "/api/v1/options", get_option_help, "volume set help"),
    *profile.routes(Route),
    Route("GET", "/api/v1/log", get_log, "the audit log", query=("volume", "limit")),
    Route("GET", "/api/v1/search", get_search,
          "volume search: `Volumes: name = vm* and type = replicate sortby name desc` "
          "(400 names the position of an error)", query=("q",)),
    Route("GET", "/api/v1/whoami", get_whoami, "the caller and its role (admin, read-only)"),
    Route("GET", "/api/v1/search/complete", get_search_complete,
          "what may come next at the end of a search query", query=("q",)),
    Route("POST", "/api/v1/volumes/{name}/heal", heal_routes.post_heal,
          "volume heal NAME [full]: start an index (or full) crawl on every brick's "
          "self-heal daemon",
          {"type": "object", "properties": {"op": {"type": "string",
                                                   "enum": ["index", "full"]}}}),
    Route("GET", "/api/v1/volumes/{name}/heal/info", heal_routes.get_heal_info,
          "volume heal NAME info: per brick, the entries that need a heal"),
    Route("GET", "/api/v1/volumes/{name}/heal/split-brain", heal_routes.get_heal_split_brain,
          "volume heal NAME info split-brain: per brick, the entries in split-brain"),
    Route("GET", "/api/v1/volumes/{name}/heal/statistics", heal_routes.get_heal_statistics,
          "volume heal NAME statistics: the self-heal daemons' crawls"),
    Route("GET", "/api/v1/volumes/{name}/heal/statistics/heal-count", heal_routes.get_heal_count,
          "volume heal NAME statistics heal-count: entries in each brick's index"),
    Route("GET", "/api/v1/volumes/{name}/heal/task", heal_routes.get_heal_task,
          "the heal of NAME as a task (the console's Tasks page): per brick the entries "
          "pending and healed since it began, progress, heal rate and time left"),
    Route("POST", "/api/v1/volumes/{name}/heal/split-brain", heal_routes.post_split_brain,
          "volume heal NAME split-brain bigger-file|latest-mtime FILE | source-brick "
          "HOST:/BRICK [FILE]",
          {"type": "object", "required": ["policy"],
           "properties": {"policy": {"type": "string", "enum": list(heal.POLICIES)},
                          "file": {"type": "string", "description":
                                   "a path from the volume's root, or gfid:UUID"},
                          "brick": {"type": "string", "pattern": "^[^:]+:/.*$",
                                    "description": "source-brick: HOST:/PATH"}}}),
    Route("GET", "/api/v1/tokens", get_tokens, "token list", access="local"),
    Route("POST", "/api/v1/tokens", post_token, "token create: the token is shown once",
          {"type": "object", "required": ["name"],
           "properties": {"name": {"type": "string", "pattern": TOKEN_NAME.pattern},
                          "role": {"type": "string", "enum": list(ROLES)},
                          "volume": {"type": "string", "description":
                                     "a geo-replication token: this volume only"}}},
          access="local"),
    Route("DELETE", "/api/v1/tokens/{name}", delete_token, "token revoke", access="local"),
    # between peers
    Route("POST", "/api/v1/cluster/lock", cluster_lock, "take the cluster lock", internal=True),
    Route("POST", "/api/v1/cluster/unlock", cluster_unlock, "release it", internal=True),
    Route("POST", "/api/v1/cluster/stage", cluster_stage, "stage a plan", internal=True),
    Route("POST", "/api/v1/cluster/commit", cluster_commit, "commit (or roll back) a plan",
          internal=True),
    Route("POST", "/api/v1/cluster/join", cluster_join, "join the caller's cluster",
          internal=True, access="join"),
    Route("POST", "/api/v1/cluster/peers", cluster_add_peer, "record a new peer",
          internal=True),
    Route("DELETE", "/api/v1/cluster/peers/{uuid}", cluster_remove_peer, "forget a peer",
          internal=True),
    Route("POST", "/api/v1/cluster/leave", cluster_leave, "leave the cluster", internal=True),
    Route("GET", "/api/v1/local/bricks", local_bricks, "this node's bricks", internal=True,
          query=("volume",)),
    *profile.peer_routes(Route),
    Route("POST", "/api/v1/local/heal/{name}", heal_routes.local_heal,
          "this node's self-heal daemon's answer to a heal op", internal=True),
]
ROUTES += rebalance.routes(Route)
ROUTES += clients.routes(Route)
ROUTES += georep.routes(Route)
for _r in ROUTES:   # the task route carries its answer's schema, as rebalance's do
    if _r.handler is heal_routes.get_heal_task:
        _r.response_schema = heal_task.TASK_SCHEMA
ROUTES += tls_setup_routes.routes(Route)
ROUTES += console.routes(Route)
_COMPILED = [(r, r.regex()) for r in ROUTES]


def make_app(gd: Glusterd):
    async def app(req: Request) -> Response:
        allowed = []
        for route, regex in _COMPILED:
            m = regex.match(req.path)
            if not m:
                continue
            if route.method != req.method:
                allowed.append(route.method)
                continue
            req.params = m.groupdict()
            authorize(gd, req, route.access)
            if route.body is None and req.body and req.method in ("GET", "DELETE"):
                raise ApiError(400, f"{req.method} {req.path} takes no request body")
            return await route.handler(gd, req)
        if allowed:
            raise ApiError(405, f"{req.method} is not allowed on {req.path} (allowed: "
                                f"{', '.join(sorted(set(allowed)))})")
        raise ApiError(404, f"no such resource: {req.path}")
    return app


def openapi() -> dict:
    paths: dict[str, dict] = {}
    error = {"description": "refused", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}
    for r in ROUTES:
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in re.findall(r"\{(\w+)\}", r.pattern)]
        params += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
                   for q in r.query]
        op = {"summary": r.summary, "operationId": r.handler.__name__,
              "tags": ["peer-to-peer" if r.internal else "management"],
              "x-access": r.access,
              "responses": {"200": {"description": "done", "content": {
                  "application/json": {"schema": getattr(r, "response_schema", None) or
                                       {"type": "object"}}}},
                  "400": error, "401": error, "403": error, "404": error, "409": error}}
        if r.access in ("public", "join"):
            op["security"] = []
        elif r.access in ("peer", "local"):
            # no token opens these: a pinned peer certificate or the unix socket
            op["security"] = [{"peerCertificate": []}] if r.access == "peer" else []
            op["description"] = ("Members of the pool only (mutual TLS with a pinned node "
                                 "certificate)." if r.access == "peer" else
                                 "Local administrators only (the unix socket).")
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": bool(r.body.get("required")), "content": {
                "application/json": {"schema": r.body}}}
        paths.setdefault(r.pattern, {})[r.method.lower()] = op
    schemes = {
        "bearerToken": {"type": "http", "scheme": "bearer",
                        "description": "`glusterpy token create NAME --role admin|read-only|"
                                       "geo-replication` on the node; read-only tokens may "
                                       "GET only, geo-replication ones push-pem only"},
        "peerCertificate": {"type": "mutualTLS",
                            "description": "a pool member's pinned node certificate"}}
    # 3.1: the version that knows mutualTLS
    return {"openapi": "3.1.0",
            "info": {"title": "glusterpyd management API", "version": VERSION,
                     "description": "The REST API of glusterpy's management daemon: "
                                    "peers, volumes, options, profiles, self-heal, "
                                    "audit log.  Over TCP every route but this document "
                                    "needs a token (or, for peer routes, a member's "
                                    "certificate); on the node, the unix socket "
                                    "WORKDIR/run/glusterpyd.socket serves root as admin."},
            "paths": paths,
            "security": [{"bearerToken": []}],
            "components": {"securitySchemes": schemes,
                           "schemas": {"Error": {
                               "type": "object", "required": ["error"],
                               "properties": {"error": {"type": "string"}}}}}}


__all__ = ["make_app", "openapi", "ROUTES"]
