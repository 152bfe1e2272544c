//! The C ABI as an application sees it: through the function lists.
//!
//! Tests that initialise the library hold `GLOBAL_STATE` (there is one
//! library state per process) and leave it finalised.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test

use std::ffi::{CStr, c_void};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmlink_protocol::{Attribute, AttributeValue, Request, SessionHandle, SlotId, UserType};
use parking_lot::MutexGuard;

use super::out::OutBuf;
use super::{C_GetFunctionList, C_GetInterface, C_GetInterfaceList, guard};
use crate::config::test_override;
use crate::error::Error;
use crate::state;
use crate::test_support::{Behaviour, FakeServer, GLOBAL_STATE, Pki, closed_port};

#[allow(clippy::useless_conversion)] // CK_ULONG is u32 on some targets
fn w(value: CK_ULONG) -> u64 {
    u64::from(value)
}

fn functions() -> &'static CK_FUNCTION_LIST {
    let mut list: *mut CK_FUNCTION_LIST = null_mut();
    // SAFETY: a valid place for the pointer.
    assert_eq!(unsafe { C_GetFunctionList(&mut list) }, CKR_OK);
    // SAFETY: C_GetFunctionList returned a pointer to a static list.
    unsafe { &*list }
}

fn functions_3_0() -> &'static CK_FUNCTION_LIST_3_0 {
    let mut interface: *mut CK_INTERFACE = null_mut();
    // SAFETY: NULL name and version ask for the default interface.
    let rv = unsafe { C_GetInterface(null_mut(), null_mut(), &mut interface, 0) };
    assert_eq!(rv, CKR_OK);
    // SAFETY: C_GetInterface returned a pointer to a static interface whose
    // function list is the 3.0 one.
    unsafe { &*(*interface).pFunctionList.cast::<CK_FUNCTION_LIST_3_0>() }
}

/// Takes the global state for one test, finalised at both ends.
struct Library<'a> {
    _lock: MutexGuard<'a, ()>,
}

impl Library<'_> {
    fn lock() -> Self {
        let lock = GLOBAL_STATE.lock();
        finalize_quietly();
        test_override::set(None);
        Self { _lock: lock }
    }

    fn initialize(&self, config: std::path::PathBuf) -> CK_RV {
        test_override::set(Some(config));
        // SAFETY: NULL pInitArgs is allowed.
        unsafe { functions().C_Initialize.unwrap()(null_mut()) }
    }
}

impl Drop for Library<'_> {
    fn drop(&mut self) {
        finalize_quietly();
        test_override::set(None);
    }
}

fn finalize_quietly() {
    // SAFETY: NULL pReserved.
    let _ = unsafe { functions().C_Finalize.unwrap()(null_mut()) };
}

fn init_args(mutexes: [bool; 4], flags: CK_FLAGS, reserved: *mut c_void) -> CK_C_INITIALIZE_ARGS {
    unsafe extern "C" fn create(_: *mut *mut c_void) -> CK_RV {
        CKR_OK
    }
    unsafe extern "C" fn other(_: *mut c_void) -> CK_RV {
        CKR_OK
    }
    CK_C_INITIALIZE_ARGS {
        CreateMutex: mutexes[0].then_some(create as _),
        DestroyMutex: mutexes[1].then_some(other as _),
        LockMutex: mutexes[2].then_some(other as _),
        UnlockMutex: mutexes[3].then_some(other as _),
        flags,
        pReserved: reserved,
    }
}

fn initialize_with(args: &mut CK_C_INITIALIZE_ARGS) -> CK_RV {
    // SAFETY: a valid CK_C_INITIALIZE_ARGS.
    unsafe { functions().C_Initialize.unwrap()((args as *mut CK_C_INITIALIZE_ARGS).cast()) }
}

#[test]
fn every_function_list_slot_is_set() {
    let list = functions();
    assert_eq!((list.version.major, list.version.minor), (2, 40));
    let shown = format!("{list:?}");
    assert!(!shown.contains("None"), "{shown}");
    assert_eq!(shown.matches("Some(").count(), 68);

    let list = functions_3_0();
    assert_eq!((list.version.major, list.version.minor), (3, 0));
    let shown = format!("{list:?}");
    assert!(!shown.contains("None"), "{shown}");
    assert_eq!(shown.matches("Some(").count(), 92);
}

#[test]
fn get_function_list_checks_its_argument() {
    // SAFETY: NULL is the case under test.
    assert_eq!(unsafe { C_GetFunctionList(null_mut()) }, CKR_ARGUMENTS_BAD);
}

