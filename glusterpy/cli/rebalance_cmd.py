"""`glusterpy volume rebalance ...` and remove-brick's migration status.

    volume rebalance NAME fix-layout start [--watch]
    volume rebalance NAME start [force] [--watch]
    volume rebalance NAME status [--watch]
    volume rebalance NAME stop
    volume remove-brick NAME BRICK... start|status [--watch]

The commands are REST calls to glusterpyd (glusterpy/glusterd/
routes/rebalance.py) and print what the gluster CLI prints
(cli-rpc-ops.c): "volume rebalance: NAME: success: Rebalance on NAME has
been started successfully. ... ID: ...", and for status the per-node table
of gf_cli_print_rebalance_status - Node, Rebalanced-files, size (in
gluster's human units), scanned, failures, skipped, status, run time in
h:m:s; for remove-brick the skipped files are counted as failures, as
gluster counts them - followed by the estimated time left while a node is
still at work.

`--watch` (ours) follows the task until no node is at work: on a terminal
a progress bar redrawn in place - the share done over all nodes, files and
bytes moved, files scanned, failures, skipped, elapsed time and estimate -
then the final table; without a terminal (a pipe, a log) one plain line
per change of those numbers, then the table.  Ctrl-C leaves the watch; the
task goes on.
"""

from __future__ import annotations

import shutil
import sys
import time

from .api_client import ApiClient, ApiFailure, quote_path

#: seconds between two looks at the status while watching
WATCH_INTERVAL = 0.5
IN_PROGRESS = ("in progress", "fix-layout in progress")
REBALANCE_USAGE = ("volume rebalance <VOLNAME> {{fix-layout start | start [force] | status | "
                   "stop}} [--watch]")


