"""glusterpy: a userspace distributed filesystem built the way GlusterFS is.

See DESIGN.md (shared with the project) for the architecture: translators
loaded from volfiles (`graph`), the fop catalogue (`fops`), the wire
protocol (`rpc`), the client library (`gfapi`), the FUSE bridge (`fuse`),
the management daemon (`glusterd`) and the command line (`cli`).
"""

__version__ = "0.1.0"