#[test]
fn interface_list() {
    let mut count: CK_ULONG = 0;
    // SAFETY: NULL list: size query.
    let rv = unsafe { C_GetInterfaceList(null_mut(), &mut count) };
    assert_eq!(rv, CKR_OK);
    assert_eq!(count, 2);

    let mut interfaces = [CK_INTERFACE {
        pInterfaceName: null_mut(),
        pFunctionList: null_mut(),
        flags: 99,
    }; 2];
    let mut short: CK_ULONG = 1;
    // SAFETY: room for `short` entries.
    let rv = unsafe { C_GetInterfaceList(interfaces.as_mut_ptr(), &mut short) };
    assert_eq!((rv, short), (CKR_BUFFER_TOO_SMALL, 2));

    // SAFETY: room for `count` entries.
    let rv = unsafe { C_GetInterfaceList(interfaces.as_mut_ptr(), &mut count) };
    assert_eq!((rv, count), (CKR_OK, 2));
    let mut versions = Vec::new();
    for interface in &interfaces {
        // SAFETY: the names are static NUL-terminated strings.
        let name = unsafe { CStr::from_ptr(interface.pInterfaceName.cast()) };
        assert_eq!(name, c"PKCS 11");
        assert_eq!(interface.flags, 0);
        // SAFETY: every function list starts with its CK_VERSION.
        let version = unsafe { *interface.pFunctionList.cast::<CK_VERSION>() };
        versions.push((version.major, version.minor));
    }
    assert_eq!(versions, [(3, 0), (2, 40)]);

    // SAFETY: NULL pulCount is the case under test.
    let rv = unsafe { C_GetInterfaceList(interfaces.as_mut_ptr(), null_mut()) };
    assert_eq!(rv, CKR_ARGUMENTS_BAD);
}

#[test]
fn get_interface_selects_by_name_version_and_flags() {
    let get = |name: Option<&CStr>, version: Option<(u8, u8)>, flags: CK_FLAGS| {
        let mut version = version.map(|(major, minor)| CK_VERSION { major, minor });
        let version_ptr = version
            .as_mut()
            .map_or(null_mut(), |v| v as *mut CK_VERSION);
        let name_ptr = name
            .map_or(null(), CStr::as_ptr)
            .cast_mut()
            .cast::<CK_UTF8CHAR>();
        let mut interface: *mut CK_INTERFACE = null_mut();
        // SAFETY: valid or NULL arguments.
        let rv = unsafe { C_GetInterface(name_ptr, version_ptr, &mut interface, flags) };
        if rv != CKR_OK {
            return Err(rv);
        }
        // SAFETY: a static interface and its static function list.
        let version = unsafe { *(*interface).pFunctionList.cast::<CK_VERSION>() };
        Ok((version.major, version.minor))
    };
    assert_eq!(get(None, None, 0), Ok((3, 0)));
    assert_eq!(get(Some(c"PKCS 11"), None, 0), Ok((3, 0)));
    assert_eq!(get(Some(c"PKCS 11"), Some((2, 40)), 0), Ok((2, 40)));
    assert_eq!(get(None, Some((3, 0)), 0), Ok((3, 0)));
    assert_eq!(
        get(Some(c"Vendor hsmlink"), None, 0),
        Err(CKR_FUNCTION_FAILED)
    );
    assert_eq!(get(None, Some((3, 1)), 0), Err(CKR_FUNCTION_FAILED));
    assert_eq!(
        get(None, None, CKF_INTERFACE_FORK_SAFE),
        Err(CKR_FUNCTION_FAILED)
    );

    // SAFETY: NULL ppInterface is the case under test.
    let rv = unsafe { C_GetInterface(null_mut(), null_mut(), null_mut(), 0) };
    assert_eq!(rv, CKR_ARGUMENTS_BAD);
}

