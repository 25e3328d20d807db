#!/usr/bin/env bash
# `make installer-check`: install the built .deb in a clean Debian container, use it, purge it,
# and check that nothing is left. Exits non-zero on any failure.
#
#   sudo packaging/linux/installer_check.sh [dist/vsr-desktop_*.deb]
#
# Why a container from debootstrap: on the build machine every library the bundle forgot is
# still installed, so the bundle "works"; a `debootstrap --variant=minbase` root has nothing
# but what the .deb's Depends pull in. Image registries are not reachable here (FACTS.md), so
# the base image is made with debootstrap once and imported (vsr-installer-rootfs:bookworm).
# Docker: the private daemon of packaging/docker/build_test_image.sh (its own socket, data
# root and pid file under VSR_DOCKER_STATE), started if it is not running; `build_test_image.sh
# stop` stops it. Needs root, docker.io and debootstrap (installed by that script) and the
# Debian mirror (apt inside the container, --network host).
set -euo pipefail
cd "$(dirname "$0")/../.."

DEB=${1:-$(find dist -maxdepth 1 -name 'vsr-desktop_*.deb' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)}
SUITE=${DEBIAN_SUITE:-bookworm}
IMAGE=vsr-installer-rootfs:$SUITE
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
REPORT=build/installer-check.txt
[[ -f $DEB ]] || { echo "no .deb: run make installer first" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "run as root (dockerd, debootstrap)" >&2; exit 2; }

packaging/docker/build_test_image.sh start
eval "$(packaging/docker/build_test_image.sh env)"
DOCKER=${DOCKER:-/usr/bin/docker}

if ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    root=$(mktemp -d /var/tmp/vsr-installer-rootfs.XXXXXX)
    echo "debootstrap --variant=minbase $SUITE (once)" >&2
    debootstrap --variant=minbase "$SUITE" "$root" "$DEBIAN_MIRROR" >build/debootstrap.log 2>&1 ||
        { tail -20 build/debootstrap.log >&2; rm -rf "$root"; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "$DOCKER" import - "$IMAGE" >/dev/null
    rm -rf "$root"
fi

mkdir -p build
# Inside the container: the file list before, install with Depends (no Recommends), the
# three checks, purge with the dependencies apt pulled in, the file list after.
script='set -u
status=0
snapshot() { find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp \
    -o -path /var/cache -o -path /var/lib/apt -o -path /var/lib/dpkg -o -path /var/log \
    -o -path /root -o -path /run \) -prune -o -print | sort; }
step() { name=$1; shift; t0=$(date +%s); echo "--- $name"; "$@"; rc=$?
    echo "--- $name: exit $rc, $(( $(date +%s) - t0 )) s"; [ $rc = 0 ] || status=1; }
apt-get update -qq
snapshot >/tmp/before
t0=$(date +%s)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /deb/pkg.deb \
    >/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; exit 1; }
echo "apt-get install (Depends, no Recommends): $(( $(date +%s) - t0 )) s; $(du -sh /opt/vsr-desktop | cut -f1) in /opt/vsr-desktop"
echo "Depends: $(dpkg-query -W -f="\${Depends}" vsr-desktop | cut -c1-200)..."
step "vsr --version" vsr --version
step "vsr demo" vsr demo -o /tmp/demo
step "vsr-desktop --smoke" vsr-desktop --smoke --smoke-timeout 600
t0=$(date +%s)
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --autoremove vsr-desktop >/tmp/purge.log 2>&1 ||
    { tail -30 /tmp/purge.log; status=1; }
echo "apt-get purge --autoremove: $(( $(date +%s) - t0 )) s"
snapshot >/tmp/after
left=$(comm -13 /tmp/before /tmp/after)
if [ -n "$left" ]; then echo "left after purge:"; echo "$left" | head -40; status=1
else echo "nothing left after purge"; fi
if dpkg -s vsr-desktop >/dev/null 2>&1; then echo "dpkg still knows vsr-desktop"; status=1; fi
[ $status = 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL"
exit $status'

start=$SECONDS
{
    echo "installer check: $(basename "$DEB") ($(du -h "$DEB" | cut -f1)) in a clean $SUITE container ($IMAGE)"
    rc=0
    "$DOCKER" run --rm --network host -e LANG=C.UTF-8 \
        -v "$(realpath "$DEB")":/deb/pkg.deb:ro "$IMAGE" sh -c "$script" || rc=$?
    echo "whole check: $((SECONDS - start)) s"
    exit "$rc"
} 2>&1 | tee "$REPORT"
exit "${PIPESTATUS[0]}"
