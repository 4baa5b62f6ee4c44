"""`glusterpy peer|pool|volume ...`: the gluster CLI's grammar, against glusterpyd.

    glusterpy [--remote-host HOST[:PORT]] [--token TOKEN] [--json] [--mode=script|--yes]
              COMMAND ...

    peer probe HOST[:PORT] | peer detach HOST [force] | peer status | pool list
    volume create NAME [device lv] [stripe N] [replica N [arbiter 1]] [transport tcp]
                  HOST:/PATH... [force]          (device lv: HOST:/VG, storage/bd)
    volume start|stop NAME [force]      volume delete NAME
    volume info|status [NAME|all]       volume list [--search QUERY]
    volume status [NAME|all] clients    per brick, the connected clients
                  (QUERY: "Volumes: name = vm* and status = started sortby name desc",
                   glusterpy/search.py's grammar, parsed by the daemon)
    volume add-brick NAME [replica N] HOST:/PATH... [force]
    volume remove-brick NAME HOST:/PATH... start|status|stop|commit|force [--watch]
    volume rebalance NAME fix-layout start | start [force] | status | stop [--watch]
                                        (glusterpy/cli/rebalance_cmd.py)
    volume set NAME KEY VALUE [KEY VALUE ...]   volume set help
    volume get NAME KEY|all             volume reset NAME [KEY|all]
    volume profile NAME start|info|stop
    volume heal NAME [full|enable|disable|info [split-brain|summary]|statistics [heal-count]|
                split-brain {bigger-file FILE|latest-mtime FILE|source-brick HOST:/BRICK [FILE]}]
                                        (glusterpy/cli/heal_cmd.py)
    volume log [NAME] [limit N]         the audit trail of management operations
    volume geo-replication [PRIMARY] [[USER@]HOST::SECONDARY] create [push-pem] [force] |
                start|stop [force] | pause | resume | delete [reset-sync-time] [force] |
                status [detail] | config [KEY [VALUE]] | config checkpoint now
                                        (glusterpy/cli/georep_cmd.py)

Every command is one or two REST calls to glusterpyd (glusterpy/glusterd/
api.py) - 127.0.0.1:24007 unless --remote-host or $GLUSTERPY_REMOTE_HOST
says otherwise, with the API token of --token or $GLUSTERPY_TOKEN - and prints what the gluster CLI prints (cli-rpc-ops.c's
formats: "volume create: NAME: success: please start the volume to access
data", the `volume info` and `volume status` tables, ...).  Failures print
"<command>: failed: <reason>" on standard error and exit 1; usage errors
print the usage line and exit 1, as gluster does.  `--json` prints the
API's JSON instead.

Like gluster, `volume stop`, `volume delete`, `remove-brick commit|force`
and `peer detach` ask for confirmation.  They read the answer only from a
terminal: without one, `--mode=script` or `--yes` must say yes up front,
and the command fails rather than hang or read a pipe.  The global options
may come before the command (as gluster's; glusterpy/cli/global_options.py
parses them there for every command) or anywhere after it.
"""

from __future__ import annotations

import json
import sys

from .api_client import ApiClient, ApiFailure, quote_path
from . import georep_cmd, rebalance_cmd
from .heal_cmd import v_heal


class Usage(Exception):
    pass


class Options:
    """The global options given after the command word (any of
    global_options' may be), over those given before it (`given`), and the
    command's own words."""

    def __init__(self, words: list[str], given=None):
        self.json = bool(getattr(given, "json", False))
        self.yes = bool(getattr(given, "yes", False))
        self.remote = getattr(given, "remote", None)
        self.token = getattr(given, "token", None)
        self.words: list[str] = []
        i = 0
        while i < len(words):
            w = words[i]
            if w == "--json":
                self.json = True
            elif w == "--xml":
                raise Usage("--xml is not supported; use --json")
            elif w in ("--yes", "-y", "--mode=script"):
                self.yes = True
            elif w.startswith("--mode="):
                if w != "--mode=interactive":
                    raise Usage(f"unknown mode {w.split('=', 1)[1]!r} (script or interactive)")
            elif w == "--remote-host":
                if i + 1 >= len(words):
                    raise Usage("--remote-host needs HOST[:PORT]")
                self.remote = words[i + 1]
                i += 1
            elif w.startswith("--remote-host="):
                self.remote = w.split("=", 1)[1]
            elif w == "--token":
                if i + 1 >= len(words):
                    raise Usage("--token needs TOKEN")
                self.token = words[i + 1]
                i += 1
            elif w.startswith("--token="):
                self.token = w.split("=", 1)[1]
            else:
                self.words.append(w)
            i += 1


