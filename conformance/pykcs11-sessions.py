#!/usr/bin/python3
"""PyKCS11 (Debian python3-pykcs11) against libhsmlink_pkcs11.so: sessions
and C_CloseAllSessions, which the cryptoki crate does not expose.

Usage: pykcs11-sessions.py MODULE   (HSMLINK_CONF set by the caller)
"""
import sys

import PyKCS11

lib = PyKCS11.PyKCS11Lib()
lib.load(sys.argv[1])
slot = lib.getSlotList(tokenPresent=True)[0]

# A token never initialised has no sessions (as SoftHSMv2 answers too).
try:
    lib.openSession(slot)
except PyKCS11.PyKCS11Error as e:
    assert e.value == PyKCS11.CKR_TOKEN_NOT_RECOGNIZED, e
else:
    raise AssertionError("a session opened on an uninitialised token")
lib.initToken(slot, "so-pin-1234", "pykcs11 token")
label = lib.getTokenInfo(slot).label
assert label.strip() == "pykcs11 token", repr(label)
print("ok - C_InitToken")

rw = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
ro = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION)
info = lib.getTokenInfo(slot)
assert info.ulSessionCount == 2, info.ulSessionCount
assert info.ulRwSessionCount == 1, info.ulRwSessionCount
assert rw.getSessionInfo().state == PyKCS11.CKS_RW_PUBLIC_SESSION, rw.getSessionInfo().state
assert ro.getSessionInfo().state == PyKCS11.CKS_RO_PUBLIC_SESSION, ro.getSessionInfo().state
print("ok - sessions open with the right state")

lib.closeAllSessions(slot)
assert lib.getTokenInfo(slot).ulSessionCount == 0
for session in (rw, ro):
    try:
        session.getSessionInfo()
    except PyKCS11.PyKCS11Error as e:
        assert e.value == PyKCS11.CKR_SESSION_HANDLE_INVALID, e
    else:
        raise AssertionError("a closed session still answers")
print("ok - C_CloseAllSessions closes every session of the slot")
