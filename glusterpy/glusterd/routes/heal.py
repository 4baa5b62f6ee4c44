"""`volume heal`'s REST routes: the verbs of glusterd/heal.py (which does
the work and explains it) as requests, each bounded by HEAL_TIMEOUT, its
refusals as API errors and its changes in the audit log.
"""

from __future__ import annotations

import trio

from ..heal import HEAL_TIMEOUT, HealRefused, heal_info, local_shd_op, shd_op, split_brain
from ..http import ApiError, Response
from .handlers import who_asked


def _api_error(e: HealRefused) -> ApiError:
    return ApiError(e.status, e.message, **e.extra)


def _audit(gd, req, op: str, args: dict, result: str) -> None:
    gd.audit(who_asked(req), op, args, result)


async def _guard(coro):
    try:
        with trio.fail_after(HEAL_TIMEOUT):
            return await coro
    except HealRefused as e:
        raise _api_error(e) from None
    except trio.TooSlowError:
        raise ApiError(504, f"the heal operation took longer than {HEAL_TIMEOUT:.0f}s") \
            from None


async def post_heal(gd, req):
    body = req.json()
    op = body.get("op", "index")
    if op not in ("index", "full"):
        raise ApiError(400, "heal op must be index or full (statistics: GET .../heal/"
                            "statistics)")
    args = {"name": req.params["name"], "op": op}
    try:
        result = await _guard(shd_op(gd, req.params["name"], op))
    except ApiError as e:
        _audit(gd, req, "heal", args, f"failed: {e.message}")
        raise
    _audit(gd, req, "heal", args, "success")
    gd.heal_tasks.requested(req.params["name"], op, who_asked(req))
    return Response(200, result)


async def get_heal_info(gd, req):
    return Response(200, await _guard(heal_info(gd, req.params["name"])))


async def get_heal_split_brain(gd, req):
    return Response(200, await _guard(heal_info(gd, req.params["name"], True)))


async def get_heal_statistics(gd, req):
    return Response(200, await _guard(shd_op(gd, req.params["name"], "statistics")))


async def get_heal_task(gd, req):
    """The heal as a task: per brick pending, healed, rate and time left
    (glusterd/heal_task.py)."""
    return Response(200, await _guard(gd.heal_tasks.status(req.params["name"])))


async def get_heal_count(gd, req):
    return Response(200, await _guard(shd_op(gd, req.params["name"], "heal-count")))


async def post_split_brain(gd, req):
    body = req.json()
    args = {"name": req.params["name"], **{k: body.get(k) for k in ("policy", "file", "brick")}}
    for key in ("policy", "file", "brick"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise ApiError(400, f"{key} must be a string")
    try:
        result = await _guard(split_brain(gd, req.params["name"], body.get("policy"),
                                          body.get("file"), body.get("brick")))
    except ApiError as e:
        _audit(gd, req, "heal split-brain", args, f"failed: {e.message}")
        raise
    _audit(gd, req, "heal split-brain", args, f"success: {result['healed']} healed")
    return Response(200, result)


async def local_heal(gd, req):
    """Peer route: this node's glustershd's answer."""
    if not req.headers.get("x-glusterpy-node"):
        raise ApiError(400, "peer calls must name the calling node (X-Glusterpy-Node)")
    body = req.json()
    return Response(200, await _guard(local_shd_op(gd, req.params["name"],
                                                   str(body.get("op")))))


__all__ = ["post_heal", "get_heal_info", "get_heal_split_brain", "get_heal_statistics",
           "get_heal_task", "get_heal_count", "post_split_brain", "local_heal"]