#[test]
fn calls_before_initialize_are_refused() {
    let _library = Library::lock();
    let f = functions();
    let mut count: CK_ULONG = 0;
    let mut info = CK_INFO::default();
    // SAFETY: valid pointers throughout.
    unsafe {
        assert_eq!(
            f.C_GetInfo.unwrap()(&mut info),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), &mut count),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(
            f.C_Login.unwrap()(1, CKU_USER, null_mut(), 0),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(
            f.C_GetFunctionStatus.unwrap()(1),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(
            f.C_Finalize.unwrap()(null_mut()),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(
            functions_3_0().C_MessageVerifyFinal.unwrap()(1),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
    }
}

#[test]
fn initialize_checks_its_arguments() {
    let library = Library::lock();
    let pki = Pki::new();
    let config = pki.config(&[closed_port()], "");
    test_override::set(Some(config));

    let mut reserved = 1u8;
    let mut args = init_args([false; 4], 0, (&raw mut reserved).cast());
    assert_eq!(initialize_with(&mut args), CKR_ARGUMENTS_BAD);
    let mut args = init_args([true, true, false, true], CKF_OS_LOCKING_OK, null_mut());
    assert_eq!(initialize_with(&mut args), CKR_ARGUMENTS_BAD);
    let mut args = init_args([true; 4], 0, null_mut());
    assert_eq!(initialize_with(&mut args), CKR_CANT_LOCK);
    assert!(state::library().is_err(), "nothing was initialised");

    let mut args = init_args([true; 4], CKF_OS_LOCKING_OK, null_mut());
    assert_eq!(initialize_with(&mut args), CKR_OK);
    let mut args = init_args([false; 4], 0, null_mut());
    assert_eq!(initialize_with(&mut args), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    assert_eq!(
        library.initialize(pki.config(&[closed_port()], "")),
        CKR_CRYPTOKI_ALREADY_INITIALIZED
    );

    let f = functions();
    let mut reserved = 1u8;
    // SAFETY: the non-NULL pReserved is the case under test; never dereferenced.
    unsafe {
        assert_eq!(
            f.C_Finalize.unwrap()((&raw mut reserved).cast()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
        assert_eq!(
            f.C_Finalize.unwrap()(null_mut()),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
    }
    // And again from the start.
    assert_eq!(initialize_with(&mut args), CKR_OK);
}

#[test]
fn a_bad_configuration_fails_initialize() {
    let library = Library::lock();
    let pki = Pki::new();
    let path = pki.dir.path().join("bad.toml");
    std::fs::write(&path, "servers = [\"127.0.0.1:7700\"]\nretries = 3\n").unwrap();
    assert_eq!(library.initialize(path), CKR_GENERAL_ERROR);
    assert_eq!(
        library.initialize(pki.dir.path().join("missing.toml")),
        CKR_GENERAL_ERROR
    );
    // A configuration naming a certificate that is not there.
    let path = pki.config(&[closed_port()], "");
    std::fs::remove_file(&pki.client_key).unwrap();
    assert_eq!(library.initialize(path), CKR_GENERAL_ERROR);
    assert!(state::library().is_err());
}

#[test]
fn no_server_gives_device_error_or_token_not_present_fast() {
    let library = Library::lock();
    let pki = Pki::new();
    assert_eq!(library.initialize(pki.config(&[closed_port()], "")), CKR_OK);
    let f = functions();
    let started = Instant::now();
    let mut count: CK_ULONG = 0;
    let mut slot_info = CK_SLOT_INFO::default();
    let mut token_info = CK_TOKEN_INFO::default();
    let mut mechanism_info = CK_MECHANISM_INFO::default();
    // SAFETY: valid pointers throughout.
    unsafe {
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_TRUE, null_mut(), &mut count),
            CKR_DEVICE_ERROR
        );
        assert_eq!(
            f.C_GetSlotInfo.unwrap()(0, &mut slot_info),
            CKR_DEVICE_ERROR
        );
        assert_eq!(
            f.C_GetTokenInfo.unwrap()(0, &mut token_info),
            CKR_TOKEN_NOT_PRESENT
        );
        assert_eq!(
            f.C_GetMechanismList.unwrap()(0, null_mut(), &mut count),
            CKR_TOKEN_NOT_PRESENT
        );
        assert_eq!(
            f.C_GetMechanismInfo.unwrap()(0, CKM_RSA_PKCS, &mut mechanism_info),
            CKR_TOKEN_NOT_PRESENT
        );
        let mut session: CK_SESSION_HANDLE = 0;
        assert_eq!(
            f.C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, null_mut(), None, &mut session),
            CKR_TOKEN_NOT_PRESENT
        );
        assert_eq!(f.C_CloseSession.unwrap()(1), CKR_DEVICE_ERROR);
        assert_eq!(
            functions_3_0().C_SessionCancel.unwrap()(1, 0),
            CKR_DEVICE_ERROR
        );
        // Functions not served yet, and the legacy ones.
        assert_eq!(
            f.C_GetOperationState.unwrap()(1, null_mut(), &mut count),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        assert_eq!(f.C_GetFunctionStatus.unwrap()(1), CKR_FUNCTION_NOT_PARALLEL);
        assert_eq!(f.C_CancelFunction.unwrap()(1), CKR_FUNCTION_NOT_PARALLEL);
        assert_eq!(
            f.C_WaitForSlotEvent.unwrap()(0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn get_info_names_the_interface_version() {
    let library = Library::lock();
    let pki = Pki::new();
    assert_eq!(library.initialize(pki.config(&[closed_port()], "")), CKR_OK);
    let mut info = CK_INFO::default();
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(functions_3_0().C_GetInfo.unwrap()(&mut info), CKR_OK);
        assert_eq!(
            (info.cryptokiVersion.major, info.cryptokiVersion.minor),
            (3, 0)
        );
        assert_eq!(&info.manufacturerID[..8], b"hsmlink ");
        assert_eq!(
            &info.libraryDescription[..],
            b"hsmlink PKCS#11 client          "
        );
        assert_eq!(info.flags, 0);
        assert_eq!(functions().C_GetInfo.unwrap()(&mut info), CKR_OK);
        assert_eq!(
            (info.cryptokiVersion.major, info.cryptokiVersion.minor),
            (2, 40)
        );
        assert_eq!(
            functions().C_GetInfo.unwrap()(null_mut()),
            CKR_ARGUMENTS_BAD
        );
    }
}

#[test]
fn slot_and_token_calls_over_the_network() {
    let library = Library::lock();
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    assert_eq!(
        library.initialize(pki.config(&[server.address()], "")),
        CKR_OK
    );
    let f = functions();
    // SAFETY: valid pointers throughout; buffer sizes as passed.
    unsafe {
        // Section 5.2: size query, too small, exact.
        let mut count: CK_ULONG = 0;
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), &mut count),
            CKR_OK
        );
        assert_eq!(count, 2);
        let mut slots: [CK_SLOT_ID; 2] = [77; 2];
        let mut short: CK_ULONG = 1;
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, slots.as_mut_ptr(), &mut short),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!((short, slots), (2, [77, 77]));
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, slots.as_mut_ptr(), &mut count),
            CKR_OK
        );
        assert_eq!((count, slots), (2, [0, 1]));
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_TRUE, slots.as_mut_ptr(), &mut count),
            CKR_OK
        );
        assert_eq!((count, slots[0]), (1, 0));
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, slots.as_mut_ptr(), null_mut()),
            CKR_ARGUMENTS_BAD
        );

        let mut slot = CK_SLOT_INFO::default();
        assert_eq!(f.C_GetSlotInfo.unwrap()(1, &mut slot), CKR_OK);
        assert_eq!(&slot.slotDescription[..16], b"hsmlink slot 1  ");
        assert_eq!(slot.slotDescription[63], b' ');
        assert_eq!(
            (slot.hardwareVersion.major, slot.firmwareVersion.minor),
            (1, 4)
        );
        assert_eq!(f.C_GetSlotInfo.unwrap()(5, &mut slot), CKR_SLOT_ID_INVALID);
        assert_eq!(f.C_GetSlotInfo.unwrap()(0, null_mut()), CKR_ARGUMENTS_BAD);

        let mut token = CK_TOKEN_INFO::default();
        assert_eq!(f.C_GetTokenInfo.unwrap()(0, &mut token), CKR_OK);
        assert_eq!(&token.label, b"demo                            ");
        assert_eq!(&token.serialNumber, b"0001            ");
        assert_eq!(&token.utcTime, b"2025010112000000");
        assert_eq!(token.ulMaxSessionCount, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(token.ulSessionCount, 0);
        assert_eq!((token.ulMinPinLen, token.ulMaxPinLen), (4, 64));
        assert_eq!(
            f.C_GetTokenInfo.unwrap()(1, &mut token),
            CKR_SLOT_ID_INVALID
        );

        let mut count: CK_ULONG = 0;
        assert_eq!(
            f.C_GetMechanismList.unwrap()(0, null_mut(), &mut count),
            CKR_OK
        );
        let listed = crate::test_support::DEMO_MECHANISMS.len();
        assert_eq!(count, CK_ULONG::try_from(listed).unwrap());
        let mut mechanisms: Vec<CK_MECHANISM_TYPE> = vec![0; listed];
        assert_eq!(
            f.C_GetMechanismList.unwrap()(0, mechanisms.as_mut_ptr(), &mut count),
            CKR_OK
        );
        assert_eq!(mechanisms[..3], [CKM_RSA_PKCS, CKM_ECDSA, CKM_SHA256]);

        let mut info = CK_MECHANISM_INFO::default();
        assert_eq!(
            f.C_GetMechanismInfo.unwrap()(0, CKM_RSA_PKCS, &mut info),
            CKR_OK
        );
        assert_eq!(
            (info.ulMinKeySize, info.ulMaxKeySize, info.flags),
            (2048, 4096, CKF_SIGN)
        );
        assert_eq!(
            f.C_GetMechanismInfo.unwrap()(0, CKM_AES_CBC, &mut info),
            CKR_MECHANISM_INVALID
        );

        assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
    }
    assert_eq!(server.requests().last(), Some(&Request::Finalize));
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn a_forked_child_carries_on_or_starts_afresh() {
    let library = Library::lock();
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    let config = pki.config(&[server.address()], "");
    assert_eq!(library.initialize(config.clone()), CKR_OK);
    let f = functions();
    let mut count: CK_ULONG = 0;
    let slot_count = |count: &mut CK_ULONG| {
        // SAFETY: valid pointers.
        unsafe { f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), count) }
    };
    assert_eq!(slot_count(&mut count), CKR_OK);
    let requests_before = server.requests().len();

    // The child goes on without C_Initialize: its own connection, the same
    // application instance, its own process id; the parent's connection
    // carries nothing more.
    crate::process::simulate_fork();
    assert_eq!(slot_count(&mut count), CKR_OK);
    let connections = server.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(connections, 2, "the child opened its own connection");
    let hellos = server.hellos.lock().clone();
    assert_eq!(hellos.len(), 2);
    assert_eq!(hellos[0].app_instance, hellos[1].app_instance);
    assert_eq!(hellos[0].pid, std::process::id());
    assert_eq!(hellos[1].pid, crate::process::id());
    assert_ne!(hellos[0].pid, hellos[1].pid);
    assert_eq!(server.requests().len(), requests_before + 1);

    // C_Initialize in the child is a fresh start: CKR_OK, a new instance.
    assert_eq!(library.initialize(config), CKR_OK);
    assert_eq!(slot_count(&mut count), CKR_OK);
    let hellos = server.hellos.lock().clone();
    assert_eq!(hellos.len(), 3);
    assert_ne!(hellos[2].app_instance, hellos[0].app_instance);
    assert_eq!(hellos[2].pid, crate::process::id());
}

