"""`glusterpy tls setup|client`: GlusterFS's TLS files for the whole pool.

    glusterpy tls setup [--management on|off]
    glusterpy tls client NAME --out DIR

Run on a node, as root (the daemon serves these on its unix socket only).
What they do is in glusterpy/glusterd/tls_setup.py: `setup` writes
glusterfs.{pem,key,ca} (OpenSSL's directory) on every node of the pool; `client` makes
a client machine's key and certificate, trusted by every node, and writes
the three files into DIR to copy to that machine's OpenSSL directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .api_client import ApiFailure
from .token_cmd import local_admin_actions_done, local_admin_command, local_client
from .. import pki


def register(sub) -> None:
    tsub = local_admin_command(sub, "tls", "TLS files for the pool (GlusterFS's "
                               "glusterfs.pem|key|ca)", __doc__)
    s = tsub.add_parser("setup", help="write the TLS files on every node")
    s.add_argument("--management", choices=("on", "off"),
                   help="management TLS (secure-access) on every node's port")
    s.set_defaults(func=setup)
    c = tsub.add_parser("client", help="a client machine's key and certificate")
    c.add_argument("name", metavar="NAME", help="its common name (for auth.ssl-allow)")
    c.add_argument("--out", required=True, metavar="DIR",
                   help="where to write glusterfs.key, glusterfs.pem, glusterfs.ca")
    c.set_defaults(func=client)
    local_admin_actions_done(tsub)


def setup(args) -> int:
    body = {"management": args.management} if args.management else {}
    try:
        doc = local_client(args).call("POST", "/api/v1/tls/setup", body)
    except ApiFailure as e:
        print(f"tls setup: failed: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    for r in doc["nodes"]:
        print(f"{r['node']}: {r['cert']}, {r['key']}, {r['ca']} (management TLS "
              f"{'on' if r['management'] else 'off'}; sha256 {r['fingerprint'][:16]}...)")
    print("tls setup: success")
    return 0


def client(args) -> int:
    out = Path(args.out)
    if out.exists() and any((out / n).exists() for n in
                            ("glusterfs.key", "glusterfs.pem", "glusterfs.ca")):
        print(f"tls client: failed: {out} already holds glusterfs.* files", file=sys.stderr)
        return 1
    try:
        doc = local_client(args).call("POST", "/api/v1/tls/clients", {"name": args.name})
    except ApiFailure as e:
        print(f"tls client: failed: {e}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    pki.write_private(out / "glusterfs.key", doc["key"].encode())
    (out / "glusterfs.pem").write_text(doc["cert"])
    (out / "glusterfs.ca").write_text(doc["ca"])
    if args.json:
        print(json.dumps({k: v for k, v in doc.items() if k != "key"}, indent=1))
        return 0
    print(f"tls client: success: {args.name}'s files are in {out}; copy them to the "
          "client's OpenSSL directory (/usr/lib/ssl on Debian)" + (" and create /var/lib/glusterd/secure-access there"
                                 if doc.get("management") else ""))
    return 0


__all__ = ["register"]
