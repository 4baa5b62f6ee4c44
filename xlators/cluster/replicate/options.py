"""cluster/replicate's options (afr.c's options table; the volume-set keys
from glusterd-volume-set.c).
"""

from __future__ import annotations

from glusterpy.keys import AFR_DIRTY
from glusterpy.options import Option, OptionType as T

from xlators.cluster.replicate import changelog as cl


# --------------------------------------------------------------------------
# Options (afr.c; volume-set keys from glusterd-volume-set.c)

_BOOL_WORDS = ("1", "on", "yes", "true", "enable", "0", "off", "no", "false", "disable")


def _opt(key, typ, default, description, set_key=None, **kw) -> Option:
    return Option(key, typ, default, description,
                  set_keys=(set_key,) if set_key else (), **kw)


OPTIONS = (
    _opt("read-subvolume", T.XLATOR, None,
         "inode-read fops happen only on one of the bricks in replicate. Afr will prefer "
         "the one specified using this option if it is not stale. Option value must be one "
         "of the xlator names of the children.", "cluster.read-subvolume"),
    _opt("read-subvolume-index", T.INT, "-1",
         "inode-read fops happen only on one of the bricks in replicate. AFR will prefer "
         "the one specified using this option if it is not stale. allowed options include "
         "-1 till replica-count - 1", "cluster.read-subvolume-index", min=-1),
    _opt("read-hash-mode", T.INT, "1",
         "inode-read fops happen only on one of the bricks in replicate. AFR will prefer "
         "the one computed using the method specified using this option.\n"
         "0 = first readable child of AFR, starting from 1st child.\n"
         "1 = hash by GFID of file (all clients use same subvolume).\n"
         "2 = hash by GFID of file and client PID.\n"
         "3 = brick having the least outstanding read requests.\n"
         "4 = brick having the least network ping latency.\n"
         "5 = Hybrid mode between 3 and 4, ie least value among network-latency "
         "multiplied by outstanding-read-requests.", "cluster.read-hash-mode", min=0, max=5),
    _opt("choose-local", T.BOOL, "true",
         "Choose a local subvolume (i.e. Brick) to read from if read-subvolume is not "
         "explicitly set.", "cluster.choose-local"),
    _opt("background-self-heal-count", T.INT, "8",
         "This specifies the number of per client self-heal jobs that can perform "
         "parallel heals in the background.", "cluster.background-self-heal-count",
         min=0, max=256),
    _opt("heal-wait-queue-length", T.INT, "128",
         "This specifies the number of heals that can be queued for the parallel "
         "background self heal jobs.", "cluster.heal-wait-queue-length", min=0, max=10000),
    _opt("data-self-heal", T.ENUM, "off",
         "Using this option we can enable/disable data self-heal on the file.",
         "cluster.data-self-heal", choices=_BOOL_WORDS),
    _opt("data-self-heal-algorithm", T.ENUM, None,
         "Select between \"full\", \"diff\". The \"full\" algorithm copies the entire file "
         "from source to sink. The \"diff\" algorithm copies to sink only those blocks "
         "whose checksums don't match with those of source. If no option is configured "
         "the option is chosen dynamically: \"full\" when the sinks are empty, \"diff\" "
         "otherwise.", "cluster.data-self-heal-algorithm", choices=("diff", "full")),
    _opt("data-self-heal-window-size", T.INT, "8",
         "Maximum number of 128KB blocks per file for which self-heal process would be "
         "applied simultaneously.", "cluster.self-heal-window-size", min=1, max=1024),
    _opt("metadata-self-heal", T.BOOL, "off",
         "Using this option we can enable/disable metadata i.e. Permissions, ownerships, "
         "xattrs self-heal on the file/directory.", "cluster.metadata-self-heal"),
    _opt("entry-self-heal", T.BOOL, "off",
         "Using this option we can enable/disable entry self-heal on the directory.",
         "cluster.entry-self-heal"),
    _opt("data-change-log", T.BOOL, "on", "This option exists only for backward "
         "compatibility and configuring it doesn't have any effect", "cluster.data-change-log"),
    _opt("metadata-change-log", T.BOOL, "on", "This option exists only for backward "
         "compatibility and configuring it doesn't have any effect",
         "cluster.metadata-change-log"),
    _opt("entry-change-log", T.BOOL, "on", "This option exists only for backward "
         "compatibility and configuring it doesn't have any effect",
         "cluster.entry-change-log"),
    _opt("optimistic-change-log", T.BOOL, "on",
         "Entry/Metadata fops will not perform pre fop changelog operations in afr "
         "transaction if this option is enabled.", "cluster.optimistic-change-log"),
    _opt("eager-lock", T.BOOL, "on",
         "Enable/Disable eager lock for replica volume: a data or metadata transaction "
         "takes a lock on the whole file that later transactions on the same inode share "
         "until it is released.", "cluster.eager-lock"),
    _opt("post-op-delay-secs", T.INT, "1",
         "Time interval induced artificially before post-operation phase of the "
         "transaction to enhance overlap of adjacent write operations.",
         "cluster.post-op-delay-secs", min=0, max=(1 << 31) - 1),
    _opt("ensure-durability", T.BOOL, "on",
         "Afr performs fsyncs for transactions if this option is on to make sure the "
         "changelogs/data is written to the disk.", "cluster.ensure-durability"),
    _opt("quorum-type", T.ENUM, "none",
         "If value is \"fixed\" only allow writes if quorum-count bricks are present.  If "
         "value is \"auto\" only allow writes if more than half of bricks, or exactly half "
         "including the first, are present.", "cluster.quorum-type",
         choices=("none", "auto", "fixed")),
    _opt("quorum-count", T.INT, None,
         "If quorum-type is \"fixed\" only allow writes if this many bricks are present.  "
         "Other quorum types will OVERWRITE this value.", "cluster.quorum-count",
         min=1, max=(1 << 31) - 1),
    _opt("afr-dirty-xattr", T.STR, AFR_DIRTY, "The xattr marking an operation in "
         "flight on a brick."),
    _opt("afr-pending-xattr", T.STR, None,
         "Comma separated list of xattrs that are used to capture information on pending "
         "heals."),
    _opt("metadata-splitbrain-forced-heal", T.BOOL, "off",
         "Heal a metadata split-brain by picking one brick arbitrarily."),
    _opt("favorite-child-policy", T.ENUM, "none",
         "This option can be used to automatically resolve split-brains using various "
         "policies without user intervention. \"size\" picks the file with the biggest "
         "size as the source. \"ctime\" and \"mtime\" pick the file with the latest ctime "
         "and mtime respectively as the source. \"majority\" picks a file with identical "
         "mtime and size in more than half the number of bricks in the replica.",
         "cluster.favorite-child-policy", choices=cl.FAVORITE_CHILD_POLICIES),
    _opt("arbiter-count", T.INT, None, "subset of child_count. Has to be 0 or 1.",
         min=0, max=1, reconfigurable=False),
    _opt("granular-entry-heal", T.BOOL, "no",
         "If this option is enabled, self-heal will resort to granular way of recording "
         "changelogs and doing entry self-heal.", "cluster.granular-entry-heal"),
    _opt("full-lock", T.BOOL, "yes",
         "If this option is disabled, then the IOs will take range locks same as versions "
         "till 3.13.1.", "cluster.full-lock"),
    _opt("self-heal-daemon", T.BOOL, "on",
         "This option applies to only self-heal-daemon. Index directory crawl and "
         "automatic healing of files will not be performed if this option is turned off.",
         "cluster.self-heal-daemon"),
    _opt("iam-self-heal-daemon", T.BOOL, "off",
         "This option differentiates if the replicate translator is running as part of "
         "self-heal-daemon or not.", reconfigurable=False),
    _opt("heal-timeout", T.INT, "600",
         "time interval for checking the need to self-heal in self-heal-daemon",
         "cluster.heal-timeout", min=5, max=(1 << 31) - 1),
    _opt("shd-max-threads", T.INT, "1",
         "Maximum number of parallel heals SHD can do per local brick. This can "
         "substantially lower heal times, but can also crush your bricks if you don't "
         "have the storage hardware to support this.", "cluster.shd-max-threads",
         min=1, max=64),
    _opt("shd-wait-qlength", T.INT, "1024",
         "This option can be used to control number of heals that can wait in SHD per "
         "subvolume.", "cluster.shd-wait-qlength", min=1, max=655536),
    _opt("shd-state-dir", T.STR, None,
         "Where the self-heal daemon keeps the position of an interrupted full sweep, "
         "so that the sweep resumes there after a restart (glusterpy's; glusterpyd "
         "passes WORKDIR/glustershd).  Unset: a full sweep starts over, as in GlusterFS."),
    _opt("node-uuid", T.STR, None,
         "Local glusterd uuid string, used in starting self-heal-daemon so that it can "
         "crawl only on local index directories."),
    _opt("volume-id", T.STR, None, "The volume's id (names the anonymous-inode "
         "directory).", reconfigurable=False),
    _opt("use-anonymous-inode", T.BOOL, "no",
         "Setting this option heals directory renames efficiently (accepted; glusterpy "
         "heals renamed directories by re-creating them).", "cluster.use-anonymous-inode"),
    _opt("use-compound-fops", T.BOOL, "no", "This option exists only for backward "
         "compatibility and configuring it doesn't have any effect",
         "cluster.use-compound-fops"),
)
