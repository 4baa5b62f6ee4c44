"""`volume profile NAME start|stop|info`'s routes, and the peer route by
which the node that got `info` asks the others for their bricks'
counters (glusterd/profile.py reads them).
"""

from __future__ import annotations

from ..common import OpFailed
from ..http import ApiError, Response
from ..profile import local_profile
from .handlers import run_transaction, volume_or_404, volume_view


async def post_profile(gd, req):
    body = req.json()
    action = body.get("action")
    if action not in ("start", "stop"):
        raise ApiError(400, "profile action must be start or stop (info: GET)")
    result = await run_transaction(gd, req, "profile",
                                   {"name": req.params["name"], "action": action})
    return Response(200, volume_view(gd, result["volume"]))


async def get_profile(gd, req):
    vol = volume_or_404(gd, req.params["name"])
    if not vol.profile:
        raise ApiError(400, f"Profile on Volume {vol.name} is not started")
    bricks = await local_profile(gd, vol.name)
    for peer in gd.peers.values():
        try:
            doc = await gd.call_peer(peer, "GET", f"/api/v1/local/profile/{vol.name}",
                                     timeout=30)
            bricks.extend(doc["bricks"])
        except OpFailed as e:
            bricks.append({"brick": peer["hostnames"][0], "error": str(e)})
    return Response(200, {"volume": vol.name, "bricks": bricks})


async def local_profile_handler(gd, req):
    volume_or_404(gd, req.params["name"])
    return Response(200, {"bricks": await local_profile(gd, req.params["name"])})


def routes(Route) -> list:
    """The routes, as routes/api.py's Route objects, in the order the API
    has always listed them (the peer route goes last)."""
    return [
        Route("POST", "/api/v1/volumes/{name}/profile", post_profile, "volume profile start|stop",
              {"type": "object", "required": ["action"],
               "properties": {"action": {"type": "string", "enum": ["start", "stop"]}}}),
        Route("GET", "/api/v1/volumes/{name}/profile", get_profile, "volume profile info"),
    ]


def peer_routes(Route) -> list:
    return [
        Route("GET", "/api/v1/local/profile/{name}", local_profile_handler,
              "this node's bricks' io-stats", internal=True),
    ]


__all__ = ["routes", "peer_routes"]
