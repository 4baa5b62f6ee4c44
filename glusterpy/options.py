"""Option declarations: a translator's options are data.

Each translator lists its options as `Option` values beside its class (key
and aliases, type, default, bounds, description), as GlusterFS's
`volume_options_t` tables do.  The graph validates a volfile's options
against that list before `init`; `reconfigure()` validates again; the
management daemon uses the same declarations to check `volume set` and to
print `volume set help`.

Values are written the way GlusterFS writes them: sizes as `128KB`/`1MB`
(powers of 1024), booleans as on/off/yes/no/true/false/enable/disable/1/0,
times as `42`, `10s`, `5m`, `1h`, percentages as `10%`.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping


class OptionError(ValueError):
    """A value or key that the declarations refuse; the message says why."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class OptionType(enum.Enum):
    STR = "string"
    INT = "integer"
    SIZE = "size"
    PERCENT = "percent"
    PERCENT_OR_SIZE = "percent-or-size"
    BOOL = "boolean"
    TIME = "time"
    DOUBLE = "double"
    PATH = "path"
    ENUM = "enum"
    LIST = "list"
    PRIORITY_LIST = "priority-list"
    SIZE_LIST = "size-list"
    XLATOR = "translator name"
    ADDRESS_LIST = "address-list"


_SIZE_UNITS = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30,
               "TB": 1 << 40, "PB": 1 << 50}
_TIME_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600,
               "hr": 3600, "d": 86400, "days": 86400, "w": 604800,
               "wk": 604800}
_TRUE = {"1", "on", "yes", "true", "enable"}
_FALSE = {"0", "off", "no", "false", "disable"}


def parse_size(text: str) -> int:
    """`128KB` -> 131072.  Units are powers of 1024 and case-insensitive,
    as gf_string2bytesize; fractions are allowed (`1.5MB`)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (e.g. 512, 128KB, 1MB, 2GB)")
    number, unit = m.groups()
    return int(float(number) * _SIZE_UNITS[unit.upper()]) if "." in number \
        else int(number) * _SIZE_UNITS[unit.upper()]


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (on/off, yes/no, true/false, enable/disable, 1/0)")


def parse_int(text: str) -> int:
    """Decimal, 0x hex, or C-style octal (`0755`), as strtol(.., 0) reads them."""
    t = text.strip()
    try:
        if re.fullmatch(r"[+-]?0[0-7]+", t):
            return int(t, 8)
        return int(t, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def parse_double(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def parse_time(text: str) -> int:
    """Seconds: `42`, `42s`, `5m`, `1h`, `2d`, `1w` (gf_string2time)."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", text)
    if not m or m.group(2) not in _TIME_UNITS:
        raise ValueError(f"{text!r} is not a time (e.g. 42, 10s, 5m, 1h)")
    return int(m.group(1)) * _TIME_UNITS[m.group(2)]


def parse_percent(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*%?\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a percentage (e.g. 10%)")
    return float(m.group(1))


@dataclass(frozen=True)
class PercentOrSize:
    """min-free-disk style values: either a share of the total or bytes."""

    percent: float | None = None
    size: int | None = None


def parse_percent_or_size(text: str) -> PercentOrSize:
    if text.strip().endswith("%"):
        return PercentOrSize(percent=parse_percent(text))
    return PercentOrSize(size=parse_size(text))


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in re.split(r"[,\s]+", text.strip()) if item.strip())


def parse_priority_list(text: str) -> tuple[tuple[str, int], ...]:
    """`*.jpg:2,*.html:1` -> ((pattern, priority), ...), as io-cache reads it."""
    pairs = []
    for item in parse_list(text.replace(";", ",")):
        pattern, sep, prio = item.rpartition(":")
        if not sep or not pattern:
            raise ValueError(f"{item!r} is not PATTERN:PRIORITY")
        pairs.append((pattern, parse_int(prio)))
    return tuple(pairs)


def parse_size_list(text: str) -> tuple[tuple[str, int], ...]:
    """`*.img:1MB,*:256KB` -> ((pattern, bytes), ...); a bare size means `*`."""
    pairs = []
    for item in parse_list(text):
        pattern, sep, size = item.rpartition(":")
        pairs.append((pattern if sep else "*", parse_size(size)))
    return tuple(pairs)


def first_match(pairs: Iterable[tuple[str, Any]], name: str, default: Any = None) -> Any:
    """The value of the first (pattern, value) pair whose glob matches name."""
    for pattern, value in pairs:
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return default


_PARSERS = {
    OptionType.STR: str,
    OptionType.PATH: str,
    OptionType.XLATOR: str,
    OptionType.ENUM: str,
    OptionType.INT: parse_int,
    OptionType.SIZE: parse_size,
    OptionType.PERCENT: parse_percent,
    OptionType.PERCENT_OR_SIZE: parse_percent_or_size,
    OptionType.BOOL: parse_bool,
    OptionType.TIME: parse_time,
    OptionType.DOUBLE: parse_double,
    OptionType.LIST: parse_list,
    OptionType.ADDRESS_LIST: parse_list,
    OptionType.PRIORITY_LIST: parse_priority_list,
    OptionType.SIZE_LIST: parse_size_list,
}


