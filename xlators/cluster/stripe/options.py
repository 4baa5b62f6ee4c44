"""cluster/stripe: its options - `block-size` (PATTERN:SIZE pairs, each size
checked as GlusterFS's set_stripe_block_size checks it), `use-xattr` and
`coalesce` - and the size limits they keep to (stripe.c's options table)."""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glusterpy.options import Option, OptionError, OptionType

# --------------------------------------------------------------------------
# Options

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
MIN_BLOCK_SIZE = 16 * KB      # GlusterFS's STRIPE_MIN_BLOCK_SIZE
MAX_BLOCK_SIZE = 1 * GB       # ours: GlusterFS set none
DEFAULT_BLOCK_SIZE = 128 * KB
MAX_CHILDREN = 256            # GlusterFS's limit


@dataclass(frozen=True)
class BlockSizeOption(Option):
    """`block-size`: a size, or PATTERN:SIZE pairs (`*.img:1MB,*:256KB`),
    each size checked as GlusterFS's set_stripe_block_size checks it."""

    def parse(self, text: str) -> Any:
        pairs = super().parse(text)
        if not pairs:
            raise OptionError(self.key, f"option '{self.key}': no block size given")
        for pattern, size in pairs:
            what = f"option '{self.key}': block size {size}" + \
                (f" for '{pattern}'" if pattern != "*" or len(pairs) > 1 else "")
            if not pattern:
                raise OptionError(self.key, f"option '{self.key}': {text!r} has an "
                                            f"empty pattern before ':'")
            if size == 0:
                raise OptionError(self.key, f"{what} is zero: every block would be empty")
            if size < MIN_BLOCK_SIZE:
                raise OptionError(self.key, f"{what} is below the minimum "
                                            f"{MIN_BLOCK_SIZE} (16KB)")
            if size % 512:
                raise OptionError(self.key, f"{what} is not a multiple of 512 bytes")
            if size > MAX_BLOCK_SIZE:
                raise OptionError(self.key, f"{what} is above the maximum "
                                            f"{MAX_BLOCK_SIZE} (1GB)")
        return pairs


OPTIONS = (
    BlockSizeOption(
        "block-size", OptionType.SIZE_LIST, "128KB",
        "Size of the stripe unit that would be read from or written to the striped "
        "servers; PATTERN:SIZE pairs (e.g. *.img:1MB,*:256KB) choose it per file, the "
        "first matching pattern winning.",
        min=MIN_BLOCK_SIZE, max=MAX_BLOCK_SIZE, set_keys=("cluster.stripe-block-size",)),
    Option("use-xattr", OptionType.BOOL, "true",
           "Record each file's stripe geometry in xattrs on its pieces (off: derive it "
           "from the options and the path).", reconfigurable=False),
    Option("coalesce", OptionType.BOOL, "true",
           "Enable/Disable coalesce mode to flatten striped files as stored on the server "
           "(i.e., eliminate holes caused by the traditional format).",
           set_keys=("cluster.stripe-coalesce",)),
)
