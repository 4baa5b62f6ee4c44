"""A minimal Linux guest for the tests that boot QEMU from a volume.

`initramfs` builds the guest's root (busybox, the kernel's virtio modules,
an /init that runs one shell job on /dev/vda and powers off); `qemu` boots
it under TCG with a gluster:// disk and follows its serial console.
"""
