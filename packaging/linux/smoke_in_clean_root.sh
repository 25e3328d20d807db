#!/usr/bin/env bash
# Install the built .deb into a clean Debian root and run the frozen app's smoke tests there.
#
#   sudo packaging/linux/smoke_in_clean_root.sh [dist/vsr-desktop_*.deb]
#
# Why a chroot: on the build machine every library the bundle forgot is still installed, so the
# bundle "works". A fresh `debootstrap --variant=minbase` root has nothing but what the .deb's
# Depends pull in, like a user's new machine. Needs root, debootstrap and the Debian mirror
# (DEBIAN_MIRROR overrides debootstrap's default). The pristine root is made once
# (build/clean-root-base) and copied for every run, so each run starts clean.
# Prints a report and writes it to build/clean-root-smoke.txt; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

DEB=${1:-$(ls -t dist/vsr-desktop_*.deb | head -1)}
SUITE=${DEBIAN_SUITE:-bookworm}
BASE=build/clean-root-base
ROOT=build/clean-root
REPORT=build/clean-root-smoke.txt
SAMPLE=/opt/vsr-desktop/_internal/vsr_desktop/resources/samples/astronaut_pan.mp4

[[ $(id -u) == 0 ]] || { echo "run as root (chroot, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null

if [[ ! -x $BASE/bin/sh ]]; then
    rm -rf "$BASE"
    # shellcheck disable=SC2086 # no mirror argument unless one is given
    debootstrap --variant=minbase "$SUITE" "$BASE" ${DEBIAN_MIRROR:-} >build/debootstrap.log 2>&1 \
        || { tail -20 build/debootstrap.log >&2; exit 1; }
fi

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" || true; done
}
trap cleanup EXIT

rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
for fs in proc sys dev; do
    mount --bind "/$fs" "$ROOT/$fs"
    mounted+=("$ROOT/$fs")
done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp "$DEB" "$ROOT/tmp/vsr-desktop.deb"

in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 \
        "$@"
}

exec > >(tee "$REPORT") 2>&1
echo "clean root: debootstrap --variant=minbase $SUITE; package $(basename "$DEB") ($(du -h "$DEB" | cut -f1))"
in_root apt-get update -qq
start=$SECONDS
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    /tmp/vsr-desktop.deb >/dev/null
echo "apt-get install (with Depends, no Recommends): $((SECONDS - start)) s"
echo "installed size: $(du -sh "$ROOT/opt/vsr-desktop" | cut -f1)"
# With the bundle's own folder on the search path, as the frozen app runs: what is left is
# what neither the bundle nor the Depends provide (optional Qt plugins: Wayland, GTK theme).
echo "libraries not found (ldd over the bundle):"
in_root env LD_LIBRARY_PATH=/opt/vsr-desktop/_internal sh -c 'find /opt/vsr-desktop \
    -name "*.so*" -type f -exec ldd {} + 2>/dev/null | grep "not found" | sort | uniq -c' ||
    echo "  none"
in_root test -f /usr/share/applications/vsr-desktop.desktop
in_root test -f /usr/share/icons/hicolor/scalable/apps/vsr-desktop.svg

status=0
step() {  # step NAME COMMAND...: run it in the root, time it, remember a failure
    local name=$1 rc=0 t0=$SECONDS
    shift
    echo "--- $name"
    in_root "$@" || rc=$?
    echo "--- $name: exit $rc, $((SECONDS - t0)) s"
    ((rc == 0)) || status=1
}

step "vsr --version" vsr --version
step "vsr-desktop start-up (offscreen)" env QT_QPA_PLATFORM=offscreen vsr-desktop --quit-after 0.5
step "vsr-desktop --smoke" vsr-desktop --smoke --smoke-timeout 600
step "vsr upscale (sample, bundled model)" vsr upscale "$SAMPLE" -o /tmp/sample_x4.mp4 --quiet
step "upscaled file is there" test -s /tmp/sample_x4.mp4
ls -l "$ROOT/tmp/sample_x4.mp4" 2>/dev/null || true
echo "RESULT: $([[ $status == 0 ]] && echo PASS || echo FAIL)"
exit "$status"
