"""`volume heal`: glusterd's heal op and glfsheal, inside glusterpyd.

GlusterFS splits `gluster volume heal` in two:

* **through glusterd to the self-heal daemons** (glusterd_op_stage_heal_volume,
  glusterd_handle_heal_cmd, then a brick op to every node's glustershd):
  ``heal NAME`` (index), ``heal NAME full``, ``heal NAME statistics`` and
  ``statistics heal-count``.  Here `shd_op` checks the request with
  glusterd's messages, asks this node's glustershd over its control socket
  (glusterd/shd.py) and every peer holding bricks of the volume through the
  peer route ``POST /api/v1/local/heal/{name}`` (`local_shd_op`), and merges
  the per-brick answers.  A set whose daemon answered op_ret -1 (a brick
  down, fewer than two up) fails the operation with glusterd's "Glusterd
  Syncop Mgmt brick op 'Heal' failed" - the up bricks' healers were still
  started, as in GlusterFS.
* **glfsheal**, a short-lived client of the volume the CLI starts for
  ``info``, ``info split-brain``, ``info summary`` and the ``split-brain``
  resolution verbs.  Here the node that receives the request builds the same
  short-lived client graph in its own process (`heal_graph`: the volume's
  client volfile without performance translators, the replicate sets with
  ``background-self-heal-count 0`` - and data/metadata/entry self-heal on
  for the resolution verbs - as glfsh_set_heal_options sets them), waits
  for the bricks to answer, and calls cluster/replicate's building blocks:
  `heal_info_entries` for every brick (xattrop, dirty and entry-changes
  indices, each entry classified by `heal_info`), `resolve_split_brain` for
  a file (found by path through the whole graph, or as ``gfid:UUID``) or,
  for ``source-brick`` without a file, for every entry of that brick's
  xattrop and dirty indices (glfsh_heal_from_brick).  A brick that is down
  reports "Transport endpoint is not connected" and no count, as glfsheal.

Departures: a non-replicated volume is refused with glusterd's type
message for every verb (glusterd 10 says "Self-heal-daemon is disabled"
for ``heal NAME`` on a distribute volume, since that check comes first);
``statistics heal-count`` counts each brick's xattrop index once, from the
daemon on its own node (GlusterFS's daemons each report every brick they
see); ``heal-count replica HOST:BRICK`` and ``granular-entry-heal`` are not
offered (``volume set cluster.granular-entry-heal`` is).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from typing import TYPE_CHECKING, Any

import trio

from ..fops import Caller, ClientPid, FopError, GFID, Loc, ROOT_GFID, caller
from ..graph import Graph
from . import ops, volgen
from .common import OpFailed
from .model import Volume
from .shd import ShdUnavailable

if TYPE_CHECKING:
    from .daemon import Glusterd

log = logging.getLogger("glusterpy.glusterd.heal")

#: how long a heal graph waits for the bricks to answer
CONNECT_TIMEOUT = 15.0
#: after the graph is up, how long it waits for bricks still reconnecting
STRAGGLER_GRACE = 2.0
HEAL_TIMEOUT = 600.0
POLICIES = ("bigger-file", "latest-mtime", "source-brick")
SHD_OPS = {"index": "heal-index", "full": "heal-full", "statistics": "statistics",
           "heal-count": "heal-count"}
NOT_CONNECTED = os.strerror(errno.ENOTCONN)
OFFLINE_MSG = "Self-heal daemon is not running. Check self-heal daemon log file."
BRICK_OP_FAILED = ("Glusterd Syncop Mgmt brick op 'Heal' failed. Please check glustershd "
                   "log file for details.")


class HealRefused(Exception):
    """A heal request refused or failed; the message is GlusterFS's."""

    def __init__(self, message: str, status: int = 400, **extra):
        super().__init__(message)
        self.message = message
        self.status = status
        self.extra = extra


# --------------------------------------------------------------------------
# checks (glusterd_op_stage_heal_volume, glusterd_handle_heal_cmd, glfsheal)


def _volume(gd: Glusterd, name: str) -> Volume:
    try:
        ops.check_volname(name)
    except ValueError as e:
        raise HealRefused(str(e)) from None
    vol = gd.volumes.get(name)
    if vol is None:
        raise HealRefused(f"Volume {name} does not exist", 404)
    return vol


def _replicated(vol: Volume) -> bool:
    return vol.replica > 1


