"""`glusterpy volume geo-replication ...` and the `glusterpy gsyncd` worker.

    volume geo-replication [PRIMARY] [[USER@]HOST[:PORT]::SECONDARY] status [detail]
    volume geo-replication PRIMARY [USER@]HOST[:PORT]::SECONDARY
        create [push-pem] [force] | start [force] | stop [force] | pause | resume |
        delete [reset-sync-time] [force] | config [KEY [VALUE]] | config !KEY |
        config checkpoint now

gluster's grammar (cli-cmd-parser.c, cli_cmd_gsync_set_parse) and output
(cli-rpc-ops.c): "Creating geo-replication session between PRIMARY &
HOST::SECONDARY has been successful", "Starting geo-replication session
between ... has been successful", ..., the status table with its columns
PRIMARY NODE, PRIMARY VOL, PRIMARY BRICK, SECONDARY USER, SECONDARY,
SECONDARY NODE, STATUS, CRAWL STATUS, LAST_SYNCED (detail adds ENTRY, DATA,
META, FAILURES, CHECKPOINT TIME, CHECKPOINT COMPLETED, CHECKPOINT
COMPLETION TIME), and for a Faulty worker its reason under the table
(ours).  `config` alone lists the session's keys, `config KEY` one,
`config KEY VALUE` sets it, `config !KEY` resets it.  ":PORT" (ours) names
a secondary glusterpyd that is not on 24007.  The commands are REST calls
(glusterpy/glusterd/routes/georep.py); `--json` prints the API's answer.

`create push-pem` has no SSH key to push - the transport is the GlusterFS
protocol with TLS (glusterpy/georep/worker.py says why) - and pushes this
pool's node certificates instead: the secondary admits them to its volume
(every node's glusterfs.ca, the volume's auth.ssl-allow) and the workers
connect with TLS as this pool's nodes (glusterpy/glusterd/georep_pem.py).
Its one credential is a token the secondary's admin made once on a node of
the secondary (`glusterpy token create NAME --role geo-replication
--volume SECONDARY-VOL`),
taken from $GLUSTERPY_SECONDARY_TOKEN or, at a terminal, asked for (never
a word of the command line, which other users see in ps).  The secondary
must have `tls setup` done and client.ssl/server.ssl on for its volume;
without the token, with a wrong one, or to such a secondary, push-pem fails
and nothing changes on either side.  Without push-pem, `create` sets up no
trust (a secondary without TLS, or one set up by hand).
"""

from __future__ import annotations

import sys
import time

from .api_client import ApiClient, ApiFailure, quote_path

USAGE = ("volume geo-replication [<PRIMARY-VOL>] [[<USER>@]<HOST>[:<PORT>]::<SECONDARY-VOL>] "
         "status [detail]\n"
         "volume geo-replication <PRIMARY-VOL> [<USER>@]<HOST>[:<PORT>]::<SECONDARY-VOL> "
         "{create [push-pem] [force] | start [force] | stop [force] | pause | resume | "
         "delete [reset-sync-time] [force] | config [<KEY> [<VALUE>]] | config checkpoint now}")

VERBS = {"create": ("Creating", "created"), "start": ("Starting", "started"),
         "stop": ("Stopping", "stopped"), "pause": ("Pausing", "paused"),
         "resume": ("Resuming", "resumed"), "delete": ("Deleting", "deleted")}


class GeorepUsage(Exception):
    pass


