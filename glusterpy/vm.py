"""VM disks on a volume: libvirt's disk XML for a gluster:// image, and
images created through gfapi.

QEMU reaches a volume with its gluster block driver (block/gluster.c) -
libgfapi inside QEMU, no FUSE mount - given `gluster://HOST[:PORT]/VOL/IMAGE`
or, from libvirt, a network disk:

    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='gluster' name='VOL/IMAGE'>
        <host name='node1' port='24007' transport='tcp'/>
        <host name='node2' port='24007' transport='tcp'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>

libvirt hands every <host> to QEMU as a volfile server; libgfapi fetches the
volume's volfile from the first that answers, so a disk stays reachable
while one node's glusterpyd is down.  The hosts are the nodes holding the
volume's bricks, each with its own glusterpyd's port (`volume_servers`).

Parts:

* `volume_servers(volume, pool)` - the (host, port) list from the daemon's
  volume info and pool list;
* `disk_xml(...)` - the <disk> element (ElementTree, so names are escaped);
* `qcow2_metadata(size)` - the bytes of an empty qcow2 (version 3) image:
  header, refcount table, one refcount block and the L1 table, the layout
  `qemu-img create -f qcow2` writes (docs/interop/qcow2.txt), the file
  extended to a whole cluster so that QEMU's gluster driver reads it;
* `create_image(...)` / `inspect_image(...)` - gfapi operations on the
  volume: make a raw (sparse) or qcow2 image (a qcow2 overlay of a
  `Backing` image, named by its gluster:// URL), and look at an existing one;
* `clone_image(...)` - a copy made by the bricks (gfapi's copy_file, that
  is copy_file_range through the translators: a reflink on XFS bricks, a
  server-side copy elsewhere, holes kept), read-only for a snapshot.

Sizes round up to 512 bytes, as qemu-img rounds them.  Images are thin, as
QEMU's and GlusterFS's are: a raw image is a sparse file, a qcow2 image
holds only its metadata until the guest writes.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .gfapi import AsyncVolume

FORMATS = ("raw", "qcow2")
#: libvirt's <driver cache=...> values
CACHE_MODES = ("none", "writeback", "writethrough", "directsync", "unsafe")
SECTOR = 512

QCOW2_MAGIC = b"QFI\xfb"
QCOW2_VERSION = 3
QCOW2_CLUSTER_BITS = 16              # 64 KiB clusters, qemu-img's default
QCOW2_REFCOUNT_ORDER = 4             # 16-bit refcounts, qemu-img's default
QCOW2_HEADER_LENGTH = 112            # version 3 header with the compression type byte
#: QEMU refuses L1 tables larger than this (QCOW_MAX_L1_SIZE in block/qcow2.h)
QCOW2_MAX_L1_BYTES = 32 * 1024 * 1024
#: the backing file format header extension (docs/interop/qcow2.txt)
QCOW2_EXT_BACKING_FORMAT = 0xE2792ACA
#: QEMU refuses longer backing file names (1023 in block/qcow2.c)
QCOW2_MAX_BACKING_NAME = 1023
#: A qcow2 file on a volume ends on a cluster boundary: QEMU's gluster driver
#: reads whole sectors (more with O_DIRECT) and takes a short read at the end
#: of the file as EIO ("Could not read L1 table"), so qemu-img over gluster://
#: pads the file too.  The padding is a sparse extension (ftruncate).
QCOW2_FILE_ALIGNMENT = 1 << QCOW2_CLUSTER_BITS


class VmError(Exception):
    """A refusal with a message meant for the user."""


# -- names and sizes ----------------------------------------------------------


def image_path(image: str) -> str:
    """The image's path inside the volume, without the leading slash, as the
    gluster URL and libvirt's name='VOL/IMAGE' carry it."""
    path = image.strip("/")
    parts = path.split("/")
    if not path or "\0" in path or any(p in ("", ".", "..") for p in parts):
        raise VmError(f"{image!r} is not an image path inside a volume (e.g. disk.img, "
                      "vm/disk.qcow2)")
    return path