def human(n: int) -> str:
    """gf_uint64_2human_readable."""
    for unit, size in (("PB", 1 << 50), ("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20),
                       ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n}Bytes"


def hms(seconds: float) -> str:
    s = int(seconds or 0)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_table(doc: dict, remove_brick: bool = False) -> str:
    """gf_cli_print_rebalance_status: one row per node that took part."""
    rows = [r for r in doc.get("nodes", []) if r.get("status") != "not started"]
    fix_layout = (doc.get("task") or {}).get("cmd") == "fix-layout" and not remove_brick
    out = []
    if fix_layout:
        out.append(f"{'Node':>35} {'status':>41} {'run time in h:m:s':>27}")
        out.append(f"{'---------':>35} {'-----------':>41} {'------------':>27}")
        for r in rows:
            t = int(r.get("run-time") or 0)
            out.append(f"{r.get('host', r.get('node', '?')):>35} {r['status']:>50} "
                       f"{t // 3600:>8}:{t % 3600 // 60:02d}:{t % 60:02d}")
    else:
        out.append(f"{'Node':>40} {'Rebalanced-files':>16} {'size':>13} {'scanned':>13} "
                   f"{'failures':>13} {'skipped':>13} {'status':>20} "
                   f"{'run time in h:m:s':>18}")
        out.append(f"{'---------':>40} {'-----------':>16} {'-----------':>13} "
                   f"{'-----------':>13} {'-----------':>13} {'-----------':>13} "
                   f"{'------------':>20} {'--------------':>18}")
        for r in rows:
            failures, skipped = int(r.get("failures") or 0), int(r.get("skipped") or 0)
            if remove_brick:           # gluster folds skipped into failures here
                failures, skipped = failures + skipped, 0
            t = int(r.get("run-time") or 0)
            out.append(f"{r.get('host', r.get('node', '?')):>40} {int(r.get('files') or 0):>16} "
                       f"{human(int(r.get('size') or 0)):>13} {int(r.get('lookups') or 0):>13} "
                       f"{failures:>13} {skipped:>13} {r['status']:>20} "
                       f"{t // 3600:>8}:{t % 3600 // 60:02d}:{t % 60:02d}")
    for r in rows:
        if r.get("error"):
            out.append(f"{r.get('host', r.get('node', '?'))}: {r['error']}")
    agg = doc.get("aggregate") or {}
    if agg.get("time-left"):
        out.append(f"Estimated time left for rebalance to complete : "
                   f"{hms(agg['time-left']):>10}")
    elif agg.get("status") in IN_PROGRESS:
        out.append("The estimated time for rebalance to complete will be unavailable until "
                   "the files to scan are counted and it has run for 10 seconds.")
    return "\n".join(out)


def progress_line(doc: dict, width: int | None = None) -> str:
    """One line of progress: a bar (with `width`) or plain words."""
    agg = doc.get("aggregate") or {}
    share = agg.get("progress")
    what = "remove-brick" if doc.get("kind") == "remove-brick" else "rebalance"
    words = (f"{int(agg.get('files') or 0)} files moved ({human(int(agg.get('size') or 0))}), "
             f"{int(agg.get('lookups') or 0)} scanned, {int(agg.get('failures') or 0)} "
             f"failures, {int(agg.get('skipped') or 0)} skipped, elapsed "
             f"{hms(agg.get('run-time') or 0)}")
    if agg.get("time-left") is not None:
        words += f", about {hms(agg['time-left'])} left"
    percent = f"{share * 100:5.1f}%" if share is not None else "  ?  %"
    if width is None:
        return f"{what} {doc.get('volume')}: {agg.get('status')} {percent.strip()} - {words}"
    bar_width = max(10, min(40, width - len(words) - 12))
    if share is None:        # the totals are not counted yet: a bouncing block
        pos = int(time.monotonic() * 4) % (bar_width - 3)
        bar = " " * pos + "<=>" + " " * (bar_width - 3 - pos)
    else:
        filled = int(round(share * bar_width))
        bar = "#" * filled + "." * (bar_width - filled)
    line = f"[{bar}] {percent} {words}"
    return line[:width - 1]


def watch(client: ApiClient, path: str, out=None) -> dict:
    """Follow a task's status until no node is at work; the last status."""
    out = out or sys.stdout
    tty = out.isatty()
    last = None
    doc = client.call("GET", path)
    try:
        while True:
            if tty:
                width = shutil.get_terminal_size((100, 24)).columns
                out.write("\r" + progress_line(doc, width).ljust(width - 1))
                out.flush()
            else:
                line = progress_line(doc)
                if line != last:
                    print(line, file=out, flush=True)
                    last = line
            if (doc.get("aggregate") or {}).get("status") not in IN_PROGRESS:
                break
            time.sleep(WATCH_INTERVAL)
            doc = client.call("GET", path)
    finally:
        if tty:
            out.write("\n")
            out.flush()
    return doc


def _fail(name: str, e: Exception) -> int:
    print(f"volume rebalance: {name}: failed: {e}", file=sys.stderr)
    return 1


def v_rebalance(client: ApiClient, opts, w: list[str]) -> int:
    """`volume rebalance ...` (see the module docstring)."""
    import json
    from .gluster_cmd import Usage
    follow = "--watch" in w
    w = [x for x in w if x != "--watch"]
    if len(w) < 2:
        raise Usage(REBALANCE_USAGE)
    name, rest = w[0], w[1:]
    path = f"/api/v1/volumes/{quote_path(name)}/rebalance"
    if rest in (["start"], ["start", "force"], ["fix-layout", "start"]):
        action = "fix-layout" if rest[0] == "fix-layout" else "start"
        try:
            doc = client.call("POST", path, {"action": action, "force": rest == ["start",
                                                                                "force"]})
        except ApiFailure as e:
            return _fail(name, e)
        if opts.json and not follow:
            print(json.dumps(doc, indent=2, sort_keys=True))
            return 0
        print(f"volume rebalance: {name}: success: Rebalance on {name} has been started "
              f"successfully. Use rebalance status command to check status of the rebalance "
              f"process.\nID: {doc['task']['id']}")
        if follow:
            return _watch_and_print(client, path, opts, name)
        return 0
    if rest == ["status"]:
        if follow:
            return _watch_and_print(client, path, opts, name)
        try:
            doc = client.call("GET", path)
        except ApiFailure as e:
            return _fail(name, e)
        if opts.json:
            print(json.dumps(doc, indent=2, sort_keys=True))
            return 0
        print(format_table(doc))
        print(f"volume rebalance: {name}: success")
        return 0
    if rest == ["stop"]:
        try:
            doc = client.call("POST", path, {"action": "stop"})
        except ApiFailure as e:
            return _fail(name, e)
        if opts.json:
            print(json.dumps(doc, indent=2, sort_keys=True))
            return 0
        print(format_table(doc["status"]))
        print(f"volume rebalance: {name}: success: rebalance process may be in the middle "
              "of a file migration.\nThe process will be fully stopped once the migration of "
              "the file is complete.\nPlease check rebalance process for completion before "
              "doing any further brick related tasks on the volume.")
        return 0
    raise Usage(REBALANCE_USAGE)


def _watch_and_print(client, path, opts, name, remove_brick: bool = False) -> int:
    import json
    try:
        doc = watch(client, path)
    except ApiFailure as e:
        return _fail(name, e)
    except KeyboardInterrupt:
        print(f"\n(the task goes on: 'volume {'remove-brick' if remove_brick else 'rebalance'} "
              f"{name} ... status' shows it)", file=sys.stderr)
        return 130
    if opts.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(format_table(doc, remove_brick))
    agg = doc.get("aggregate") or {}
    return 0 if agg.get("status") in ("completed", "fix-layout completed") else 1


def remove_brick_status(client: ApiClient, opts, name: str, doc: dict, follow: bool) -> int:
    """remove-brick status (or start --watch): the nodes' migration."""
    import json
    if follow:
        return _watch_and_print(client, f"/api/v1/volumes/{quote_path(name)}/remove-brick",
                                opts, name, remove_brick=True)
    status = doc.get("status") or {}
    if opts.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(format_table(status, remove_brick=True))
    return 0


__all__ = ["v_rebalance", "remove_brick_status", "format_table", "progress_line", "watch",
           "human"]
