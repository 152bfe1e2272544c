#!/usr/bin/env bash
# python-pkcs11 (from PyPI) against the module: key generation (AES, RSA,
# EC), sign/verify, encrypt/decrypt, wrap/unwrap, attribute reads and
# writes, object search (conformance/python-pkcs11-check.py).
#
# The package goes into a virtual environment made in the script's temp dir
# by Debian's Python (/usr/bin/python3, package python3-venv), with the
# system site packages visible for pyca/cryptography (python3-cryptography).
# pip needs PyPI: without it the script fails and says so.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
PYTHON_PKCS11_VERSION=0.10.1
"$PY" -c 'import venv, ensurepip' 2>/dev/null || { echo "$PY cannot make a venv: apt-get install python3-venv" >&2; exit 1; }
"$PY" -c 'import cryptography' 2>/dev/null || { echo "pyca/cryptography missing: apt-get install python3-cryptography" >&2; exit 1; }

"$PY" -m venv --system-site-packages "$WORK/venv"
if ! "$WORK/venv/bin/pip" install --disable-pip-version-check -q "python-pkcs11==$PYTHON_PKCS11_VERSION" >"$WORK/pip.txt" 2>&1; then
    cat "$WORK/pip.txt" >&2
    echo "not ok - pip install python-pkcs11==$PYTHON_PKCS11_VERSION failed: PyPI unreachable or the package did not build" >&2
    exit 1
fi
echo "ok - python-pkcs11 $PYTHON_PKCS11_VERSION installed from PyPI into a venv"

# python-pkcs11's default AES template asks for encrypt, decrypt, sign,
# verify, wrap and unwrap at once, and the check wraps under such a key: the
# client's defaults, on a partition with the relaxed secure-template rules
# (README, Secure templates).
SECURE_TEMPLATES=relaxed
start_deployment
init_token "python token" so-pin-1234 user-pin-1234
"$WORK/venv/bin/python" "$ROOT/conformance/python-pkcs11-check.py" "$HSMLINK_MODULE" "python token" user-pin-1234
