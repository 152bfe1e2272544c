#!/usr/bin/env bash
# Python against the module: PyKCS11 (Debian's python3-pykcs11, importable
# from /usr/bin/python3), and plain ctypes for the 3.0 calls no binding has.
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c 'import PyKCS11' 2>/dev/null || { echo "PyKCS11 missing: apt-get install python3-pykcs11" >&2; exit 1; }
/usr/bin/python3 -c 'import cryptography' 2>/dev/null || { echo "pyca/cryptography missing: apt-get install python3-cryptography" >&2; exit 1; }
start_deployment
/usr/bin/python3 "$ROOT/conformance/pykcs11-sessions.py" "$HSMLINK_MODULE"

# The 3.0 calls no binding exposes, through ctypes, on a fresh deployment.
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""; rm -rf "$WORK/deploy"
start_deployment
/usr/bin/python3 "$ROOT/conformance/ctypes-pkcs11-30.py" "$HSMLINK_MODULE"

# AES modes against independent implementations, and the buffer lifecycle.
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""; rm -rf "$WORK/deploy"
start_deployment
/usr/bin/python3 "$ROOT/conformance/ctypes-aes-modes.py" "$HSMLINK_MODULE"
