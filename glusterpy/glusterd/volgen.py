"""volgen: a volume's volfiles from its definition, and the `volume set` keys.

Follows glusterd-volgen.c in what the graphs look like and how they are
named, with the translators glusterpy has:

Brick volfile, one per brick, named as glusterd names it,
`VOL.HOST.PATH-with-slashes-as-dashes.vol` (e.g. `demo.node1.srv-b1.vol`):

    VOL-posix    storage/posix   directory PATH, volume-id, glusterd-uuid (the
                                 brick's node, which glusterd passes to glusterfsd
                                 as --xlator-option *-posix.glusterd-uuid)
    [VOL-arbiter features/arbiter, on an arbiter brick, when it exists]
    VOL-changelog features/changelog  the brick's change journal (changelog-dir
                                 PATH/.glusterfs/changelogs), off unless
                                 changelog.changelog is on (geo-replication)
    VOL-locks    features/locks
    VOL-upcall   features/upcall cache invalidation for the clients
                                 (features.cache-invalidation, off)
    [VOL-index   features/index  on the bricks of replicated volumes: the heal
                                 index (index-base PATH/.glusterfs/indices, the
                                 watch lists trusted.afr.VOL- and trusted.afr.dirty)]
    PATH         debug/io-stats  named by the brick path, as glusterd 10 does;
                                 clients name it as their remote-subvolume
    VOL-server   protocol/server auth.addr.PATH.allow (auth.allow, default *),
                                 the brick's listen port

A `device lv` volume's bricks are LVM volume groups (HOST:/VG): VOL-bd
(storage/bd, export VG) over VOL-posix on its companion metadata
directory WORKDIR/bd/VOL/VG, then changelog (its journal in that metadata
directory), locks, io-stats and server as above.

Client volfiles (glusterd's `VOL.tcp-fuse.vol`):

    VOL-client-N    protocol/client  remote-host, remote-port, remote-subvolume
    VOL-replicate-N cluster/replicate over each replica set   (replica > 1)
    VOL-stripe-N    cluster/stripe over each stripe set       (stripe > 1;
                                     over replicate sets when both are given)
    VOL-dht         cluster/distribute over the sets
    VOL-utime       features/utime   (when features.ctime is on)
    VOL-write-behind  performance/write-behind  (performance.write-behind)
    VOL-read-ahead  performance/read-ahead    (performance.read-ahead, off)
    VOL-readdir-ahead performance/readdir-ahead (performance.readdir-ahead, off)
    VOL-io-cache    performance/io-cache      (performance.io-cache)
    VOL-open-behind performance/open-behind   (performance.open-behind)
    VOL-quick-read  performance/quick-read    (performance.quick-read)
    VOL-nl-cache    performance/nl-cache      (performance.nl-cache, off)
    VOL-md-cache    performance/md-cache      (performance.stat-prefetch)
    VOL-io-threads  performance/io-threads    (performance.client-io-threads)
    VOL             debug/io-stats   the top is always named VOL

The performance translators are GlusterFS 10's client stack, in its
order, each switched by its glusterd key (read-ahead, readdir-ahead and
nl-cache off by default as in GlusterFS 10; io-cache on, where GlusterFS 10
has it off).  glusterpy's
own clients (the FUSE mount, gfapi, the NBD server) run those it has and
leave out the rest, which only cache or defer (gfapi.mgmt.elide_unavailable);
GlusterFS's clients of a glusterpy volume - QEMU's gluster driver, fio's
gfapi engine, glusterfs's FUSE mount - run them all, so they get the graph
they would get from glusterd.

Named variants, selectable by GETSPEC key (volfile-id):

* `VOL` -> `VOL.tcp-fuse.vol`, the default graph above;
* `VOL.noperf` -> `VOL.noperf.vol`, the same without performance
  translators (the seed's "native with a custom client side volfile": the
  fastest path for a single client that needs no cache);
* `VOL.HOST.PATH` -> that brick's volfile (glusterd serves those too; to
  local callers only, as it holds the internal user's password);
* `VOL.gsyncd` -> `VOL.gsyncd.vol`, the noperf graph with the internal
  user's credentials, which the geo-replication worker mounts its primary
  with (local callers only, below);
* `VOL.rebalance` -> `VOL.rebalance.vol`, the rebalance process's graph
  (glusterd's `VOL-rebalance.vol`, which it fetches as `rebalance/VOL`):
  clients (logged in as the internal user: local callers only) and
  distribute without utime and performance translators, with
  the distribute options glusterd puts on the rebalance process's command
  line (lookup-unhashed yes, readdir-optimize on, use-readdirp off) written
  into it - see glusterpy/rebalance.  While a remove-brick task is in the
  volume document, every client graph names its bricks' subvolumes in
  distribute's `decommissioned-bricks`, as glusterd's volgen does.

Self-heal daemon volfile (glusterd 10's `VOL-shd.vol`, replicated volumes
only; glusterpyd's glustershd process loads it, glusterd/shd.py):

    VOL-client-N    protocol/client  as in the client volfile
    VOL-replicate-N cluster/replicate iam-self-heal-daemon yes, data-,
                                     metadata- and entry-self-heal on,
                                     background-self-heal-count 0 (over the
                                     volume's own `volume set` values, as
                                     glusterd's shd mod_dict does)
    VOL             debug/io-stats   over every replicate set

Every translator of these graphs is glusterpy's own except GlusterFS's
client performance translators, which glusterpy's clients leave out
(above).  Each volume's options are given only when the translator
declares them, so a volfile always loads.  The translators come from the
static registry (glusterpy.graph.TRANSLATORS): one that does not import
makes volgen raise with its traceback rather than generate a smaller graph.

Departures from glusterd:

* every protocol/client carries `remote-port`: glusterpyd gives each brick
  its port when the brick is created (the node that owns the brick picks a
  free one) and keeps it, so a real GlusterFS client reaches bricks without
  asking port 24007 for them - glusterpyd may listen elsewhere;
* features/index is on the bricks of replicated volumes only (glusterd puts
  it on every brick): nothing but cluster/replicate's changelogs feeds it;
* `performance.io-cache` defaults to on (GlusterFS 10: off): io-cache is
  glusterpy's one client-side cache of its own;
* glusterd's trusted-* volfiles are the graphs of glusterpyd's own
  processes, each named by its process: every volume has an internal user
  (`username`/`password` in its document, random, made at volume create
  and carried to every node with the document), every brick's
  protocol/server lets it log in (`auth.login.<brick>.allow USER`,
  `auth.login.USER.password PASS`), and the protocol/clients of the
  self-heal daemon's, the rebalance process's, the geo-replication
  worker's (`VOL.gsyncd`: the noperf graph) and heal info's graphs send
  them; the client volfiles served to mounts and gfapi carry none.  A
  volfile holding credentials is written 0600 and served by GETSPEC only
  to a caller on this node (glusterd gives its trusted volfiles to local
  callers too).  A logged-in client is trusted: root-squash spares its
  internal pids, and on a volume that squashes, the internal pid of a
  client that is not logged in is dropped (xlators/protocol/server.py).

The `volume set` keys are the `set_keys` of the translators' declared
options (glusterpy.options.Option), collected from the registered
translators, plus glusterd's own keys that add or remove a translator
(`performance.io-cache`).  A value is checked by the option's own parser,
so `volume set` refuses exactly what the translator would refuse.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import uuid
from dataclasses import dataclass

from .. import volfile as vf
from ..volfile import GSYNCD_SUFFIX, NOPERF_SUFFIX
from ..graph import TRANSLATORS, UnknownTranslatorType, canonical_type, translator_class
from ..keys import AFR_DIRTY, AFR_XATTR_PREFIX
from ..options import Option, OptionError, OptionType, canonical_key, parse_bool
from .model import Brick, Volume


CLIENT_VOLFILE = "{vol}.tcp-fuse.vol"
NOPERF_VOLFILE = "{vol}.noperf.vol"
REBALANCE_VOLFILE = "{vol}.rebalance.vol"
SHD_VOLFILE = "{vol}-shd.vol"
GSYNCD_VOLFILE = "{vol}.gsyncd.vol"
REBALANCE_SUFFIX = ".rebalance"
#: glusterd-rebalance.c's --xlator-option *dht.KEY=VALUE for the rebalance process
REBALANCE_DHT_OPTIONS = {"use-readdirp": "off", "lookup-unhashed": "yes",
                         "readdir-optimize": "on"}


def declared_options(type_name: str) -> tuple[Option, ...]:
    """The options a volfile type declares; none for a type glusterpy does
    not have (GlusterFS's performance translators in the client volfile,
    which only GlusterFS's clients run).  A translator of ours that does
    not import raises."""
    try:
        return tuple(translator_class(type_name).OPTIONS)
    except UnknownTranslatorType:
        return ()


# --------------------------------------------------------------------------
# volume set keys


@dataclass(frozen=True)
class SetKey:
    """One `volume set` key: the translator types and option it sets."""

    key: str
    option: Option
    types: tuple[str, ...]
    #: a glusterd key that adds or removes a translator rather than set an option
    toggles: str | None = None

    def help(self) -> str:
        text = self.option.help()
        first, _, rest = text.partition("\n")
        return f"Option: {self.key}\n{rest}"

    def parse(self, value: str):
        try:
            parsed = self.option.parse(value)
            if self.option.set_check is not None:
                try:
                    self.option.set_check(value)
                except ValueError as e:
                    raise OptionError(self.key, f"option '{self.key}': {e}") from None
            return parsed
        except OptionError as e:
            raise OptionError(self.key, f"{e}\n{self.help()}") from None


#: the client graph's performance translators, bottom up as glusterd
#: stacks them: (the key that switches it, its type, its name suffix,
#: default, what `volume set help` says)
CLIENT_PERFORMANCE = (
    ("performance.write-behind", "performance/write-behind", "write-behind", "on",
     "enable/disable write-behind translator in the volume."),
    ("performance.read-ahead", "performance/read-ahead", "read-ahead", "off",
     "enable/disable read-ahead translator in the volume."),
    ("performance.readdir-ahead", "performance/readdir-ahead", "readdir-ahead", "off",
     "enable/disable readdir-ahead translator in the volume."),
    ("performance.io-cache", "performance/io-cache", "io-cache", "on",
     "enable/disable io-cache translator in the volume."),
    ("performance.open-behind", "performance/open-behind", "open-behind", "on",
     "enable/disable open-behind translator in the volume."),
    ("performance.quick-read", "performance/quick-read", "quick-read", "on",
     "enable/disable quick-read translator in the volume."),
    ("performance.nl-cache", "performance/nl-cache", "nl-cache", "off",
     "enable/disable negative entry caching translator in the volume. Enabling this "
     "option improves performance of 'create file/directory' workload"),
    ("performance.stat-prefetch", "performance/md-cache", "md-cache", "on",
     "enable/disable meta-data caching translator in the volume."),
    ("performance.client-io-threads", "performance/io-threads", "io-threads", "on",
     "enable/disable io-threads translator in the client graph of volume."),
)

#: glusterd's keys that switch a translator on or off in the client graph
TOGGLES = {
    **{key: SetKey(key, Option(key, OptionType.BOOL, default, text), (kind,), toggles=kind)
       for key, kind, _, default, text in CLIENT_PERFORMANCE},
    "features.ctime": SetKey(
        "features.ctime",
        Option("features.ctime", OptionType.BOOL, "on",
               "enable/disable utime translator on the volume."),
        ("features/utime", "storage/posix"), toggles="features/utime"),
    # brick side: brick_graph_add_acl leaves access-control out only when
    # this is off (GlusterFS: "for debug purpose only")
    "features.acl": SetKey(
        "features.acl",
        Option("features.acl", OptionType.BOOL, "on",
               "(WARNING: for debug purpose only) enable/disable access-control xlator "
               "in volume"),
        ("features/access-control",), toggles="features/access-control"),
}


#: keys only glusterd reads (no translator takes them): the NBD server it runs
#: for a volume (glusterd/nbd.py)
DAEMON_KEYS = {
    "nbd.export": SetKey(
        "nbd.export",
        Option("nbd.export", OptionType.BOOL, "off",
               "Serve the volume's image files as NBD exports VOLUME/PATH from every "
               "node with a brick of the volume."), ()),
    "nbd.port": SetKey(
        "nbd.port",
        Option("nbd.port", OptionType.INT, "10809",
               "The TCP port of the volume's NBD exports (volumes on one port share "
               "one server).", min=1, max=65535), ()),
    "nbd.tls": SetKey(
        "nbd.tls",
        Option("nbd.tls", OptionType.BOOL, "off",
               "Export the volume's images over NBD only after STARTTLS, to clients with a "
               "certificate the CA list (ssl.ca-list) trusts - and whose name auth.ssl-allow "
               "matches when set; the server's certificate is ssl.own-cert/ssl.private-key "
               "(GlusterFS's files by default)."), ()),
    "nbd.read-only": SetKey(
        "nbd.read-only",
        Option("nbd.read-only", OptionType.BOOL, "off",
               "Export the volume's images read-only over NBD."), ()),
}


@functools.cache
def set_keys() -> dict[str, SetKey]:
    """Every key `volume set` accepts: those the registered translators
    declare, glusterd's daemon keys and its toggles."""
    found: dict[str, SetKey] = {}
    for type_name in sorted(TRANSLATORS):
        for opt in translator_class(type_name).OPTIONS:
            for key in opt.set_keys:
                old = found.get(key)
                types = (old.types if old else ()) + (type_name,)
                found[key] = SetKey(key, old.option if old else opt, types)
    found.update(DAEMON_KEYS)
    for key, toggle in TOGGLES.items():
        old = found.get(key)
        found[key] = SetKey(key, toggle.option, toggle.types + (old.types if old else ()),
                            toggles=toggle.toggles)
    return found


def lookup_key(key: str) -> SetKey:
    """The SetKey for `key`; OptionError with glusterd's message (and a
    suggestion) for an unknown one."""
    keys = set_keys()
    if key in keys:
        return keys[key]
    message = f"option : {key} does not exist"
    close = difflib.get_close_matches(key, list(keys), n=1)
    if close:
        message += f"\nDid you mean {close[0]}?"
    raise OptionError(key, message)


def option_value(vol: Volume, key: str) -> str | None:
    """The value of a volume set key on `vol`: set, or the default."""
    if key in vol.options:
        return vol.options[key]
    return lookup_key(key).option.default


def enabled(vol: Volume, key: str) -> bool:
    return parse_bool(option_value(vol, key) or "off")


# --------------------------------------------------------------------------
# volume types


def volume_type(vol: Volume) -> str:
    """glusterd's type names: Distribute, Replicate, Distributed-Replicate,
    Stripe, Striped-Replicate, ... (volume info's `Type:`)."""
    return type_name(vol.replica, vol.stripe, len(vol.bricks))


def type_name(replica: int, stripe: int, bricks: int) -> str:
    """`volume_type` from the counts alone (glusterpy/search.py reads them
    from the API's volume documents)."""
    per_set = stripe * replica
    distributed = bricks > per_set
    if stripe > 1 and replica > 1:
        base = "Striped-Replicate"
    elif stripe > 1:
        base = "Stripe"
    elif replica > 1:
        base = "Replicate"
    else:
        return "Distribute"
    return f"Distributed-{base}" if distributed else base


# --------------------------------------------------------------------------
# volfile names


def brick_id(brick: Brick) -> str:
    """`HOST:/PATH`, how the CLI and volume info name a brick."""
    return f"{brick.host}:{brick.path}"


def brick_volfile_key(vol: Volume, brick: Brick) -> str:
    return f"{vol.name}.{brick.host}.{brick.path.strip('/').replace('/', '-')}"


def brick_volfile_name(vol: Volume, brick: Brick) -> str:
    return brick_volfile_key(vol, brick) + ".vol"


def client_name(vol: Volume, index: int) -> str:
    return f"{vol.name}-client-{index}"


# --------------------------------------------------------------------------
# building


class _Builder:
    """Collects volumes of one volfile, keeping only declared options."""

    def __init__(self, vol: Volume):
        self.vol = vol
        self.volumes: list[vf.VolumeDef] = []

    def add(self, name: str, type_name: str, options: dict[str, str],
            subvolumes: list[str] = ()) -> str:
        declared = declared_options(type_name)
        kept = {k: v for k, v in options.items() if canonical_key(declared, k) is not None}
        self.volumes.append(vf.VolumeDef(name=name, type=type_name, options=kept,
                                         subvolumes=list(subvolumes)))
        return name

    def apply_set_options(self, brick_subvolume: str | None = None) -> None:
        """Put every `volume set` value into the translators it is for;
        io-stats's side-specific keys (diagnostics.client-log-level ...)
        only into the client's or the brick's io-stats, as glusterd does."""
        keys = set_keys()
        side = "brick" if brick_subvolume is not None else "client"
        for key, value in sorted(self.vol.options.items()):
            target = _side_specific().get(key)
            if target is not None and target[0] == side:
                for v in self.volumes:
                    if canonical_type(v.type) == "debug/io-stats":
                        v.options[target[1]] = value
        for key, value in sorted(self.vol.options.items()):  # stable text
            sk = keys.get(key)
            if sk is None or sk.toggles is not None and sk.option.key == key:
                continue
            for v in self.volumes:
                if canonical_type(v.type) not in sk.types:
                    continue
                for opt in declared_options(v.type):
                    if key not in opt.set_keys:
                        continue
                    option_key = opt.key
                    if opt.is_pattern:
                        if brick_subvolume is None:
                            continue
                        option_key = opt.key.replace("*", brick_subvolume)
                    v.options[option_key] = value

    def text(self) -> str:
        return vf.dumps(vf.Volfile(self.volumes))


def _side_specific() -> dict:
    """debug/io-stats's SIDE_SPECIFIC_KEYS: key -> (side, its option, default)."""
    return importlib.import_module(TRANSLATORS["debug/io-stats"]).SIDE_SPECIFIC_KEYS


def _glusterd_uuid(brick: Brick) -> dict[str, str]:
    """storage/posix's glusterd-uuid: the brick's node, which its bricks
    report as trusted.glusterfs.node-uuid - how the self-heal daemon tells
    its own node's bricks from the others'."""
    try:
        return {"glusterd-uuid": str(uuid.UUID(brick.node))}
    except (ValueError, TypeError, AttributeError):
        return {}


def brick_volfile(vol: Volume, brick: Brick) -> str:
    b = _Builder(vol)
    name, path = vol.name, brick.path
    if vol.device:
        # storage/bd over its companion metadata directory (storage/posix)
        below = b.add(f"{name}-posix", "storage/posix",
                      {"directory": brick.metadata, **_glusterd_uuid(brick)})
        below = b.add(f"{name}-bd", "storage/bd",
                      {"export": path.strip("/"), "device": "lv", "volume-id": vol.id},
                      [below])
    else:
        below = b.add(f"{name}-posix", "storage/posix",
                      {"directory": path, "volume-id": vol.id,
                       "ctime": "on" if enabled(vol, "features.ctime") else "off",
                       **_glusterd_uuid(brick)})
    if brick.arbiter:
        below = b.add(f"{name}-arbiter", "features/arbiter", {}, [below])
    # the change journal geo-replication reads: on every brick, above
    # posix/arbiter and below locks, off until changelog.changelog on
    # (brick_graph_add_changelog); in the directory posix serves
    served = brick.metadata if vol.device else path
    below = b.add(f"{name}-changelog", "features/changelog", {
        "changelog-notification": "off",
        "changelog-dir": f"{served}/.glusterfs/changelogs",
        "changelog-brick": served}, [below])
    # POSIX permissions and ACLs checked for the request's uid/gids, above
    # changelog and below locks (brick_graph_add_acl, named by the volume
    # as GlusterFS names it); `features.acl off` leaves it out
    if enabled(vol, "features.acl"):
        below = b.add(f"{name}-access-control", "features/access-control", {}, [below])
    # above locks: io-threads, [index,] io-stats; the topmost of them is named
    # by the brick path.  io-threads is on every brick, with its defaults
    # unless `volume set performance.io-thread-count` ... (brick_graph_add_iot)
    above = [("io-threads", "performance/io-threads", {})]
    if vol.replica > 1:
        # the heal index the self-heal daemon and heal info crawl, where
        # glusterd puts it (brick_graph_add_index)
        above.append(("index", "features/index", {
            "index-base": f"{path}/.glusterfs/indices",
            "xattrop-dirty-watchlist": AFR_DIRTY,
            "xattrop-pending-watchlist": f"{AFR_XATTR_PREFIX}.{name}-"}))
    above.append(("io-stats", "debug/io-stats", {"unique-id": path, "volume-id": vol.id,
                                                 "log-level": "INFO"}))
    # upcall above locks, as in glusterd's server graph (leases, which
    # glusterpy has not, would sit between them)
    layers = [("locks", "features/locks", {}), ("upcall", "features/upcall", {})] + above
    for n, (kind, type_name, opts) in enumerate(layers):
        last = n == len(layers) - 1
        below = b.add(path if last else f"{name}-{kind}", type_name, opts, [below])
    top = below
    server_opts = {"transport-type": "tcp", "transport.address-family": "inet",
                   "transport.listen-backlog": "1024",
                   f"auth.addr.{top}.allow": "*"}
    if vol.username is not None:
        # the internal user glusterpyd's own clients log in with
        # (glusterd's brick volfile: auth.login.<brick>.allow and
        # auth.login.<user>.password): they are then trusted, so their
        # internal pids count on a volume that squashes root
        server_opts[f"auth.login.{top}.allow"] = vol.username
        server_opts[f"auth.login.{vol.username}.password"] = vol.password or ""
    if brick.port:
        server_opts["transport.socket.listen-port"] = str(brick.port)
    b.add(f"{name}-server", "protocol/server", server_opts, [top])
    b.apply_set_options(brick_subvolume=top)
    return b.text()


def _login(vol: Volume, trusted: bool) -> dict[str, str]:
    """A trusted graph's protocol/client credentials: the volume's internal
    user (none before the volume has one, or for an untrusted graph)."""
    if not trusted or vol.username is None:
        return {}
    return {"username": vol.username, "password": vol.password or ""}


def client_volfile(vol: Volume, perf: bool = True, rebalance: bool = False,
                   trusted: bool = False) -> str:
    """The client graph; `trusted`: its protocol/clients log in as the
    volume's internal user (glusterd's trusted-* volfiles), for glusterpyd's
    own processes only."""
    b = _Builder(vol)
    name = vol.name
    clients = []
    for i, brick in enumerate(vol.bricks):
        opts = {"transport-type": "tcp", "transport.address-family": "inet",
                "send-gids": "true", "remote-subvolume": brick.path,
                "remote-host": brick.host, **_login(vol, trusted)}
        if brick.port:
            opts["remote-port"] = str(brick.port)
        clients.append(b.add(client_name(vol, i), "protocol/client", opts))
    replica, stripe = vol.replica, vol.stripe
    sets = clients
    if replica > 1:
        grouped = [sets[i:i + replica] for i in range(0, len(sets), replica)]
        sets = [b.add(f"{name}-replicate-{i}", "cluster/replicate",
                      {"afr-pending-xattr": ",".join(g), "volume-id": vol.id,
                       **({"arbiter-count": "1"} if vol.arbiter else {})}, g)
                for i, g in enumerate(grouped)]
    if stripe > 1:
        grouped = [sets[i:i + stripe] for i in range(0, len(sets), stripe)]
        sets = [b.add(f"{name}-stripe-{i}", "cluster/stripe", {}, g)
                for i, g in enumerate(grouped)]
    task = vol.tasks.get("remove-brick")
    dht_opts = {"lock-migration": "off", "force-migration": "off"}
    if task:  # its bricks are leaving: new layouts give them no range
        dht_opts["decommissioned-bricks"] = ",".join(task.get("subvolumes", []))
    top = b.add(f"{name}-dht", "cluster/distribute", dht_opts, sets)
    if not rebalance and enabled(vol, "features.ctime"):
        top = b.add(f"{name}-utime", "features/utime", {"noatime": "on"}, [top])
    if perf:
        for key, kind, suffix, _, _ in CLIENT_PERFORMANCE:
            if enabled(vol, key):
                top = b.add(f"{name}-{suffix}", kind, {}, [top])
    b.add(name, "debug/io-stats", {"log-level": "INFO"}, [top])
    b.apply_set_options()
    if rebalance:  # as the command line's options, they win over volume set
        for v in b.volumes:
            if canonical_type(v.type) == "cluster/distribute":
                v.options.update(REBALANCE_DHT_OPTIONS)
    return b.text()


#: what glusterd's shd mod_dict sets over the volume's options
SHD_OVERRIDES = {"iam-self-heal-daemon": "yes", "data-self-heal": "on",
                 "metadata-self-heal": "on", "entry-self-heal": "on",
                 "background-self-heal-count": "0"}


def has_shd(vol: Volume) -> bool:
    """Whether the volume gets a self-heal daemon graph (glusterd's
    glusterd_is_shd_compatible_volume: replicated)."""
    return vol.replica > 1


def shd_enabled(vol: Volume) -> bool:
    """gd_is_self_heal_enabled: `cluster.self-heal-daemon`, on by default."""
    value = vol.options.get("cluster.self-heal-daemon", "on")
    try:
        return parse_bool(value)
    except (OptionError, ValueError):
        return True


def shd_volfile(vol: Volume) -> str:
    """The self-heal daemon's graph of the volume (build_shd_graph): the
    bricks' protocol/clients, every replicate set with the daemon's
    settings, debug/io-stats named after the volume on top."""
    b = _Builder(vol)
    name = vol.name
    clients = []
    for i, brick in enumerate(vol.bricks):
        opts = {"transport-type": "tcp", "transport.address-family": "inet",
                "remote-subvolume": brick.path, "remote-host": brick.host,
                **_login(vol, trusted=True)}
        if brick.port:
            opts["remote-port"] = str(brick.port)
        clients.append(b.add(client_name(vol, i), "protocol/client", opts))
    replica = vol.replica
    sets = [b.add(f"{name}-replicate-{i // replica}", "cluster/replicate",
                  {"afr-pending-xattr": ",".join(clients[i:i + replica]), "volume-id": vol.id,
                   **({"arbiter-count": "1"} if vol.arbiter else {})},
                  clients[i:i + replica])
            for i in range(0, len(clients), replica)]
    b.add(name, "debug/io-stats", {"log-level": "INFO"}, sets)
    b.apply_set_options()
    for v in b.volumes:
        if canonical_type(v.type) == "cluster/replicate":
            v.options.update(SHD_OVERRIDES)
    return b.text()


def volfiles(vol: Volume) -> dict[str, str]:
    """Every volfile of the volume, file name -> text."""
    out = {CLIENT_VOLFILE.format(vol=vol.name): client_volfile(vol),
           NOPERF_VOLFILE.format(vol=vol.name): client_volfile(vol, perf=False),
           REBALANCE_VOLFILE.format(vol=vol.name): client_volfile(vol, perf=False,
                                                                     rebalance=True,
                                                                     trusted=True),
           GSYNCD_VOLFILE.format(vol=vol.name): client_volfile(vol, perf=False,
                                                               trusted=True)}
    for brick in vol.bricks:
        out[brick_volfile_name(vol, brick)] = brick_volfile(vol, brick)
    if has_shd(vol):
        out[SHD_VOLFILE.format(vol=vol.name)] = shd_volfile(vol)
    return out


# --------------------------------------------------------------------------
# comparing volfiles: reconfigure or restart?


def shape(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    volfile = vf.parses(text)
    return [(v.name, canonical_type(v.type or ""), tuple(v.subvolumes))
            for v in volfile.volumes]


def needs_restart(old_text: str, new_text: str) -> bool:
    """True when a running brick cannot take `new_text` by reconfigure():
    its graph changes shape, or an option that is not reconfigurable
    changes (the listen port, the directory ...)."""
    if shape(old_text) != shape(new_text):
        return True
    old, new = vf.parses(old_text), vf.parses(new_text)
    for v in new.volumes:
        before = old[v.name].options
        declared = declared_options(v.type or "")
        for key in set(before) | set(v.options):
            if before.get(key) == v.options.get(key):
                continue
            opt = canonical_key(declared, key)
            if opt is None or not opt.reconfigurable:
                return True
    return False


__all__ = ["SetKey", "set_keys", "lookup_key", "volfiles", "brick_volfile", "client_volfile",
           "volume_type", "type_name", "needs_restart", "brick_volfile_name",
           "brick_volfile_key", "brick_id", "option_value", "NOPERF_SUFFIX",
           "shd_volfile", "has_shd", "shd_enabled", "SHD_VOLFILE", "GSYNCD_VOLFILE",
           "GSYNCD_SUFFIX"]
