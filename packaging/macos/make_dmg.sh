#!/usr/bin/env bash
# Build the macOS disk image from the PyInstaller .app, signing and notarising when the
# secrets are there (macOS runner; needs hdiutil, codesign, xcrun).
#
#   packaging/macos/make_dmg.sh dist/bundle/vsr-desktop.app dist/vsr-desktop-VERSION-macos-ARCH.dmg
#
# Signing (optional): MACOS_CODESIGN_IDENTITY ("Developer ID Application: …"), the certificate
# already imported into a keychain by the workflow. Notarisation (optional, needs signing):
# an App Store Connect API key — APPLE_API_KEY_P8_BASE64, APPLE_API_KEY_ID, APPLE_API_ISSUER.
# Without them the dmg is unsigned: it opens after right-click → Open (fine for CI's smoke).
set -euo pipefail

APP=${1:?path to the .app}
DMG=${2:?output .dmg}
HERE=$(cd "$(dirname "$0")" && pwd)
VOLNAME="vsr_desktop"
ENTITLEMENTS=$HERE/entitlements.plist

sign() {  # hardened runtime, secure timestamp, our entitlements
    codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" \
        --sign "$MACOS_CODESIGN_IDENTITY" "$@"
}

is_macho() { file -b "$1" | grep -q 'Mach-O'; }

# Inside out, without --deep (Apple: --deep is for verification only; it signs nested code
# with the outer bundle's entitlements and misses code outside the standard places):
#   1. every loose Mach-O file (.dylib, .so, executables) outside nested bundles,
#   2. each nested .framework (Qt's QtCore.framework, ...) as a bundle, deepest first —
#      signing a framework seals its Resources/Info.plist, which file-by-file signing never did,
#   3. the app's own executables in Contents/MacOS, 4. the .app itself.
sign_app() {
    local app=$1 file fw
    while IFS= read -r -d '' file; do
        is_macho "$file" && sign "$file"
    done < <(find "$app/Contents" -type f ! -path "*/MacOS/*" ! -path "*.framework/*" -print0)
    # Code inside frameworks (their Versions/A binaries and helpers) before the framework.
    while IFS= read -r -d '' fw; do
        while IFS= read -r -d '' file; do
            is_macho "$file" && sign "$file"
        done < <(find "$fw" -type f -perm -u+x -print0)
        sign "$fw"
    done < <(find "$app/Contents" -type d -name '*.framework' -print0 | sort -zr)
    for file in "$app/Contents/MacOS/"*; do sign "$file"; done
    sign "$app"
    codesign --verify --deep --strict --verbose=2 "$app"
}

if [[ -n ${MACOS_CODESIGN_IDENTITY:-} ]]; then
    echo "signing $APP as $MACOS_CODESIGN_IDENTITY" >&2
    sign_app "$APP"
fi

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "$VOLNAME" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG"

if [[ -n ${MACOS_CODESIGN_IDENTITY:-} ]]; then
    codesign --force --timestamp --sign "$MACOS_CODESIGN_IDENTITY" "$DMG"
    if [[ -n ${APPLE_API_KEY_P8_BASE64:-} && -n ${APPLE_API_KEY_ID:-} && -n ${APPLE_API_ISSUER:-} ]]; then
        echo "notarising $DMG" >&2
        key=$(mktemp -d)/AuthKey.p8
        echo "$APPLE_API_KEY_P8_BASE64" | base64 --decode >"$key"
        # One submission: the ticket covers the dmg and the signed .app inside it.
        xcrun notarytool submit "$DMG" --key "$key" --key-id "$APPLE_API_KEY_ID" \
            --issuer "$APPLE_API_ISSUER" --wait --timeout 2h --output-format json |
            tee "${DMG%.dmg}.notary.json"
        rm -f "$key"
        grep -q '"status" *: *"Accepted"' "${DMG%.dmg}.notary.json" ||
            { echo "notarisation not accepted (xcrun notarytool log ID)" >&2; exit 1; }
        xcrun stapler staple "$DMG"
        xcrun stapler validate "$DMG"
    fi
fi
echo "$DMG: $(du -h "$DMG" | cut -f1)" >&2
