"""The two kinds of volume `from gluster import gfapi` is checked against:
glusterpy's (glusterpyd on a free port, a replica-3 volume of
`glusterpy brick` processes) and GlusterFS 10's (the private glusterd on
24007 of tests/realgluster.py, a one-brick volume).  Used by
tests/test_gluster_gfapi_compat.py and the example program's test.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Served:
    """A started volume: where a client finds it and what it is."""

    kind: str                 # "glusterpy" or "glusterfs10"
    host: str
    port: int
    volname: str
    volume_id: uuid.UUID
    bricks: list[Path] = field(default_factory=list)
    #: the management daemon's unix socket (proto="unix")
    socket: Path | None = None


@contextlib.contextmanager
def glusterpy_volume(base: Path, name: str = "compat", replica: int | None = 3):
    """glusterpyd on a free port with a started replica-3 volume (or, with
    replica None, a one-brick distribute volume)."""
    from test_glusterd_support import running_daemon
    with running_daemon(base / "wd") as d:
        bricks = [base / f"b{i}" for i in range(replica or 1)]
        layout = ["replica", str(replica)] if replica else []
        d.ok("volume", "create", name, *layout, *(f"127.0.0.1:{b}" for b in bricks))
        d.ok("volume", "start", name)
        vid = d.ok("volume", "info", name, "--json").json()["volumes"][0]["id"]
        yield Served("glusterpy", "127.0.0.1", d.port, name, uuid.UUID(vid), bricks, d.socket)


def glusterfs_volume(glusterd, base: Path) -> Served:
    """A started one-brick volume of the session's GlusterFS 10 glusterd."""
    brick = base / "brick"
    brick.mkdir()
    name = glusterd.create_volume(brick)
    return Served("glusterfs10", "127.0.0.1", 24007, name, glusterd.volume_id(name), [brick],
                  glusterd.sock)