#[test]
fn a_panic_becomes_general_error() {
    assert_eq!(guard("C_Test", || panic!("boom")), CKR_GENERAL_ERROR);
    assert_eq!(
        guard("C_Test", || Err(Error::new(CKR_SLOT_ID_INVALID))),
        CKR_SLOT_ID_INVALID
    );
    assert_eq!(guard("C_Test", || Ok(())), CKR_OK);
}

fn out_buf(buf: Option<&mut [CK_ULONG]>, len: &mut CK_ULONG, items: &[CK_ULONG]) -> CK_RV {
    let ptr = buf.map_or(null_mut(), <[CK_ULONG]>::as_mut_ptr);
    // SAFETY: `ptr` is NULL or holds `*len` values (the callers below).
    let out = unsafe { OutBuf::from_raw(ptr, len) };
    match out.and_then(|out| out.write(items)) {
        Ok(()) => CKR_OK,
        Err(e) => e.rv(),
    }
}

#[test]
fn output_buffer_rule() {
    let items = [10, 20, 30];
    // NULL buffer: the length only.
    let mut len = 0;
    assert_eq!(out_buf(None, &mut len, &items), CKR_OK);
    assert_eq!(len, 3);
    // Too small: the length, nothing copied.
    let mut buf = [0; 2];
    let mut len = 2;
    assert_eq!(
        out_buf(Some(&mut buf), &mut len, &items),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!((len, buf), (3, [0, 0]));
    // Exact.
    let mut buf = [0; 3];
    let mut len = 3;
    assert_eq!(out_buf(Some(&mut buf), &mut len, &items), CKR_OK);
    assert_eq!((len, buf), (3, [10, 20, 30]));
    // Larger: copied, the length says how much.
    let mut buf = [0; 5];
    let mut len = 5;
    assert_eq!(out_buf(Some(&mut buf), &mut len, &items), CKR_OK);
    assert_eq!((len, buf), (3, [10, 20, 30, 0, 0]));
    // Empty output into a NULL buffer.
    let mut len = 9;
    assert_eq!(out_buf(None, &mut len, &[]), CKR_OK);
    assert_eq!(len, 0);
}

#[test]
fn output_buffer_needs_a_length() {
    let mut buf = [0 as CK_ULONG; 3];
    // SAFETY: the NULL length is the case under test.
    let out = unsafe { OutBuf::from_raw(buf.as_mut_ptr(), null_mut()) };
    assert_eq!(out.err().map(Error::rv), Some(CKR_ARGUMENTS_BAD));
}

/// Never called: we make no callbacks.
unsafe extern "C" fn notify(_: CK_SESSION_HANDLE, _: CK_NOTIFICATION, _: *mut c_void) -> CK_RV {
    std::process::abort()
}

/// Initialises the library against a fake server and opens its session.
fn with_session(library: &Library<'_>) -> (FakeServer, CK_SESSION_HANDLE) {
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    assert_eq!(
        library.initialize(pki.config(&[server.address()], "")),
        CKR_OK
    );
    let mut session: CK_SESSION_HANDLE = 0;
    // SAFETY: valid pointers.
    let rv = unsafe {
        functions().C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, null_mut(), None, &mut session)
    };
    assert_eq!(rv, CKR_OK);
    server.requests.lock().clear();
    (server, session)
}

