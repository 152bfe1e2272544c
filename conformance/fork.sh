#!/usr/bin/env bash
# The module across fork() (conformance/pykcs11-fork.py): children of an
# initialised, logged-in parent start afresh with C_Initialize, sign on
# their own sessions, and leave the parent's connections and sessions
# untouched, whether they C_Finalize or just exit.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c 'import PyKCS11' 2>/dev/null || { echo "PyKCS11 missing: apt-get install python3-pykcs11" >&2; exit 1; }
start_deployment
init_token "fork token" so-pin-1234 user-pin-1234
pkcs11-tool --module "$HSMLINK_MODULE" --login --pin user-pin-1234 \
    --keypairgen --key-type EC:prime256v1 --id 01 --label fork-key >/dev/null 2>&1
/usr/bin/python3 "$ROOT/conformance/pykcs11-fork.py" "$HSMLINK_MODULE" user-pin-1234
