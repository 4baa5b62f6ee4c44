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
	iproute2 procps psmisc util-linux

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps venv run test test-fast bench clean

all: test

$(STAMPS)/deb: Makefile
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

deps: $(STAMPS)/deb

$(STAMPS)/venv: pyproject.toml $(STAMPS)/deb
	@mkdir -p $(STAMPS)
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMPS)/venv

# The main job on an embedded default: glusterpyd on ./run/glusterpyd with a
# volume `demo`, mounted on ./run/mnt, served until Ctrl-C (see README.md).
run: venv
	$(PY) -m glusterpy.demo

test: venv
	$(PY) -m pytest

# The quick subset while developing: no slow group.
test-fast: venv
	$(PY) -m pytest -m 'not slow'

bench: venv
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(STAMPS) build *.egg-info .pytest_cache .hypothesis
