"""The xattr and xdata keys translators, the brick and the tools speak.

GlusterFS keeps this vocabulary in one header, libglusterfs's
``glusterfs.h`` (with a few keys in the headers of the translator that owns
them); this module is that header for glusterpy.  Every key that more than one
module uses, or that one translator sends to another on the wire, is defined
here once; the comment next to it gives GlusterFS's macro name where GlusterFS
has one ("literal" where GlusterFS spells the key inline).

What stays with its translator: keys derived from an option at run time
(distribute's ``trusted.glusterfs.dht`` family, stripe's geometry keys, afr's
pending keys per child), and the keys a single translator both asks and
answers (distribute's fix-layout and migrate-data requests, features/bd's own
keys in ``glusterpy/bd.py``, as GlusterFS keeps them in ``bd.h``).

The groups follow glusterfs.h's order.  Values are byte-for-byte GlusterFS's:
they travel in dicts on the wire and land in bricks' xattrs on disk.
"""

from __future__ import annotations

# --------------------------------------------------------------------------
# Extended attribute namespaces (the kernel's, XATTR_*_PREFIX)

#: the namespaces an xattr name may start with; anything else is a virtual key
XATTR_NAMESPACES = ("trusted.", "user.", "security.", "system.")
SELINUX_KEY = "security.selinux"                    # XATTR_SECURITY_PREFIX "selinux"
CAPABILITY_KEY = "security.capability"              # XATTR_SECURITY_PREFIX "capability"
ACL_ACCESS_KEY = "system.posix_acl_access"          # POSIX_ACL_ACCESS_XATTR
ACL_DEFAULT_KEY = "system.posix_acl_default"        # POSIX_ACL_DEFAULT_XATTR

# --------------------------------------------------------------------------
# Requests on lookup and the entry-creating fops

#: the gfid the caller wants a new inode to get (literal "gfid-req" in
#: GlusterFS: fuse, gfapi, dht and afr set it, posix honours it)
GFID_REQ = "gfid-req"

# --------------------------------------------------------------------------
# Virtual and special xattrs (glusterfs.h's first block)

#: getxattr: clear locks, "glusterfs.clrlk.t<type>.k<kind>[.<opts>]" (GF_XATTR_CLRLK_CMD)
CLRLK_CMD = "glusterfs.clrlk"
#: getxattr: interrupt the caller's own blocked lock, same syntax as CLRLK_CMD
#: (the FUSE bridge's interrupt of a waiting SETLKW; features/locks answers it)
INTRLK_CMD = "glusterfs.intrlk"
#: the one INTRLK_CMD the FUSE bridge sends: its owner's blocked posix locks
INTERRUPT_KEY = "glusterfs.intrlk.tposix.kblocked"
#: getxattr: where a file lives, "(<type>:<subvol> ... <POSIX(path):host:brickpath>)"
PATHINFO_KEY = "trusted.glusterfs.pathinfo"         # GF_XATTR_PATHINFO_KEY
USER_PATHINFO_KEY = "glusterfs.pathinfo"            # GF_XATTR_USER_PATHINFO_KEY
#: either of the two pathinfo keys (XATTR_IS_PATHINFO)
PATHINFO_KEYS = (PATHINFO_KEY, USER_PATHINFO_KEY)
#: getxattr: the uuid of the node (glusterd peer) that serves the brick
NODE_UUID_KEY = "trusted.glusterfs.node-uuid"       # GF_XATTR_NODE_UUID_KEY
#: the brick root's volume id, checked when the brick starts
VOLUME_ID_KEY = "trusted.glusterfs.volume-id"       # GF_XATTR_VOL_ID_KEY
#: getxattr prefix: the on-disk spelling of a name, case-insensitively
REAL_FILENAME_PREFIX = "glusterfs.get_real_filename:"  # GF_XATTR_GET_REAL_FILENAME_KEY
#: setxattr: io-stats dumps its counters to the file named by the value
IOSTATS_DUMP_KEY = "trusted.io-stats-dump"          # GF_XATTR_IOSTATS_DUMP_KEY
#: readdirp xdata: leave directories out (dht reads files from non-hashed bricks)
READDIR_SKIP_DIRS = "readdir-filter-directories"    # GF_READDIR_SKIP_DIRS

