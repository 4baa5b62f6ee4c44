"""Option values are parsed the way GlusterFS parses them, and refused with
a message naming the option."""

import pytest
from hypothesis import given, strategies as s

from glusterpy.options import (Option, OptionError, OptionType, PercentOrSize, parse_bool,
                               parse_priority_list, parse_size, parse_size_list, parse_time,
                               validate)


@pytest.mark.parametrize("text,value", [
    ("0", 0), ("512", 512), ("128KB", 128 << 10), ("128kb", 128 << 10), ("1MB", 1 << 20),
    ("2GB", 2 << 30), ("1TB", 1 << 40), ("1.5MB", 3 << 19), ("7B", 7), (" 64KB ", 64 << 10),
])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-1", "12QB", "KB", "1 2", "1.2.3MB"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("text,value", [
    ("on", True), ("YES", True), ("true", True), ("enable", True), ("1", True),
    ("off", False), ("no", False), ("False", False), ("disable", False), ("0", False),
])
def test_booleans(text, value):
    assert parse_bool(text) is value


@pytest.mark.parametrize("text,value", [("42", 42), ("10s", 10), ("5m", 300), ("2min", 120),
                                        ("1h", 3600), ("1d", 86400), ("1w", 604800)])
def test_times(text, value):
    assert parse_time(text) == value


def test_lists():
    assert parse_priority_list("*.jpg:2,*.html:1") == (("*.jpg", 2), ("*.html", 1))
    assert parse_size_list("*.img:1MB,*:256KB") == (("*.img", 1 << 20), ("*", 256 << 10))
    assert parse_size_list("64KB") == (("*", 64 << 10),)
    with pytest.raises(ValueError):
        parse_priority_list("*.jpg")


DECLS = (
    Option("cache-size", OptionType.SIZE, "32MB", "Size of the read cache.", min=4 << 20),
    Option("cache-timeout", OptionType.INT, "1", "Revalidate after this.", min=0, max=60,
           aliases=("force-revalidate-timeout",)),
    Option("mode", OptionType.ENUM, "fast", "How.", choices=("fast", "safe")),
    Option("min-free-disk", OptionType.PERCENT_OR_SIZE, "10%", "Keep free.", max=100),
    Option("on", OptionType.BOOL, "off", "Toggle."),
)


def test_defaults_and_attribute_access():
    opts = validate(DECLS, {})
    assert opts.cache_size == 32 << 20
    assert opts["cache-timeout"] == 1
    assert opts.min_free_disk == PercentOrSize(percent=10.0)
    assert opts.on is False
    with pytest.raises(AttributeError):
        opts.cache_size = 1


def test_values_are_plain_attributes():
    """Read per fop on the brick, so no __getattr__ on the way (issue 15);
    what is not declared is still an AttributeError."""
    opts = validate(DECLS, {"cache-size": "64MB"})
    assert vars(opts)["cache_size"] == 64 << 20 == opts.cache_size == opts["cache-size"]
    assert vars(opts)["cache_timeout"] == 1
    with pytest.raises(AttributeError):
        opts.not_declared
    with pytest.raises(AttributeError):
        opts.cache_timeout = 2
    assert opts.cache_timeout == 1


def test_alias_maps_to_canonical_key():
    opts = validate(DECLS, {"force-revalidate-timeout": "7"})
    assert opts.cache_timeout == 7
    assert opts.given == {"cache-timeout": "7"}


@pytest.mark.parametrize("given_,message", [
    ({"cache-size": "1MB"}, "below the minimum"),
    ({"cache-timeout": "61"}, "above the maximum"),
    ({"cache-timeout": "soon"}, "not an integer"),
    ({"mode": "slow"}, "not one of fast, safe"),
    ({"on": "maybe"}, "not a boolean"),
    ({"nonsense": "1"}, "unknown option 'nonsense'"),
])
def test_refusals_name_the_option(given_, message):
    with pytest.raises(OptionError) as info:
        validate(DECLS, given_)
    assert message in str(info.value)
    assert info.value.key == next(iter(given_))


def test_help_text():
    text = DECLS[0].help()
    assert "cache-size" in text and "32MB" in text and "Size of the read cache." in text


@given(s.integers(min_value=0, max_value=1 << 40), s.sampled_from(["", "B", "KB", "MB", "GB"]))
def test_size_units_multiply(n, unit):
    factor = {"": 1, "B": 1, "KB": 1024, "MB": 1 << 20, "GB": 1 << 30}[unit]
    assert parse_size(f"{n}{unit}") == n * factor


# -- pattern keys (GlusterFS's `auth.addr.*.allow`) -----------------------------

PATTERN_DECLS = (
    Option("auth.addr.*.allow", OptionType.STR, None, "Addresses allowed."),
    Option("auth.addr.special.allow", OptionType.INT, "0", "An exact key wins."),
)


def test_pattern_key_collects_every_matching_key():
    opts = validate(PATTERN_DECLS, {"auth.addr./srv/b1.allow": "*",
                                    "auth.addr.vol.b2.allow": "10.0.0.0/8",
                                    "auth.addr.special.allow": "3"})
    assert opts["auth.addr.*.allow"] == {"auth.addr./srv/b1.allow": "*",
                                         "auth.addr.vol.b2.allow": "10.0.0.0/8"}
    assert opts["auth.addr.special.allow"] == 3
    assert opts.given["auth.addr./srv/b1.allow"] == "*"


def test_pattern_key_without_values_is_empty_and_others_stay_unknown():
    assert validate(PATTERN_DECLS, {})["auth.addr.*.allow"] == {}
    with pytest.raises(OptionError, match="unknown option 'auth.addr.x.reject'"):
        validate(PATTERN_DECLS, {"auth.addr.x.reject": "*"})