def check_shd_op(gd: Glusterd, name: str, op: str) -> Volume:
    if op not in SHD_OPS:
        raise HealRefused(f"unknown heal operation {op!r} (one of {', '.join(SHD_OPS)})")
    vol = _volume(gd, name)
    if vol.status != "Started":
        raise HealRefused(f"Volume {name} is not started.")
    if not _replicated(vol):
        if op in ("index", "full"):
            raise HealRefused(f"Volume {name} is not of type replicate or disperse")
        raise HealRefused("This command is supported for only volume of replicated type. "
                          f"Volume {name} is not of type replicate")
    if not volgen.shd_enabled(vol):
        raise HealRefused("Self-heal-daemon is disabled. Heal will not be triggered on "
                          f"volume {name}")
    return vol


def check_glfsheal(gd: Glusterd, name: str, what: str = "replicate") -> Volume:
    vol = _volume(gd, name)
    if vol.status != "Started":
        raise HealRefused(f"Volume {name} is not started (Or) All the bricks are not running.")
    if not _replicated(vol):
        raise HealRefused(f"This command is supported for only volumes of {what} type. "
                          f"Volume {name} is not of type {what}")
    return vol


# --------------------------------------------------------------------------
# the heal op: through every node's glustershd


async def local_shd_op(gd: Glusterd, name: str, op: str) -> dict:
    """This node's glustershd's answer for volume `name`: {"node", "sets"};
    HealRefused when this node's daemon is not there to ask."""
    vol = check_shd_op(gd, name, op)
    if not any(b.node == gd.uuid for b in vol.bricks):
        return {"node": gd.uuid, "sets": []}
    if not gd.shd.running:
        raise HealRefused(OFFLINE_MSG)
    try:
        reply = await gd.shd.call({"op": SHD_OPS[op], "volume": name})
    except ShdUnavailable as e:
        log.warning("glustershd: %s", e)
        raise HealRefused(OFFLINE_MSG) from None
    return {"node": gd.uuid, "sets": reply.get("sets", [])}


def _brick_index(vol: Volume) -> dict[str, int]:
    return {volgen.brick_id(b): i for i, b in enumerate(vol.bricks)}


async def shd_op(gd: Glusterd, name: str, op: str) -> dict:
    """`heal NAME [full|statistics|statistics heal-count]` on the cluster."""
    vol = check_shd_op(gd, name, op)
    answers = [await local_shd_op(gd, name, op)]
    holders = {b.node for b in vol.bricks}
    for peer in gd.peers.values():
        if peer["uuid"] not in holders:
            continue
        try:
            answers.append(await gd.call_peer(peer, "POST", f"/api/v1/local/heal/{name}",
                                              {"op": op}, timeout=120))
        except OpFailed as e:
            raise HealRefused(f"Commit failed on {peer['hostnames'][0]}. Error: {e}") from None
    index = _brick_index(vol)
    rows: dict[int, dict] = {}
    op_ret = 0
    for answer in answers:
        for s in answer.get("sets", []):
            if s.get("op_ret", 0) < 0:
                op_ret = -1
            for child in s.get("children", []):
                i = index.get(child.get("brick"))
                if i is None:
                    continue
                owner = vol.bricks[i].node
                row = dict(child, brick=volgen.brick_id(vol.bricks[i]), number=i,
                           node=answer.get("node"))
                old = rows.get(i)
                # the daemon on the brick's own node speaks for it
                if old is None or (row["node"] == owner and old["node"] != owner):
                    rows[i] = row
    result = {"volume": name, "op": op, "op_ret": op_ret,
              "bricks": [rows[i] for i in sorted(rows)]}
    if op_ret < 0 and op in ("index", "full"):
        raise HealRefused(BRICK_OP_FAILED, bricks=result["bricks"])
    return result


# --------------------------------------------------------------------------
# glfsheal's graph