#: getxattr: the brick path of the data file behind a dht linkto file
LINKINFO_KEY = "trusted.distribute.linkinfo"        # GF_XATTR_LINKINFO_KEY
GFID_KEY = "trusted.gfid"                           # GFID_XATTR_KEY
#: getxattr: every path of an inode, from its trusted.gfid2path.* xattrs
GFID2PATH_VIRT_KEY = "glusterfs.gfidtopath"         # GFID2PATH_VIRT_XATTR_KEY
#: "trusted.gfid2path.<hash>" = "<parent gfid>/<name>", one per hard link
GFID2PATH_PREFIX = "trusted.gfid2path."             # GFID2PATH_XATTR_KEY_PREFIX
GFID_STRING_KEY = "glusterfs.gfid.string"           # VIRTUAL_GFID_XATTR_KEY_STR
GFID_VIRT_KEY = "glusterfs.gfid"                    # VIRTUAL_GFID_XATTR_KEY
#: features/utime's times (ctime, mtime, atime) kept by posix
MDATA_KEY = "trusted.glusterfs.mdata"               # GF_XATTR_MDATA_KEY

#: the operation must reach the disk before the reply (fsync after it)
DURABLE_OP = "trusted.glusterfs.durable-op"         # GLUSTERFS_DURABLE_OP
#: xdata flag: a fop a translator sends for its own ends (heal, migration, ...)
INTERNAL_FOP = "glusterfs-internal-fop"             # GLUSTERFS_INTERNAL_FOP_KEY
#: xdata: bit set of the context a fop runs in (gf_internal_fop_indicator)
INTERNAL_CTX_KEY = "glusterfs.internal-ctx"         # GF_INTERNAL_CTX_KEY

# --------------------------------------------------------------------------
# Counts asked in xdata and answered in the reply's xdata

#: writev: the write was an O_APPEND one (posix answers, afr and arbiter ask)
WRITE_IS_APPEND = "glusterfs.write-is-append"       # GLUSTERFS_WRITE_IS_APPEND
OPEN_FD_COUNT = "glusterfs.open-fd-count"           # GLUSTERFS_OPEN_FD_COUNT
ACTIVE_FD_COUNT = "glusterfs.open-active-fd-count"  # GLUSTERFS_ACTIVE_FD_COUNT
INODELK_COUNT = "glusterfs.inodelk-count"           # GLUSTERFS_INODELK_COUNT
ENTRYLK_COUNT = "glusterfs.entrylk-count"           # GLUSTERFS_ENTRYLK_COUNT
POSIXLK_COUNT = "glusterfs.posixlk-count"           # GLUSTERFS_POSIXLK_COUNT
#: lookup: is an entrylk held on this name in its parent
PARENT_ENTRYLK = "glusterfs.parent-entrylk"         # GLUSTERFS_PARENT_ENTRYLK
#: inodelks of the domain named by the value (afr asks for its own domain)
INODELK_DOM_COUNT = "glusterfs.inodelk-dom-count"   # GLUSTERFS_INODELK_DOM_COUNT
#: prefix of the per-domain counts MULTI_DOM_LK_CNT_REQUESTS asks for
INODELK_DOM_PREFIX = "glusterfs.inodelk-dom-prefix"  # GLUSTERFS_INODELK_DOM_PREFIX
MULTI_DOM_LK_CNT_REQUESTS = "glusterfs.multi-dom-lk-cnt-req"  # GLUSTERFS_MULTIPLE_DOM_LK_CNT_REQUESTS
#: getxattr: one path of the inode (the self-heal daemon asks it per entry)
GFID_TO_PATH_KEY = "glusterfs.gfid2path"            # GFID_TO_PATH_KEY

# --------------------------------------------------------------------------
# Quota's xattrs (marker/quota keep them; heal and dht treat them specially)

QUOTA_SIZE_KEY = "trusted.glusterfs.quota.size"     # QUOTA_SIZE_KEY
QUOTA_LIMIT_KEY = "trusted.glusterfs.quota.limit-set"  # QUOTA_LIMIT_KEY
QUOTA_LIMIT_OBJECTS_KEY = "trusted.glusterfs.quota.limit-objects"  # QUOTA_LIMIT_OBJECTS_KEY

# --------------------------------------------------------------------------
# features/utime

