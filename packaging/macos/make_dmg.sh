#!/usr/bin/env bash
# Build the macOS disk image from the PyInstaller .app, signing and notarising when the
# secrets are there (macOS runner; needs hdiutil, codesign, xcrun).
#
#   packaging/macos/make_dmg.sh dist/bundle/vsr-desktop.app dist/vsr-desktop-VERSION-macos-ARCH.dmg
#
# Signing (optional): MACOS_CODESIGN_IDENTITY ("Developer ID Application: …"), the certificate
# already imported into a keychain by the workflow. Notarisation (optional, needs signing):
# APPLE_ID, APPLE_TEAM_ID, APPLE_APP_PASSWORD (an app-specific password). Without them the dmg
# is unsigned: it opens after right-click → Open, which is fine for CI's smoke test.
set -euo pipefail

APP=${1:?path to the .app}
DMG=${2:?output .dmg}
HERE=$(cd "$(dirname "$0")" && pwd)
VOLNAME="vsr_desktop"

if [[ -n ${MACOS_CODESIGN_IDENTITY:-} ]]; then
    echo "signing $APP as $MACOS_CODESIGN_IDENTITY" >&2
    # Inside out: every library and executable, then the bundle (--deep is deprecated).
    find "$APP/Contents" -type f \( -name '*.dylib' -o -name '*.so' -o -perm -u+x \) -print0 |
        xargs -0 codesign --force --timestamp --options runtime \
            --entitlements "$HERE/entitlements.plist" --sign "$MACOS_CODESIGN_IDENTITY"
    codesign --force --timestamp --options runtime --entitlements "$HERE/entitlements.plist" \
        --sign "$MACOS_CODESIGN_IDENTITY" "$APP"
    codesign --verify --strict --verbose=2 "$APP"
fi

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "$VOLNAME" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG"

if [[ -n ${MACOS_CODESIGN_IDENTITY:-} ]]; then
    codesign --force --timestamp --sign "$MACOS_CODESIGN_IDENTITY" "$DMG"
    if [[ -n ${APPLE_ID:-} && -n ${APPLE_TEAM_ID:-} && -n ${APPLE_APP_PASSWORD:-} ]]; then
        echo "notarising $DMG" >&2
        xcrun notarytool submit "$DMG" --apple-id "$APPLE_ID" --team-id "$APPLE_TEAM_ID" \
            --password "$APPLE_APP_PASSWORD" --wait
        xcrun stapler staple "$DMG"
    fi
fi
echo "$DMG: $(du -h "$DMG" | cut -f1)" >&2
