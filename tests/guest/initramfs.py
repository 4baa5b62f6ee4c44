"""Build the guest's initramfs: busybox-static, the kernel's virtio modules
and an /init that runs a job on /dev/vda.

The kernel is Debian's `linux-image-cloud-amd64` (installed by make).  Its
virtio drivers are modules, so /init loads them with insmod, dependencies
first, in the order modules.dep gives (virtio_ring, virtio, the virtio_pci
helpers, virtio_pci, virtio_blk); then it waits for /dev/vda, runs /job
(a busybox shell script the test writes) and powers off with `poweroff -f`.
Markers on the serial console tell the test where the guest is:

    GUEST-INIT            /init started
    GUEST-DISK-READY      /dev/vda appeared
    GUEST-JOB-EXIT <rc>   /job finished with that status

The archive is written here in the kernel's "newc" cpio format (a fixed
ASCII header per entry, names and data padded to 4 bytes, a TRAILER!!!
entry), then gzip'd - no cpio program needed.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: the drivers the guest needs for a virtio disk on the PCI bus
VIRTIO_DISK_MODULES = ("virtio_pci", "virtio_blk")

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo GUEST-INIT
for m in {modules}; do
    insmod /lib/modules/$m.ko || echo "GUEST-INSMOD-FAILED $m"
done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
if [ -b /dev/vda ]; then
    echo GUEST-DISK-READY
    sh /job
    echo "GUEST-JOB-EXIT $?"
else
    echo GUEST-NO-DISK
    cat /proc/partitions
fi
sync
poweroff -f
"""


class GuestUnavailable(Exception):
    """The kernel, its modules or busybox are missing (with the reason)."""


@dataclass
class Kernel:
    version: str
    image: Path
    modules: Path        # /lib/modules/<version>


def find_kernel() -> Kernel:
    """The newest installed Debian cloud kernel with its module tree."""
    boot = Path("/boot")
    found = sorted(boot.glob("vmlinuz-*-cloud-amd64"), key=lambda p: _version_key(p.name))
    for image in reversed(found):
        version = image.name.removeprefix("vmlinuz-")
        modules = Path("/lib/modules") / version
        if (modules / "modules.dep").exists() and os.access(image, os.R_OK):
            return Kernel(version, image, modules)
    raise GuestUnavailable("no /boot/vmlinuz-*-cloud-amd64 with /lib/modules/<version>/"
                           "modules.dep: Debian's linux-image-cloud-amd64 is not installed "
                           "(make installs it)")


def _version_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in name.replace("-", ".").split(".")]


def module_order(modules: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The .ko files of `wanted` and everything they need, dependencies
    first (from modules.dep: "path: dep dep ...")."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[_module_name(path)] = path
    order: list[str] = []

    def visit(path: str, trail: tuple[str, ...]) -> None:
        if path in order:
            return
        if path in trail:
            raise GuestUnavailable(f"modules.dep has a cycle through {path}")
        for dep in deps.get(path, []):
            visit(dep, trail + (path,))
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise GuestUnavailable(f"kernel module {name} is not in {modules}/modules.dep "
                                   "(built into this kernel, or a different kernel)")
        visit(by_name[name], ())
    files = [modules / p for p in order]
    for f in files:
        if f.suffix != ".ko":
            raise GuestUnavailable(f"{f} is compressed; busybox insmod takes plain .ko files")
    return files


def _module_name(path: str) -> str:
    base = os.path.basename(path)
    return base.split(".ko")[0].replace("-", "_")


def busybox_path() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        p = Path(candidate)
        if p.exists() and _is_static(p):
            return p
    found = shutil.which("busybox")
    if found and _is_static(Path(found)):
        return Path(found)
    raise GuestUnavailable("no statically linked busybox: Debian's busybox-static is not "
                           "installed (make installs it)")


def _is_static(path: Path) -> bool:
    """An ELF file without a PT_INTERP program header (no dynamic loader)."""
    data = path.read_bytes()[:4096]
    if data[:4] != b"\x7fELF" or data[4] != 2:   # 64-bit only
        return False
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for i in range(phnum):
        start = phoff + i * phentsize
        if int.from_bytes(data[start:start + 4], "little") == 3:  # PT_INTERP
            return False
    return True


# -- the newc archive ----------------------------------------------------------------


class Newc:
    """Entries of a newc cpio archive, in order (parents before children)."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", *, rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        fields = [self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0]
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._out += header + name.encode() + b"\0"
        self._out += b"\0" * (-len(self._out) % 4)
        self._out += data
        self._out += b"\0" * (-len(self._out) % 4)

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, 0o020000 | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self._out)


def build_initramfs(target: Path, job: str, files: dict[str, bytes] | None = None,
                    kernel: Kernel | None = None) -> Kernel:
    """Write the gzip'd initramfs to `target`: busybox, the virtio disk
    modules, /init, the shell script `job` as /job and `files` (name ->
    content, at the root).  Returns the kernel it was built for."""
    kernel = kernel or find_kernel()
    modules = module_order(kernel.modules, VIRTIO_DISK_MODULES)
    busybox = busybox_path()
    a = Newc()
    for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"):
        a.directory(d)
    a.char_device("dev/console", 5, 1)
    a.file("bin/busybox", busybox.read_bytes(), 0o755)
    a.symlink("bin/sh", "busybox")
    names = []
    for ko in modules:
        name = _module_name(ko.name)
        a.file(f"lib/modules/{name}.ko", ko.read_bytes())
        names.append(name)
    a.file("init", INIT.format(modules=" ".join(names)).encode(), 0o755)
    a.file("job", job.encode(), 0o755)
    for name, data in (files or {}).items():
        a.file(name, data)
    target.write_bytes(gzip.compress(a.finish(), compresslevel=1))
    return kernel
