"""debug/delay-gen: delay chosen fops, to make races and timeouts happen.

Follows GlusterFS's debug/delay-gen: `enable` lists the fops to delay
(GlusterFS's names - READ, WRITE, LOOKUP ... - or ours, any case),
`delay-percentage` of their calls wait `delay-duration` microseconds before
winding to the child.  GlusterFS sleeps the calling thread; this one
suspends the calling task, so other fops run meanwhile - which is what
tests of concurrent behaviour (io-cache's consistency, replicate's
transactions) need.
"""

from __future__ import annotations

import random

import trio

from glusterpy import fops
from glusterpy.fopgen import Family, install
from glusterpy.options import Option, OptionError, OptionType, parse_list
from glusterpy.xlator import Translator

#: GlusterFS's fop-list names where they differ from the catalogue's
_GLUSTERFS_NAMES = {"read": "readv", "write": "writev"}


def _enabled_fops(text: str) -> frozenset[str]:
    names = set()
    for item in parse_list(text):
        name = _GLUSTERFS_NAMES.get(item.lower(), item.lower())
        if name not in fops.BY_NAME:
            raise OptionError("enable", f"option 'enable': unknown fop {item!r}")
        names.add(name)
    return frozenset(names)


class DelayGen(Translator):
    OPTIONS = (
        Option("delay-percentage", OptionType.PERCENT, "10%",
               "Percentage delay of operations when enabled.", min=0, max=100),
        Option("delay-duration", OptionType.INT, "100000",
               "Delay duration in micro seconds", min=0),
        Option("enable", OptionType.STR, "",
               "Accepts a string which takes ',' separated fop strings to denote "
               "which fops are enabled for delay"),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self._enabled = _enabled_fops(self.opts.enable)

    def options_changed(self, old) -> None:
        self._enabled = _enabled_fops(self.opts.enable)

    async def _maybe_delay(self, fop_name: str) -> None:
        if fop_name in self._enabled and random.random() * 100 < self.opts.delay_percentage:
            await trio.sleep(self.opts.delay_duration / 1e6)


#: every fop may be delayed
FOP_METHODS = Family(
    module="xlators.debug.delay_gen_fops", owner="DelayGen",
    doc="{name}: maybe delay, then wind to the child.",
    fields=lambda fop: {"quoted": repr(fop.name)},
    template="""
async def {name}(self, {params}, xdata=None):
    await self._maybe_delay({quoted})
    return await self.first_child.{name}({params}, xdata)
""")
install(DelayGen, FOP_METHODS)

TRANSLATOR = DelayGen
