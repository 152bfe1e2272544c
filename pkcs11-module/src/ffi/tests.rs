//! The C ABI as an application sees it: through the function lists.
//!
//! Tests that initialise the library hold `GLOBAL_STATE` (there is one
//! library state per process) and leave it finalised.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test

use std::ffi::{CStr, c_void};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmlink_protocol::Request;
use parking_lot::MutexGuard;

use super::out::OutBuf;
use super::{C_GetFunctionList, C_GetInterface, C_GetInterfaceList, guard};
use crate::config::test_override;
use crate::error::Error;
use crate::state;
use crate::test_support::{Behaviour, FakeServer, GLOBAL_STATE, Pki, closed_port};

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
        // Functions not served yet, and the legacy ones.
        assert_eq!(
            f.C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, null_mut(), None, null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        assert_eq!(f.C_GetFunctionStatus.unwrap()(1), CKR_FUNCTION_NOT_PARALLEL);
        assert_eq!(f.C_CancelFunction.unwrap()(1), CKR_FUNCTION_NOT_PARALLEL);
        assert_eq!(
            f.C_WaitForSlotEvent.unwrap()(0, null_mut(), null_mut()),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        assert_eq!(
            functions_3_0().C_SessionCancel.unwrap()(1, 0),
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
        assert_eq!(count, 3);
        let mut mechanisms: [CK_MECHANISM_TYPE; 3] = [0; 3];
        assert_eq!(
            f.C_GetMechanismList.unwrap()(0, mechanisms.as_mut_ptr(), &mut count),
            CKR_OK
        );
        assert_eq!(mechanisms, [CKM_RSA_PKCS, CKM_ECDSA, CKM_SHA256]);

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
fn a_forked_child_must_initialize_again() {
    let library = Library::lock();
    let pki = Pki::new();
    let server = FakeServer::start(&pki, Behaviour::default());
    let config = pki.config(&[server.address()], "");
    assert_eq!(library.initialize(config.clone()), CKR_OK);
    let f = functions();
    let mut count: CK_ULONG = 0;
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), &mut count),
            CKR_OK
        );
    }
    state::simulate_fork();
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), &mut count),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
    }
    assert_eq!(library.initialize(config), CKR_OK);
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(
            f.C_GetSlotList.unwrap()(CK_FALSE, null_mut(), &mut count),
            CKR_OK
        );
    }
    // The "child" opened its own connection; the parent's was left alone.
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
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
