"""What glusterpyd's route handlers share: who asked, the volume a route
names, and an operation run through the cluster transaction.

The route modules (api.py and the ones it gathers: heal, rebalance,
clients, profile, tls_setup, ...) import these from here, so none of them imports
another route module for a helper and api.py is the only one that knows
them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import volgen
from ..common import OpFailed
from ..http import ApiError, Request

if TYPE_CHECKING:
    from ..daemon import Glusterd
    from ..model import Volume

__all__ = ["flag", "peer_of", "run_transaction", "volume_or_404", "volume_view", "who_asked"]


def who_asked(req: Request) -> dict:
    """For the audit log: who asked (as proved) and from where; the user
    name the CLI sends is kept as a claim only."""
    who = dict(req.conn.get("principal") or {})
    who.pop("role", None)
    who["via"] = req.conn.get("transport")
    who["address"] = req.conn.get("address") or (req.peer[0] if req.peer else None)
    if req.headers.get("x-glusterpy-user"):
        who["user"] = req.headers["x-glusterpy-user"]
    return who


def peer_of(gd: Glusterd, req: Request) -> str:
    """The uuid of the calling peer, as its certificate proved it (`authorize`
    let only members through)."""
    return req.conn["principal"]["peer"]


def flag(value) -> bool:
    """A boolean query or body value as the CLI and people write it."""
    return value in (True, 1, "1", "true", "yes", "on", "force")


def volume_or_404(gd: Glusterd, name: str) -> Volume:
    vol = gd.volumes.get(name)
    if vol is None:
        raise ApiError(404, f"Volume {name} does not exist")
    return vol


def volume_view(gd: Glusterd, vol: Volume) -> dict:
    """A volume's document as the API shows it: its type and brick names
    added, its internal user's credentials left out (they make a client
    trusted; only the nodes hold them)."""
    view = vol.to_json()
    view.pop("username", None)
    view.pop("password", None)
    view["type"] = volgen.volume_type(vol)
    view["bricks"] = [dict(b.to_json(), name=volgen.brick_id(b)) for b in vol.bricks]
    return view


async def run_transaction(gd: Glusterd, req: Request, op: str, args: dict) -> dict:
    """A volume operation through the cluster transaction, audited."""
    who = who_asked(req)
    try:
        result = await gd.transact(op, args, who)
    except OpFailed as e:
        gd.audit(who, op, args, f"failed: {e}")
        status = 409 if "Another transaction" in str(e) else \
            404 if str(e).startswith("Volume ") and str(e).endswith("does not exist") else 400
        raise ApiError(status, str(e)) from None
    if not (op == "remove-brick" and args.get("action") == "status"):
        gd.audit(who, op, args, "success")
    return result
