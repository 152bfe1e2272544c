#!/usr/bin/env bash
# Builds the Debian package hsmlink_<version>_<arch>.deb from a release build
# (dpkg-deb only: no debhelper, no cargo-deb).
#
#   packaging/build-deb.sh [OUT_DIR]        default OUT_DIR: target/debian
#   HSMLINK_BIN_DIR   where hsmlink-server and libhsmlink_pkcs11.so are
#                     (default target/release; build with
#                     cargo build --release --workspace --locked)
#
# Layout: /usr/sbin/hsmlink-server, /usr/lib/<triplet>/pkcs11/libhsmlink_pkcs11.so,
# /usr/include/hsmlink/hsmlink.h, /lib/systemd/system/hsmlink-server.service,
# /etc/hsmlink/{server,client}.toml.example, /usr/share/doc/hsmlink/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${HSMLINK_BIN_DIR:-$ROOT/target/release}"
OUT="${1:-$ROOT/target/debian}"
for f in "$BIN/hsmlink-server" "$BIN/libhsmlink_pkcs11.so"; do
    [ -f "$f" ] || { echo "build-deb: missing $f (cargo build --release --workspace)" >&2; exit 1; }
done

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n1)"
ARCH="$(dpkg --print-architecture)"
MULTIARCH="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)"
STAGE="$(mktemp -d)"
chmod 0755 "$STAGE"
trap 'rm -rf "$STAGE"' EXIT

install -D -m0755 "$BIN/hsmlink-server" "$STAGE/usr/sbin/hsmlink-server"
install -D -m0644 "$BIN/libhsmlink_pkcs11.so" \
    "$STAGE/usr/lib/$MULTIARCH/pkcs11/libhsmlink_pkcs11.so"
# Line tables are for our debugging, not for every installed machine.
objcopy --strip-debug "$STAGE/usr/sbin/hsmlink-server"
objcopy --strip-debug "$STAGE/usr/lib/$MULTIARCH/pkcs11/libhsmlink_pkcs11.so"
# The stripped server's integrity value, checked by its software integrity
# self-test at start (next to it: /usr/sbin/hsmlink-server.hmac).
"$STAGE/usr/sbin/hsmlink-server" integrity --write >/dev/null
install -D -m0644 "$ROOT/include/hsmlink.h" "$STAGE/usr/include/hsmlink/hsmlink.h"
install -D -m0644 "$ROOT/packaging/systemd/hsmlink-server.service" \
    "$STAGE/lib/systemd/system/hsmlink-server.service"

# Example configurations: what `init` writes for the service's layout, with
# the paths of a real installation (so they never drift from the code).
EXAMPLE="$STAGE/tmp-example"
"$BIN/hsmlink-server" init --dir "$EXAMPLE" --listen 0.0.0.0:7700 \
    --state-dir /var/lib/hsmlink --root-key-credential >/dev/null
for name in server client; do
    sed "s|$EXAMPLE|/etc/hsmlink|g" "$EXAMPLE/$name.toml" \
        >"$STAGE/$name.toml.example"
    install -D -m0644 "$STAGE/$name.toml.example" "$STAGE/etc/hsmlink/$name.toml.example"
    rm "$STAGE/$name.toml.example"
done
rm -rf "$EXAMPLE"

DOC="$STAGE/usr/share/doc/hsmlink"
install -D -m0644 "$ROOT/README.md" "$DOC/README.md"
if [ -f "$ROOT/packaging/p11-kit/hsmlink.module" ]; then
    # Not enabled system-wide: every p11-kit program would load the module,
    # configured or not. README says how to enable it.
    install -D -m0644 "$ROOT/packaging/p11-kit/hsmlink.module" "$DOC/examples/hsmlink.module"
fi
cat >"$DOC/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: hsmlink

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

mkdir -p "$STAGE/DEBIAN"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" \
    "$ROOT/packaging/debian/control.in" >"$STAGE/DEBIAN/control"
echo "Installed-Size: $(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)" >>"$STAGE/DEBIAN/control"
install -m0755 "$ROOT/packaging/debian/postinst" "$ROOT/packaging/debian/postrm" \
    "$ROOT/packaging/debian/prerm" "$STAGE/DEBIAN/"
printf '%s\n' /etc/hsmlink/server.toml.example /etc/hsmlink/client.toml.example \
    >"$STAGE/DEBIAN/conffiles"
(cd "$STAGE" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z \
    | xargs -0 md5sum >DEBIAN/md5sums)

mkdir -p "$OUT"
DEB="$OUT/hsmlink_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
