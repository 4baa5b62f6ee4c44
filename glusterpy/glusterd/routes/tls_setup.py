"""`tls setup` and `tls client`'s routes, and the peer route by which the
node that got one writes every other node's files (glusterd/tls_setup.py
does the work and explains the files).
"""

from __future__ import annotations

from ... import pki
from ..http import ApiError, Response
from ..store import read_json
from ..tls_setup import apply_locally, ca_bundle, client_certs, pool_wide, state_path
from .handlers import who_asked


def _management_arg(body: dict) -> bool | None:
    value = body.get("management")
    if value is None:
        return None
    if value in (True, "on"):
        return True
    if value in (False, "off"):
        return False
    raise ApiError(400, "management must be on or off")


async def post_setup(gd, req):
    body = req.json()
    management = _management_arg(body)
    results = await pool_wide(gd, client_certs(gd), management)
    failed = [r for r in results if "error" in r]
    gd.audit(who_asked(req), "tls setup", {"management": management},
             "success" if not failed else f"failed on {', '.join(r['node'] for r in failed)}")
    return Response(200 if not failed else 502, {"nodes": results, **(
        {"error": "; ".join(f"{r['node']}: {r['error']}" for r in failed)} if failed else {})})


async def post_client(gd, req):
    from ..trust import TOKEN_NAME
    body = req.json()
    name = body.get("name")
    if not isinstance(name, str) or not TOKEN_NAME.match(name):
        raise ApiError(400, f"client name {name!r}: use 1-64 letters, digits, '_' or '-'")
    key = pki.new_key()
    cert = pki.cert_pem(pki.self_signed(name, key)).decode()
    clients = client_certs(gd) + cert
    results = await pool_wide(gd, clients, None)
    failed = [r for r in results if "error" in r]
    gd.audit(who_asked(req), "tls client", {"name": name},
             "success" if not failed else f"failed on {', '.join(r['node'] for r in failed)}")
    return Response(201, {"name": name, "key": pki.key_pem(key).decode(), "cert": cert,
                          "ca": ca_bundle(gd, clients), "nodes": results,
                          "management": bool(read_json(state_path(gd)).get("management"))})


async def cluster_tls(gd, req):
    body = req.json()
    clients = body.get("clients", "")
    if not isinstance(clients, str):
        raise ApiError(400, "clients must be PEM text")
    try:
        return Response(200, apply_locally(gd, clients, _management_arg(body)))
    except ValueError as e:
        raise ApiError(400, f"bad client certificates: {e}") from None


def routes(Route) -> list:
    return [
        Route("POST", "/api/v1/tls/setup", post_setup,
              "tls setup: GlusterFS's TLS files on every node of the pool",
              {"type": "object", "properties": {"management": {
                  "type": "string", "enum": ["on", "off"],
                  "description": "management TLS (secure-access) on every node"}}},
              access="local"),
        Route("POST", "/api/v1/tls/clients", post_client,
              "tls client NAME: a client's key and certificate, trusted pool-wide",
              {"type": "object", "required": ["name"],
               "properties": {"name": {"type": "string"}}}, access="local"),
        Route("POST", "/api/v1/cluster/tls", cluster_tls,
              "write this node's TLS files (for tls setup)", internal=True),
    ]


__all__ = ["routes"]