def round_size(size: int) -> int:
    """Round up to whole 512-byte sectors, as qemu-img does."""
    if size <= 0:
        raise VmError("an image needs a size of more than 0 bytes")
    return -(-size // SECTOR) * SECTOR


def format_size(n: int) -> str:
    """16 MiB, 1.5 GiB, 700 bytes: exact when whole, else to one decimal."""
    for unit, shift in (("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            whole = n % (1 << shift) == 0
            return f"{n >> shift} {unit}" if whole else f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


# -- the daemon's view of a volume ------------------------------------------------


def volume_servers(volume: dict, pool: list[dict]) -> list[tuple[str, int]]:
    """(host, glusterpyd port) of every node that holds a brick of `volume`,
    in brick order, each once.  `volume` is the daemon's volume info,
    `pool` its pool list (which gives every node's port by uuid)."""
    ports = {node["uuid"]: node["port"] for node in pool}
    servers: list[tuple[str, int]] = []
    for brick in volume["bricks"]:
        node = brick.get("node")
        if node not in ports:
            raise VmError(f"brick {brick.get('name', brick['host'])} is on node {node}, "
                          "which is not in the daemon's pool")
        entry = (brick["host"].strip("[]"), ports[node])
        if entry not in servers:
            servers.append(entry)
    if not servers:
        raise VmError(f"volume {volume['name']} has no bricks")
    return servers


def transport_of(volume: dict) -> str:
    """libvirt's transport attribute: glusterpy serves TCP only."""
    kinds = str(volume.get("transport", "tcp")).split(",")
    if "tcp" not in kinds:
        raise VmError(f"volume {volume['name']} has transport {volume['transport']}; "
                      "QEMU reaches glusterpy over tcp only")
    return "tcp"


# -- libvirt XML -------------------------------------------------------------------


def _check_disk_args(fmt: str, cache: str, target: str) -> None:
    if fmt not in FORMATS:
        raise VmError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if cache not in CACHE_MODES:
        raise VmError(f"cache {cache!r}: use one of {', '.join(CACHE_MODES)}")
    if not (target.startswith("vd") and len(target) > 2 and target[2:].isalpha()
            and target.islower() and target.isascii()):
        raise VmError(f"target {target!r}: a virtio disk is named vda, vdb, ...")


def disk_xml(volume: str, image: str, servers: list[tuple[str, int]], *, fmt: str = "raw",
             cache: str = "none", target: str = "vda", transport: str = "tcp") -> str:
    """libvirt's <disk type='network'> element for VOL/IMAGE, one <host> per
    server (formatdomain: "Hard drives, floppy disks, CDROMs")."""
    _check_disk_args(fmt, cache, target)
    disk = ET.Element("disk", type="network", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type=fmt, cache=cache)
    source = ET.SubElement(disk, "source", protocol="gluster",
                           name=f"{volume}/{image_path(image)}")
    for host, port in servers:
        ET.SubElement(source, "host", name=host, port=str(port), transport=transport)
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    ET.indent(disk, space="  ")
    return ET.tostring(disk, encoding="unicode")


PROTOCOLS = ("gluster", "nbd")
DEFAULT_NBD_PORT = 10809


def nbd_servers(volume: dict) -> list[tuple[str, int]]:
    """(host, NBD port) of every node that serves `volume` over NBD - the
    nodes holding its bricks (glusterd/nbd.py starts a server on each), in
    brick order; VmError unless `volume set VOL nbd.export on`."""
    options = volume.get("options") or {}
    if str(options.get("nbd.export", "off")).lower() not in ("on", "yes", "true", "enable",
                                                              "1"):
        raise VmError(f"volume {volume['name']} is not exported over NBD "
                      f"(glusterpy volume set {volume['name']} nbd.export on)")
    port = int(options.get("nbd.port", DEFAULT_NBD_PORT))
    hosts: list[tuple[str, int]] = []
    for brick in volume["bricks"]:
        entry = (brick["host"].strip("[]"), port)
        if entry not in hosts:
            hosts.append(entry)
    if not hosts:
        raise VmError(f"volume {volume['name']} has no bricks")
    return hosts


def nbd_disk_xml(volume: str, image: str, servers: list[tuple[str, int]], *,
                 fmt: str = "raw", cache: str = "none", target: str = "vda") -> str:
    """libvirt's <disk type='network'> element for VOL/IMAGE over NBD.

    libvirt's schema takes exactly one <host> in an NBD source (QEMU's nbd
    driver connects to one server), so the first server is the disk's and
    the others - every node serves the same export - follow in a comment,
    for a failover `virsh` edit or `--host`."""
    _check_disk_args(fmt, cache, target)
    disk = ET.Element("disk", type="network", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type=fmt, cache=cache)
    source = ET.SubElement(disk, "source", protocol="nbd",
                           name=f"{volume}/{image_path(image)}")
    host, port = servers[0]
    ET.SubElement(source, "host", name=host, port=str(port))
    if len(servers) > 1:
        others = ", ".join(f"{h}:{p}" for h, p in servers[1:])
        source.append(ET.Comment(f" the same export is served by {others} "))
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    ET.indent(disk, space="  ")
    return ET.tostring(disk, encoding="unicode")


def nbd_url(volume: str, image: str, host: str, port: int) -> str:
    netloc = f"[{host}]" if ":" in host else host
    return f"nbd://{netloc}:{port}/{volume}/{image_path(image)}"


def gluster_url(volume: str, image: str, host: str, port: int) -> str:
    """The URL QEMU takes for the same disk (its first server)."""
    netloc = f"[{host}]" if ":" in host else host
    return f"gluster://{netloc}:{port}/{volume}/{image_path(image)}"


# -- qcow2 -----------------------------------------------------------------------


def qcow2_metadata(size: int, backing: str | None = None,
                   backing_format: str | None = None) -> bytes:
    """An empty qcow2 v3 image of virtual size `size`, every cluster
    unallocated: cluster 0 the header, 1 the refcount table, 2 its one
    refcount block, 3.. the L1 table (all zero).  The refcount block counts
    those clusters once each; QEMU adds refcount blocks as the image grows.
    The bytes end where the L1 table ends; `create_image` extends the file
    to the end of that cluster (see QCOW2_FILE_ALIGNMENT).

    With `backing` (an overlay): every unallocated cluster reads from that
    image, named in cluster 0 after the header extensions - the backing
    format extension, then the end marker - as qemu-img create -b writes it."""
    size = round_size(size)
    extensions = b""
    if backing is not None:
        name = backing.encode()
        if not name or len(name) > QCOW2_MAX_BACKING_NAME or "\0" in backing:
            raise VmError(f"backing file name {backing!r}: 1 to {QCOW2_MAX_BACKING_NAME} "
                          "bytes, no NUL")
        if backing_format is not None:
            if backing_format not in FORMATS:
                raise VmError(f"backing format {backing_format!r}: use one of "
                              f"{', '.join(FORMATS)}")
            data = backing_format.encode()
            extensions += struct.pack(">II", QCOW2_EXT_BACKING_FORMAT, len(data)) + \
                data.ljust(-(-len(data) // 8) * 8, b"\0")
        extensions += struct.pack(">II", 0, 0)          # the end of the extensions
        backing_offset = QCOW2_HEADER_LENGTH + len(extensions)
        extensions += name
    cluster = 1 << QCOW2_CLUSTER_BITS
    l2_entries = cluster // 8
    l1_entries = math.ceil(size / (cluster * l2_entries))
    l1_bytes = l1_entries * 8
    if l1_bytes > QCOW2_MAX_L1_BYTES:
        raise VmError(f"{format_size(size)} is larger than a qcow2 image with "
                      f"{cluster >> 10} KiB clusters can be")
    refcount_table, refcount_block, l1_table = cluster, 2 * cluster, 3 * cluster
    used_clusters = 3 + math.ceil(l1_bytes / cluster)
    entries_per_block = cluster * 8 >> QCOW2_REFCOUNT_ORDER
    assert used_clusters <= entries_per_block  # one refcount block covers 2 GiB

    header = struct.pack(
        ">4sIQIIQIIQQIIQ",
        QCOW2_MAGIC, QCOW2_VERSION,
        backing_offset if backing else 0, len(backing.encode()) if backing else 0,
        QCOW2_CLUSTER_BITS, size,
        0,                               # no encryption
        l1_entries, l1_table,
        refcount_table, 1,               # the refcount table takes one cluster
        0, 0,                            # no snapshots
    ) + struct.pack(
        ">QQQIIB7x",
        0, 0, 0,                         # incompatible, compatible, autoclear features
        QCOW2_REFCOUNT_ORDER, QCOW2_HEADER_LENGTH,
        0,                               # compression type: zlib
    )
    assert len(header) == QCOW2_HEADER_LENGTH
    # the header extension area that follows is zero: the end-of-extensions marker
    out = bytearray(l1_table + l1_bytes)
    out[:len(header)] = header
    out[len(header):len(header) + len(extensions)] = extensions
    struct.pack_into(">Q", out, refcount_table, refcount_block)
    for i in range(used_clusters):
        struct.pack_into(">H", out, refcount_block + 2 * i, 1)
    return bytes(out)


def qcow2_file_length(metadata: bytes) -> int:
    """The length of the file `metadata` starts: to the end of its last cluster."""
    return -(-len(metadata) // QCOW2_FILE_ALIGNMENT) * QCOW2_FILE_ALIGNMENT


def qcow2_virtual_size(head: bytes) -> int | None:
    """The virtual size a qcow2 header names, or None if `head` is not one."""
    if len(head) < 32 or head[:4] != QCOW2_MAGIC:
        return None
    return struct.unpack_from(">Q", head, 24)[0]


# -- on the volume (gfapi) --------------------------------------------------------------


@dataclass
class ImageInfo:
    path: str
    size: int             # the file's size
    looks_qcow2: bool     # starts with qcow2's magic
    virtual_size: int     # of the disk the guest sees


async def inspect_image(vol: AsyncVolume, image: str) -> ImageInfo:
    """Stat an image and read its first bytes; VmError when it is missing
    or not a regular file."""
    path = "/" + image_path(image)
    try:
        st = await vol.stat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise VmError(f"image {image_path(image)} does not exist in volume "
                          f"{vol.volname}") from None
        raise
    if not stat.S_ISREG(st.st_mode):
        raise VmError(f"{image_path(image)} in volume {vol.volname} is not a regular file")
    f = await vol.open(path, os.O_RDONLY)
    try:
        head = await f.pread(32, 0)
    finally:
        await f.close()
    qsize = qcow2_virtual_size(head)
    return ImageInfo(path, st.st_size, qsize is not None,
                     qsize if qsize is not None else st.st_size)


async def create_image(vol: AsyncVolume, image: str, size: int | None, fmt: str,
                       backing: Backing | None = None) -> int:
    """Create IMAGE (never over an existing file) and return its virtual
    size: raw is a sparse file of that size, qcow2 its metadata - with
    `backing`, a qcow2 overlay of that image (`size` None: the backing
    image's virtual size).  A failure part-way removes the file again, so
    the volume is left as it was."""
    if fmt not in FORMATS:
        raise VmError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if backing is not None:
        if fmt != "qcow2":
            raise VmError("only a qcow2 image can have a backing image (--format qcow2)")
        size = round_size(size if size is not None else backing.virtual_size)
        if size < backing.virtual_size:
            raise VmError(f"{format_size(size)} is smaller than the backing image "
                          f"({format_size(backing.virtual_size)})")
    elif size is None:
        raise VmError("an image needs a size (or a backing image to take it from)")
    size = round_size(size)
    if fmt == "qcow2":
        metadata = qcow2_metadata(size, backing.name if backing else None,
                                  backing.format if backing else None)
    else:
        metadata = b""
    path = "/" + image_path(image)
    try:
        # 0600, as QEMU's gluster driver creates images
        f = await vol.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise VmError(f"image {image_path(image)} already exists in volume "
                          f"{vol.volname}") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            parent = os.path.dirname(image_path(image))
            raise VmError(f"directory {parent} does not exist in volume "
                          f"{vol.volname}") from None
        raise
    async with vol.removed_on_failure(f):
        if fmt == "raw":
            await f.ftruncate(size)
        else:
            view = memoryview(metadata)
            for offset in range(0, len(view), 1 << 20):
                await f.pwrite(view[offset:offset + (1 << 20)], offset)
            await f.ftruncate(qcow2_file_length(metadata))
        await f.fsync()
    await f.close()
    return size


@dataclass
class Backing:
    """The image a qcow2 overlay reads its unwritten clusters from: its
    name as QEMU opens it (a gluster:// URL), format and virtual size."""
    name: str
    format: str
    virtual_size: int


async def backing_of(vol: AsyncVolume, image: str, url: str,
                     fmt: str | None = None) -> Backing:
    """The Backing for IMAGE of `vol`, named by `url`; its format is the
    one asked, or what its first bytes say (as qemu-img create -b probes);
    an explicit qcow2 on an image without a qcow2 header is refused."""
    info = await inspect_image(vol, image)
    found = "qcow2" if info.looks_qcow2 else "raw"
    if fmt is not None and fmt != found and fmt == "qcow2":
        raise VmError(f"backing image {image_path(image)} is not a qcow2 image")
    return Backing(url, fmt or found, info.virtual_size)


# -- clones and snapshots ----------------------------------------------------------------


async def clone_image(vol: AsyncVolume, src: str, dst: str, *, progress=None,
                      read_only: bool = False) -> int:
    """A new image DST with SRC's bytes, by server-side copy
    (gfapi's copy_file: copy_file_range on the bricks, a reflink on XFS
    bricks, holes kept); `read_only` leaves it mode 0400 (a snapshot).
    Returns the bytes copied; DST is removed again on failure."""
    src_path, dst_path = "/" + image_path(src), "/" + image_path(dst)
    if src_path == dst_path:
        raise VmError("the source and the copy are the same image")
    await inspect_image(vol, src)          # a clear error for a missing source
    try:
        copied = await vol.copy_file(src_path, dst_path, progress=progress)
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise VmError(f"image {image_path(dst)} already exists in volume "
                          f"{vol.volname}") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise VmError(f"directory {os.path.dirname(image_path(dst))} does not exist in "
                          f"volume {vol.volname}") from None
        raise
    if read_only:
        await vol.chmod(dst_path, 0o400)
    return copied
