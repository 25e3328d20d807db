#!/usr/bin/env bash
# Build the Linux installers: the PyInstaller bundle, a .deb and a .tar.gz (`make installer`).
#
#   dist/bundle/vsr-desktop/                    one folder, executables vsr-desktop and vsr
#   dist/vsr-desktop_VERSION_ARCH.deb           installs to /opt/vsr-desktop, /usr/bin links,
#                                               desktop entry and icons
#   dist/vsr-desktop-VERSION-linux-ARCH.tar.gz  the same folder, to unpack anywhere
#
# The bundle is built in its own virtual environment (build/venv-installer) holding a CPU-only
# torch: the CUDA build's NVIDIA libraries are ~3 GB more than a .deb should carry (see
# docs/packaging.md). TORCH_PIP_ARGS picks the torch build; the default resolves anywhere:
#   torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
# VSR_TORCH_LOCAL=1 uses this project's build machines' own wheels instead (no route to
# download.pytorch.org there): torch 2.13.0+cpu from the local wheel folder with torchvision
# 0.28.0 (its compiled ops unusable; see packaging/pyinstaller/rthooks/).
# SKIP_BUNDLE=1 reuses an existing bundle (packaging only); SKIP_VENV=1 uses VSR_BUILD_VENV as
# it is (CI's own Python).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
VENV=${VSR_BUILD_VENV:-build/venv-installer}
PUBLIC_TORCH="torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu"
LOCAL_TORCH="torch==2.13.0+cpu torchvision==0.28.0 --no-deps"
if [[ ${VSR_TORCH_LOCAL:-0} == 1 ]]; then DEFAULT_TORCH=$LOCAL_TORCH; else DEFAULT_TORCH=$PUBLIC_TORCH; fi
TORCH_PIP_ARGS=${TORCH_PIP_ARGS:-$DEFAULT_TORCH}
DIST=dist
BUNDLE=$DIST/bundle/vsr-desktop
PY=$VENV/bin/python
export VSR_BUILD_DIR=build/bundle-generated

log() { printf '\n== %s\n' "$*" >&2; }

setup_venv() {
    local want have
    want=$({ echo "$TORCH_PIP_ARGS"; cat pyproject.toml; } | sha256sum | cut -c1-16)
    have=$(cat "$VENV/.ready" 2>/dev/null || true)
    [[ -x $PY && $want == "$have" ]] && return
    log "build environment $VENV"
    [[ -x $PY ]] || "$PYTHON" -m venv "$VENV"
    # torch first (the chosen variant), then the app's own dependencies and PyInstaller; the
    # project itself is not installed: the spec analyses the source tree.
    # shellcheck disable=SC2086 # TORCH_PIP_ARGS is a list of pip arguments
    "$PY" -m pip install -q $TORCH_PIP_ARGS
    "$PY" -m pip install -q ".[gui,aws,packaging]"
    "$PY" -m pip uninstall -q -y vsr-desktop
    echo "$want" >"$VENV/.ready"
}

build_bundle() {
    log "PyInstaller bundle (torch $("$PY" -c 'import torch; print(torch.__version__)'))"
    local start=$SECONDS
    "$PY" -m PyInstaller --noconfirm --log-level WARN --distpath "$DIST/bundle" \
        --workpath build/pyinstaller packaging/pyinstaller/vsr_desktop.spec
    echo "bundle built in $((SECONDS - start)) s: $(du -sh "$BUNDLE" | cut -f1)" >&2
}

version() { "$PY" -c 'import vsr_desktop; print(vsr_desktop.__version__)'; }

# The glibc the bundle needs: the highest GLIBC_x.y symbol version any of its ELF files asks
# for (what dpkg-shlibdeps would compute for libc6; a hand-written floor was wrong: 2.28 was
# declared, 2.36 needed). Prints e.g. 2.34.
glibc_floor() {
    (   # objdump fails on the non-ELF files among them (scripts, data): that is fine
        set +o pipefail
        find "$1" -type f \( -name '*.so*' -o -perm -u+x \) -print0 |
            xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | cut -d_ -f2 |
            sort -u -V | tail -1
    )
}

