"""`glusterpy nbd`: serve volumes' image files over NBD (glusterpy/nbd).

    glusterpy nbd --volfile-server HOST[:PORT] (--volume VOL ... | --config FILE)
                  [--port 10809] [--address ADDR] [--read-only]
                  [--allow LIST] [--reject LIST] [--pidfile F] [--log-file F]

Exports are named `VOL/PATH` (qemu: nbd://HOST:10809/VOL/PATH).  With
--volume, each volume named is served with --allow/--reject (the
volume's auth.allow/auth.reject syntax; default: everyone) and
--read-only.  With --config (what glusterpyd writes), FILE is JSON:

    {"volumes": {"VOL": {"allow": "*", "reject": null, "read_only": false,
                         "tls": false, "ssl_allow": null}},
     "tls": {"cert": PEM, "key": PEM, "ca": PEM}}

("tls": the certificate STARTTLS uses, as --tls-cert/--tls-key/--tls-ca
give it; a volume with "tls": true is exported only over TLS, to clients
whose certificate the CA list trusts and, with "ssl_allow", whose common
name matches) and SIGHUP re-reads it: volumes come and go, connections the new policy
no longer admits are cut.  SIGTERM/SIGINT stop the server (exit 0); a port
that cannot be listened on is exit status 1, bad arguments 2.
"""

from __future__ import annotations

import json
import logging
import signal
import sys

import trio

from .daemon import add_log_arguments, run_service, setup_logging

log = logging.getLogger("glusterpy.nbd")

DEFAULT_PORT = 10809


def register(sub) -> None:
    p = sub.add_parser("nbd", help="serve volumes' image files over NBD",
                       description="Serve image files of volumes as NBD exports VOL/PATH.")
    p.add_argument("--volfile-server", required=True, metavar="HOST[:PORT]",
                   help="where the volumes' client volfiles come from (glusterpyd)")
    p.add_argument("--volume", action="append", default=[], metavar="VOL",
                   help="a volume to export (repeatable)")
    p.add_argument("--config", metavar="FILE",
                   help="JSON volume policies, re-read on SIGHUP (instead of --volume)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="P",
                   help=f"TCP port (default {DEFAULT_PORT}, NBD's)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="address to listen on (default: all)")
    p.add_argument("--read-only", action="store_true", help="refuse writes")
    p.add_argument("--allow", default="*", metavar="LIST",
                   help="client addresses admitted (auth.allow syntax; default *)")
    p.add_argument("--reject", default=None, metavar="LIST",
                   help="client addresses refused (auth.reject syntax)")
    p.add_argument("--tls-cert", metavar="PEM", help="certificate chain offered by STARTTLS")
    p.add_argument("--tls-key", metavar="PEM", help="its private key")
    p.add_argument("--tls-ca", metavar="PEM", help="CAs that client certificates must chain to")
    p.add_argument("--tls-only", action="store_true",
                   help="with --volume: export only over TLS")
    p.add_argument("--pidfile", metavar="FILE", help="write the process id here")
    add_log_arguments(p)
    p.set_defaults(func=run)


def load_config(path: str):
    """(policies, tls files or None) from a policy file."""
    from ..nbd.server import VolumePolicy
    with open(path) as f:
        doc = json.load(f)
    out = {}
    for name, v in (doc.get("volumes") or {}).items():
        out[name] = VolumePolicy(name, allow=v.get("allow", "*"), reject=v.get("reject"),
                                 read_only=bool(v.get("read_only", False)),
                                 tls=bool(v.get("tls", False)), ssl_allow=v.get("ssl_allow"))
    tls = doc.get("tls")
    return out, (tls["cert"], tls["key"], tls["ca"]) if tls else None


def make_context(files):
    import ssl
    from ..nbd.server import tls_context
    if files is None:
        return None
    try:
        return tls_context(*files)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"TLS files {', '.join(files)}: {e}") from None


def run(args) -> int:
    from ..nbd.server import VolumePolicy
    host, _, port = args.volfile_server.rpartition(":")
    if not host:
        host, port = args.volfile_server, "24007"
    if not port.isdigit() or not 0 <= args.port <= 65535:
        print("error: --volfile-server HOST:PORT and --port 0..65535", file=sys.stderr)
        return 2
    if bool(args.volume) == bool(args.config):
        print("error: give --volume (one or more) or --config", file=sys.stderr)
        return 2
    try:
        if args.config:
            policies, files = load_config(args.config)
        else:
            policies = {v: VolumePolicy(v, allow=args.allow, reject=args.reject,
                                        read_only=args.read_only, tls=args.tls_only)
                        for v in args.volume}
            given = (args.tls_cert, args.tls_key, args.tls_ca)
            if any(given) and not all(given):
                raise ValueError("--tls-cert, --tls-key and --tls-ca go together")
            files = given if all(given) else None
        context = make_context(files)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    setup_logging(args.log_file, args.log_level)
    status = run_service(_serve, policies, context, host.strip("[]"), int(port), args.port,
                         args.address, args.config, pidfile=args.pidfile, program="nbd")
    if not status:
        log.info("nbd server stopped")
    return status


async def _serve(policies, context, host: str, port: int, listen_port: int, address,
                 config) -> None:
    from ..nbd.server import NbdServer
    server = NbdServer.from_servers(policies, [host], port, context)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(server.serve, listen_port, address)
            log.info("nbd server on port %d exporting %s", bound,
                     ", ".join(sorted(policies)) or "nothing yet")
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if config:
                        try:
                            new, files = load_config(config)
                            server.tls_context = make_context(files)
                        except (OSError, ValueError, KeyError) as e:
                            log.error("reload refused: %s: %s", config, e)
                            continue
                        await server.reload(new)
                        log.info("reloaded: exporting %s", ", ".join(sorted(new)) or "nothing")
                    continue
                log.info("received signal %d, shutting down", signum)
                break
            nursery.cancel_scope.cancel()