@contextlib.asynccontextmanager
async def heal_graph(vol: Volume, resolve: bool = False):
    """The volume's client graph as glfsheal builds it; yields (graph, the
    replicate translators in set order).  HealRefused when no brick answers."""
    name = vol.name
    options = [f"{name}-replicate-*.background-self-heal-count=0"]
    if resolve:
        options += [f"{name}-replicate-*.{key}=on" for key in
                    ("data-self-heal", "metadata-self-heal", "entry-self-heal")]
    # logged in as the volume's internal user: glfsheal's pid must count on
    # a volume that squashes root (protocol/server drops an untrusted one)
    graph = Graph.from_text(volgen.client_volfile(vol, perf=False, trusted=True),
                            f"{name} (glfsheal)",
                            options)
    sets = [graph.by_name[f"{name}-replicate-{i}"]
            for i in range(len(vol.bricks) // vol.replica)]
    heard = trio.Event()

    def listener(event, source, data):
        heard.set()
    graph.root.listeners.append(listener)
    async with graph.running():
        with trio.move_on_after(CONNECT_TIMEOUT):
            await heard.wait()
        if not any(any(afr.child_up) for afr in sets):
            raise HealRefused(f"Volume {name} is not started (Or) All the bricks are "
                              "not running.")
        with trio.move_on_after(STRAGGLER_GRACE):
            while not all(all(afr.child_up) for afr in sets):
                await trio.sleep(0.05)
        # the fops made here (not the graph's own tasks, started before)
        # are glfsheal's
        token = caller.set(Caller(pid=ClientPid.GLFS_HEAL, lk_owner=os.urandom(8)))
        try:
            yield graph, sets
        finally:
            caller.reset(token)


def _set_and_child(vol: Volume, brick_number: int) -> tuple[int, int]:
    return divmod(brick_number, vol.replica)


async def heal_info(gd: Glusterd, name: str, split_brain_only: bool = False) -> dict:
    """`heal NAME info [split-brain]`: per brick, what its indices list
    that still needs a heal (see the module docstring)."""
    vol = check_glfsheal(gd, name, "replicate" if split_brain_only else "replicate/disperse")
    bricks = []
    async with heal_graph(vol) as (graph, sets):
        for i, brick in enumerate(vol.bricks):
            s, c = _set_and_child(vol, i)
            afr = sets[s]
            row: dict[str, Any] = {"brick": volgen.brick_id(brick), "number": i}
            if not afr.child_up[c]:
                row.update(status=NOT_CONNECTED, entries=None, count=None)
            else:
                try:
                    entries = await afr.heal_info_entries(c, split_brain_only)
                    row.update(status="Connected", count=len(entries), entries=[
                        {"gfid": str(g), "path": p, "status": st} for g, p, st in entries])
                except FopError as e:
                    row.update(status=os.strerror(e.errno), entries=None, count=None)
            bricks.append(row)
    return {"volume": name, "split_brain_only": split_brain_only, "bricks": bricks}


# --------------------------------------------------------------------------
# split-brain resolution (glfsh_heal_splitbrain_file, glfsh_heal_from_brick)


async def _lookup_path(top, path: str):
    """glfs_resolve of `path`, component by component from the root."""
    gfid = ROOT_GFID
    reply = await top.lookup(Loc(path="/", gfid=ROOT_GFID), None)
    walked = ""
    for part in [p for p in path.split("/") if p]:
        walked += "/" + part
        reply = await top.lookup(Loc(path=walked, pargfid=gfid, name=part), None)
        gfid = reply.iatt.gfid
    return gfid, reply.iatt


async def _resolve_file(graph, file: str):
    """(gfid, iatt) of FILE - an absolute path or gfid:UUID - or
    HealRefused with glfsheal's "Lookup failed" message."""
    top = graph.top
    if file.startswith("gfid:"):
        try:
            gfid = GFID(file[5:])
        except ValueError:
            raise HealRefused(f"Lookup failed on {file}:{os.strerror(errno.EINVAL)}.") from None
        try:
            reply = await top.lookup(Loc(gfid=gfid), None)
        except FopError as e:
            raise HealRefused(f"Lookup failed on {file}:{os.strerror(e.errno)}.") from None
        return gfid, reply.iatt
    parent = os.path.dirname(file.rstrip("/")) or "/"
    try:
        await _lookup_path(top, parent)
    except FopError as e:
        raise HealRefused(f"Lookup failed on {parent}:{os.strerror(e.errno)}") from None
    try:
        return await _lookup_path(top, file)
    except FopError as e:
        raise HealRefused(f"Lookup failed on {file}:{os.strerror(e.errno)}.") from None


async def _resolve_on_sets(sets, gfid: GFID, policy: str, child_name: str | None,
                           only_set: int | None) -> str:
    """resolve_split_brain on the set(s) holding the inode; "" when healed
    on one, else the first failure message."""
    targets = [sets[only_set]] if only_set is not None else sets
    messages = []
    for afr in targets:
        if only_set is None and len(targets) > 1:
            try:
                await afr.lookup(Loc(gfid=gfid), None)
            except FopError:
                continue
        try:
            msg = await afr.resolve_split_brain(gfid, policy, child_name)
        except FopError as e:
            msg = e.message if isinstance(e.message, str) and e.message else \
                os.strerror(e.errno)
        if not msg:
            return ""
        messages.append(msg)
    return messages[0] if messages else os.strerror(errno.ENOENT)


def _find_brick(gd: Glusterd, vol: Volume, text: str) -> int:
    """The number of brick HOST:/PATH in the volume (glfsheal matches the
    client's remote-host and remote-subvolume)."""
    bad = HealRefused(f"\"{text}\"- No such brick available in the volume.")
    try:
        host, path = ops.parse_brick(text)
    except ValueError:
        raise bad from None
    for i, b in enumerate(vol.bricks):
        if b.path == path and b.host == host:
            return i
    try:
        node = gd.cluster().resolve_host(host)
    except ValueError:
        raise bad from None
    for i, b in enumerate(vol.bricks):
        if b.path == path and b.node == node:
            return i
    raise bad


async def split_brain(gd: Glusterd, name: str, policy: str, file: str | None = None,
                      brick: str | None = None) -> dict:
    """`heal NAME split-brain bigger-file|latest-mtime FILE` and
    `... source-brick HOST:/BRICK [FILE]`.  FILE mode: HealRefused unless
    it healed; source-brick without FILE: every entry of that brick's
    xattrop and dirty indices, each result listed."""
    if policy not in POLICIES:
        raise HealRefused(f"unknown split-brain policy {policy!r} (one of "
                          f"{', '.join(POLICIES)})")
    if policy != "source-brick" and not file:
        raise HealRefused(f"{policy} needs the FILE to heal")
    if policy == "source-brick" and not brick:
        raise HealRefused("source-brick needs the brick, as HOST:/BRICK")
    if policy != "source-brick" and brick:
        raise HealRefused(f"{policy} takes no brick")
    if file is not None and not (isinstance(file, str) and
                                 (file.startswith("/") or file.startswith("gfid:"))):
        raise HealRefused("<FILE> must be absolute path w.r.t. the volume, starting with '/'")
    vol = check_glfsheal(gd, name)
    number = _find_brick(gd, vol, brick) if brick else None
    results = []
    notes = []
    async with heal_graph(vol, resolve=True) as (graph, sets):
        only_set = child = child_name = None
        if number is not None:
            only_set, child = _set_and_child(vol, number)
            child_name = sets[only_set].children[child].name
            if not sets[only_set].child_up[child]:
                raise HealRefused(f"Healing failed: brick {brick} is not connected "
                                  f"({NOT_CONNECTED})")
        if file:
            gfid, iatt = await _resolve_file(graph, file)
            if stat.S_ISDIR(iatt.mode):
                if policy == "bigger-file":
                    raise HealRefused("'bigger-file' not a valid option for directories.")
                if policy == "source-brick":
                    notes.append(f"'source-brick' option used on a directory ({file}). "
                                 "Performing conservative merge.")
            msg = await _resolve_on_sets(sets, gfid, policy, child_name, only_set)
            if msg:
                raise HealRefused(f"Healing {file} failed: {msg}.", notes=notes)
            results.append({"file": file, "gfid": str(gfid), "healed": True,
                            "message": f"Healed {file}."})
        else:
            afr = sets[only_set]
            seen: dict[GFID, None] = {}
            for kind in ("xattrop", "dirty"):
                try:
                    for g in await afr.pending_entries(child, kind):
                        seen.setdefault(g)
                except FopError as e:
                    if e.errno not in (errno.ENOENT, errno.ESTALE, errno.ENOTSUP):
                        raise HealRefused(f"Status: {os.strerror(e.errno)}") from None
            for g in seen:
                label = f"gfid:{g}"
                msg = await _resolve_on_sets(sets, g, policy, child_name, only_set)
                results.append({"file": label, "gfid": str(g), "healed": not msg,
                                "message": f"Healed {label}." if not msg else
                                f"Healing {label} failed: {msg}."})
    return {"volume": name, "policy": policy, "brick": brick, "file": file, "notes": notes,
            "results": results, "healed": sum(1 for r in results if r["healed"])}


__all__ = ["shd_op", "local_shd_op", "heal_info", "split_brain", "heal_graph",
           "HealRefused", "POLICIES", "HEAL_TIMEOUT"]
