#!/usr/bin/env bash
# A small Debian bookworm root filesystem for aloft's virtual-machine tests and for trying
# `aloftctl image build`: systemd, Debian's cloud kernel (virtio built in) with a minimal
# initramfs, a static address on QEMU's user network (10.0.2.15, the host is 10.0.2.2), and a
# test agent that runs commands sent over the virtio-serial port `aloft.test`. Written as a
# tarball (atomically); reused when it exists. Needs root and debootstrap (installed if missing).
#   usage: scripts/vm-rootfs.sh OUT.tar
set -euo pipefail
out=${1:?usage: vm-rootfs.sh OUT.tar}
[ -f "$out" ] && { echo "$out exists: reused"; exit 0; }
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || { echo "no Debian mirror found in the apt configuration (set DEBIAN_MIRROR)" >&2; exit 1; }
command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/.vm-rootfs.XXXXXX")
t=$work/tree
# debootstrap mounts /proc (and more) in the tree; stopped midway it leaves them mounted. Unmount
# whatever is left and never let rm cross into a mount.
cleanup() {
  local m
  for m in dev/pts dev sys proc; do
    mountpoint -q "$t/$m" 2>/dev/null && { umount -l "$t/$m" 2>/dev/null || true; }
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
echo "debootstrap of Debian bookworm (a few minutes)..."
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,udev,linux-image-cloud-amd64,initramfs-tools,iproute2,e2fsprogs,curl \
  bookworm "$t" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }

# No trace of the mirror, no package caches, no documentation.
: >"$t/etc/apt/sources.list"
rm -rf "$t"/var/lib/apt/lists/* "$t"/var/cache/apt/* "$t"/usr/share/doc/* "$t"/usr/share/man/* "$t"/usr/share/info/*
find "$t/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Kernel modules a QEMU guest never loads (about 50 MB).
kver=$(ls "$t/usr/lib/modules" | head -1)
m=$t/usr/lib/modules/$kver/kernel
rm -rf "$m"/drivers/{infiniband,gpu,media,net/ethernet,net/wireless,scsi,md,target,isdn,hid,usb,nvme,xen,hv} \
       "$m"/net/{netfilter,ipv4/netfilter,ipv6/netfilter,bridge,sched,wireless,mac80211,sctp,rds,openvswitch,tipc,ceph,sunrpc} \
       "$m"/fs/{btrfs,xfs,ocfs2,nfs,nfsd,ceph,cifs,smb,gfs2,f2fs,jfs,nilfs2,ubifs,dlm,lockd,afs,9p,erofs}
chroot "$t" depmod "$kver"
# A small initramfs: virtio only (ext4 is built into the cloud kernel).
printf 'MODULES=list\nCOMPRESS=gzip\n' >"$t/etc/initramfs-tools/conf.d/aloft.conf"
echo RESUME=none >"$t/etc/initramfs-tools/conf.d/resume"
printf 'virtio_pci\nvirtio_blk\n' >>"$t/etc/initramfs-tools/modules"
chroot "$t" update-initramfs -u -k "$kver" >/dev/null 2>&1

echo vm >"$t/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vm\n' >"$t/etc/hosts"
echo "nameserver 10.0.2.3" >"$t/etc/resolv.conf"
: >"$t/etc/machine-id"
chroot "$t" passwd -d root >/dev/null

cat >"$t/etc/systemd/system/vm-net.service" <<'EOF'
[Unit]
Description=Static address on QEMU's user network (the host is 10.0.2.2)
BindsTo=sys-subsystem-net-devices-eth0.device
After=sys-subsystem-net-devices-eth0.device
Before=network.target network-online.target
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/ip link set lo up
ExecStart=/usr/sbin/ip link set eth0 up
ExecStart=/usr/sbin/ip addr add 10.0.2.15/24 dev eth0
ExecStart=/usr/sbin/ip route add default via 10.0.2.2

[Install]
WantedBy=sys-subsystem-net-devices-eth0.device network-online.target
EOF

# The test agent: one shell command per line from the virtio-serial port; its output, then a
# line "\x1eALOFT-END rc=N\x1e".
cat >"$t/usr/local/sbin/vm-test-agent" <<'EOF'
#!/bin/bash
port=/dev/virtio-ports/aloft.test
rs=$'\x1e'
while :; do
  [ -e "$port" ] || { sleep 0.5; continue; }
  exec 3<>"$port" || { sleep 0.5; continue; }
  while IFS= read -r line <&3; do
    [ -n "$line" ] || continue
    out=$(bash -c "$line" </dev/null 2>&1); rc=$?
    printf '%s\n%sALOFT-END rc=%d%s\n' "$out" "$rs" "$rc" "$rs" >&3
  done
  exec 3>&-
  sleep 0.2
done
EOF
chmod 755 "$t/usr/local/sbin/vm-test-agent"
cat >"$t/etc/systemd/system/vm-test-agent.service" <<'EOF'
[Unit]
Description=Test agent on the virtio-serial port aloft.test
DefaultDependencies=no
After=systemd-udevd.service

[Service]
ExecStart=/usr/local/sbin/vm-test-agent
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
EOF
systemctl --root="$t" enable vm-net.service vm-test-agent.service >/dev/null 2>&1
systemctl --root="$t" set-default multi-user.target >/dev/null 2>&1
# Units a test guest does not need (a faster boot under software emulation).
systemctl --root="$t" mask apt-daily.timer apt-daily-upgrade.timer apt-daily.service \
  apt-daily-upgrade.service e2scrub_all.timer e2scrub_reap.service fstrim.timer \
  dpkg-db-backup.timer getty@tty1.service systemd-networkd-wait-online.service \
  systemd-tmpfiles-clean.timer systemd-update-utmp-runlevel.service systemd-update-utmp.service \
  modprobe@fuse.service modprobe@dm_mod.service modprobe@loop.service modprobe@drm.service \
  dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-kernel-config.mount sys-fs-fuse-connections.mount systemd-hwdb-update.service \
  ldconfig.service systemd-update-done.service systemd-firstboot.service \
  systemd-journal-catalog-update.service >/dev/null 2>&1
tar --numeric-owner --xattrs -C "$t" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$out"
echo "wrote $out ($(du -h "$out" | cut -f1))"
