#!/usr/bin/env bash
# PyKCS11 scripts against the module (Debian's python3-pykcs11, importable
# from /usr/bin/python3).
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c 'import PyKCS11' 2>/dev/null || { echo "PyKCS11 missing: apt-get install python3-pykcs11" >&2; exit 1; }
start_deployment
/usr/bin/python3 "$ROOT/conformance/pykcs11-sessions.py" "$HSMLINK_MODULE"