#: setxattr: store the times utime sends for a file that has none yet
SET_CTIME_MDATA = "set-ctime-mdata"                 # CTIME_MDATA_XDATA_KEY

# --------------------------------------------------------------------------
# AFR (cluster/replicate) and EC changelog xattrs

#: "trusted.afr.<volume>-client-<N>": pending counters about child N
AFR_XATTR_PREFIX = "trusted.afr"                    # AFR_XATTR_PREFIX
#: afr's own "this inode may be mid-transaction" counters
AFR_DIRTY = "trusted.afr.dirty"                     # GF_AFR_DIRTY
#: disperse's dirty counters, which features/index also watches
EC_DIRTY = "trusted.ec.dirty"                       # EC_XATTR_DIRTY

# --------------------------------------------------------------------------
# features/index: the heal index's virtual directories and requests

#: getxattr at the root: the gfid of each index's virtual directory
XATTROP_INDEX_GFID = "glusterfs.xattrop_index_gfid"  # GF_XATTROP_INDEX_GFID
XATTROP_ENTRY_CHANGES_GFID = "glusterfs.xattrop_entry_changes_gfid"  # GF_XATTROP_ENTRY_CHANGES_GFID
XATTROP_DIRTY_GFID = "glusterfs.xattrop_dirty_gfid"  # GF_XATTROP_DIRTY_GFID
#: getxattr / lookup: how many entries need heal
INDEX_COUNT_KEY = "glusterfs.xattrop_index_count"   # GF_XATTROP_INDEX_COUNT
DIRTY_COUNT_KEY = "glusterfs.xattrop_dirty_count"   # GF_XATTROP_DIRTY_COUNT
#: xattrop xdata: a name was created in / deleted from the directory
ENTRY_IN_KEY = "glusterfs.xattrop-entry-create"     # GF_XATTROP_ENTRY_IN_KEY
ENTRY_OUT_KEY = "glusterfs.xattrop-entry-delete"    # GF_XATTROP_ENTRY_OUT_KEY
#: xattrop xdata: drop the inode's index entry (heal found nothing pending)
PURGE_INDEX_KEY = "glusterfs.xattrop-purge-index"   # GF_XATTROP_PURGE_INDEX
IA_TYPE_GET_REQ = "glusterfs.index-ia-type-get-req"  # GF_INDEX_IA_TYPE_GET_REQ
IA_TYPE_GET_RSP = "glusterfs.index-ia-type-get-rsp"  # GF_INDEX_IA_TYPE_GET_RSP
#: readdir of an index directory: report each entry's type (literal)
GET_GFID_TYPE = "get-gfid-type"
#: lookup xdata asking whether the index named by the value is non-empty (literal)
LINK_COUNT = "link-count"

# --------------------------------------------------------------------------
# AFR's virtual xattrs (heal info and split-brain resolution)

HEAL_INFO_KEY = "glusterfs.heal-info"               # GF_HEAL_INFO
HEAL_SBRAIN_KEY = "glusterfs.heal-sbrain"           # GF_AFR_HEAL_SBRAIN
SBRAIN_STATUS_KEY = "replica.split-brain-status"    # GF_AFR_SBRAIN_STATUS
SBRAIN_CHOICE_KEY = "replica.split-brain-choice"    # GF_AFR_SBRAIN_CHOICE

#: lookup without a gfid (heal looks a name up on a brick that lacks it)
GFIDLESS_LOOKUP = "gfidless-lookup"                 # GF_GFIDLESS_LOOKUP
#: lookup of a gfid whose last name is gone (open-but-unlinked files)
UNLINKED_LOOKUP = "unlinked-lookup"                 # GF_UNLINKED_LOOKUP

# --------------------------------------------------------------------------
# DHT (cluster/distribute) and posix

