"""The `glusterpy` command's table of commands: each command word is
registered by the module COMMAND_OF names, and a command imports only its
own module (the gluster CLI's words do not pay for trio and the
translators)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from glusterpy.cli import main


def registered_by(module_name: str) -> set[str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(f"glusterpy.cli.{module_name}").register(sub)
    return set(sub.choices)


def test_the_table_names_every_command_and_its_module():
    table = {}
    for name in main.COMMAND_MODULES:
        for word in registered_by(name):
            table[word] = name
    assert table == main.COMMAND_OF


def test_a_command_parser_has_its_module_only():
    parser = main.build_parser("volume")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"volume", "peer", "pool"}
    everything = main.build_parser()
    sub = next(a for a in everything._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(main.COMMAND_OF)


def test_the_gluster_words_do_not_import_the_runtime():
    code = ("import sys; from glusterpy.cli import main; main.build_parser('volume'); "
            "print(sorted(m for m in ('trio', 'cryptography', 'glusterpy.graph', "
            "'glusterpy.gfapi') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_help_and_unknown_words_still_list_every_command():
    done = subprocess.run([sys.executable, "-m", "glusterpy.cli.main", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for word in main.COMMAND_OF:
        assert word in done.stdout
    done = subprocess.run([sys.executable, "-m", "glusterpy.cli.main", "no-such-command"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
