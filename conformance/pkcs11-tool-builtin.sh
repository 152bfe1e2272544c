#!/usr/bin/env bash
# pkcs11-tool's own test suites through the module: --test (digests, signatures,
# verification, decryption, random with the token's RSA key) and --test-ec
# (EC key pair generation, attribute changes, signature, deletion).
source "$(dirname "$0")/lib.sh"
command -v pkcs11-tool >/dev/null || { echo "pkcs11-tool missing: apt-get install opensc" >&2; exit 1; }

start_deployment
P11="pkcs11-tool --module $HSMLINK_MODULE"
PIN=user-pin-1234
$P11 --init-token --label builtin --so-pin so-pin-1234 >/dev/null 2>&1
$P11 --init-pin --so-pin so-pin-1234 --pin first-pin >/dev/null 2>&1
$P11 --change-pin --pin first-pin --new-pin "$PIN" >/dev/null 2>&1
L="$P11 --login --pin $PIN"

$L --keypairgen --key-type rsa:2048 --id 01 --label rsa >/dev/null 2>&1
$L --test >"$WORK/test.txt" 2>&1
expect "pkcs11-tool --test" '^No errors' "$WORK/test.txt"
if grep -q 'ERR' "$WORK/test.txt"; then cat "$WORK/test.txt" >&2; echo "not ok - errors in --test" >&2; exit 1; fi

$L --session-rw --test-ec --id 02 --key-type EC:prime256v1 >"$WORK/test-ec.txt" 2>&1
expect "pkcs11-tool --test-ec" '==> OK' "$WORK/test-ec.txt"
echo "pkcs11-tool built-in tests: all ok"
