#!/usr/bin/env bash
# Java through SunPKCS11 (OpenJDK 17, Debian's openjdk-17-jdk-headless): a
# provider configuration file, `keytool -list` against the token, and a
# single-file program (conformance/java/Sign.java) signing with the token's
# RSA and EC keys through java.security.Signature, verified by the JDK and
# by the token, plus key generation, AES-GCM and a digest on the token.
source "$(dirname "$0")/lib.sh"
for tool in java keytool openssl pkcs11-tool; do
    command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install openjdk-17-jdk-headless openssl opensc" >&2; exit 1; }
done

start_deployment
init_token "java token" so-pin-1234 user-pin-1234
P11="pkcs11-tool --module $HSMLINK_MODULE --login --pin user-pin-1234"
$P11 --keypairgen --key-type rsa:2048 --id 01 --label rsa-key >/dev/null 2>&1
$P11 --keypairgen --key-type EC:prime256v1 --id 02 --label ec-key >/dev/null 2>&1
# Java's key store lists a private key only with its certificate (same
# CKA_ID): self-signed ones, made on the token through the OpenSSL engine.
engine_conf "$WORK/openssl.cnf"
for k in rsa:01 ec:02; do
    name="${k%%:*}"
    OPENSSL_CONF="$WORK/openssl.cnf" openssl req -x509 -engine pkcs11 -keyform engine \
        -key "pkcs11:token=java%20token;object=$name-key;type=private;pin-value=user-pin-1234" \
        -subj "/CN=hsmlink $name" -days 2 -outform DER -out "$WORK/$name.der" >"$WORK/req-$name.txt" 2>&1 \
        || { cat "$WORK/req-$name.txt" >&2; echo "not ok - certificate for $name" >&2; exit 1; }
    $P11 --write-object "$WORK/$name.der" --type cert --id "${k##*:}" --label "$name-key" >/dev/null 2>&1
done

cat >"$WORK/hsmlink.cfg" <<CFG
name = hsmlink
library = $HSMLINK_MODULE
slot = 0
CFG
KT=(keytool -list -storetype PKCS11 -providerclass sun.security.pkcs11.SunPKCS11 -providerarg "$WORK/hsmlink.cfg")
"${KT[@]}" -storepass user-pin-1234 >"$WORK/keytool.txt" 2>&1 \
    || { cat "$WORK/keytool.txt" >&2; echo "not ok - keytool -list" >&2; exit 1; }
expect "keytool: provider SunPKCS11-hsmlink" 'Keystore provider: SunPKCS11-hsmlink' "$WORK/keytool.txt"
expect "keytool: 2 entries" 'Your keystore contains 2 entries' "$WORK/keytool.txt"
expect "keytool: RSA key entry" '^rsa-key, PrivateKeyEntry' "$WORK/keytool.txt"
expect "keytool: EC key entry" '^ec-key, PrivateKeyEntry' "$WORK/keytool.txt"
fp="$(openssl x509 -inform DER -in "$WORK/rsa.der" -noout -fingerprint -sha256 | sed 's/.*=//')"
expect "keytool: the RSA certificate's fingerprint" "$fp" "$WORK/keytool.txt"
if "${KT[@]}" -storepass wrong-pin-1 >"$WORK/keytool-wrong.txt" 2>&1; then
    echo "not ok - keytool accepted a wrong PIN" >&2; exit 1
fi
expect "keytool: wrong PIN refused" 'CKR_PIN_INCORRECT|load failed' "$WORK/keytool-wrong.txt"

# The program prints its checks to stdout (stderr: the JVM's own notes).
java "$ROOT/conformance/java/Sign.java" "$WORK/hsmlink.cfg" user-pin-1234 >"$WORK/java.txt" 2>"$WORK/java-err.txt" \
    || { cat "$WORK/java.txt" "$WORK/java-err.txt" >&2; echo "not ok - Sign.java" >&2; exit 1; }
cat "$WORK/java.txt"
expect "Sign.java finished" '^java: all ok$' "$WORK/java.txt"
