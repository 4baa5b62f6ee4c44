"""`volume status NAME clients`: who is connected to each brick.

GlusterFS's glusterd asks each glusterfsd for its clients with a brick op
(GLUSTERD_BRICK_STATUS, GF_CLI_STATUS_CLIENTS) and the CLI prints, per
brick, every client transport's address, bytes read and written and
op-version.  glusterpy's bricks have no brick-op program, so each node
reads its own bricks the way `volume profile info` does
(glusterd/profile.py): a probe client to the brick's port on this host
reads the virtual xattr CLIENTS_XATTR on the root, which protocol/server
answers itself with its connections but the probe's (the bytes are the
kernel's count for each TCP connection).  The node that got the request
asks each peer holding bricks for its rows over the peer route
``GET /api/v1/local/clients/{name}``, as for profile and the bricks' status
(the routes: glusterd/routes/clients.py).

A row: {"brick", "host", "path", "node", "online", "clients": [{"hostname"
HOST:PORT, "bytes_read", "bytes_written", "op_version", "process_name",
"client_uid", "subvolume", "fds"}], "error"?}.  An offline brick has no
clients and "online": false; a brick or peer that did not answer has an
"error" and "clients": null.
"""

from __future__ import annotations

import dataclasses
import json

import trio

from ..keys import CLIENTS_XATTR
from . import volgen
from .common import OpFailed
from .model import Brick, Volume
from .profile import brick_xattr


def _row(vol: Volume, brick: Brick, online: bool) -> dict:
    return {"brick": volgen.brick_id(brick), "host": brick.host, "path": brick.path,
            "node": brick.node, "online": online, "clients": [] if not online else None}


async def _brick_row(vol: Volume, brick: Brick, online: bool) -> dict:
    row = _row(vol, brick, online)
    if not online:
        return row
    raw, error = await brick_xattr(vol, brick, CLIENTS_XATTR, "the brick's clients")
    if error is None and raw is None:
        error = "the brick does not list its clients"
    if error is None:
        try:
            row["clients"] = json.loads(raw)["clients"]
        except (ValueError, KeyError, TypeError) as e:
            error = f"unreadable clients report: {e}"
    if error is not None:
        row["error"] = error
    return row


async def local_clients(gd, name: str) -> list[dict]:
    """This node's bricks of volume `name`, each with its clients."""
    vol = gd.volumes[name]
    status = {r["path"]: r for r in gd.local_brick_status(name)}
    local = [b for b in vol.bricks if b.node == gd.uuid]
    out: list[dict] = [{}] * len(local)

    async def one(i, b):
        st = status.get(b.path, {})
        # the port the brick signed in with (status shows 0 when offline)
        out[i] = await _brick_row(vol, dataclasses.replace(b, port=st.get("port") or b.port),
                                  bool(st.get("online")))
    async with trio.open_nursery() as nursery:
        for i, b in enumerate(local):
            nursery.start_soon(one, i, b)
    return out


async def cluster_clients(gd, name: str) -> dict:
    """Every brick's row, in the volume's brick order."""
    vol = gd.volumes[name]
    rows = {(r["node"], r["path"]): r for r in await local_clients(gd, name)}
    holders = {b.node for b in vol.bricks}
    for peer in gd.peers.values():
        if peer["uuid"] not in holders:
            continue
        try:
            doc = await gd.call_peer(peer, "GET", f"/api/v1/local/clients/{name}", timeout=30)
            rows.update({(r["node"], r["path"]): r for r in doc["bricks"]})
        except OpFailed as e:
            for b in vol.bricks:
                if b.node == peer["uuid"]:
                    rows[(b.node, b.path)] = dict(
                        _row(vol, b, False), clients=None,
                        error=f"{peer['hostnames'][0]} did not answer: {e}")
    return {"volume": name, "bricks": [
        rows.get((b.node, b.path)) or dict(_row(vol, b, False), clients=None,
                                                  error="no node answered for this brick")
        for b in vol.bricks]}


__all__ = ["cluster_clients", "local_clients"]
