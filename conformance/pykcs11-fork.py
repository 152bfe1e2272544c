#!/usr/bin/python3
"""The module across fork(), as nginx, Apache or a pre-forking server use it
(PyKCS11, Debian's python3-pykcs11).

The parent initialises, logs in, finds its key pair and signs (so pooled TLS
connections exist when it forks). Then:
1. A child goes on WITHOUT C_Initialize: it signs on the parent's own session
   with the key handles the parent found before the fork, while the parent
   waits; the parent then signs on that session again.
2. Four children at once, while the parent keeps signing:
   - two go on without C_Initialize: they open sessions of their own, which
     are logged in already (login state is the application's, shared with
     the parent), find the same key handles and sign; one ends with
     C_Finalize, one just exits;
   - two call C_Initialize (CKR_OK: a fresh start, a new application
     instance): the parent's session is not theirs (CKR_SESSION_HANDLE_INVALID),
     they log in on a session of their own, find the key under the SAME
     handle as the parent (token-object handles are stable), and sign; one
     ends with C_Finalize, one just exits.
3. The parent is still logged in and signing: no child's C_Finalize or exit
   reached its connections or closed its sessions.
4. A parent that exits while its child lives: a child process initialises
   afresh, logs in, forks a grandchild and exits at once without C_Finalize;
   the grandchild, orphaned, goes on with its parent's session and signs.

Usage: pykcs11-fork.py MODULE PIN   (HSMLINK_CONF set by the caller; the
token holds an EC key pair with CKA_ID 01)
"""
import os
import select
import sys
import time

import PyKCS11

module, pin = sys.argv[1:3]
lib = PyKCS11.PyKCS11Lib()
lib.load(module)
slot = lib.getSlotList(tokenPresent=True)[0]
MECH = PyKCS11.Mechanism(PyKCS11.CKM_ECDSA_SHA256)
DATA = b"signed across fork" * 20
RW = PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION


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


def in_child(name, body):
    """Runs body() in a forked child; returns its pid. The child never
    returns into the parent's code."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body()
        except BaseException as e:  # report, never return into the parent's code
            print(f"not ok - {name}: {e!r}", flush=True)
            code = 1
        os._exit(code)
    return pid


def wait_ok(name, pid):
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        sys.exit(f"not ok - {name} failed (status {status})")


session = lib.openSession(slot, RW)
session.login(pin)
priv, pub = keys(session)
sign_and_verify(session, priv, pub, 3)
print("ok - parent: logged in and signing before fork")


# 1. The parent's own session, used by a child that did not re-initialise.
def same_session():
    info = session.getSessionInfo()
    assert info.state == PyKCS11.CKS_RW_USER_FUNCTIONS, f"state {info.state}"
    sign_and_verify(session, priv, pub, 5)


wait_ok("child on the parent's session", in_child("child on the parent's session", same_session))
sign_and_verify(session, priv, pub, 2)
print("ok - a child without C_Initialize signed on the parent's session with the parent's handles")


# 2. Four children at once.
def carry_on(finalize):
    own = lib.openSession(slot, RW)
    info = own.getSessionInfo()
    assert info.state == PyKCS11.CKS_RW_USER_FUNCTIONS, f"a new session in the child is not logged in: {info.state}"
    found_priv, found_pub = keys(own)
    assert (found_priv.value(), found_pub.value()) == (priv.value(), pub.value()), "handles changed"
    sign_and_verify(own, priv, pub, 10)
    own.closeSession()
    if finalize:
        assert lib.lib.C_Finalize() == PyKCS11.CKR_OK


def fresh_start(finalize):
    rv = lib.lib.C_Initialize()
    assert rv == PyKCS11.CKR_OK, f"C_Initialize in the child: {PyKCS11.CKR[rv]}"
    rv = rv_of(lambda: session.getSessionInfo())
    assert rv == PyKCS11.CKR_SESSION_HANDLE_INVALID, f"parent's session after C_Initialize: {PyKCS11.CKR[rv]}"
    own = lib.openSession(slot, RW)
    assert own.getSessionInfo().state == PyKCS11.CKS_RW_PUBLIC_SESSION, "a fresh start is not logged in"
    own.login(pin)
    found_priv, found_pub = keys(own)
    assert (found_priv.value(), found_pub.value()) == (priv.value(), pub.value()), \
        f"handles after C_Initialize: {found_priv.value()}, {found_pub.value()} != {priv.value()}, {pub.value()}"
    sign_and_verify(own, found_priv, found_pub, 10)
    if finalize:
        assert lib.lib.C_Finalize() == PyKCS11.CKR_OK


children = []
for i, (name, body) in enumerate([
    ("carry on, C_Finalize", lambda: carry_on(True)),
    ("carry on, exit", lambda: carry_on(False)),
    ("C_Initialize, C_Finalize", lambda: fresh_start(True)),
    ("C_Initialize, exit", lambda: fresh_start(False)),
]):
    children.append((name, in_child(name, body)))
    sign_and_verify(session, priv, pub, 3)  # the parent keeps working meanwhile
for name, pid in children:
    wait_ok(f"child '{name}'", pid)
print("ok - 4 children: 2 carried on (own sessions, already logged in, same handles), "
      "2 started afresh (C_Initialize, login, same handles); 10 signatures each")

# 3. The parent after its children's C_Finalize and exits.
info = session.getSessionInfo()
assert info.state == PyKCS11.CKS_RW_USER_FUNCTIONS, info.state
sign_and_verify(session, priv, pub, 5)
print("ok - parent: still logged in and signing after its children's C_Finalize and exits")


# 4. The parent exits, the child lives on.
def orphan_parent(write_end):
    assert lib.lib.C_Initialize() == PyKCS11.CKR_OK
    mine = lib.openSession(slot, RW)
    mine.login(pin)
    my_priv, my_pub = keys(mine)
    sign_and_verify(mine, my_priv, my_pub, 2)
    me = os.getpid()
    if os.fork() == 0:
        message = b"ok"
        try:
            deadline = time.monotonic() + 10
            while os.getppid() == me and time.monotonic() < deadline:
                time.sleep(0.01)
            assert os.getppid() != me, "the parent did not exit"
            time.sleep(0.2)  # the server sees the parent's connections close
            assert mine.getSessionInfo().state == PyKCS11.CKS_RW_USER_FUNCTIONS
            sign_and_verify(mine, my_priv, my_pub, 5)
        except BaseException as e:
            message = f"orphan: {e!r}".encode()
        os.write(write_end, message)
        os._exit(0)
    os._exit(0)  # no C_Finalize: the process just ends


read_end, write_end = os.pipe()
wait_ok("the child that exits", in_child("the child that exits", lambda: orphan_parent(write_end)))
os.close(write_end)
ready, _, _ = select.select([read_end], [], [], 30)
answer = os.read(read_end, 200) if ready else b"no answer within 30 s"
if answer != b"ok":
    sys.exit(f"not ok - a grandchild whose parent exited: {answer.decode(errors='replace')}")
print("ok - a child whose parent exited goes on with its parent's session and signs")

lib.closeAllSessions(slot)
print("pykcs11 fork: all ok")
