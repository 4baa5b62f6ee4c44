"""The process context: who this client process is (GlusterFS's glusterfs_ctx_t).

GlusterFS keeps one `ctx` per process: its process-uuid (ctx->process_uuid),
the process name and volfile id from the command line (cmd_args.process_name,
cmd_args.volfile_id) and the server the volfile came from.  protocol/client
sends them in SETVOLUME, so a brick can tell two processes apart and knows
two connections of one process are one client.

The graph's owner (gfapi, the FUSE mount, the volfile fetcher) makes one
`ProcessIdentity` and gives it to the graph with `set_process_identity()`
before the graph runs.  A translator takes part by carrying a
`ProcessIdentity` in its `identity` attribute (protocol/client makes its own
in __init__, so a graph without an owner is a process of its own); this
module never names a translator.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["ProcessIdentity", "set_process_identity"]


@dataclass(slots=True)
class ProcessIdentity:
    """Who this client process is, as SETVOLUME tells the brick."""

    ctx_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    graph_id: int = 0
    process_name: str | None = None
    #: the volfile's key (volume name) when it came from a volfile server
    volfile_key: str | None = None
    #: the host the volfile came from: remote-host when a volfile has none
    volfile_server: str | None = None


def set_process_identity(graph: Graph, identity: ProcessIdentity) -> None:
    """Give `identity` to every translator of `graph` that carries one
    (protocol/client); gfapi and the FUSE bridge call this before running
    the graph."""
    for xl in graph.by_name.values():
        if isinstance(getattr(xl, "identity", None), ProcessIdentity):
            xl.identity = identity
