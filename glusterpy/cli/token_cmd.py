"""`glusterpy token create|list|revoke`: API tokens for remote administration.

    glusterpy token create NAME [--role admin|read-only|geo-replication [--volume VOL]]
                                                          (read-only by default)
    glusterpy token list
    glusterpy token revoke NAME

Run on the node, as root: the daemon serves these on its unix socket only
(glusterd/trust.py).  `create` prints the token once - the daemon keeps a
hash - to be used from elsewhere as `glusterpy --token TOKEN --remote-host
NODE ...`, `GLUSTERPY_TOKEN=TOKEN`, or `Authorization: Bearer TOKEN` over
HTTPS.  A read-only token may read everything and change nothing.  A
geo-replication token may only admit a primary pool's certificates to a
volume of this pool (the primary's `volume geo-replication ... create
push-pem` uses it; glusterpy/glusterd/georep_pem.py) - with `--volume
VOL`, to that volume only.
Revocation takes effect at the next request.
"""

from __future__ import annotations

import argparse
import json
import sys

from .api_client import ApiClient, ApiFailure, quote_path

ROLES = ("admin", "read-only", "geo-replication")


def local_admin_command(sub, name: str, helptext: str, doc: str):
    """The parser of a command only root on the node may run (token, tls):
    `--remote-host` (which local glusterpyd) and `--json`, before or after
    its action; returns the subparsers for the actions."""
    p = sub.add_parser(name, help=helptext, description=doc.split("\n\n")[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--remote-host", metavar="HOST[:PORT]",
                   help="the local glusterpyd's port (default 127.0.0.1:24007)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    return actions


def local_admin_actions_done(actions) -> None:
    """Let every action take --remote-host and --json after its name too."""
    for a in actions.choices.values():
        a.add_argument("--remote-host", metavar="HOST[:PORT]", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)
        a.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)


def local_client(args) -> ApiClient:
    return ApiClient(getattr(args, "remote_host", None))


def register(sub) -> None:
    tsub = local_admin_command(sub, "token", "API tokens for remote administration (on the "
                               "node)", __doc__)
    c = tsub.add_parser("create", help="make a token (shown once)")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--role", choices=ROLES, default="read-only")
    c.add_argument("--volume", metavar="VOL",
                   help="a geo-replication token: admits certificates to this volume only")
    c.set_defaults(func=create)
    tsub.add_parser("list", help="the tokens (names, roles, dates)").set_defaults(func=listing)
    r = tsub.add_parser("revoke", help="revoke a token at once")
    r.add_argument("name", metavar="NAME")
    r.set_defaults(func=revoke)
    local_admin_actions_done(tsub)


def _done(args, doc, text: str) -> int:
    print(json.dumps(doc, indent=1) if args.json else text)
    return 0


def create(args) -> int:
    try:
        body = {"name": args.name, "role": args.role}
        if args.volume is not None:
            body["volume"] = args.volume
        doc = local_client(args).call("POST", "/api/v1/tokens", body)
    except ApiFailure as e:
        print(f"token create: failed: {e}", file=sys.stderr)
        return 1
    scope = f", volume {doc['volume']}" if doc.get("volume") else ""
    return _done(args, doc, f"token create: success: {doc['name']} ({doc['role']}{scope})\n"
                            f"{doc['token']}\n"
                            "(shown once: the node keeps only its hash)")


def listing(args) -> int:
    try:
        doc = local_client(args).call("GET", "/api/v1/tokens")
    except ApiFailure as e:
        print(f"token list: failed: {e}", file=sys.stderr)
        return 1
    if args.json:
        return _done(args, doc, "")
    if not doc["tokens"]:
        print("No tokens")
    for t in doc["tokens"]:
        scope = f" (volume {t['volume']})" if t.get("volume") else ""
        print(f"{t['name']:<24} {t['role']:<10} created {t['created']}{scope}")
    return 0


def revoke(args) -> int:
    try:
        doc = local_client(args).call("DELETE", f"/api/v1/tokens/{quote_path(args.name)}")
    except ApiFailure as e:
        print(f"token revoke: failed: {e}", file=sys.stderr)
        return 1
    return _done(args, doc, f"token revoke: success: {args.name}")


__all__ = ["register", "local_admin_command", "local_admin_actions_done", "local_client"]