def parse(words: list[str]) -> dict:
    """The words after `volume geo-replication` -> {primary?, secondary?,
    action, force?, push_pem?, reset_sync_time?, detail?, key?, value?,
    reset?}; GeorepUsage when they are not the grammar."""
    w = list(words)
    out: dict = {}
    if w and w[0] != "status" and "::" not in w[0]:
        out["primary"] = w.pop(0)
    if w and "::" in w[0]:
        out["secondary"] = w.pop(0)
    if not w:
        raise GeorepUsage(USAGE)
    action, rest = w[0], w[1:]
    out["action"] = action
    if action == "status":
        if rest not in ([], ["detail"]):
            raise GeorepUsage(USAGE)
        out["detail"] = rest == ["detail"]
        if "secondary" in out and "primary" not in out:
            raise GeorepUsage(USAGE)
        return out
    if "primary" not in out or "secondary" not in out:
        raise GeorepUsage(USAGE)
    allowed = {"create": ("push-pem", "force"), "start": ("force",), "stop": ("force",),
               "pause": (), "resume": (), "delete": ("reset-sync-time", "force")}
    if action in allowed:
        if len(set(rest)) != len(rest) or any(x not in allowed[action] for x in rest):
            raise GeorepUsage(USAGE)
        out["force"] = "force" in rest
        if action == "create":
            out["push_pem"] = "push-pem" in rest
        if action == "delete":
            out["reset_sync_time"] = "reset-sync-time" in rest
        return out
    if action == "config":
        if len(rest) > 2:
            raise GeorepUsage(USAGE)
        if len(rest) == 1 and rest[0].startswith("!"):
            out.update(key=rest[0][1:], value="", reset=True)
        elif len(rest) == 2:
            out.update(key=rest[0], value=rest[1])
        elif len(rest) == 1:
            out["key"] = rest[0]
        return out
    raise GeorepUsage(USAGE)


def _fail(e) -> int:
    print(f"geo-replication command failed\n{e}", file=sys.stderr)
    return 1


def _time(t) -> str:
    if not t:
        return "N/A"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


COLUMNS = ["PRIMARY NODE", "PRIMARY VOL", "PRIMARY BRICK", "SECONDARY USER", "SECONDARY",
           "SECONDARY NODE", "STATUS", "CRAWL STATUS", "LAST_SYNCED"]
DETAIL = ["ENTRY", "DATA", "META", "FAILURES", "CHECKPOINT TIME", "CHECKPOINT COMPLETED",
          "CHECKPOINT COMPLETION TIME"]


def format_status(rows: list[dict], detail: bool) -> str:
    """gluster's status table (gf_cli_print_status): columns padded to the
    widest cell, separated by four spaces, a line of dashes under the
    headers."""
    if not rows:
        return "No active geo-replication sessions"
    heads = COLUMNS + (DETAIL if detail else [])
    table = []
    for r in rows:
        user = r.get("secondary_user") or "root"
        # (gluster writes ssh://[USER@]HOST::VOL; the transport here is not SSH)
        cells = [r["primary_node"], r["primary_volume"], r["primary_brick"], user,
                 f"{user}@{r['secondary']}" if user != "root" else r["secondary"],
                 r.get("secondary_node") or "N/A", r.get("status") or "N/A",
                 r.get("crawl_status") or "N/A", _time(r.get("last_synced"))]
        if detail:
            active = r.get("status") == "Active"
            cells += [str(r.get("entry", 0)) if active else "N/A",
                      str(r.get("data", 0)) if active else "N/A",
                      str(r.get("meta", 0)) if active else "N/A",
                      str(r.get("failures", 0)) if active else "N/A",
                      _time(r.get("checkpoint_time")),
                      ("Yes" if r.get("checkpoint_completed") else "No")
                      if r.get("checkpoint_time") else "N/A",
                      _time(r.get("checkpoint_completion_time"))
                      if r.get("checkpoint_completed") else "N/A"]
        table.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in table)) for i, h in enumerate(heads)]
    lines = ["    ".join(h.ljust(widths[i]) for i, h in enumerate(heads)).rstrip(),
             "-" * (sum(widths) + 4 * (len(widths) - 1))]
    lines += ["    ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()
              for cells in table]
    faulty = [r for r in rows if r.get("status") == "Faulty" and r.get("faulty_reason")]
    if faulty:
        lines.append("")
        for r in faulty:
            lines.append(f"Faulty: {r['primary_node']}:{r['primary_brick']}: "
                         f"{r['faulty_reason']}")
    return "\n".join(lines)


