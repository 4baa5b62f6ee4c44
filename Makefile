# Every target does its own set-up: Debian packages through apt-get, then a
# virtual environment in .venv with the project installed in editable mode.
# Stamps in .make-stamps/ make repeated runs cheap.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .make-stamps

# Real components the tests run against (never mocked): GlusterFS 10 for
# interop, fuse3 for mounts, lvm2 on loop devices, qemu tools, fio, tshark
# for the captures.
DEB_PACKAGES := glusterfs-server glusterfs-client qemu-utils qemu-block-extra \
	fio tshark fuse3 libfuse3-dev pkg-config gcc lvm2 attr rsync sqlite3 git \
	iproute2 procps psmisc util-linux strace
# mypyc compiles the RPC codec (glusterpy/rpc/compiled.py): a C compiler
# (gcc above) and Python's headers
DEB_PACKAGES += python3-dev
# A guest booted from a gluster:// disk (tests/test_vm_guest.py): QEMU's
# system emulator, a kernel with virtio modules and busybox for the
# initramfs the test builds; virt-xml-validate (and the xmllint it runs)
# checks `glusterpy vm disk-xml`.
DEB_PACKAGES += qemu-system-x86 linux-image-cloud-amd64 busybox-static \
	libvirt-clients libxml2-utils
# NBD exports (tests/test_nbd*.py) are checked with libnbd's clients:
# nbdinfo, nbdcopy (qemu-img/qemu-io/qemu-nbd come with qemu-utils).
DEB_PACKAGES += libnbd-bin
# The web console's browser test (tests/test_console_browser.py): Debian's
# chromium and its matching chromedriver, driven by selenium from PyPI - no
# browser download at test time.
DEB_PACKAGES += chromium chromium-driver

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps venv mount-helper run lint test test-fast bench clean

all: test

# $(call apt_install,PACKAGES): install those of PACKAGES not installed yet
define apt_install
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@
endef

$(STAMPS)/deb: Makefile
	$(call apt_install,$(DEB_PACKAGES))

deps: $(STAMPS)/deb

$(STAMPS)/venv: pyproject.toml $(STAMPS)/deb
	@mkdir -p $(STAMPS)
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# mount(8) runs /sbin/mount.<type> for `mount -t glusterpy`: link it to this
# checkout's console script (root only; a link to another checkout is
# replaced).  Checked on every run - cheap, and a removed link comes back.
MOUNT_HELPER := /sbin/mount.glusterpy
HELPER_TARGET := $(CURDIR)/$(VENV)/bin/mount.glusterpy

mount-helper: $(STAMPS)/venv
	@if [ "$$(readlink $(MOUNT_HELPER))" != "$(HELPER_TARGET)" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			ln -sfn "$(HELPER_TARGET)" $(MOUNT_HELPER) && \
			echo "linked $(MOUNT_HELPER) -> $(HELPER_TARGET)"; \
		else \
			echo "not root: not linking $(MOUNT_HELPER) (needed by mount -t glusterpy only)"; \
		fi; \
	fi

# The RPC codec compiled with mypyc, in place (issue 15; glusterpy/rpc/compiled.py
# says which modules and how a process picks compiled or pure-Python ones):
# rebuilt when a module of glusterpy/rpc changes.  A failed build says so and
# exits 0 - glusterpy then runs the pure-Python codec, slower, same behaviour.
CODEC_SOURCES := $(wildcard glusterpy/rpc/*.py)

$(STAMPS)/codec: $(STAMPS)/venv $(CODEC_SOURCES)
	GLUSTERPY_PURE_PYTHON=1 $(PY) -m glusterpy.rpc.build_codec
	@touch $@

venv: $(STAMPS)/venv $(STAMPS)/codec mount-helper

# The main job on an embedded default: glusterpyd on ./run/glusterpyd with a
# volume `demo`, mounted on ./run/mnt, served until Ctrl-C (see README.md).
run: venv
	$(PY) -m glusterpy.demo

# ruff's bug checks and mypy on the modules it covers (pyproject.toml's
# [tool.ruff] and [tool.mypy]) before any test runs: an undefined name or a
# broken import fails in seconds, not mid-suite.
LINT_PATHS := glusterpy xlators gluster bench tests

lint: venv
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m mypy

test: venv lint
	$(PY) -m pytest

# The quick subset while developing: no slow group.
test-fast: venv lint
	$(PY) -m pytest -m 'not slow'

# GlusterFS 10's geo-replication (bench/glusterfs_georep.py) reaches its
# secondary over ssh: the suite starts Debian's sshd on 127.0.0.1 itself
BENCH_DEB_PACKAGES := openssh-server

$(STAMPS)/bench-deb: Makefile
	$(call apt_install,$(BENCH_DEB_PACKAGES))

# matplotlib draws bench/RESULTS.md's chart: the `bench` extra
$(STAMPS)/bench-extra: pyproject.toml $(STAMPS)/venv
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $@

bench: venv $(STAMPS)/bench-extra $(STAMPS)/bench-deb
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(STAMPS) build *.egg-info .pytest_cache .hypothesis .ruff_cache .mypy_cache
	rm -f glusterpy/rpc/*.so glusterpy/rpc/codec.build.json