/// [`with_session`] after `C_GetMechanismList`, as applications start:
/// the module knows the token's mechanisms, deferred inits send nothing.
fn with_listed_session(library: &Library<'_>) -> (FakeServer, CK_SESSION_HANDLE) {
    let (server, session) = with_session(library);
    let mut count: CK_ULONG = 0;
    // SAFETY: valid pointers; a NULL list asks for the count.
    let rv = unsafe { functions().C_GetMechanismList.unwrap()(0, null_mut(), &mut count) };
    assert_eq!(rv, CKR_OK);
    server.requests.lock().clear();
    (server, session)
}

fn attr(attr_type: CK_ATTRIBUTE_TYPE, value: &mut [u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: attr_type,
        pValue: value.as_mut_ptr().cast(),
        ulValueLen: CK_ULONG::try_from(value.len()).unwrap(),
    }
}

#[test]
fn open_session_checks_locally_first() {
    let library = Library::lock();
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    assert_eq!(
        library.initialize(pki.config(&[server.address()], "")),
        CKR_OK
    );
    let open = functions().C_OpenSession.unwrap();
    let mut session: CK_SESSION_HANDLE = 0;
    let mut application = 5u8;
    // SAFETY: valid or NULL pointers, as each case says.
    unsafe {
        assert_eq!(
            open(0, CKF_SERIAL_SESSION, null_mut(), None, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            open(0, CKF_RW_SESSION, null_mut(), None, &mut session),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        assert_eq!(
            open(0, 0, null_mut(), None, &mut session),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        assert!(server.requests().is_empty(), "nothing was sent");

        // pApplication and Notify are accepted (and never used).
        let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
        let app = (&raw mut application).cast();
        assert_eq!(open(0, flags, app, Some(notify), &mut session), CKR_OK);
        assert_eq!(session, 0x10);
        assert_eq!(
            server.requests(),
            vec![Request::OpenSession {
                slot: SlotId(0),
                flags: 6
            }]
        );
        assert_eq!(
            open(3, CKF_SERIAL_SESSION, null_mut(), None, &mut session),
            CKR_SLOT_ID_INVALID
        );
    }
}

#[test]
fn sessions_and_pins_over_the_network() {
    let library = Library::lock();
    let (server, session) = with_session(&library);
    let f = functions();
    let f3 = functions_3_0();
    let mut pin = *b"1234";
    let mut wrong = *b"0000";
    let mut user = *b"alice";
    let mut label = *b"my token                        ";
    // SAFETY: valid or NULL pointers, with the lengths given.
    unsafe {
        let mut info = CK_SESSION_INFO::default();
        assert_eq!(f.C_GetSessionInfo.unwrap()(session, &mut info), CKR_OK);
        assert_eq!(
            (info.slotID, info.state, info.flags, info.ulDeviceError),
            (
                0,
                CKS_RW_PUBLIC_SESSION,
                CKF_RW_SESSION | CKF_SERIAL_SESSION,
                0
            )
        );
        assert_eq!(
            f.C_GetSessionInfo.unwrap()(session, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            f.C_GetSessionInfo.unwrap()(99, &mut info),
            CKR_SESSION_HANDLE_INVALID
        );

        let login = f.C_Login.unwrap();
        assert_eq!(login(session, CKU_USER, pin.as_mut_ptr(), 4), CKR_OK);
        assert_eq!(
            login(session, CKU_USER, wrong.as_mut_ptr(), 4),
            CKR_PIN_INCORRECT
        );
        // No protected authentication path, and no NULL PIN with a length.
        assert_eq!(login(session, CKU_USER, null_mut(), 0), CKR_ARGUMENTS_BAD);
        assert_eq!(login(session, CKU_USER, null_mut(), 4), CKR_ARGUMENTS_BAD);

        let login_user = f3.C_LoginUser.unwrap();
        assert_eq!(
            login_user(session, CKU_USER, pin.as_mut_ptr(), 4, user.as_mut_ptr(), 5),
            CKR_OK
        );
        assert_eq!(
            login_user(session, CKU_USER, pin.as_mut_ptr(), 4, null_mut(), 0),
            CKR_OK
        );
        assert_eq!(
            login_user(session, CKU_USER, pin.as_mut_ptr(), 4, null_mut(), 3),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(f.C_Logout.unwrap()(session), CKR_OK);

        assert_eq!(f.C_InitPIN.unwrap()(session, pin.as_mut_ptr(), 4), CKR_OK);
        assert_eq!(
            f.C_InitPIN.unwrap()(session, null_mut(), 0),
            CKR_ARGUMENTS_BAD
        );
        let set_pin = f.C_SetPIN.unwrap();
        assert_eq!(
            set_pin(session, pin.as_mut_ptr(), 4, wrong.as_mut_ptr(), 4),
            CKR_OK
        );
        assert_eq!(
            set_pin(session, pin.as_mut_ptr(), 4, null_mut(), 0),
            CKR_ARGUMENTS_BAD
        );

        let init_token = f.C_InitToken.unwrap();
        assert_eq!(
            init_token(0, wrong.as_mut_ptr(), 4, label.as_mut_ptr()),
            CKR_OK
        );
        assert_eq!(
            init_token(0, wrong.as_mut_ptr(), 4, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            init_token(0, null_mut(), 0, label.as_mut_ptr()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            init_token(0, null_mut(), 4, label.as_mut_ptr()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            init_token(5, wrong.as_mut_ptr(), 4, label.as_mut_ptr()),
            CKR_SLOT_ID_INVALID
        );

        assert_eq!(
            f3.C_SessionCancel.unwrap()(session, CKF_FIND_OBJECTS),
            CKR_OK
        );
        assert_eq!(f.C_CloseSession.unwrap()(session), CKR_OK);
        assert_eq!(f.C_CloseSession.unwrap()(7), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(f.C_CloseAllSessions.unwrap()(0), CKR_OK);
        assert_eq!(
            f.C_GetOperationState.unwrap()(session, null_mut(), &mut 0),
            CKR_FUNCTION_NOT_SUPPORTED
        );
    }
    let requests = server.requests();
    let secret = |bytes: &[u8]| hsmlink_protocol::Secret::from_slice(bytes);
    assert!(requests.contains(&Request::LoginUser {
        session: SessionHandle(0x10),
        user_type: UserType(w(CKU_USER)),
        pin: secret(b"1234"),
        username: b"alice".to_vec(),
    }));
    assert!(requests.contains(&Request::SetPin {
        session: SessionHandle(0x10),
        old_pin: secret(b"1234"),
        new_pin: secret(b"0000"),
    }));
    assert!(requests.contains(&Request::InitToken {
        slot: SlotId(0),
        so_pin: secret(b"0000"),
        label: label.to_vec(),
    }));
    assert!(requests.contains(&Request::SessionCancel {
        session: SessionHandle(0x10),
        flags: w(CKF_FIND_OBJECTS),
    }));
    // Only the calls that passed the local checks went out (the last
    // InitToken to an unknown slot among them).
    assert_eq!(requests.len(), 15, "{requests:#?}");
}

#[test]
fn objects_over_the_network() {
    let library = Library::lock();
    let (server, session) = with_session(&library);
    let f = functions();
    let mut class = CKO_DATA.to_ne_bytes();
    let mut label = *b"x";
    let mut bad_bool = [1u8, 0];
    // SAFETY: valid or NULL pointers, with the lengths given.
    unsafe {
        let mut template = [attr(CKA_CLASS, &mut class), attr(CKA_LABEL, &mut label)];
        let mut object: CK_OBJECT_HANDLE = 0;
        let create = f.C_CreateObject.unwrap();
        assert_eq!(
            create(session, template.as_mut_ptr(), 2, &mut object),
            CKR_OK
        );
        assert_eq!(object, 0x20);
        assert_eq!(
            server.requests(),
            vec![Request::CreateObject {
                session: SessionHandle(0x10),
                template: vec![
                    Attribute::new(w(CKA_CLASS), AttributeValue::Ulong(w(CKO_DATA))),
                    Attribute::new(w(CKA_LABEL), AttributeValue::Bytes(b"x".to_vec())),
                ],
            }]
        );
        // Refused before anything is sent (or created).
        assert_eq!(
            create(session, template.as_mut_ptr(), 2, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            create(session, null_mut(), 2, &mut object),
            CKR_ARGUMENTS_BAD
        );
        let mut bad = [attr(CKA_TOKEN, &mut bad_bool)];
        assert_eq!(
            create(session, bad.as_mut_ptr(), 1, &mut object),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(server.requests().len(), 1);

        let mut copy: CK_OBJECT_HANDLE = 0;
        assert_eq!(
            f.C_CopyObject.unwrap()(session, 0x20, null_mut(), 0, &mut copy),
            CKR_OK
        );
        assert_eq!(copy, 0x120);
        assert_eq!(
            f.C_CopyObject.unwrap()(session, 0x20, null_mut(), 0, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(f.C_DestroyObject.unwrap()(session, 0x120), CKR_OK);
        assert_eq!(
            f.C_SetAttributeValue.unwrap()(session, 0x20, template.as_mut_ptr(), 2),
            CKR_OK
        );

        let mut size: CK_ULONG = 0;
        assert_eq!(f.C_GetObjectSize.unwrap()(session, 0x20, &mut size), CKR_OK);
        assert_eq!(size, 123);
        assert_eq!(f.C_GetObjectSize.unwrap()(session, 0x21, &mut size), CKR_OK);
        assert_eq!(size, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(
            f.C_GetObjectSize.unwrap()(session, 0x20, null_mut()),
            CKR_ARGUMENTS_BAD
        );

        // Find: all, in steps, none, and the NULL checks.
        assert_eq!(f.C_FindObjectsInit.unwrap()(session, null_mut(), 0), CKR_OK);
        let find = f.C_FindObjects.unwrap();
        let mut handles: [CK_OBJECT_HANDLE; 5] = [0; 5];
        let mut count: CK_ULONG = 99;
        assert_eq!(find(session, handles.as_mut_ptr(), 5, &mut count), CKR_OK);
        assert_eq!((count, handles), (3, [0x20, 0x21, 0x22, 0, 0]));
        handles = [0; 5];
        assert_eq!(find(session, handles.as_mut_ptr(), 2, &mut count), CKR_OK);
        assert_eq!((count, handles), (2, [0x20, 0x21, 0, 0, 0]));
        assert_eq!(find(session, handles.as_mut_ptr(), 0, &mut count), CKR_OK);
        assert_eq!(count, 0);
        assert_eq!(find(session, null_mut(), 5, &mut count), CKR_ARGUMENTS_BAD);
        assert_eq!(
            find(session, handles.as_mut_ptr(), 5, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(f.C_FindObjectsFinal.unwrap()(session), CKR_OK);
    }
}

#[test]
fn get_attribute_value_over_the_network() {
    let library = Library::lock();
    let (_server, session) = with_session(&library);
    let get = functions().C_GetAttributeValue.unwrap();
    let size = std::mem::size_of::<CK_ULONG>();
    let mut class = vec![0u8; size];
    let mut token = [0u8; 1];
    let mut value = [0xAAu8; 32];
    let mut encrypt = [0u8; 1];
    let mut nested = [attr(0, &mut encrypt)];
    let mut template = [
        attr(CKA_CLASS, &mut class),
        attr(CKA_TOKEN, &mut token),
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: null_mut(),
            ulValueLen: 0,
        },
        attr(CKA_VALUE, &mut value),
        CK_ATTRIBUTE {
            type_: CKA_MODULUS,
            pValue: null_mut(),
            ulValueLen: 0,
        },
        CK_ATTRIBUTE {
            type_: CKA_WRAP_TEMPLATE,
            pValue: nested.as_mut_ptr().cast(),
            ulValueLen: CK_ULONG::try_from(std::mem::size_of_val(&nested)).unwrap(),
        },
        CK_ATTRIBUTE {
            type_: CKA_ALLOWED_MECHANISMS,
            pValue: null_mut(),
            ulValueLen: 0,
        },
    ];
    let count = CK_ULONG::try_from(template.len()).unwrap();
    // SAFETY: the template's buffers are live and of the lengths given.
    unsafe {
        assert_eq!(
            get(session, 0x20, template.as_mut_ptr(), count),
            CKR_ATTRIBUTE_SENSITIVE
        );
    }
    assert_eq!(class, CKO_SECRET_KEY.to_ne_bytes());
    assert_eq!(token, [CK_TRUE]);
    assert_eq!(value, [0xAA; 32]);
    assert_eq!(encrypt, [CK_TRUE]);
    assert_eq!(nested[0].type_, CKA_ENCRYPT);
    let entry_size = std::mem::size_of::<CK_ATTRIBUTE>();
    let lengths = template.map(|entry| usize::try_from(entry.ulValueLen).unwrap_or(usize::MAX));
    assert_eq!(
        lengths,
        [size, 1, 8, usize::MAX, usize::MAX, entry_size, size]
    );

    // A failure of the whole call leaves the template alone.
    let mut label = [0u8; 4];
    let mut template = [attr(CKA_LABEL, &mut label)];
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            get(session, 0x99, template.as_mut_ptr(), 1),
            CKR_OBJECT_HANDLE_INVALID
        );
        assert_eq!(template[0].ulValueLen, 4);
        assert_eq!(get(session, 0x20, null_mut(), 1), CKR_ARGUMENTS_BAD);
        assert_eq!(get(session, 0x20, null_mut(), 0), CKR_OK);
    }
}

mod crypto;
mod round_trips;
