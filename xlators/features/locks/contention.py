"""features/locks: contention upcalls (the notify-contention option).

GlusterFS's inodelk_contention_notify / entrylk_contention_notify
(inodelk.c, entrylk.c): the holder of a granted lock that a request
conflicts with is told, through protocol/server, at most once per
notify-contention-delay seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import trio

from glusterpy.rpc.callback import (GF_CBK_ENTRYLK_CONTENTION, GF_CBK_INODELK_CONTENTION,
                                    EntrylkContention, InodelkContention)
from glusterpy.xlator import Event

from .common import GRANTED, InodeLock


@dataclass(frozen=True, slots=True)
class LockContention:
    """The payload of the `Event.UPCALL` this translator sends up when a lock
    request conflicts with a granted inodelk or entrylk (GlusterFS's
    gf_upcall with GF_UPCALL_INODELK_CONTENTION / ENTRYLK_CONTENTION).

    protocol/server forwards it: it finds the connection whose client object
    is `client` (the holder's `fops.caller.client`) and sends `message` as
    callback procedure `procnum` of GLUSTER_CBK_PROGRAM.  `client` None means
    the holder is local to the brick (no connection): nothing to send, as
    GlusterFS ignores an upcall with a NULL client_uid.
    """

    client: Any
    procnum: int  # GF_CBK_INODELK_CONTENTION or GF_CBK_ENTRYLK_CONTENTION
    message: InodelkContention | EntrylkContention


class LockNotifyContention:
    """Noting contended holders and sending their upcalls."""

    def _note_contention(self, held) -> None:
        """inodelk/entrylk_contention_notify_check: the holder is told at
        most once per notify-contention-delay seconds."""
        if not self.opts.notify_contention or held.notify_pending:
            return
        now = trio.current_time()
        if held.contended_at is not None and \
                now - held.contended_at < self.opts.notify_contention_delay:
            return
        held.contended_at = now
        held.notify_pending = True
        self._contended.append(held)

    def _send_contention(self) -> None:
        """Send the upcalls noted during an operation, for the locks still
        granted (a lock released meanwhile is not reported and may be
        reported again at once)."""
        while self._contended:
            held = self._contended.pop(0)
            held.notify_pending = False
            if held.state is not GRANTED:
                held.contended_at = None
                continue
            if isinstance(held, InodeLock):
                upcall = LockContention(held.client, GF_CBK_INODELK_CONTENTION, InodelkContention(
                    gfid=held.gfid, flock=replace(held.flock), pid=held.pid & 0xFFFFFFFF,
                    domain=held.domain))
            else:
                upcall = LockContention(held.client, GF_CBK_ENTRYLK_CONTENTION, EntrylkContention(
                    gfid=held.gfid, type=held.type, pid=held.pid & 0xFFFFFFFF,
                    name=held.basename or "", domain=held.domain))
            try:
                self.notify_parents(Event.UPCALL, upcall)
            except Exception:
                self.log.exception("lock contention notification failed")
