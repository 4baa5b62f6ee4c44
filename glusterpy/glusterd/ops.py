"""Volume operations as pure plans: validate, then compute the new definition.

glusterd runs every volume operation in phases (glusterd-mgmt.c, mgmt_v3):
lock on every peer, *stage* (validate) on every peer, *commit* on every
peer, unlock.  Here `prepare()` is the originator's part - it checks the
request the way glusterd's CLI and op-sm check it, with their messages, and
computes the volume's whole new definition (a `Volume`, glusterd/model.py,
travelling between nodes as its JSON document) - and
`stage_local()` is what each node checks about its own bricks (paths it
alone can see: under one of its allowed brick roots, no system directory,
not inside another brick nor inside the working directory, creatable, not
already part of a volume) plus the ports it proposes for them.  Commit then stores the new document on every node.  Because a plan
carries the old document too, undoing a commit is committing the old one.

A volume document (`Volume.to_json`; `Volume` and `Brick` have the same
fields as attributes):

    {"name", "id" (volume-id uuid), "status": Created|Started|Stopped,
     "replica", "arbiter" (0/1), "stripe", "transport": "tcp",
     "bricks": [{"host", "path", "node" (owner's uuid), "port", "arbiter"?,
                 "metadata"? (device lv: storage/bd's companion directory)}],
     "device"?: "lv" (bricks are LVM volume groups, served by storage/bd),
     "options": {volume set key: value}, "version" (bumped by every commit),
     "tasks": {"remove-brick": {...}, "rebalance": {...}},
     "georep"?: {"HOST::SECONDARY": a geo-replication session (glusterd/georep.py)}}

A task is a rebalance, or remove-brick's migration, that the nodes it names
run (glusterd/rebalance.py): its id, command, commit hash and nodes.

`ValueError` carries the message the CLI prints after "failed: ".
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import socket
import uuid
from pathlib import Path
from typing import Iterable, Sequence

from ..keys import GFID_KEY, VOLUME_ID_KEY
from ..localsock import is_local_address  # one definition, shared with the CLI
from ..options import OptionError
from . import georep, rebalance, volgen
from .common import INVALID_VOLNAMES, VOLNAME_MAX, check_volname  # noqa: F401 (ops' API)
from .model import Brick, Volume

# (check_volname lives in common.py: georep.py checks secondary names with it)


def parse_brick(text: str) -> tuple[str, str]:
    """`HOST:/PATH` -> (host, normalised absolute path)."""
    if not isinstance(text, str):
        raise ValueError(f"wrong brick type: {text!r}, use <HOSTNAME>:<export-dir-abs-path>")
    host, sep, path = text.rpartition(":")
    if not sep or not host or not path.startswith("/"):
        raise ValueError(f"wrong brick type: {text}, use <HOSTNAME>:<export-dir-abs-path>")
    host = host.strip("[]")
    if not re.fullmatch(r"[A-Za-z0-9._:-]+", host):
        raise ValueError(f"internet address '{host}' does not conform to standards")
    norm = os.path.normpath(path)
    if norm == "/":
        raise ValueError(f"wrong brick type: {text}: the root directory cannot be a brick")
    if any(c in norm for c in "\n\0 "):
        raise ValueError(f"brick path {path!r} holds blanks or control characters")
    return host, norm


def check_vg_brick(path: str) -> None:
    """A `device lv` brick is HOST:/VG - one path component, a name LVM
    takes for a volume group (a-z A-Z 0-9 + _ . -, no leading hyphen)."""
    vg = path.strip("/")
    if not vg or "/" in vg:
        raise ValueError(f"brick {path}: a device lv brick names a volume group "
                         "(HOST:/VGNAME), not a directory")
    if not re.fullmatch(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*", vg) or vg in (".", ".."):
        raise ValueError(f"brick {path}: '{vg}' is not a valid volume group name "
                         "(allowed: a-z A-Z 0-9 + _ . -, not starting with '-')")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or (ip.version == 4 and host.startswith("0."))


def _addresses(host: str) -> set[str]:
    try:
        return {a[4][0] for a in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):  # UnicodeError: not a host name at all ("..")
        return set()


class Cluster:
    """What prepare() needs to know of the cluster: this node and its peers."""

    def __init__(self, node_uuid: str, node_names: list[str], peers: dict[str, dict],
                 volumes: dict[str, Volume], workdir: Path):
        self.node_uuid = node_uuid
        self.node_names = node_names
        self.peers = peers
        self.volumes = volumes
        self.workdir = workdir

    def resolve_host(self, host: str) -> str:
        """The uuid of the node `host` names; ValueError (glusterd's
        message) when it names no node of the cluster."""
        lowered = host.lower()
        for peer in self.peers.values():
            if lowered in (h.lower() for h in peer["hostnames"]):
                return peer["uuid"]
        if lowered in (h.lower() for h in self.node_names) or is_local_address(host):
            return self.node_uuid
        wanted = _addresses(host)
        if wanted:
            for peer in self.peers.values():
                for h in peer["hostnames"]:
                    if wanted & _addresses(h):
                        return peer["uuid"]
        raise ValueError(f"Host {host} is not in 'Peer in Cluster' state")

    def volume(self, name: str) -> Volume:
        check_volname(name)
        if name not in self.volumes:
            raise ValueError(f"Volume {name} does not exist")
        return self.volumes[name]


def _bricks(cluster: Cluster, texts, vol_name: str, existing: list[Brick]) -> list[Brick]:
    if not isinstance(texts, list) or not texts:
        raise ValueError("no bricks given")
    out: list[Brick] = []
    seen: set[tuple[str, str]] = set()
    current = {(b.node, b.path) for b in existing}
    for text in texts:
        host, path = parse_brick(text)
        if cluster.peers and is_loopback(host):
            raise ValueError("Please provide a valid hostname/ip other than localhost, "
                             "127.0.0.1 or loopback address (0.0.0.0 to 0.255.255.255).")
        node = cluster.resolve_host(host)
        if (node, path) in current:
            raise ValueError(f"{text} is already part of a volume")
        if (node, path) in seen:
            raise ValueError(f"Found duplicate exports {text}")
        seen.add((node, path))
        out.append(Brick(host=host, path=path, node=node, port=0))
    # a brick inside (or containing) another brick on the same node, in any volume
    others = [(b.node, b.path, v.name) for v in cluster.volumes.values()
              for b in v.bricks]
    for i, b in enumerate(out):
        for node, path, owner in others + [(o.node, o.path, vol_name)
                                           for j, o in enumerate(out) if j != i]:
            if node != b.node:
                continue
            if path == b.path and owner != vol_name:
                raise ValueError(f"{b.host}:{b.path} is already part of a volume")
            if _nested(path, b.path):
                raise ValueError(f"Brick: {b.host}:{b.path} not available. Brick may "
                                 "be containing or be contained by an existing brick.")
    return out


def _nested(a: str, b: str) -> bool:
    """One of two different paths is inside the other."""
    if a == b:
        return False
    return a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _count(args: dict, key: str, default: int = 1) -> int:
    value = args.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 0)
        except ValueError:
            raise ValueError(f"{key} count must be a number, not {value!r}") from None
    return value


def prepare_create(cluster: Cluster, args: dict) -> Volume:
    name = args.get("name")
    check_volname(name)
    if name in cluster.volumes:
        raise ValueError(f"Volume {name} already exists")
    replica, stripe = _count(args, "replica"), _count(args, "stripe")
    arbiter = _count(args, "arbiter", 0)
    if args.get("replica") is not None and replica < 2:
        raise ValueError("replica count should be greater than 1")
    if args.get("stripe") is not None and stripe < 2:
        raise ValueError("stripe count should be greater than 1")
    if arbiter and (arbiter != 1 or replica not in (2, 3)):
        raise ValueError("For arbiter configuration, replica count must be 2 and arbiter "
                         "count must be 1. The 3rd brick of the replica will be the arbiter")
    if arbiter and replica == 2:
        replica = 3  # "replica 2 arbiter 1" is replica 3 with an arbiter, as glusterd reads it
    transport = args.get("transport", "tcp") or "tcp"
    if transport != "tcp":
        raise ValueError(f"transport-type {transport} is not supported (glusterpy speaks tcp)")
    device = args.get("device")
    if device not in (None, "lv", "vg"):
        raise ValueError(f"device {device!r} is not supported (device lv: the bricks are "
                         "LVM volume groups served by storage/bd)")
    bricks = _bricks(cluster, args.get("bricks"), name, [])
    if device:
        for b in bricks:
            check_vg_brick(b.path)
    per_set = replica * stripe
    if len(bricks) % per_set:
        if replica > 1 and stripe > 1:
            raise ValueError("number of bricks is not a multiple of stripe count times "
                             "replica count")
        if replica > 1:
            raise ValueError("number of bricks is not a multiple of replica count")
        raise ValueError("number of bricks is not a multiple of stripe count")
    if arbiter:
        for i, b in enumerate(bricks):
            if i % replica == replica - 1:
                b.arbiter = True
    vol = Volume(name=name, id=str(uuid.uuid4()), status="Created",
                 replica=replica, arbiter=arbiter, stripe=stripe, transport=transport,
                 bricks=bricks, options={}, version=1, tasks={})
    if device:
        vol.device = "lv"
    return vol


def prepare_start(cluster: Cluster, args: dict) -> Volume:
    vol = copy.deepcopy(cluster.volume(args.get("name")))
    if vol.status == "Started" and not args.get("force"):
        raise ValueError(f"Volume {vol.name} already started")
    vol.status = "Started"
    return vol


def _active_sessions(vol: Volume) -> list[str]:
    return [k for k, s in vol.georep.items() if s.status in ("Started", "Paused")]


def prepare_stop(cluster: Cluster, args: dict) -> Volume:
    vol = copy.deepcopy(cluster.volume(args.get("name")))
    if vol.status != "Started":
        raise ValueError(f"Volume {vol.name} is not in the started state")
    if _active_sessions(vol) and not args.get("force"):
        # glusterd_check_geo_rep_running's message
        raise ValueError(f"geo-replication sessions are active for the volume {vol.name}.\n"
                         "Stop geo-replication sessions involved in this volume. Use "
                         "'volume geo-replication status' command for more info.")
    vol.status = "Stopped"
    return vol


def prepare_delete(cluster: Cluster, args: dict) -> None:
    vol = cluster.volume(args.get("name"))
    if vol.status == "Started":
        raise ValueError(f"Volume {vol.name} has been started.Volume needs to be stopped "
                         "before deletion.")
    if _active_sessions(vol):
        raise ValueError(f"Cannot delete Volume {vol.name} ,as it has "
                         f"{len(_active_sessions(vol))} active geo-replication sessions.")
    return None


def prepare_add_brick(cluster: Cluster, args: dict) -> Volume:
    vol = copy.deepcopy(cluster.volume(args.get("name")))
    if "remove-brick" in vol.tasks:
        raise ValueError("a remove-brick task is in progress on this volume: commit or "
                         "stop it first")
    if args.get("replica") is not None:
        replica = _count(args, "replica")
        if replica != vol.replica:
            raise ValueError(f"changing the replica count (from {vol.replica} to "
                             f"{replica}) is not supported by glusterpy")
    if args.get("stripe") is not None and _count(args, "stripe") != vol.stripe:
        raise ValueError("changing the stripe count is not supported")
    new = _bricks(cluster, args.get("bricks"), vol.name, vol.bricks)
    if vol.device:
        for b in new:
            check_vg_brick(b.path)
    per_set = vol.replica * vol.stripe
    if len(new) % per_set:
        raise ValueError(f"Incorrect number of bricks supplied {len(new)} with count "
                         f"{per_set}")
    if vol.arbiter:
        for i, b in enumerate(new):
            if i % vol.replica == vol.replica - 1:
                b.arbiter = True
    vol.bricks.extend(new)
    return vol


def _sets(vol: Volume) -> list[list[int]]:
    per_set = vol.replica * vol.stripe
    n = len(vol.bricks)
    return [list(range(i, i + per_set)) for i in range(0, n, per_set)]


def prepare_remove_brick(cluster: Cluster, args: dict) -> Volume | None:
    """start: begin migrating data off the bricks (a task); status: no
    change; commit: drop them once migrated; force: drop them now."""
    vol = copy.deepcopy(cluster.volume(args.get("name")))
    action = args.get("action")
    if action not in ("start", "status", "commit", "force", "stop"):
        raise ValueError("remove-brick needs one of start, status, stop, commit or force")
    task = vol.tasks.get("remove-brick")
    wanted = []
    for text in args.get("bricks") or []:
        host, path = parse_brick(text)
        node = cluster.resolve_host(host)
        match = [i for i, b in enumerate(vol.bricks) if b.node == node and
                 b.path == path]
        if not match:
            raise ValueError(f"Incorrect brick {text} for volume {vol.name}")
        wanted.append(match[0])
    if not wanted:
        raise ValueError("no bricks given")
    ids = sorted(set(wanted))
    if len(ids) != len(wanted):
        raise ValueError("Found duplicate bricks in the list")
    if action in ("status", "stop", "commit"):
        if task is None or sorted(task["indices"]) != ids:
            raise ValueError(f"No remove-brick task is running on volume {vol.name} "
                             "for these bricks")
        if action == "status":
            return vol
        if action == "stop":
            del vol.tasks["remove-brick"]
            return vol
        # commit: each node that migrates checks its migration completed (at stage)
    sets = _sets(vol)
    chosen_sets = []
    for s in sets:
        inside = [i for i in s if i in ids]
        if inside and len(inside) != len(s):
            raise ValueError("Bricks not from same subvol for "
                             f"{'replica' if vol.replica > 1 else 'stripe'}")
        if inside:
            chosen_sets.append(sets.index(s))
    if len(ids) == len(vol.bricks):
        raise ValueError("Deleting all the bricks of the volume is not allowed")
    if action == "start":
        if vol.status != "Started":
            raise ValueError(f"Volume {vol.name} needs to be started before "
                             "remove-brick (you can use 'force' or 'commit' to override "
                             "this behavior)")
        if task is not None:
            raise ValueError("a remove-brick task is already in progress")
        subvols = [_set_name(vol, s) for s in chosen_sets]
        # one migration task at a time, as glusterd's volinfo->rebal (a running
        # rebalance refuses this at stage)
        vol.tasks.pop("rebalance", None)
        vol.tasks["remove-brick"] = rebalance.remove_brick_task(
            vol, ids, subvols, [volgen.brick_id(vol.bricks[i]) for i in ids])
        return vol
    # commit or force: the bricks leave the volume
    vol.bricks = [b for i, b in enumerate(vol.bricks) if i not in ids]
    vol.tasks.pop("remove-brick", None)
    return vol


def _set_name(vol: Volume, index: int) -> str:
    if vol.stripe > 1:
        return f"{vol.name}-stripe-{index}"
    if vol.replica > 1:
        return f"{vol.name}-replicate-{index}"
    return volgen.client_name(vol, index)


def prepare_set(cluster: Cluster, args: dict) -> Volume:
    vol = copy.deepcopy(cluster.volume(args.get("name")))
    options = args.get("options")
    if not isinstance(options, dict) or not options:
        raise ValueError("no option given: volume set NAME KEY VALUE")
    for key, value in options.items():
        if not isinstance(value, str):
            raise ValueError(f"the value of {key} must be a string")
        try:
            volgen.lookup_key(key).parse(value)
        except OptionError as e:
            raise ValueError(str(e)) from None
        vol.options[key] = value
    return vol


def prepare_reset(cluster: Cluster, args: dict) -> Volume:
    vol = copy.deepcopy(cluster.volume(args.get("name")))
    key = args.get("key") or "all"
    if key == "all":
        vol.options = {}
        return vol
    try:
        volgen.lookup_key(key)
    except OptionError as e:
        raise ValueError(str(e)) from None
    vol.options.pop(key, None)
    return vol


PROFILE_KEYS = ("diagnostics.latency-measurement", "diagnostics.count-fop-hits")


def prepare_profile(cluster: Cluster, args: dict) -> Volume:
    vol = copy.deepcopy(cluster.volume(args.get("name")))
    action = args.get("action")
    if action not in ("start", "stop"):
        raise ValueError("profile needs start, stop or info")
    if action == "start":
        if vol.status != "Started":
            raise ValueError(f"Volume {vol.name} is not started")
        if vol.profile:
            raise ValueError(f"Profile on Volume {vol.name} is already started")
        vol.profile = True
        for k in PROFILE_KEYS:
            vol.options[k] = "on"
    else:
        if not vol.profile:
            raise ValueError(f"Profile on Volume {vol.name} is not started")
        vol.profile = False
        for k in PROFILE_KEYS:
            vol.options.pop(k, None)
    return vol


PREPARE = {"create": prepare_create, "start": prepare_start, "stop": prepare_stop,
           "delete": prepare_delete, "add-brick": prepare_add_brick,
           "remove-brick": prepare_remove_brick, "set": prepare_set, "reset": prepare_reset,
           "profile": prepare_profile, "rebalance": rebalance.prepare_rebalance,
           "geo-replication": georep.prepare_georep}


# --------------------------------------------------------------------------
# what each node checks about its own bricks

#: Where bricks may be, unless `glusterpyd --brick-root DIR` says otherwise:
#: the places GlusterFS's documentation puts bricks - /data/brick1 (Quick
#: Start Guide), /bricks/brick1 (Administrator Guide, "Setting up Storage"),
#: /export/sdb1 (older install guides), /gluster/brick, /srv/..., and /mnt/...
#: where a disk is mounted for one.  Anything else (/home, /var, /opt, /tmp)
#: must be named by the local admin.
DEFAULT_BRICK_ROOTS = ("/bricks", "/data", "/export", "/gluster", "/mnt", "/srv")

#: Never a brick, nor inside or around one, whatever the brick roots say:
#: writing into a volume writes there as root.  (The root directory itself is
#: refused as a brick; it contains every one of these anyway.)
SYSTEM_DIRS = ("/etc", "/usr", "/boot", "/proc", "/sys", "/dev", "/root", "/bin",
               "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/run", "/var/lib/glusterpy",
               "/var/lib/glusterd")

BRICK_ROOT_SETTING = "set with glusterpyd --brick-root"


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.path.normpath(os.path.abspath(path)))


def _under(path: str, root: str) -> bool:
    """`path` is `root` or inside it (both absolute and normalised)."""
    return path == root or root == "/" or path.startswith(root.rstrip("/") + "/")


def _forbidden(workdir: Path | str) -> list[str]:
    """The system directories and the working directory, each as written
    and as resolved (/lib may be a link to /usr/lib)."""
    out: list[str] = []
    for d in (*SYSTEM_DIRS, str(workdir)):
        for p in (os.path.normpath(os.path.abspath(d)), _real(d)):
            if p not in out:
                out.append(p)
    return out


def brick_roots(roots: Iterable[str] | None, workdir: Path | str) -> tuple[str, ...]:
    """The allowed brick roots, resolved; ValueError for one that is the
    root directory, relative, or a system directory / the working directory
    or inside one (a root that merely contains one - /var holds
    /var/lib/glusterpy - is fine: what it contains stays refused)."""
    roots = DEFAULT_BRICK_ROOTS if roots is None else tuple(roots)
    if not roots:
        raise ValueError("at least one brick root is needed (--brick-root DIR)")
    forbidden = _forbidden(workdir)
    out: list[str] = []
    for root in roots:
        if not isinstance(root, str) or not root.startswith("/"):
            raise ValueError(f"brick root {root!r} is not an absolute path")
        real = _real(root)
        if real == "/":
            raise ValueError(f"brick root {root} is the root directory: it would allow a "
                             "brick anywhere; name the directories bricks may be under")
        for f in forbidden:
            if _under(real, f) or _under(os.path.normpath(root), f):
                where = "" if real == f else f"inside {f}, "
                raise ValueError(f"brick root {root} is {where}a system directory or "
                                 "glusterpyd's working directory, which can never hold a "
                                 "brick")
        if real not in out:
            out.append(real)
    return tuple(out)


def check_brick_path(path: str, brick: str, roots: Sequence[str], workdir: Path | str) -> None:
    """A directory brick must resolve (symlinks, '..') to a path under one of
    `roots`, and neither it nor what it resolves to may be, contain or lie
    inside a system directory or the working directory - with force or not."""
    norm = os.path.normpath(path)
    real = _real(norm)
    shown = norm if real == norm else f"{norm} (which resolves to {real})"
    workdirs = {os.path.normpath(os.path.abspath(workdir)), _real(workdir)}
    for f in _forbidden(workdir):
        what = "glusterpyd's working directory" if f in workdirs else "a system directory"
        for p in (norm, real):
            if p == f:
                raise ValueError(f"brick {brick}: {shown} is {what} and can never be a brick")
            if _under(p, f):
                raise ValueError(f"brick {brick}: {shown} is inside {f}, {what}, and can "
                                 "never be a brick")
            if _under(f, p):
                raise ValueError(f"brick {brick}: {shown} holds {f}, {what}, and can never "
                                 "be a brick")
    if not any(_under(real, r) for r in roots):
        raise ValueError(f"brick {brick}: {shown} is not under an allowed brick root "
                         f"({', '.join(roots)}; {BRICK_ROOT_SETTING})")


def stage_local(node_uuid: str, workdir: Path, old: Volume | None, new: Volume | None,
                force: bool, taken_ports: set[int], alloc_port,
                roots: Sequence[str] | None = None) -> dict:
    """Check this node's bricks that `new` adds; return {"ports": {path: port}}
    for those that need one.  ValueError names the first problem.  `roots`:
    the allowed brick roots (`brick_roots()`; None: the defaults)."""
    if roots is None:
        roots = brick_roots(None, workdir)
    ports: dict[str, int] = {}
    if new is None:
        return {"ports": ports}
    old_paths = {b.path for b in (old.bricks if old else []) if b.node == node_uuid}
    metadata: dict[str, str] = {}
    for b in new.bricks:
        if b.node != node_uuid or b.path in old_paths:
            continue
        path = Path(b.path)
        brick = f"{b.host}:{b.path}"
        if new.device:
            metadata[b.path] = _stage_vg_brick(workdir, new, b, force)
            if not b.port:
                port = alloc_port(taken_ports)
                taken_ports.add(port)
                ports[b.path] = port
            continue
        if path == workdir or workdir in path.parents or path in workdir.parents:
            raise ValueError("Brick isn't allowed to be created inside glusterd's working "
                             f"directory. ({brick} and {workdir})")
        real = Path(os.path.realpath(path))
        if real != path and (real == workdir or workdir in real.parents):
            raise ValueError("Brick isn't allowed to be created inside glusterd's working "
                             f"directory. ({brick} resolves to {real})")
        check_brick_path(b.path, brick, roots, workdir)
        for parent in path.parents:
            if parent.exists() and not parent.is_dir():
                raise ValueError(f"Failed to create brick directory for brick {brick}. "
                                 f"Reason : {parent} is not a directory")
        if path.exists():
            if not path.is_dir():
                raise ValueError(f"{brick} is not a directory")
            for where in [path, *path.parents]:
                try:
                    has = any(k in os.listxattr(where) for k in (VOLUME_ID_KEY,)) or \
                        (where == path and GFID_KEY in os.listxattr(where))
                except OSError:
                    has = False
                if has and not force:
                    if where == path:
                        raise ValueError(f"{b.path} is already part of a volume")
                    raise ValueError(f"parent directory {where} is already part of a volume")
        if not b.port:
            port = alloc_port(taken_ports)
            if not port:
                raise ValueError("no free port for the brick in the brick port range")
            taken_ports.add(port)
            ports[b.path] = port
    return {"ports": ports, "metadata": metadata}


def _stage_vg_brick(workdir: Path, vol: Volume, brick: Brick, force: bool) -> str:
    """A storage/bd brick: the volume group must exist here; its companion
    metadata directory (names, owners, xattrs LVM cannot hold) lives under
    the working directory, WORKDIR/bd/VOLUME/VG."""
    vg = brick.path.strip("/")
    from ..bd import Lvm, LvmError
    try:
        report = Lvm().report(vg)
    except LvmError as e:
        raise ValueError(f"Volume group {vg} does not exist on {brick.host} ({e})") \
            from None
    # storage/bd adopts every LV of the VG as a file: a VG whose LVs the
    # system uses (a mounted root or home, swap, a VM's disk) would hand them
    # out, as a directory brick on /etc would - refused, with force or not
    busy = sorted(lv.name for lv in report.lvs.values() if lv.attr[5:6] == "o")
    if busy:
        raise ValueError(f"brick {brick.host}:{brick.path}: volume group {vg} holds "
                         f"logical volumes in use on this node ({', '.join(busy)}: open, "
                         "mounted or swap) and can never be a device lv brick")
    meta = workdir / "bd" / vol.name / vg
    if meta.exists() and any(meta.iterdir()) and not force:
        raise ValueError(f"{brick.host}:{brick.path} is already part of a volume "
                         f"(its metadata directory {meta} is not empty)")
    return str(meta)


def prepare_brick_dirs(node_uuid: str, new: Volume, old: Volume | None) -> list[str]:
    """At commit: create this node's new brick directories and stamp them
    with the volume-id; return the paths stamped (for a rollback)."""
    stamped = []
    old_paths = {b.path for b in (old.bricks if old else []) if b.node == node_uuid}
    vid = uuid.UUID(new.id).bytes
    for b in new.bricks:
        if b.node != node_uuid or b.path in old_paths:
            continue
        if b.metadata:  # storage/bd: the VG carries the volume-id as a tag
            os.makedirs(b.metadata, exist_ok=True)
            continue
        os.makedirs(b.path, exist_ok=True)
        os.setxattr(b.path, VOLUME_ID_KEY, vid)
        stamped.append(b.path)
    return stamped


def unstamp(paths: list[str]) -> None:
    for p in paths:
        try:
            os.removexattr(p, VOLUME_ID_KEY)
        except OSError:
            pass
