"""`glusterpy volume heal ...`: the gluster CLI's heal verbs, against glusterpyd.

    volume heal <VOLNAME> [enable | disable | full | statistics [heal-count] |
                           info [summary | split-brain] |
                           split-brain {bigger-file <FILE> | latest-mtime <FILE> |
                                        source-brick <HOSTNAME:BRICKNAME> [<FILE>]}]

Each verb is one REST call (glusterpy/glusterd/heal.py says what the daemon
does) and prints what gluster prints - cli-rpc-ops.c's gf_cli_heal_volume_cbk
for the verbs that go through glusterd ("Launching heal operation to
perform index self heal on volume V has been successful", the crawl
statistics, the heal counts) and glfsheal's output for the others (per
brick "Brick HOST:/PATH", its entries, "Status: Connected", "Number of
entries: N"; "Healed FILE." for a resolved split-brain).  Failures go to
standard error with exit status 1, in gluster's words; `--json` prints the
API's answer instead.  `enable` and `disable` are `volume set V
cluster.self-heal-daemon on|off`, as glusterd turns them into.
"""

from __future__ import annotations

import json
import sys
import time

from .api_client import ApiClient, ApiFailure, quote_path

USAGE = ("volume heal <VOLNAME> [enable | disable | full |statistics [heal-count] |"
         "info [summary | split-brain] |split-brain {bigger-file <FILE> | latest-mtime "
         "<FILE> |source-brick <HOSTNAME:BRICKNAME> [<FILE>]}]")

#: glfsheal's words for heal-info's statuses
STATUS_TEXT = {"heal": " ", "heal-pending": " ", "split-brain": " - Is in split-brain",
               "split-brain-pending": " - Is in split-brain",
               "possibly-healing": " - Possibly undergoing heal",
               "possibly-healing-pending": " - Possibly undergoing heal"}


class Usage(Exception):
    pass


def parse(words: list[str]) -> tuple[str, dict]:
    """(verb, arguments) of `volume heal` (cli_cmd_volume_heal_options_parse);
    Usage on anything else."""
    if not words:
        raise Usage(USAGE)
    name, rest = words[0], words[1:]
    if not rest:
        return "index", {"name": name}
    if rest in (["full"], ["enable"], ["disable"]):
        return rest[0], {"name": name}
    if rest == ["info"]:
        return "info", {"name": name}
    if rest in (["info", "split-brain"], ["info", "summary"]):
        return f"info-{rest[1]}", {"name": name}
    if rest == ["statistics"]:
        return "statistics", {"name": name}
    if rest == ["statistics", "heal-count"]:
        return "heal-count", {"name": name}
    if rest[0] == "split-brain" and len(rest) >= 3:
        policy, args = rest[1], rest[2:]
        if policy in ("bigger-file", "latest-mtime") and len(args) == 1:
            return "split-brain", {"name": name, "policy": policy, "file": args[0]}
        if policy == "source-brick" and len(args) in (1, 2) and ":" in args[0]:
            return "split-brain", {"name": name, "policy": policy, "brick": args[0],
                                   **({"file": args[1]} if len(args) == 2 else {})}
    raise Usage(USAGE)


def v_heal(client: ApiClient, opts, words: list[str]) -> int:
    try:
        verb, args = parse(words)
    except Usage as e:
        print(f"Usage:\n{e}", file=sys.stderr)
        return 1
    name = args["name"]
    base = f"/api/v1/volumes/{quote_path(name)}"
    if verb in ("enable", "disable"):
        what = f"{verb.capitalize()} heal"
        try:
            doc = client.call("POST", f"{base}/options", {"options": {
                "cluster.self-heal-daemon": "on" if verb == "enable" else "off"}})
        except ApiFailure as e:
            return _unsuccessful(what, name, e)
        return _done(opts, doc, f"{what} on volume {name} has been successful ")
    if verb in ("index", "full"):
        what = f"Launching heal operation to perform {verb} self heal"
        try:
            doc = client.call("POST", f"{base}/heal", {"op": verb})
        except ApiFailure as e:
            return _unsuccessful(what, name, e)
        return _done(opts, doc, f"{what} on volume {name} has been successful \n"
                                "Use heal info commands to check status.")
    if verb in ("statistics", "heal-count"):
        what = "Gathering " + ("crawl statistics" if verb == "statistics" else
                               "count of entries to be healed")
        try:
            doc = client.call("GET", f"{base}/heal/statistics" +
                              ("/heal-count" if verb == "heal-count" else ""))
        except ApiFailure as e:
            return _unsuccessful(what, name, e)
        if opts.json:
            return _json(doc)
        print(f"{what} on volume {name} has been successful ")
        print(format_statistics(doc) if verb == "statistics" else format_heal_count(doc))
        return 0
    if verb.startswith("info"):
        path = f"{base}/heal/split-brain" if verb == "info-split-brain" else f"{base}/heal/info"
        try:
            doc = client.call("GET", path)
        except ApiFailure as e:
            return _glfsheal_failed(e)
        if opts.json:
            return _json(doc)
        print(format_info(doc, summary=verb == "info-summary"), end="")
        return 0
    body = {k: args[k] for k in ("policy", "file", "brick") if k in args}
    try:
        doc = client.call("POST", f"{base}/heal/split-brain", body)
    except ApiFailure as e:
        return _glfsheal_failed(e)
    if opts.json:
        return _json(doc)
    print(format_split_brain(doc), end="")
    return 0


