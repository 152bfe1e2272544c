#!/usr/bin/env bash
# p11-kit: packaging/p11-kit/hsmlink.module, installed as a user module
# (~/.config/pkcs11/modules/, under a temporary HOME), makes
# `p11-kit list-modules` show hsmlink and its token, and programs loading
# p11-kit's proxy module (pkcs11-tool --module p11-kit-proxy.so) see the
# token beside the system's modules: listing, key generation, a signature
# checked by OpenSSL. GnuTLS's p11tool, which loads modules through p11-kit
# when given no --provider, sees the token too.
#
# p11-kit ignores user configuration in programs running as root ("skipping
# user config in program running as root"), so as root the clients run as
# nobody, with copies of the module and the tenant's client files they can
# read.
source "$(dirname "$0")/lib.sh"
for tool in p11-kit pkcs11-tool p11tool openssl; do
    command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install p11-kit opensc gnutls-bin openssl" >&2; exit 1; }
done
PROXY="$(pkg-config --variable=proxy_module p11-kit-1 2>/dev/null || true)"
[ -n "$PROXY" ] && [ -e "$PROXY" ] || PROXY="/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/p11-kit-proxy.so"
[ -e "$PROXY" ] || { echo "p11-kit-proxy.so missing: apt-get install p11-kit-modules" >&2; exit 1; }

start_deployment
init_token "p11kit token" so-pin-1234 user-pin-1234

# The client's side, readable by whoever runs the clients.
CLIENT="$WORK/client"
mkdir -p "$CLIENT/home/.config/pkcs11/modules"
cp "$HSMLINK_MODULE" "$CLIENT/libhsmlink_pkcs11.so"
cp "$WORK/deploy/ca.pem" "$WORK/deploy/demo.pem" "$WORK/deploy/demo-key.pem" "$CLIENT/"
sed "s|$WORK/deploy/|$CLIENT/|g" "$WORK/deploy/client.toml" >"$CLIENT/client.toml"
# The packaged file, with the module's path made absolute for this test.
sed "s|^module:.*|module: $CLIENT/libhsmlink_pkcs11.so|" "$ROOT/packaging/p11-kit/hsmlink.module" \
    >"$CLIENT/home/.config/pkcs11/modules/hsmlink.module"
grep -q '^critical: no$' "$CLIENT/home/.config/pkcs11/modules/hsmlink.module"
RUN=(env HOME="$CLIENT/home" XDG_CONFIG_HOME="$CLIENT/home/.config" HSMLINK_CONF="$CLIENT/client.toml")
if [ "$(id -u)" -eq 0 ]; then
    chmod 0711 "$WORK"
    chown -R 65534:65534 "$CLIENT"
    RUN=(setpriv --reuid=65534 --regid=65534 --clear-groups "${RUN[@]}")
fi

"${RUN[@]}" p11-kit list-modules >"$WORK/modules.txt" 2>&1
expect "p11-kit list-modules: hsmlink" "^hsmlink: $CLIENT/libhsmlink_pkcs11.so" "$WORK/modules.txt"
expect "p11-kit list-modules: library manufacturer" 'library-manufacturer: hsmlink' "$WORK/modules.txt"
expect "p11-kit list-modules: hsmlink's token" '^    token: p11kit token$' "$WORK/modules.txt"

P11=("${RUN[@]}" pkcs11-tool --module "$PROXY")
"${P11[@]}" -L >"$WORK/proxy-slots.txt" 2>&1
expect "proxy module: hsmlink's token listed" 'token label +: p11kit token' "$WORK/proxy-slots.txt"
expect "proxy module: manufacturer" 'token manufacturer +: hsmlink' "$WORK/proxy-slots.txt"
T=(--token-label "p11kit token" --login --pin user-pin-1234)
"${P11[@]}" "${T[@]}" --keypairgen --key-type EC:prime256v1 --id 01 --label via-proxy >"$WORK/gen.txt" 2>&1 \
    || { cat "$WORK/gen.txt" >&2; echo "not ok - key generation through the proxy" >&2; exit 1; }
expect "proxy module: EC key pair generated on the token" 'Private Key Object; EC' "$WORK/gen.txt"
head -c 300 /dev/urandom >"$WORK/msg"
chmod 0644 "$WORK/msg"
"${P11[@]}" "${T[@]}" --sign -m ECDSA-SHA256 --signature-format openssl --id 01 \
    -i "$WORK/msg" -o "$CLIENT/sig" >"$WORK/sign.txt" 2>&1 \
    || { cat "$WORK/sign.txt" >&2; echo "not ok - signature through the proxy" >&2; exit 1; }
"${P11[@]}" --token-label "p11kit token" --read-object --type pubkey --id 01 -o "$CLIENT/pub.der" >/dev/null 2>&1
openssl dgst -sha256 -verify <(openssl pkey -pubin -inform DER -in "$CLIENT/pub.der") \
    -signature "$CLIENT/sig" "$WORK/msg" >"$WORK/verify.txt" 2>&1
expect "proxy module: ECDSA signature verified by OpenSSL" '^Verified OK' "$WORK/verify.txt"

# Through the proxy module the token keeps its PKCS#11 URI.
"${RUN[@]}" p11tool --list-token-urls >"$WORK/p11tool.txt" 2>&1
expect "p11tool (p11-kit's module list): token URI" '^pkcs11:.*manufacturer=hsmlink;.*token=p11kit%20token$' "$WORK/p11tool.txt"
"${RUN[@]}" p11tool --list-all "pkcs11:token=p11kit%20token" >"$WORK/p11tool-objs.txt" 2>&1
expect "p11tool: the key made through the proxy, by URI" 'URL: pkcs11:.*token=p11kit%20token;id=%01;object=via-proxy;type=public' "$WORK/p11tool-objs.txt"
# A URI naming the library (RFC 7512 library-manufacturer) selects hsmlink's
# objects among p11-kit's modules (the trust module's certificates are not
# listed).
"${RUN[@]}" p11tool --list-all "pkcs11:library-manufacturer=hsmlink" >"$WORK/by-library.txt" 2>&1
expect "p11tool: objects by library URI" 'URL: pkcs11:.*token=p11kit%20token;id=%01;object=via-proxy;type=public' "$WORK/by-library.txt"
if grep 'URL:' "$WORK/by-library.txt" | grep -qv 'manufacturer=hsmlink'; then
    cat "$WORK/by-library.txt" >&2; echo "not ok - a library URI selected other modules' objects" >&2; exit 1
fi
echo "p11-kit: all ok"
