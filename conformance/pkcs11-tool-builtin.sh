#!/usr/bin/env bash
# pkcs11-tool's own test suites through the module: --test (digests, signatures,
# verification, decryption, random with the token's RSA key), --test-ec
# (EC key pair generation, attribute changes, signature, deletion),
# --test-fork (C_Initialize again in a forked child) and --test-threads
# (C_Initialize, C_GetInfo, C_GetSlotList, C_GetTokenInfo from several
# threads at once while the main thread runs --test).
#
# --allow-sw: pkcs11-tool's signature tests only pick mechanisms flagged
# CKF_HW unless told otherwise, and the software HSM does not claim CKF_HW.
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
$L --test --allow-sw >"$WORK/test.txt" 2>&1
expect "pkcs11-tool --test" '^No errors' "$WORK/test.txt"
expect "--test signs with the token key" 'all 4 signature functions seem to work' "$WORK/test.txt"
expect "--test: SHA256-RSA-PKCS signature" 'SHA256-RSA-PKCS: OK' "$WORK/test.txt"
if grep -q 'ERR' "$WORK/test.txt"; then cat "$WORK/test.txt" >&2; echo "not ok - errors in --test" >&2; exit 1; fi

$L --session-rw --test-ec --id 02 --key-type EC:prime256v1 >"$WORK/test-ec.txt" 2>&1
expect "pkcs11-tool --test-ec" '==> OK' "$WORK/test-ec.txt"

# --test-fork: the child calls C_Initialize after fork() (the parent's state
# is discarded, its TLS streams untouched); the parent then runs --test.
$L --test-fork --test --allow-sw >"$WORK/test-fork.txt" 2>&1
expect "--test-fork: child initialised" 'C_Initialize in forked child process' "$WORK/test-fork.txt"
expect "--test-fork: parent carries on" '^No errors' "$WORK/test-fork.txt"

# --test-threads: each argument is a series of two-letter commands, no
# separators (pkcs11-tool 0.23 knows IN, IL, GI, SL, Tn, Pn; LT came with
# 0.24, and an unknown command ends the thread with CKR_GENERAL_ERROR while
# the tool still exits 0, so the per-thread lines are what is checked).
$L --test-threads ILGISLT0 --test-threads INGISLT0 --test-threads ILSLT0GI \
    --test-threads INSLT0 --test --allow-sw >"$WORK/test-threads.txt" 2>&1
expect "--test-threads: every thread ended with CKR_OK" 'all threads have ended with CKR_OK' "$WORK/test-threads.txt"
n="$(grep -c 'state:-1, rv:CKR_OK' "$WORK/test-threads.txt" || true)"
[ "$n" -eq 4 ] || { cat "$WORK/test-threads.txt" >&2; echo "not ok - $n of 4 threads ended with CKR_OK" >&2; exit 1; }
echo "ok - --test-threads: 4 threads ended with CKR_OK"
n="$(grep -c 'C_GetTokenInfo from slot_index 0' "$WORK/test-threads.txt" || true)"
[ "$n" -eq 4 ] || { cat "$WORK/test-threads.txt" >&2; echo "not ok - $n of 4 threads read the token" >&2; exit 1; }
if grep -Eq 'Unknown test|returned CKR_(GENERAL_ERROR|CRYPTOKI_NOT_INITIALIZED|DEVICE_ERROR)' "$WORK/test-threads.txt"; then
    cat "$WORK/test-threads.txt" >&2; echo "not ok - a thread failed" >&2; exit 1
fi
expect "--test-threads: main thread's --test" '^No errors' "$WORK/test-threads.txt"
echo "pkcs11-tool built-in tests: all ok"