def register(sub) -> None:
    for name, helptext in (("volume", "manage volumes (gluster volume ...)"),
                           ("peer", "manage the trusted storage pool (gluster peer ...)"),
                           ("pool", "pool list")):
        p = sub.add_parser(name, help=helptext, add_help=False, prefix_chars="\0",
                           description=__doc__.split("\n\n")[1])
        p.add_argument("words", nargs="*")
        p.set_defaults(func=run, group=name)


def run(args) -> int:
    try:
        opts = Options(args.words, getattr(args, "global_options", None))
    except Usage as e:
        print(f"Usage: {e}", file=sys.stderr)
        return 1
    words = opts.words
    handler = {"volume": volume, "peer": peer, "pool": pool}[args.group]
    try:
        client = ApiClient(opts.remote, token=opts.token)
    except ApiFailure as e:
        print(str(e), file=sys.stderr)
        return 1
    try:
        return handler(client, opts, words) or 0
    except Usage as e:
        print(f"Usage:\n{e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `glusterpy volume info | head`
        sys.stderr.close()
        return 0


def _fail(what: str, e: Exception) -> int:
    print(f"{what}: failed: {e}", file=sys.stderr)
    return 1


def _json(doc) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


def confirm(opts: Options, question: str) -> bool:
    """gluster's "(y/n)" question, asked only on a terminal."""
    if opts.yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} (y/n) -- not asked: standard input is not a terminal; use "
              "--mode=script or --yes", file=sys.stderr)
        return False
    try:
        answer = input(f"{question} (y/n) ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


# --------------------------------------------------------------------------
# peer / pool


def peer(client: ApiClient, opts: Options, words: list[str]) -> int:
    usage = "peer probe { <HOSTNAME> | <IP-address> }[:PORT] | peer detach <HOST> [force] " \
            "| peer status"
    if not words:
        raise Usage(usage)
    cmd = words[0]
    if cmd == "probe" and len(words) == 2:
        host, port = words[1], None
        if words[1].count(":") == 1:
            host, port_text = words[1].split(":")
            if not port_text.isdigit():
                raise Usage(usage)
            port = int(port_text)
        try:
            doc = client.call("POST", "/api/v1/peers", {"host": host, **(
                {"port": port} if port else {})})
        except ApiFailure as e:
            return _fail("peer probe", e)
        if opts.json:
            _json(doc)
        else:
            print("peer probe: success" + (f". {doc['message']}" if doc.get("message") else ""))
        return 0
    if cmd == "detach" and len(words) in (2, 3):
        force = len(words) == 3
        if force and words[2] != "force":
            raise Usage(usage)
        if not confirm(opts, "All clients mounted through the peer which is getting detached "
                             "need to be remounted using one of the other active peers in the "
                             "trusted storage pool to ensure client gets notification on any "
                             "changes done on the gluster configuration and if the same has "
                             "been done do you want to proceed?"):
            return 1
        try:
            doc = client.call("DELETE", f"/api/v1/peers/{quote_path(words[1])}",
                              force="1" if force else None)
        except ApiFailure as e:
            return _fail("peer detach", e)
        print("peer detach: success") if not opts.json else _json(doc)
        return 0
    if cmd == "status" and len(words) == 1:
        try:
            doc = client.call("GET", "/api/v1/peers")
        except ApiFailure as e:
            return _fail("peer status", e)
        if opts.json:
            _json(doc)
            return 0
        print(f"Number of Peers: {len(doc['peers'])}")
        for p in doc["peers"]:
            print(f"\nHostname: {p['hostname']}\nUuid: {p['uuid']}\nState: {p['state']} "
                  f"({'Connected' if p['connected'] else 'Disconnected'})")
            if len(p["hostnames"]) > 1:
                print("Other names:")
                for h in p["hostnames"][1:]:
                    print(h)
        return 0
    raise Usage(usage)


def pool(client: ApiClient, opts: Options, words: list[str]) -> int:
    if words != ["list"]:
        raise Usage("pool list")
    try:
        doc = client.call("GET", "/api/v1/pool")
    except ApiFailure as e:
        return _fail("pool list", e)
    if opts.json:
        _json(doc)
        return 0
    print("UUID\t\t\t\t\tHostname \tState")
    for p in doc["pool"]:
        print(f"{p['uuid']}\t{p['hostname']} \t"
              f"{'Connected' if p['connected'] else 'Disconnected'} ")
    return 0


# --------------------------------------------------------------------------
# volume


VOLUME_USAGE = """volume create <NEW-VOLNAME> [device lv] [stripe <COUNT>] [replica <COUNT> [arbiter <COUNT>]] [transport tcp] <NEW-BRICK>... [force]
volume start|stop <VOLNAME> [force] | volume delete <VOLNAME>
volume info|status [all|<VOLNAME>] | volume status [all|<VOLNAME>] clients | volume list [--search "Volumes: <FIELD> <OP> <VALUE> [and|or ...] [sortby <FIELD> [desc]]"]
volume add-brick <VOLNAME> [replica <COUNT>] <NEW-BRICK> ... [force]
volume remove-brick <VOLNAME> <BRICK> ... <start|stop|status|commit|force> [--watch]
volume rebalance <VOLNAME> {fix-layout start | start [force] | status | stop} [--watch]
volume set <VOLNAME> <KEY> <VALUE> | volume set help
volume get <VOLNAME> <KEY|all> | volume reset <VOLNAME> [option] [force]
volume profile <VOLNAME> start|info|stop
volume heal <VOLNAME> [full | enable | disable | info [summary | split-brain] | statistics [heal-count] | split-brain {bigger-file <FILE> | latest-mtime <FILE> | source-brick <HOSTNAME:BRICKNAME> [<FILE>]}]
volume log [<VOLNAME>] [limit <N>]
""" + georep_cmd.USAGE


def volume(client: ApiClient, opts: Options, words: list[str]) -> int:
    if not words:
        raise Usage(VOLUME_USAGE)
    cmd, rest = words[0], words[1:]
    handler = {"create": v_create, "start": v_start, "stop": v_stop, "delete": v_delete,
               "info": v_info, "status": v_status, "list": v_list, "add-brick": v_add_brick,
               "remove-brick": v_remove_brick, "rebalance": rebalance_cmd.v_rebalance,
               "set": v_set, "get": v_get, "reset": v_reset,
               "profile": v_profile, "log": v_log, "heal": v_heal,
               "geo-replication": georep_cmd.run}.get(cmd)
    if handler is None:
        raise Usage(VOLUME_USAGE)
    return handler(client, opts, rest)


def _count(word: str, what: str) -> int:
    try:
        return int(word, 0)
    except ValueError:
        raise Usage(f"{what} count must be a number") from None


def v_create(client, opts, w) -> int:
    usage = VOLUME_USAGE.splitlines()[0]
    if not w:
        raise Usage(usage)
    name, w = w[0], w[1:]
    body: dict = {"name": name}
    while w and w[0] in ("stripe", "replica", "arbiter", "transport", "disperse", "device"):
        if len(w) < 2:
            raise Usage(usage)
        key, value, w = w[0], w[1], w[2:]
        if key in ("transport", "device"):
            body[key] = value
        elif key == "disperse":
            return _fail(f"volume create: {name}", "disperse volumes are not supported by "
                                                   "glusterpy")
        else:
            body[key] = _count(value, key)
    if w and w[-1] == "force":
        body["force"] = True
        w = w[:-1]
    if not w:
        raise Usage(usage)
    body["bricks"] = w
    try:
        doc = client.call("POST", "/api/v1/volumes", body)
    except ApiFailure as e:
        return _fail(f"volume create: {name}", e)
    if opts.json:
        _json(doc)
    else:
        print(f"volume create: {name}: success: please start the volume to access data")
    return 0


def _simple(client, opts, verb: str, name: str, method: str, path: str, body=None,
            message: str = "success") -> int:
    try:
        doc = client.call(method, path, body)
    except ApiFailure as e:
        return _fail(f"volume {verb}: {name}", e)
    if opts.json:
        _json(doc)
    else:
        print(f"volume {verb}: {name}: {message}")
    return 0


def v_start(client, opts, w) -> int:
    if len(w) not in (1, 2) or (len(w) == 2 and w[1] != "force"):
        raise Usage("volume start <VOLNAME> [force]")
    return _simple(client, opts, "start", w[0], "POST",
                   f"/api/v1/volumes/{quote_path(w[0])}/start", {"force": len(w) == 2})


def v_stop(client, opts, w) -> int:
    if len(w) not in (1, 2) or (len(w) == 2 and w[1] != "force"):
        raise Usage("volume stop <VOLNAME> [force]")
    if not confirm(opts, "Stopping volume will make its data inaccessible. Do you want to "
                         "continue?"):
        return 1
    return _simple(client, opts, "stop", w[0], "POST",
                   f"/api/v1/volumes/{quote_path(w[0])}/stop", {"force": len(w) == 2})


def v_delete(client, opts, w) -> int:
    if len(w) != 1:
        raise Usage("volume delete <VOLNAME>")
    if not confirm(opts, "Deleting volume will erase all information about the volume. Do "
                         "you want to continue?"):
        return 1
    return _simple(client, opts, "delete", w[0], "DELETE",
                   f"/api/v1/volumes/{quote_path(w[0])}")


def _bricks_line(vol: dict) -> str:
    n = len(vol["bricks"])
    per = vol["replica"] * vol["stripe"]
    if per == 1:
        return str(n)
    sets = n // per
    if vol.get("arbiter"):
        return f"{sets} x ({vol['replica'] - 1} + 1) = {n}"
    if vol["stripe"] > 1 and vol["replica"] > 1:
        return f"{sets} x {vol['stripe']} x {vol['replica']} = {n}"
    return f"{sets} x {per} = {n}"


def format_info(vol: dict) -> str:
    lines = ["", f"Volume Name: {vol['name']}", f"Type: {vol['type']}",
             f"Volume ID: {vol['id']}", f"Status: {vol['status']}", "Snapshot Count: 0",
             f"Number of Bricks: {_bricks_line(vol)}", f"Transport-type: {vol['transport']}",
             "Bricks:"]
    for i, b in enumerate(vol["bricks"], 1):
        lines.append(f"Brick{i}: {b['name']}" + (" (arbiter)" if b.get("arbiter") else ""))
    if vol["options"]:
        lines.append("Options Reconfigured:")
        for k, v in sorted(vol["options"].items()):
            lines.append(f"{k}: {v}")
    return "\n".join(lines)


def _status_failed(e: Exception) -> int:
    """gf_cli_status_cbk prints glusterd's reason alone ("Volume vm is not
    started"), without the "<command>: failed:" of other commands."""
    print(str(e), file=sys.stderr)
    return 1


def _show_volumes(client, opts, w, verb: str, one: str, every: str, formatter) -> int:
    """`volume info|status [all|<VOLNAME>]`: one volume's document (GET of
    /api/v1/volumes/NAME + `one`) or every volume's (GET of `every`)."""
    if len(w) > 1:
        raise Usage(f"volume {verb} [all|<VOLNAME>]")
    try:
        if w and w[0] != "all":
            docs = [client.call("GET", f"/api/v1/volumes/{quote_path(w[0])}{one}")]
        else:
            docs = client.call("GET", every)["volumes"]
    except ApiFailure as e:
        return _status_failed(e) if verb == "status" else _fail(f"volume {verb}", e)
    return _print_volumes(opts, docs, formatter)


def _print_volumes(opts, docs: list, formatter) -> int:
    """Volume documents as JSON or through `formatter`, one after another."""
    if opts.json:
        _json({"volumes": docs})
        return 0
    if not docs:
        print("No volumes present")
    for doc in docs:
        print(formatter(doc))
    return 0


def v_info(client, opts, w) -> int:
    return _show_volumes(client, opts, w, "info", "", "/api/v1/volumes", format_info)


def v_list(client, opts, w) -> int:
    query = None
    if w and w[0] == "--search" and len(w) == 2:
        query = w[1]
    elif w and w[0].startswith("--search=") and len(w) == 1:
        query = w[0].split("=", 1)[1]
    elif w:
        raise Usage('volume list [--search "Volumes: name = vm* and status = started '
                    'sortby name desc"]')
    try:
        # the daemon parses the query, so the CLI, the console and the API
        # agree on the grammar (glusterpy/search.py)
        vols = client.call("GET", "/api/v1/volumes")["volumes"] if query is None else \
            client.call("GET", "/api/v1/search", q=query)["volumes"]
    except ApiFailure as e:
        return _fail("volume list", e)
    if opts.json:
        _json({"volumes": [v["name"] for v in vols]})
    elif not vols:
        print("No volumes present in cluster")
    else:
        for v in vols:
            print(v["name"])
    return 0


def format_status(st: dict) -> str:
    rule = "-" * 78
    lines = [f"Status of volume: {st['name']}",
             f"{'Gluster process':<44}{'TCP Port':<10}{'RDMA Port':<11}{'Online':<8}Pid", rule]
    for b in st["bricks"]:
        process = f"Brick {b['brick']}"
        online = b.get("online")
        lines.append(f"{process:<44}{(b['port'] if online else 'N/A')!s:<10}"
                     f"{(0 if online else 'N/A')!s:<11}{'Y' if online else 'N':<8}"
                     f"{b.get('pid') or 'N/A'}")
    lines += [" ", f"Task Status of Volume {st['name']}", rule]
    tasks = st.get("tasks") or {}
    task = tasks.get("remove-brick")
    if task:
        lines += ["Task                 : Remove brick", f"ID                   : {task['id']}",
                  "Removed bricks:     "] + task["bricks"] + \
                 [f"Status               : {task.get('status', 'unknown')}"]
    elif tasks.get("rebalance"):
        task = tasks["rebalance"]
        lines += ["Task                 : Rebalance", f"ID                   : {task['id']}",
                  f"Status               : {task.get('status', 'unknown')}"]
    else:
        lines.append("There are no active volume tasks")
    lines.append(" ")
    return "\n".join(lines)


def format_clients(doc: dict) -> str:
    """cli-rpc-ops.c's `volume status NAME clients` (cli_print_volume_status_clients)."""
    rule = "-" * 46
    lines = [f"Client connections for volume {doc['volume']}", rule]
    for b in doc["bricks"]:
        lines.append(f"Brick : {b['brick']}")
        if b.get("error"):
            lines.append(f"Clients connected : N/A ({b['error']})")
        elif not b["online"]:
            lines.append("Clients connected : N/A (the brick is offline)")
        else:
            lines.append(f"Clients connected : {len(b['clients'])}")
            lines.append(f"{'Hostname':<50}{'BytesRead':>15}{'BytesWritten':>15}"
                         f"{'OpVersion':>15}")
            lines.append(f"{'--------':<50}{'---------':>15}{'------------':>15}"
                         f"{'---------':>15}")
            for c in b["clients"]:
                lines.append(f"{c['hostname']:<50}{c.get('bytes_read') or 0:>15}"
                             f"{c.get('bytes_written') or 0:>15}{c.get('op_version') or 0:>15}")
        lines.append(rule)
    return "\n".join(lines)


def v_status(client, opts, w) -> int:
    if w and w[-1] == "clients":
        # volume status [all|<VOLNAME>] clients: gluster's status-op word
        return _status_clients(client, opts, w[:-1])
    return _show_volumes(client, opts, w, "status", "/status", "/api/v1/status", format_status)


def _status_clients(client, opts, w) -> int:
    if len(w) > 1:
        raise Usage("volume status [all|<VOLNAME>] [clients]")
    try:
        if w and w[0] != "all":
            names = [w[0]]
        else:
            names = [st["name"] for st in client.call("GET", "/api/v1/status")["volumes"]]
        docs = [client.call("GET", f"/api/v1/volumes/{quote_path(n)}/status/clients")
                for n in names]
    except ApiFailure as e:
        return _status_failed(e)
    return _print_volumes(opts, docs, format_clients)


def v_add_brick(client, opts, w) -> int:
    usage = "volume add-brick <VOLNAME> [replica <COUNT>] <NEW-BRICK> ... [force]"
    if len(w) < 2:
        raise Usage(usage)
    name, w = w[0], w[1:]
    body: dict = {}
    while w and w[0] in ("replica", "stripe"):
        if len(w) < 2:
            raise Usage(usage)
        body[w[0]] = _count(w[1], w[0])
        w = w[2:]
    if w and w[-1] == "force":
        body["force"] = True
        w = w[:-1]
    if not w:
        raise Usage(usage)
    body["bricks"] = w
    return _simple(client, opts, "add-brick", name, "POST",
                   f"/api/v1/volumes/{quote_path(name)}/bricks", body, "success")


def v_remove_brick(client, opts, w) -> int:
    usage = "volume remove-brick <VOLNAME> <BRICK> ... <start|stop|status|commit|force> " \
            "[--watch]"
    follow = "--watch" in w
    w = [x for x in w if x != "--watch"]
    if follow and w and w[-1] not in ("start", "status"):
        raise Usage(usage)
    if len(w) < 3 or w[-1] not in ("start", "stop", "status", "commit", "force"):
        raise Usage(usage)
    name, bricks, action = w[0], w[1:-1], w[-1]
    if action in ("commit", "force") and not confirm(
            opts, "It is recommended that remove-brick be run with cluster.force-migration "
                  "option disabled to prevent possible data corruption. Doing so will ensure "
                  "that files that receive writes during migration will not be migrated and "
                  "will need to be manually copied after the remove-brick commit operation. "
                  "Please check the value of the option and update accordingly. \nDo you "
                  "want to continue with your current cluster.force-migration settings?"):
        return 1
    try:
        doc = client.call("POST", f"/api/v1/volumes/{quote_path(name)}/remove-brick",
                          {"bricks": bricks, "action": action})
    except ApiFailure as e:
        return _fail(f"volume remove-brick {action}", e)
    if opts.json and not follow:
        _json(doc)
        return 0
    task = doc.get("task")
    if action == "status":
        return rebalance_cmd.remove_brick_status(client, opts, name, doc, follow)
    elif action == "start":
        print("volume remove-brick start: success")
        print(f"ID: {task['id']}")
        if follow:
            return rebalance_cmd.remove_brick_status(client, opts, name, doc, follow)
    else:
        print(f"volume remove-brick {action}: success")
        if action == "commit":
            print("Check the removed bricks to ensure all files are migrated.\nIf files with "
                  "data are found on the brick path, copy them via a gluster mount point "
                  "before re-purposing the removed brick. ")
    return 0


def v_set(client, opts, w) -> int:
    usage = "volume set <VOLNAME> <KEY> <VALUE>"
    if w == ["help"]:
        try:
            doc = client.call("GET", "/api/v1/options")
        except ApiFailure as e:
            return _fail("volume set help", e)
        if opts.json:
            _json(doc)
        else:
            for o in doc["options"]:
                print(o["help"] + "\n")
        return 0
    if len(w) < 3 or len(w) % 2 == 0:
        raise Usage(usage)
    name = w[0]
    options = dict(zip(w[1::2], w[2::2]))
    try:
        doc = client.call("POST", f"/api/v1/volumes/{quote_path(name)}/options",
                          {"options": options})
    except ApiFailure as e:
        return _fail("volume set", e)
    print("volume set: success") if not opts.json else _json(doc)
    return 0


def v_get(client, opts, w) -> int:
    if len(w) != 2:
        raise Usage("volume get <VOLNAME|all> <key|all>")
    try:
        doc = client.call("GET", f"/api/v1/volumes/{quote_path(w[0])}/options", key=w[1])
    except ApiFailure as e:
        return _fail("volume get", e)
    if opts.json:
        _json(doc)
        return 0
    print(f"{'Option':<40}{'Value':<40}")
    print(f"{'------':<40}{'-----':<40}")
    for o in doc["options"]:
        value = o["value"] if o["value"] is not None else "(null)"
        print(f"{o['key']:<40}{value}")
    return 0


def v_reset(client, opts, w) -> int:
    if not 1 <= len(w) <= 3:
        raise Usage("volume reset <VOLNAME> [option] [force]")
    if w[-1] == "force" and len(w) > 1:
        w = w[:-1]
    key = w[1] if len(w) > 1 else "all"
    try:
        doc = client.call("DELETE", f"/api/v1/volumes/{quote_path(w[0])}/options/"
                                    f"{quote_path(key)}")
    except ApiFailure as e:
        return _fail("volume reset", e)
    print("volume reset: success: reset volume successful") if not opts.json else _json(doc)
    return 0


def _ms(ns: float) -> str:
    return f"{ns / 1000:.2f} us"


def format_profile(doc: dict) -> str:
    out = []
    for b in doc["bricks"]:
        out.append(f"Brick: {b['brick']}")
        out.append("-" * (7 + len(b["brick"])))
        if "error" in b:
            out.append(f"(not available: {b['error']})\n")
            continue
        report = b["report"]
        for period_key in ("cumulative", "interval"):
            period = report.get(period_key)
            if not period:
                continue
            title = "Cumulative Stats:" if period["interval"] == -1 else \
                f"Interval {period['interval']} Stats:"
            out.append(title)
            if period.get("block_read") or period.get("block_write"):
                sizes = sorted({int(k) for k in period.get("block_read", {})} |
                               {int(k) for k in period.get("block_write", {})})
                out.append("   Block Size:" + "".join(f"{str(s) + 'b+':>15}" for s in sizes))
                out.append(" No. of Reads:" + "".join(
                    f"{period.get('block_read', {}).get(str(s), 0):>15}" for s in sizes))
                out.append("No. of Writes:" + "".join(
                    f"{period.get('block_write', {}).get(str(s), 0):>15}" for s in sizes))
            out.append(f" {'%-latency':>9} {'Avg-latency':>14} {'Min-Latency':>14} "
                       f"{'Max-Latency':>14} {'No. of calls':>14}         Fop")
            out.append(f" {'---------':>9} {'-----------':>14} {'-----------':>14} "
                       f"{'-----------':>14} {'------------':>14}        ----")
            fops = period.get("fops", {})
            total = sum(f.get("total_ns", 0) for f in fops.values()) or 1
            for fop, f in sorted(fops.items(), key=lambda kv: kv[1].get("total_ns", 0)):
                pct = 100.0 * f.get("total_ns", 0) / total
                out.append(f" {pct:>9.2f} {_ms(f.get('avg_ns', 0)):>14} "
                           f"{_ms(f.get('min_ns', 0)):>14} {_ms(f.get('max_ns', 0)):>14} "
                           f"{f.get('hits', 0):>14} {fop:>12}")
            out.append("")
            out.append(f"    Duration: {int(period.get('duration', 0))} seconds")
            out.append(f"   Data Read: {period.get('data_read', 0)} bytes")
            out.append(f"Data Written: {period.get('data_written', 0)} bytes")
            out.append("")
    return "\n".join(out)


def v_profile(client, opts, w) -> int:
    if len(w) != 2 or w[1] not in ("start", "stop", "info"):
        raise Usage("volume profile <VOLNAME> {start|info|stop}")
    name, action = w
    path = f"/api/v1/volumes/{quote_path(name)}/profile"
    try:
        doc = client.call("GET", path) if action == "info" else \
            client.call("POST", path, {"action": action})
    except ApiFailure as e:
        return _fail(f"volume profile: {name}", e)
    if opts.json:
        _json(doc)
    elif action == "info":
        print(format_profile(doc))
    else:
        print(f"Starting volume profile on {name} has been successful " if action == "start"
              else f"Stopping volume profile on {name} has been successful ")
    return 0


def v_log(client, opts, w) -> int:
    name, limit = None, None
    words = list(w)
    if len(words) >= 2 and words[-2] == "limit":
        limit = words[-1]
        if not limit.isdigit():
            raise Usage("volume log [<VOLNAME>] [limit <N>]")
        words = words[:-2]
    if len(words) > 1:
        raise Usage("volume log [<VOLNAME>] [limit <N>]")
    if words:
        name = words[0]
    try:
        doc = client.call("GET", "/api/v1/log", volume=name, limit=limit)
    except ApiFailure as e:
        return _fail("volume log", e)
    if opts.json:
        _json(doc)
        return 0
    for e in doc["entries"]:
        who = _who_text(e.get("who") or {})
        args = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted((e.get("args") or {}).items())
                        if v not in (None, False))
        print(f"{e['time']}  {who}: {e['op']} {args} -> {e['result']}")
    return 0


def _who_text(who: dict) -> str:
    """Who asked, as the daemon proved it (glusterd/routes/api.py `principal`)."""
    kind = who.get("kind")
    if kind == "local":
        return f"{who.get('user') or '?'}(uid {who.get('uid')}) on the node"
    if kind == "token":
        return f"token {who.get('token')} from {who.get('address')}"
    if kind == "peer":
        return f"peer {who.get('peer')} from {who.get('address')}"
    return f"{kind or 'anonymous'} from {who.get('address')}"


__all__ = ["register", "run", "format_info", "format_status", "format_clients"]
