#!/usr/bin/env bash
# Builds the .deb, installs it with dpkg -i, starts the installed server the
# way its systemd unit does (as the hsmlink user, the root key as a systemd
# credential, the store in a state directory) and runs pkcs11-tool against
# the installed module. Purges the package at the end.
#
# Needs root (dpkg -i, the service user). Not root: says so and exits 0 after
# checking the package's contents only.
#   HSMLINK_BIN_DIR  the release build to package (default target/release)
set -euo pipefail
trap 'echo "not ok - line $LINENO failed: $BASH_COMMAND" >&2' ERR
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
chmod 0755 "$WORK"
SERVER_PID=""
INSTALLED=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "$INSTALLED" ]; then dpkg --purge hsmlink >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

DEB="$(bash "$ROOT/packaging/build-deb.sh" "$WORK/out")"
MULTIARCH="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)"
MODULE="/usr/lib/$MULTIARCH/pkcs11/libhsmlink_pkcs11.so"

dpkg-deb --contents "$DEB" >"$WORK/contents"
for path in "./usr/sbin/hsmlink-server" ".$MODULE" "./usr/include/hsmlink/hsmlink.h" \
    "./lib/systemd/system/hsmlink-server.service" "./etc/hsmlink/server.toml.example"; do
    grep -q " $path\$" "$WORK/contents" || { echo "not ok - $path missing from the package" >&2; exit 1; }
done
echo "ok - the package holds the server, the module, the header, the unit and the examples"
dpkg-deb --field "$DEB" Package Version Architecture | tee "$WORK/fields" >/dev/null
grep -q '^Package: hsmlink$' "$WORK/fields"
echo "ok - control fields"

if [ "$(id -u)" -ne 0 ]; then
    echo "ok - skipped: installing needs root (dpkg -i)"
    exit 0
fi
if dpkg -s hsmlink >/dev/null 2>&1; then
    echo "not ok - hsmlink is already installed here; refusing to replace it" >&2
    exit 1
fi
dpkg -i "$DEB" >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; exit 1; }
INSTALLED=1
echo "ok - dpkg -i"
getent passwd hsmlink >/dev/null
[ -x /usr/sbin/hsmlink-server ] && [ -f "$MODULE" ]
echo "ok - installed files and the hsmlink system user"
/usr/sbin/hsmlink-server --help | grep -q 'init'

# The unit: hardening present; verified by systemd where it can run here.
UNIT=/lib/systemd/system/hsmlink-server.service
for line in 'User=hsmlink' 'ProtectSystem=strict' 'StateDirectory=hsmlink' 'NoNewPrivileges=yes' \
    '^CapabilityBoundingSet=$' 'LoadCredential=hsmlink-root-key:'; do
    grep -Eq -- "$line" "$UNIT" || { echo "not ok - $line missing from the unit" >&2; exit 1; }
done
echo "ok - the unit's hardening"
if command -v systemd-analyze >/dev/null 2>&1; then
    if systemd-analyze verify "$UNIT" >"$WORK/verify.log" 2>&1; then
        echo "ok - systemd-analyze verify"
    else
        # Without a running systemd, verify may fail for reasons outside the
        # unit (no D-Bus); a syntax problem names the unit file.
        if grep -q "hsmlink-server.service:" "$WORK/verify.log"; then
            cat "$WORK/verify.log" >&2; exit 1
        fi
        echo "ok - systemd-analyze verify found nothing in the unit ($(head -n1 "$WORK/verify.log"))"
    fi
fi

# The service's layout, as ExecStart= / LoadCredential= / StateDirectory= make it.
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ETC="$WORK/etc"
APORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
/usr/sbin/hsmlink-server init --dir "$ETC" --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$APORT" \
    --state-dir "$WORK/state" --root-key-credential >/dev/null
if grep -q '^root_key_file' "$ETC/server.toml"; then echo "not ok - root key in server.toml" >&2; exit 1; fi
chmod 0755 "$ETC"
chgrp hsmlink "$ETC/server-key.pem" && chmod 0640 "$ETC/server-key.pem"
install -d -m0700 -o hsmlink -g hsmlink "$WORK/state"
install -d -m0500 -o hsmlink -g hsmlink "$WORK/credentials"
install -m0400 -o hsmlink -g hsmlink "$ETC/root.key" "$WORK/credentials/hsmlink-root-key"
setpriv --reuid=hsmlink --regid=hsmlink --init-groups --no-new-privs \
    env CREDENTIALS_DIRECTORY="$WORK/credentials" \
    /usr/sbin/hsmlink-server run --config "$ETC/server.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "not ok - server died" >&2; exit 1; }
    sleep 0.1
done
[ "$(ps -o user= -p "$SERVER_PID")" = hsmlink ] || { echo "not ok - server not running as hsmlink" >&2; exit 1; }
echo "ok - the installed server runs as hsmlink with the root key from the credential"
[ -f /usr/sbin/hsmlink-server.hmac ] || { echo "not ok - no integrity value installed" >&2; exit 1; }
for _ in $(seq 1 50); do grep -q 'software integrity test passed' "$WORK/server.log" && break; sleep 0.1; done
grep -q 'software integrity test passed' "$WORK/server.log" || { cat "$WORK/server.log" >&2; echo "not ok - integrity test" >&2; exit 1; }
echo "ok - the installed server passes its software integrity test"
[ -f "$WORK/state/hsmlink.db" ] && [ "$(stat -c %U "$WORK/state/hsmlink.db")" = hsmlink ]
echo "ok - the store is in the state directory, owned by the service user"

# The installed module, through pkcs11-tool.
export HSMLINK_CONF="$ETC/client.toml"
chmod 0644 "$ETC"/demo-key.pem   # the tenant's key, read by this (root) client anyway
P11=(pkcs11-tool --module "$MODULE")
"${P11[@]}" --list-slots >"$WORK/slots"
grep -q 'hsmlink' "$WORK/slots" || { cat "$WORK/slots" >&2; exit 1; }
"${P11[@]}" --init-token --so-pin 12345678 --label packaged >/dev/null 2>&1
"${P11[@]}" --login --login-type so --so-pin 12345678 --init-pin --pin 11111111 >/dev/null 2>&1
"${P11[@]}" --login --pin 11111111 --change-pin --new-pin 22223333 >/dev/null 2>&1
"${P11[@]}" --login --pin 22223333 --keypairgen --key-type EC:prime256v1 --label k --id 01 >/dev/null 2>&1
printf 'signed by the packaged hsmlink' >"$WORK/data"
"${P11[@]}" --login --pin 22223333 --sign --mechanism ECDSA-SHA256 --id 01 \
    --input-file "$WORK/data" --output-file "$WORK/sig" >/dev/null 2>&1
[ "$(stat -c %s "$WORK/sig")" -eq 64 ]
"${P11[@]}" --login --pin 22223333 --verify --mechanism ECDSA-SHA256 --id 01 \
    --input-file "$WORK/data" --signature-file "$WORK/sig" >"$WORK/verify" 2>&1
grep -q 'Signature is valid' "$WORK/verify" || { cat "$WORK/verify" >&2; exit 1; }
echo "ok - pkcs11-tool through the installed module: token, PINs, EC key, signature"

kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
dpkg --purge hsmlink >/dev/null; INSTALLED=""
if getent passwd hsmlink >/dev/null || [ -e /usr/sbin/hsmlink-server ]; then
    echo "not ok - purge left the user or the server behind" >&2; exit 1
fi
echo "ok - dpkg --purge removes the package and its user"