#: the default of distribute's xattr-name option: layouts are <name>,
#: linkto files carry <name>.linkto, the mds <name>.mds ...
DHT_XATTR_NAME = "trusted.glusterfs.dht"
#: a linkto file's target subvolume (DHT_LINKFILE_KEY under the default name)
DHT_LINKTO_KEY = "trusted.glusterfs.dht.linkto"
#: unlink xdata: refuse unless the file is a linkto file
SKIP_NON_LINKTO_UNLINK = "unlink-only-if-dht-linkto-file"  # DHT_SKIP_NON_LINKTO_UNLINK
#: unlink xdata: refuse while the file is open
SKIP_OPEN_FD_UNLINK = "dont-unlink-for-open-fd"     # DHT_SKIP_OPEN_FD_UNLINK
#: xdata: send the iatt back in the reply's xdata (fsetxattr and friends)
IATT_KEY = "dht-get-iatt-in-xattr"                  # DHT_IATT_IN_XDATA_KEY
#: a client wrote to a migrating file's new copy (dht-common.h's
#: GF_PROTECT_FROM_EXTERNAL_WRITES and GF_AVOID_OVERWRITE)
PROTECT_WRITES_KEY = "trusted.glusterfs.protect.writes"
AVOID_OVERWRITE_KEY = "glusterfs.avoid.overwrite"
#: create xdata (glusterpy's own): put the new file's data on the brick
#: holding the data of the file whose gfid (16 bytes) is the value, with a
#: linkto file on the name's hashed brick - so a copy_file_range from that
#: file into the new one (a VM image clone) stays on one brick
COLOCATE_KEY = "glusterpy.dht.colocate-with"
#: the inode's link count in the reply's xdata
GET_LINK_COUNT = "get-link-count"                   # GET_LINK_COUNT
#: the file's size in the reply's xdata
GET_SIZE = "get-size"                               # GF_GET_SIZE
#: iatts before and after, in the reply's xdata of a (f)setxattr
PRESTAT_KEY = "virt-gf-prestat"                     # GF_PRESTAT
POSTSTAT_KEY = "virt-gf-poststat"                   # GF_POSTSTAT
#: the same, under the names CTR and marker use
RESPONSE_LINK_COUNT = "gf_response_link_count"      # GF_RESPONSE_LINK_COUNT_XDATA
REQUEST_LINK_COUNT = "gf_request_link_count"        # GF_REQUEST_LINK_COUNT_XDATA

#: lookup xdata: return the file's xattrs too (literal in posix and afr)
LIST_XATTR = "list-xattr"

#: lookup xdata: quick-read's request for a small file's content, up to the
#: value's bytes, answered in the reply's xdata (GF_CONTENT_KEY)
CONTENT_KEY = "glusterfs.content"

# --------------------------------------------------------------------------
# features/changelog (the brick's journal geo-replication reads)

#: unlink xdata from distribute: this unlink is the source side of a rename
#: across subvolumes; the value is dht_changelog_rename_info_t (old and new
#: parent gfids, name lengths with their NULs, the two names), and the
#: journal records a RENAME
DHT_CHANGELOG_RENAME_OP_KEY = "changelog.rename-op"  # DHT_CHANGELOG_RENAME_OP_KEY
#: setxattr (virtual): geo-replication asks the journal to record a file
#: again - 1: its entry (CREATE or MKDIR) and, for a file, its data
TRIGGER_SYNC_KEY = "glusterfs.geo-rep.trigger-sync"  # GF_XATTR_TRIGGER_SYNC
#: setxattr (virtual, glusterpy's own: GlusterFS rolls over early only for
#: snapshot's barrier, which no client of the brick can ask for): on the
#: brick root, from gsyncd's pid only, the journal rolls over now
CHANGELOG_ROLLOVER_KEY = "glusterfs.changelog.rollover"
#: shard's size xattr: the only xattrop the journal records
SHARD_FILE_SIZE_KEY = "trusted.glusterfs.shard.file-size"  # GF_XATTR_SHARD_FILE_SIZE

# --------------------------------------------------------------------------
# features/locks

#: lk xdata: GF_LK_ADVISORY (0) or GF_LK_MANDATORY (1) (GF_LOCK_MODE)
LOCK_MODE = "glusterfs.lk.lkmode"
#: protocol/server tells features/locks which client a lock fop comes from
CONNECTION_ID = "connection-id"

# --------------------------------------------------------------------------
# glusterpy's own

#: getxattr on a brick's root: debug/io-stats' profile counters as JSON
#: (glusterd's `volume profile` reads them; GlusterFS uses a brick op)
IOSTATS_XATTR = "trusted.glusterpy.io-stats"
#: getxattr on a brick's root: protocol/server's other connected clients as
#: JSON, answered by the server itself and only to a client on this machine
#: (glusterd's `volume status clients`; GlusterFS uses a brick op)
CLIENTS_XATTR = "trusted.glusterpy.clients"