build_deb() {
    local ver arch root deb
    ver=$(version)
    arch=$(dpkg --print-architecture)
    root=build/deb-root
    deb=$DIST/vsr-desktop_${ver}_${arch}.deb
    log "Debian package $deb"
    rm -rf "$root"
    mkdir -p "$root/DEBIAN" "$root/opt" "$root/usr/bin" "$root/usr/share/applications" \
        "$root/usr/share/icons/hicolor/scalable/apps" "$root/usr/share/doc/vsr-desktop"
    cp -a "$BUNDLE" "$root/opt/vsr-desktop"
    find "$root" -name __pycache__ -type d -prune -exec rm -rf {} +
    ln -s /opt/vsr-desktop/vsr-desktop "$root/usr/bin/vsr-desktop"
    ln -s /opt/vsr-desktop/vsr "$root/usr/bin/vsr"
    install -m 644 packaging/linux/vsr-desktop.desktop "$root/usr/share/applications/"
    install -m 644 packaging/linux/icons/vsr-desktop.svg \
        "$root/usr/share/icons/hicolor/scalable/apps/vsr-desktop.svg"
    for size in 48 128 256 512; do
        mkdir -p "$root/usr/share/icons/hicolor/${size}x${size}/apps"
        "$PY" packaging/linux/render_icon.py "$size" \
            "$root/usr/share/icons/hicolor/${size}x${size}/apps/vsr-desktop.png"
    done
    # Copyright from the licences collected at build time (packaging/licences.py).
    "$PY" packaging/licences.py debian-copyright \
        "$BUNDLE/_internal/vsr_desktop/resources/licenses/collected/index.json" "$BUNDLE" \
        >"$root/usr/share/doc/vsr-desktop/copyright"
    sed "s/@VERSION@/$ver/; s/@DATE@/$(date -R -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")/" \
        packaging/linux/changelog.in | gzip -9n >"$root/usr/share/doc/vsr-desktop/changelog.Debian.gz"
    local size_kb glibc
    size_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    glibc=$(glibc_floor "$root/opt/vsr-desktop")
    echo "bundle needs glibc >= $glibc" >&2
    sed -e "s/@VERSION@/$ver/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size_kb/" \
        -e "s/@GLIBC@/$glibc/" packaging/linux/control.in >"$root/DEBIAN/control"
    install -m 755 packaging/linux/postinst packaging/linux/postrm "$root/DEBIAN/"
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
        xargs -0 md5sum >DEBIAN/md5sums)
    chmod 644 "$root/DEBIAN/md5sums"
    local start=$SECONDS
    dpkg-deb --build --root-owner-group -Zxz -z6 "$root" "$deb" >&2
    echo "deb built in $((SECONDS - start)) s: $(du -h "$deb" | cut -f1)" >&2
}

build_tarball() {
    local ver tgz
    ver=$(version)
    tgz=$DIST/vsr-desktop-${ver}-linux-$(uname -m).tar.gz
    log "tarball $tgz"
    # The system libraries it needs, stated inside (the .deb's Depends say the same to apt).
    sed "s/@GLIBC@/$(glibc_floor "$BUNDLE")/" packaging/linux/README-linux.txt \
        >"$BUNDLE/README-linux.txt"
    tar -C "$DIST/bundle" --exclude=__pycache__ -czf "$tgz" vsr-desktop
    echo "tar.gz: $(du -h "$tgz" | cut -f1)" >&2
}

[[ ${SKIP_VENV:-0} == 1 ]] || setup_venv
[[ ${SKIP_BUNDLE:-0} == 1 && -x $BUNDLE/vsr ]] || build_bundle
"$BUNDLE/vsr" --version
build_deb
build_tarball
