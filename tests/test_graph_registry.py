"""The static translator registry (glusterpy.graph.TRANSLATORS): it names
every translator in xlators/, and a translator that does not import fails
loudly instead of being taken for one glusterpy does not have."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from glusterpy import graph
from glusterpy.glusterd import volgen
from glusterpy.graph import TRANSLATORS, UnknownTranslatorType, translator_class
from glusterpy.xlator import Translator

XLATORS = Path(__file__).resolve().parent.parent / "xlators"


def test_every_registered_type_loads():
    for type_name in TRANSLATORS:
        assert issubclass(translator_class(type_name), Translator)


def test_every_translator_module_is_registered():
    def dotted(path: Path) -> str:
        parts = path.relative_to(XLATORS.parent).with_suffix("").parts
        # a translator split into a package is its __init__
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    defining = {dotted(p) for p in XLATORS.rglob("*.py")
                if re.search(r"^TRANSLATOR = ", p.read_text(), re.M)}
    assert defining == set(TRANSLATORS.values())


def test_aliases_and_unknown_types():
    assert translator_class("cluster/dht") is translator_class("cluster/distribute")
    assert translator_class("performance/stat-prefetch") is translator_class("performance/md-cache")
    for unknown in ("performance/symlink-cache", "cluster/dht-layout", "nowhere/nothing", "x"):
        with pytest.raises(UnknownTranslatorType):
            translator_class(unknown)
    assert volgen.declared_options("performance/symlink-cache") == ()


def test_a_translator_that_does_not_import_raises(tmp_path, monkeypatch):
    (tmp_path / "broken_xlator_for_test.py").write_text(
        "raise RuntimeError('half-written translator')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(graph.TRANSLATORS, "testing/broken", "broken_xlator_for_test")
    try:
        with pytest.raises(RuntimeError, match="half-written translator"):
            translator_class("testing/broken")
        with pytest.raises(RuntimeError, match="half-written translator"):
            volgen.declared_options("testing/broken")
    finally:
        sys.modules.pop("broken_xlator_for_test", None)


def test_caches_handle_every_fop_the_catalogue_says_changes_what_they_keep():
    """Fop.modifies is what the caching translators follow: md-cache keeps
    attributes and xattrs (any change), io-cache, quick-read and read-ahead
    keep data; a fop that changes what a cache keeps and that the cache
    does not intercept would leave it stale."""
    from glusterpy import fops
    keeps = {"performance/md-cache": None, "performance/io-cache": {"data"},
             "performance/quick-read": {"data"}, "performance/read-ahead": {"data"}}
    for type_name, kinds in keeps.items():
        cls = translator_class(type_name)
        changing = {f.name for f in fops.CATALOGUE
                    if (f.modifies if kinds is None else f.modifies & kinds)}
        assert changing, type_name
        overridden = {n for c in cls.__mro__ if c is not Translator for n in vars(c)}
        assert changing <= overridden, (type_name, sorted(changing - overridden))
