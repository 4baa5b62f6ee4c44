"""`volume profile NAME info`: each brick's debug/io-stats counters.

glusterd asks its bricks for their io-stats with a brick op
(GLUSTERD_BRICK_XLATOR_INFO); glusterpy's bricks have no brick-op program,
so each node connects to its own bricks as a client - a one-translator
graph, protocol/client to the brick's port on this host - and reads the
virtual xattr `trusted.glusterpy.io-stats` on the root, which the brick's
io-stats answers with its counters as JSON (xlators/debug/io_stats.py
documents the format).  Reading the counters this way, like `gluster volume
profile info`, starts the next interval.
"""

from __future__ import annotations

import json
import logging

import trio

from ..fops import Caller, FopError, Loc, caller
from ..graph import Graph
from ..keys import IOSTATS_XATTR
from . import volgen
from .model import Brick, Volume

log = logging.getLogger("glusterpy.glusterd.profile")

TIMEOUT = 15.0


def _probe_volfile(vol: Volume, brick: Brick) -> str:
    return ("volume profile-client\n    type protocol/client\n"
            "    option remote-host 127.0.0.1\n"
            f"    option remote-port {brick.port}\n"
            f"    option remote-subvolume {brick.path}\n"
            "    option transport-type tcp\n    option ping-timeout 10\nend-volume\n")


async def brick_xattr(vol: Volume, brick: Brick, key: str,
                      what: str) -> tuple[bytes | None, str | None]:
    """(the value of virtual xattr `key` on brick's root, None) or (None,
    why not, naming `what` was read): the probe client above, which
    `volume status clients` uses too (glusterd/clients.py)."""
    try:
        graph = Graph.from_text(_probe_volfile(vol, brick))
        with trio.fail_after(TIMEOUT):
            async with graph.running():
                if not await graph.wait_child_up(TIMEOUT):
                    return None, "the brick is not reachable"
                token = caller.set(Caller())
                try:
                    reply = await graph.top.getxattr(Loc.root(), key, None)
                finally:
                    caller.reset(token)
    except (FopError, OSError, trio.TooSlowError) as e:
        return None, f"reading {what} failed: {e}"
    raw = reply.dict.get(key)
    return (None, None) if raw is None else (bytes(raw), None)


async def brick_profile(vol: Volume, brick: Brick) -> dict:
    """One brick's io-stats report, or {"error": why}."""
    name = volgen.brick_id(brick)
    raw, error = await brick_xattr(vol, brick, IOSTATS_XATTR, "io-stats")
    if error is not None:
        return {"brick": name, "error": error}
    if raw is None:
        return {"brick": name, "error": "the brick has no debug/io-stats"}
    try:
        report = json.loads(raw)
    except ValueError as e:
        return {"brick": name, "error": f"unreadable io-stats report: {e}"}
    return {"brick": name, "report": report}


async def local_profile(gd, volname: str) -> list[dict]:
    vol = gd.volumes[volname]
    local = [b for b in vol.bricks if b.node == gd.uuid]
    out: list[dict] = [{}] * len(local)

    async def one(i, b):
        out[i] = await brick_profile(vol, b)
    async with trio.open_nursery() as nursery:
        for i, b in enumerate(local):
            nursery.start_soon(one, i, b)
    return out