def run(client: ApiClient, opts, words: list[str]) -> int:
    from .gluster_cmd import Usage, _json
    try:
        cmd = parse(words)
    except GeorepUsage as e:
        raise Usage(str(e)) from None
    action = cmd["action"]
    primary, secondary = cmd.get("primary"), cmd.get("secondary")
    if action == "status":
        try:
            if primary:
                doc = client.call("GET", f"/api/v1/volumes/{quote_path(primary)}/"
                                         "geo-replication", secondary=secondary)
            else:
                doc = client.call("GET", "/api/v1/geo-replication")
        except ApiFailure as e:
            return _fail(e)
        if opts.json:
            _json(doc)
        else:
            print(format_status(doc["rows"], cmd["detail"]))
        return 0
    path = f"/api/v1/volumes/{quote_path(primary)}/geo-replication"
    if action == "config" and ("value" not in cmd):
        try:
            doc = client.call("GET", path, secondary=secondary)
        except ApiFailure as e:
            return _fail(e)
        session = next(iter(doc["sessions"].values()))
        conf = dict(session["effective_config"])
        conf["checkpoint"] = str(session.get("checkpoint") or 0)
        if opts.json:
            _json(conf if "key" not in cmd else {cmd["key"]: conf.get(cmd["key"])})
            return 0
        if "key" in cmd:
            if cmd["key"] not in conf:
                return _fail(f"Invalid option name: {cmd['key']}")
            print(conf[cmd["key"]])
        else:
            for k, v in sorted(conf.items()):
                print(f"{k}:{v}")
        return 0
    body = {k: v for k, v in cmd.items() if k not in ("primary", "detail")}
    if cmd.get("push_pem"):
        token = _secondary_token()
        if token:
            body["secondary_token"] = token
    elif action == "delete":
        # a session made with push-pem: the secondary withdraws its trust
        # (glusterd/georep_pem.withdraw); not asked for: most sessions need none
        import os
        from ..glusterd.georep_pem import TOKEN_ENV
        if os.environ.get(TOKEN_ENV, "").strip():
            body["secondary_token"] = os.environ[TOKEN_ENV].strip()
    try:
        doc = client.call("POST", path, body)
    except ApiFailure as e:
        return _fail(e)
    if opts.json:
        _json(doc)
    elif action == "config":
        print("geo-replication config updated successfully")
    else:
        ing, _ = VERBS[action]
        print(f"{ing} geo-replication session between {primary} & {secondary} has been "
              "successful")
        if doc.get("push_pem"):
            print(doc["push_pem"], file=sys.stderr)
    return 0


def _secondary_token() -> str | None:
    """push-pem's credential: $GLUSTERPY_SECONDARY_TOKEN, else asked for at
    a terminal; None otherwise (glusterpyd then says what is missing)."""
    import os
    from ..glusterd.georep_pem import TOKEN_ENV
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token or not sys.stdin.isatty():
        return token or None
    import getpass
    return getpass.getpass("the secondary's geo-replication token: ").strip() or None


# --------------------------------------------------------------------------
# the worker process


def register(sub) -> None:
    p = sub.add_parser("gsyncd", help="run a geo-replication worker (gsyncd's role)",
                       description="Mirror one brick's part of a primary volume to a "
                                   "secondary volume, as its configuration file says "
                                   "(glusterpyd writes it and starts this).")
    p.add_argument("--config", required=True, metavar="FILE",
                   help="the worker's configuration (glusterpy/glusterd/georep.py)")
    p.add_argument("--pidfile", metavar="FILE", help="write the process id here")
    p.add_argument("--log-file", metavar="FILE", help="log here (default: standard error)")
    p.set_defaults(func=_gsyncd)


def _gsyncd(args) -> int:
    from ..georep.worker import main
    return main(args)


__all__ = ["parse", "format_status", "run", "register", "USAGE"]
