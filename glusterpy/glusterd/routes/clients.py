"""`volume status NAME clients`'s routes: the public one, and the peer
route by which the node that got the request asks the others for their
bricks' rows (glusterd/clients.py reads them and describes a row).
"""

from __future__ import annotations

from ..clients import cluster_clients, local_clients
from ..http import ApiError, Response
from ..model import Volume
from .handlers import volume_or_404

#: what GET .../status/clients answers (declared in the OpenAPI document)
CLIENTS_SCHEMA = {
    "type": "object", "required": ["volume", "bricks"],
    "properties": {
        "volume": {"type": "string"},
        "bricks": {"type": "array", "items": {
            "type": "object", "required": ["brick", "online", "clients"],
            "properties": {
                "brick": {"type": "string"}, "host": {"type": "string"},
                "path": {"type": "string"}, "node": {"type": "string"},
                "online": {"type": "boolean"},
                "error": {"type": "string"},
                "clients": {"type": ["array", "null"], "items": {
                    "type": "object",
                    "properties": {
                        "hostname": {"type": "string", "description": "HOST:PORT"},
                        "bytes_read": {"type": ["integer", "null"]},
                        "bytes_written": {"type": ["integer", "null"]},
                        "op_version": {"type": ["integer", "null"]},
                        "process_name": {"type": "string"},
                        "client_uid": {"type": "string"},
                        "subvolume": {"type": "string"},
                        "fds": {"type": "integer"}}}}}}}}}


def _started_volume(gd, name: str) -> Volume:
    vol = volume_or_404(gd, name)
    if vol.status != "Started":
        raise ApiError(400, f"Volume {name} is not started")
    return vol


async def get_status_clients(gd, req):
    vol = _started_volume(gd, req.params["name"])
    return Response(200, await cluster_clients(gd, vol.name))


async def local_clients_handler(gd, req):
    """Peer route: this node's bricks' rows."""
    vol = _started_volume(gd, req.params["name"])
    return Response(200, {"bricks": await local_clients(gd, vol.name)})


def routes(Route) -> list:
    """The routes, as routes/api.py's Route objects."""
    public = Route("GET", "/api/v1/volumes/{name}/status/clients", get_status_clients,
                   "volume status NAME clients: per brick, the connected clients (address, "
                   "bytes read and written, op-version)")
    public.response_schema = CLIENTS_SCHEMA
    return [public,
            Route("GET", "/api/v1/local/clients/{name}", local_clients_handler,
                  "this node's bricks' clients", internal=True)]


__all__ = ["routes", "CLIENTS_SCHEMA"]
