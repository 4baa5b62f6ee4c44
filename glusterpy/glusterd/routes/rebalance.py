"""The REST routes of rebalance and remove-brick migration status
(glusterd/rebalance.py does the work; routes/api.py serves these routes
with its own and documents them in its OpenAPI document):

    POST /api/v1/volumes/{name}/rebalance {action: start|fix-layout|stop, force?}
         volume rebalance NAME [fix-layout] start [force] | stop - the task
         (with its id), and for stop every node's status
    GET  /api/v1/volumes/{name}/rebalance       rebalance status: a row per node
                                                (gluster's table) and the aggregate
    GET  /api/v1/volumes/{name}/remove-brick    the same for a remove-brick task
    GET  /api/v1/local/rebalance/{name}         this node's row (between peers)

A status document:

    {"volume", "kind": "rebalance"|"remove-brick", "task": {id, cmd, ...},
     "nodes": [{"node", "host", "status", "files", "size", "lookups",
                "failures", "skipped", "run-time", "time-left", "progress",
                "total-files", "total-size", "size-processed", "error"?}],
     "aggregate": {the sums, "status", "run-time", "time-left", "progress"}}

`status` is one of gluster's: not started, in progress, stopped,
completed, failed, and their "fix-layout ..." forms; `progress` is the
share done (0..1, null until the totals are counted); times in seconds.
"""

from __future__ import annotations

from ..http import ApiError, Response
from ..rebalance import active_task
from .handlers import peer_of, run_transaction, volume_or_404, volume_view

_ACTIONS = ("start", "fix-layout", "stop")

#: the schema of a status document, for the OpenAPI document
STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "volume": {"type": "string"},
        "kind": {"type": "string", "enum": ["rebalance", "remove-brick"]},
        "task": {"type": "object"},
        "nodes": {"type": "array", "items": {"type": "object", "properties": {
            "node": {"type": "string"}, "host": {"type": "string"},
            "status": {"type": "string"}, "files": {"type": "integer"},
            "size": {"type": "integer"}, "lookups": {"type": "integer"},
            "failures": {"type": "integer"}, "skipped": {"type": "integer"},
            "run-time": {"type": "number"}, "time-left": {"type": "number", "nullable": True},
            "progress": {"type": "number", "nullable": True}}}},
        "aggregate": {"type": "object"}}}


async def post_rebalance(gd, req):
    body = req.json()
    action = body.get("action")
    if action not in _ACTIONS:
        raise ApiError(400, "rebalance action must be start, fix-layout or stop (status: "
                            "GET)")
    force = body.get("force") in (True, 1, "1", "true", "yes", "on", "force")
    if action == "fix-layout" and force:
        raise ApiError(400, "fix-layout start takes no force")
    result = await run_transaction(gd, req, "rebalance",
                                   {"name": req.params["name"], "action": action, "force": force})
    vol = result["volume"]
    doc = {"volume": volume_view(gd, vol), "task": vol.tasks.get("rebalance")}
    if action == "stop":
        doc["status"] = await gd.rebalance.cluster_status(vol.name)
    return Response(200, doc)


async def get_rebalance(gd, req):
    vol = volume_or_404(gd, req.params["name"])
    kind, task = active_task(vol)
    if kind != "rebalance":
        raise ApiError(400, f"Rebalance not started for volume {vol.name}.")
    return Response(200, await gd.rebalance.cluster_status(vol.name))


async def get_remove_brick(gd, req):
    vol = volume_or_404(gd, req.params["name"])
    kind, task = active_task(vol)
    if kind != "remove-brick":
        raise ApiError(400, f"remove-brick not started for volume {vol.name}.")
    return Response(200, await gd.rebalance.cluster_status(vol.name))


async def local_rebalance(gd, req):
    peer_of(gd, req)
    volume_or_404(gd, req.params["name"])
    return Response(200, gd.rebalance.local_status(req.params["name"]))


async def annotate_tasks(gd, status: dict) -> None:
    """`volume status`'s task section: each migration task with the status
    it has over the cluster (the document itself is not changed)."""
    tasks = {}
    for kind, task in (status.get("tasks") or {}).items():
        task = dict(task)
        if kind in ("rebalance", "remove-brick"):
            task["status"] = (await gd.rebalance.cluster_status(status["name"]))[
                "aggregate"]["status"]
        tasks[kind] = task
    status["tasks"] = tasks


def routes(Route) -> list:
    """The routes, as routes/api.py's Route objects; the status routes
    carry the schema of what they answer (`response_schema`)."""
    out = [
        Route("POST", "/api/v1/volumes/{name}/rebalance", post_rebalance,
              "volume rebalance NAME fix-layout start | start [force] | stop",
              {"type": "object", "required": ["action"],
               "properties": {"action": {"type": "string", "enum": list(_ACTIONS)},
                              "force": {"type": "boolean", "description":
                                        "start: migrate files also to bricks with less "
                                        "free space"}}}),
        Route("GET", "/api/v1/volumes/{name}/rebalance", get_rebalance,
              "volume rebalance NAME status: every node's row and the aggregate"),
        Route("GET", "/api/v1/volumes/{name}/remove-brick", get_remove_brick,
              "volume remove-brick NAME ... status: every node's row and the aggregate"),
        Route("GET", "/api/v1/local/rebalance/{name}", local_rebalance,
              "this node's rebalance status row", internal=True),
    ]
    for r in out[1:]:
        r.response_schema = STATUS_SCHEMA if r.method == "GET" and not r.internal \
            else None
    return out


__all__ = ["routes", "STATUS_SCHEMA"]
