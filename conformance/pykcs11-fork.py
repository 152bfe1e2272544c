#!/usr/bin/python3
"""The module across fork(), as nginx, Apache or a pre-forking server use it
(PyKCS11, Debian's python3-pykcs11).

The parent initialises, logs in and signs (so pooled TLS connections exist
when it forks), then forks four children while it keeps signing. Each child:
- sees the library as not initialised until it calls C_Initialize itself
  (CKR_CRYPTOKI_NOT_INITIALIZED), never touching the parent's connections;
- after C_Initialize is a new application instance: the parent's session
  handle is not its own (CKR_SESSION_HANDLE_INVALID);
- opens its own session, logs in, signs and verifies;
- ends with C_Finalize (two children) or just exits (two children).
The parent's session must stay logged in and usable throughout, and its
signatures keep verifying: nothing a child did reached the parent's
connections or sessions.

Usage: pykcs11-fork.py MODULE PIN   (HSMLINK_CONF set by the caller; the
token holds an EC key pair with CKA_ID 01)
"""
import os
import sys

import PyKCS11

module, pin = sys.argv[1:3]
lib = PyKCS11.PyKCS11Lib()
lib.load(module)
slot = lib.getSlotList(tokenPresent=True)[0]
MECH = PyKCS11.Mechanism(PyKCS11.CKM_ECDSA_SHA256)
DATA = b"signed across fork" * 20


def keys(session):
    priv = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_ID, (1,))])
    pub = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_ID, (1,))])
    assert len(priv) == 1 and len(pub) == 1, (priv, pub)
    return priv[0], pub[0]


def sign_and_verify(session, priv, pub, n):
    for _ in range(n):
        sig = bytes(session.sign(priv, DATA, MECH))
        if not session.verify(pub, DATA, sig, MECH):
            raise AssertionError("signature did not verify")


def rv_of(call):
    try:
        call()
    except PyKCS11.PyKCS11Error as e:
        return e.value
    return PyKCS11.CKR_OK


def child(parent_session, finalize):
    rv = rv_of(lambda: lib.getSlotList())
    assert rv == PyKCS11.CKR_CRYPTOKI_NOT_INITIALIZED, f"before C_Initialize: {PyKCS11.CKR[rv]}"
    rv = rv_of(lambda: parent_session.getSessionInfo())
    assert rv == PyKCS11.CKR_CRYPTOKI_NOT_INITIALIZED, f"parent's session before C_Initialize: {PyKCS11.CKR[rv]}"
    rv = lib.lib.C_Initialize()
    assert rv == PyKCS11.CKR_OK, f"C_Initialize in the child: {PyKCS11.CKR[rv]}"
    rv = rv_of(lambda: parent_session.getSessionInfo())
    assert rv == PyKCS11.CKR_SESSION_HANDLE_INVALID, f"parent's session in the child: {PyKCS11.CKR[rv]}"
    session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    session.login(pin)
    priv, pub = keys(session)
    sign_and_verify(session, priv, pub, 10)
    if finalize:
        assert lib.lib.C_Finalize() == PyKCS11.CKR_OK


session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
session.login(pin)
priv, pub = keys(session)
sign_and_verify(session, priv, pub, 3)
print("ok - parent: logged in and signing before fork")

children = []
for i in range(4):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            child(session, finalize=(i % 2 == 0))
        except BaseException as e:  # report, never return into the parent's code
            print(f"not ok - child {i}: {e!r}", flush=True)
            code = 1
        os._exit(code)
    children.append(pid)
    sign_and_verify(session, priv, pub, 3)  # the parent keeps working meanwhile

for i, pid in enumerate(children):
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        sys.exit(f"not ok - child {i} failed (status {status})")
print("ok - 4 children: not initialised after fork, C_Initialize, own session, login, 10 signatures each")

info = session.getSessionInfo()
assert info.state == PyKCS11.CKS_RW_USER_FUNCTIONS, info.state
sign_and_verify(session, priv, pub, 5)
print("ok - parent: still logged in and signing after its children's C_Finalize and exits")
lib.closeAllSessions(slot)
print("pykcs11 fork: all ok")