@dataclass(frozen=True)
class Option:
    """One option of a translator.

    `default` is written as a volfile would write it, and parsed like any
    value.  `min`/`max` bound numeric types (sizes in bytes, times in
    seconds).  `set_keys` are the `volume set` keys (GlusterFS's
    `performance.cache-size` style) that the management daemon maps to this
    option.  `reconfigurable` options may change on a live graph.

    A key with `*` is a pattern, as GlusterFS declares `auth.addr.*.allow`:
    it takes every volfile key it matches (fnmatch; exact keys and aliases
    of other options win), and its value is a dict of those keys to their
    parsed values (empty when none is given; `default` is not used).

    `set_check`, GlusterFS's glusterd-side validate_fn, is called where
    `volume set` takes a value (glusterd, with this node's facts, such as
    its cores) and raises ValueError for a value the type alone cannot
    refuse; a graph that loads the value on another node does not call it.
    """

    key: str
    type: OptionType
    default: str | None
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    set_keys: tuple[str, ...] = ()
    reconfigurable: bool = True
    set_check: Callable[[str], object] | None = None

    @property
    def is_pattern(self) -> bool:
        return "*" in self.key

    @property
    def attr(self) -> str:
        """The Python attribute name: `cache-size` -> `cache_size`."""
        return self.key.replace("-", "_").replace(".", "_")

    def parse(self, text: str) -> Any:
        """Parse and check one value; raise OptionError naming the option."""
        try:
            value = _PARSERS[self.type](text)
        except ValueError as e:
            raise OptionError(self.key, f"option '{self.key}': {e}") from None
        if self.type is OptionType.ENUM and value not in self.choices:
            raise OptionError(self.key, f"option '{self.key}': {text!r} is not one of "
                                        f"{', '.join(self.choices)}")
        number = value.percent if isinstance(value, PercentOrSize) and value.percent is not None \
            else value.size if isinstance(value, PercentOrSize) else value
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            if self.min is not None and number < self.min:
                raise OptionError(self.key, f"option '{self.key}': {text!r} is below the "
                                            f"minimum {self._bound(self.min)}")
            if self.max is not None and number > self.max:
                raise OptionError(self.key, f"option '{self.key}': {text!r} is above the "
                                            f"maximum {self._bound(self.max)}")
        return value

    def _bound(self, n: float) -> str:
        return str(int(n)) if float(n).is_integer() else str(n)

    def help(self) -> str:
        """One entry of `volume set help`."""
        lines = [f"Option: {(self.set_keys or (self.key,))[0]}",
                 f"Default Value: {self.default if self.default is not None else '(null)'}",
                 f"Description: {self.description}"]
        if self.choices:
            lines.append(f"Allowed values: {', '.join(self.choices)}")
        if self.min is not None or self.max is not None:
            lines.append(f"Range: {self._bound(self.min) if self.min is not None else '-'} .. "
                         f"{self._bound(self.max) if self.max is not None else '-'}")
        return "\n".join(lines)


class OptionValues:
    """Parsed option values, readable as attributes (`opts.cache_size`)
    or by key (`opts['cache-size']`)."""

    def __init__(self, declarations: Iterable[Option], values: Mapping[str, Any],
                 given: Mapping[str, str]):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_given", dict(given))
        object.__setattr__(self, "_attrs", {o.attr: o.key for o in declarations})
        # each value also as a plain instance attribute: translators read
        # their options per fop, and a miss that ends in __getattr__ costs
        # ~1 us a read (issue 15's brick profile); __getattr__ stays for
        # what is not declared
        for attr, key in self._attrs.items():
            if key in self._values and not hasattr(type(self), attr):
                object.__setattr__(self, attr, self._values[key])

    def __getattr__(self, attr: str) -> Any:
        try:
            return self._values[self._attrs[attr]]
        except KeyError:
            raise AttributeError(attr) from None

    def __setattr__(self, attr, value):
        raise AttributeError("options change only through reconfigure()")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    @property
    def given(self) -> dict[str, str]:
        """The options as written in the volfile, canonical keys."""
        return dict(self._given)

    def __repr__(self) -> str:
        return f"OptionValues({self._values!r})"


def canonical_key(declarations: Iterable[Option], key: str) -> Option | None:
    declarations = tuple(declarations)
    for opt in declarations:
        if key == opt.key or key in opt.aliases:
            return opt
    for opt in declarations:
        if opt.is_pattern and fnmatch.fnmatchcase(key, opt.key):
            return opt
    return None


def validate(declarations: Iterable[Option], given: Mapping[str, str]) -> OptionValues:
    """Check every given option against the declarations and fill defaults.

    Raises OptionError for an unknown key or a bad value; the caller adds
    the file and line.
    """
    declarations = tuple(declarations)
    values: dict[str, Any] = {}
    canonical: dict[str, str] = {}
    for key, text in given.items():
        opt = canonical_key(declarations, key)
        if opt is None:
            raise OptionError(key, f"unknown option '{key}'")
        if opt.is_pattern:
            values.setdefault(opt.key, {})[key] = opt.parse(text)
            canonical[key] = text
            continue
        values[opt.key] = opt.parse(text)
        canonical[opt.key] = text
    for opt in declarations:
        if opt.key not in values:
            if opt.is_pattern:
                values[opt.key] = {}
            else:
                values[opt.key] = opt.parse(opt.default) if opt.default is not None else None
    return OptionValues(declarations, values, canonical)
