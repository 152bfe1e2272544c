"""PKCS#11 through ctypes, as a C application sees it: C_GetInterface and
CK_FUNCTION_LIST_3_0, no headers. Shared by the conformance scripts."""
import ctypes as C
import sys

ULONG = C.c_ulong
RV = ULONG
HANDLE = ULONG
UNAVAILABLE = ULONG(-1).value

CKR_OK = 0x0
CKR_BUFFER_TOO_SMALL = 0x150
CKR_OPERATION_NOT_INITIALIZED = 0x91
CKR_USER_NOT_LOGGED_IN = 0x101
CKU_SO, CKU_USER, CKU_CONTEXT_SPECIFIC = 0, 1, 2
CKF_RW_SESSION, CKF_SERIAL_SESSION = 0x2, 0x4
CKF_FIND_OBJECTS = 0x40
CKA_CLASS, CKA_TOKEN, CKA_LABEL, CKA_VALUE = 0x0, 0x1, 0x3, 0x11
CKO_DATA = 0x0

NAMES = """Initialize Finalize GetInfo GetFunctionList GetSlotList GetSlotInfo GetTokenInfo
GetMechanismList GetMechanismInfo InitToken InitPIN SetPIN OpenSession CloseSession
CloseAllSessions GetSessionInfo GetOperationState SetOperationState Login Logout CreateObject
CopyObject DestroyObject GetObjectSize GetAttributeValue SetAttributeValue FindObjectsInit
FindObjects FindObjectsFinal EncryptInit Encrypt EncryptUpdate EncryptFinal DecryptInit Decrypt
DecryptUpdate DecryptFinal DigestInit Digest DigestUpdate DigestKey DigestFinal SignInit Sign
SignUpdate SignFinal SignRecoverInit SignRecover VerifyInit Verify VerifyUpdate VerifyFinal
VerifyRecoverInit VerifyRecover DigestEncryptUpdate DecryptDigestUpdate SignEncryptUpdate
DecryptVerifyUpdate GenerateKey GenerateKeyPair WrapKey UnwrapKey DeriveKey SeedRandom
GenerateRandom GetFunctionStatus CancelFunction WaitForSlotEvent GetInterfaceList GetInterface
LoginUser SessionCancel MessageEncryptInit EncryptMessage EncryptMessageBegin EncryptMessageNext
MessageEncryptFinal MessageDecryptInit DecryptMessage DecryptMessageBegin DecryptMessageNext
MessageDecryptFinal MessageSignInit SignMessage SignMessageBegin SignMessageNext MessageSignFinal
MessageVerifyInit VerifyMessage VerifyMessageBegin VerifyMessageNext MessageVerifyFinal""".split()
assert len(NAMES) == 92


class Version(C.Structure):
    _fields_ = [("major", C.c_ubyte), ("minor", C.c_ubyte)]


class FunctionList30(C.Structure):
    _fields_ = [("version", Version)] + [("C_" + n, C.c_void_p) for n in NAMES]


class Interface(C.Structure):
    _fields_ = [("name", C.c_char_p), ("functions", C.POINTER(FunctionList30)), ("flags", ULONG)]


class Attribute(C.Structure):
    _fields_ = [("type", ULONG), ("value", C.c_void_p), ("len", ULONG)]


P = C.c_void_p


def load(path):
    """The module's 3.0 function list."""
    lib = C.CDLL(path)
    interface = C.POINTER(Interface)()
    lib.C_GetInterface.restype = RV
    rv = lib.C_GetInterface(C.c_char_p(b"PKCS 11"), None, C.byref(interface), ULONG(0))
    assert rv == CKR_OK, hex(rv)
    functions = interface.contents.functions.contents
    assert (functions.version.major, functions.version.minor) == (3, 0)
    return functions


def fn(functions, name, *argtypes):
    return C.CFUNCTYPE(RV, *argtypes)(getattr(functions, "C_" + name))


def check(name, rv, expected=CKR_OK):
    if rv != expected:
        sys.exit(f"not ok - {name} returned {rv:#x}, expected {expected:#x}")