def _json(doc) -> int:
    print(json.dumps(doc, indent=2, sort_keys=True))
    return 0


def _done(opts, doc, text: str) -> int:
    if opts.json:
        return _json(doc)
    print(text)
    return 0


def _unsuccessful(what: str, name: str, e: ApiFailure) -> int:
    """gf_cli_heal_volume_cbk's failure: the operation, then glusterd's reason."""
    print(f"{what} on volume {name} has been unsuccessful:\n{e}", file=sys.stderr)
    return 1


def _glfsheal_failed(e: ApiFailure) -> int:
    """What glfsheal prints, then the CLI's "Volume heal failed."."""
    print(f"{e}\nVolume heal failed.", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------
# output


def format_info(doc: dict, summary: bool = False) -> str:
    """glfsheal's human-readable info, info split-brain and info summary."""
    out = []
    split_only = doc.get("split_brain_only")
    for b in doc["bricks"]:
        out.append(f"Brick {b['brick']}")
        entries = b.get("entries")
        if entries is None:
            out.append(f"Status: {b['status']}")
            if summary:
                out += ["Total Number of entries: -", "Number of entries in heal pending: -",
                        "Number of entries in split-brain: -",
                        "Number of entries possibly healing: -"]
            else:
                out.append(("Number of entries in split-brain:" if split_only else
                            "Number of entries:") + " -")
            out.append("")
            continue
        if summary:
            kinds = [e["status"].removesuffix("-pending") for e in entries]
            out += ["Status: Connected", f"Total Number of entries: {len(entries)}",
                    f"Number of entries in heal pending: {kinds.count('heal')}",
                    f"Number of entries in split-brain: {kinds.count('split-brain')}",
                    "Number of entries possibly healing: "
                    f"{kinds.count('possibly-healing')}", ""]
            continue
        for e in entries:
            out.append(e["path"] if split_only else e["path"] + STATUS_TEXT.get(e["status"], " "))
        out.append("Status: Connected")
        out.append(("Number of entries in split-brain: " if split_only else
                    "Number of entries: ") + str(len(entries)))
        out.append("")
    return "\n".join(out) + "\n"


def format_split_brain(doc: dict) -> str:
    out = list(doc.get("notes", []))
    out += [r["message"] for r in doc["results"]]
    if doc.get("file") is None:  # source-brick over the brick's index
        out += ["Status: Connected", f"Number of healed entries: {doc['healed']}", ""]
    return "\n".join(out) + "\n"


def format_statistics(doc: dict) -> str:
    """cmd_heal_volume_statistics_out for every brick that answered."""
    out = []
    for b in doc["bricks"]:
        host = b["brick"].rsplit(":", 1)[0]
        out += ["------------------------------------------------", "",
                f"Crawl statistics for brick no {b['number']}", f"Hostname of brick {host}"]
        for e in b.get("events", []):
            out += ["", f"Starting time of crawl: {time.ctime(e['start'])}", ""]
            if e["in_progress"]:
                out.append("Crawl is in progress")
            else:
                out += [f"Ending time of crawl: {time.ctime(e['end'])}", ""]
            out += [f"Type of crawl: {e['type']}", f"No. of entries healed: {e['healed']}",
                    f"No. of entries in split-brain: {e['split_brain']}",
                    f"No. of heal failed entries: {e['heal_failed']}"]
    return "\n".join(out)


def format_heal_count(doc: dict) -> str:
    """cmd_heal_volume_statistics_heal_count_out for every brick."""
    out = []
    for b in doc["bricks"]:
        out += ["", f"Brick {b['brick']}"]
        if b.get("status"):
            out.append(f"Status: {b['status']}")
        out.append(f"Number of entries: {b['count']}" if "count" in b else
                   "No gathered input for this brick")
    return "\n".join(out)


__all__ = ["v_heal", "parse", "format_info", "format_statistics", "format_heal_count",
           "format_split_brain", "USAGE"]
