#!/usr/bin/env bash
# The module across fork() (conformance/pykcs11-fork.py): children of an
# initialised, logged-in parent either go on with the parent's sessions,
# login state and object handles without calling C_Initialize, or start
# afresh with C_Initialize and find the same object handles; the parent's
# connections and sessions stay untouched whether a child calls C_Finalize
# or just exits, and a child outlives its parent.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c 'import PyKCS11' 2>/dev/null || { echo "PyKCS11 missing: apt-get install python3-pykcs11" >&2; exit 1; }
start_deployment
init_token "fork token" so-pin-1234 user-pin-1234
pkcs11-tool --module "$HSMLINK_MODULE" --login --pin user-pin-1234 \
    --keypairgen --key-type EC:prime256v1 --id 01 --label fork-key >/dev/null 2>&1
/usr/bin/python3 "$ROOT/conformance/pykcs11-fork.py" "$HSMLINK_MODULE" user-pin-1234
