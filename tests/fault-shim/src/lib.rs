//! Tests only: a PKCS#11 module standing in for a vendor HSM that fails and
//! comes back. It forwards every call to a real module (a copy of
//! SoftHSMv2's library, so that each "device" is a separate instance with
//! its own token store) unless its control file tells it to fail.
//!
//! Each copy of this library reads `<its own path>.conf`:
//!
//! ```text
//! module = /tmp/x/dev1/softhsm.so         # the module it forwards to
//! env SOFTHSM2_CONF = /tmp/x/dev1/softhsm2.conf   # set before C_Initialize
//! control = /tmp/x/dev1/control           # what to do, read on every call
//! shared = yes                            # optional: other shims forward to the
//!                                         # same module (one instance, several
//!                                         # tokens): its C_Initialize answers
//!                                         # CKR_CRYPTOKI_ALREADY_INITIALIZED after
//!                                         # the first, which is then CKR_OK
//! ```
//!
//! Two copies of SoftHSMv2's library in one process share OpenSSL's global
//! state and fail under concurrent load; tests that load them concurrently
//! give each "HSM" a token of one shared instance instead.
//!
//! The control file holds `fail` (every call returns `CKR_DEVICE_ERROR`),
//! `removed` (`CKR_DEVICE_REMOVED`), `hang MS` (each call waits MS
//! milliseconds, then is forwarded) or nothing (absent or empty: forward).
//! `C_Finalize` and `C_GetFunctionList` always go through.

// A PKCS#11 module is C: every entry point takes raw pointers from the
// caller and hands them on unchanged.
#![allow(
    unsafe_code,
    reason = "a PKCS#11 module forwarding C calls; every unsafe block says why it is sound"
)]
#![allow(non_snake_case, reason = "PKCS#11 entry point names")]

use std::ffi::{CStr, c_void};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use cryptoki_sys::*;

/// What the copy forwards to, loaded on the first `C_GetFunctionList`.
struct Target {
    /// Kept loaded for the life of the process.
    _library: libloading::Library,
    functions: &'static CK_FUNCTION_LIST,
    control: PathBuf,
    env: Vec<(String, String)>,
    shared: bool,
}

static TARGET: OnceLock<Result<Target, String>> = OnceLock::new();

/// This library's own path (each copy is its own device).
fn own_path() -> Result<PathBuf, String> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let address = C_GetFunctionList as *const c_void;
    // SAFETY: dladdr only reads the loader's tables for an address inside
    // this library and fills `info`, which outlives the call.
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("dladdr found no path for the shim".into());
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader,
    // valid while the library stays loaded (it is never unloaded).
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Ok(PathBuf::from(name.to_string_lossy().into_owned()))
}

fn load() -> Result<Target, String> {
    let own = own_path()?;
    let conf_path = PathBuf::from(format!("{}.conf", own.display()));
    let conf = std::fs::read_to_string(&conf_path)
        .map_err(|e| format!("cannot read {}: {e}", conf_path.display()))?;
    let mut module = None;
    let mut control = None;
    let mut env = Vec::new();
    let mut shared = false;
    for line in conf.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("bad line in {}: {line}", conf_path.display()))?;
        let (key, value) = (key.trim(), value.trim().to_owned());
        match key.strip_prefix("env ") {
            Some(name) => env.push((name.trim().to_owned(), value)),
            None if key == "module" => module = Some(PathBuf::from(value)),
            None if key == "control" => control = Some(PathBuf::from(value)),
            None if key == "shared" => shared = value == "yes",
            None => return Err(format!("unknown key {key} in {}", conf_path.display())),
        }
    }
    let module = module.ok_or("no module in the shim's conf")?;
    let control = control.ok_or("no control in the shim's conf")?;
    // SAFETY: loading a PKCS#11 module runs its initialisers; the test
    // names a copy of SoftHSMv2, whose initialisers are sound to run.
    let library = unsafe { libloading::Library::new(&module) }
        .map_err(|e| format!("cannot load {}: {e}", module.display()))?;
    let mut list: CK_FUNCTION_LIST_PTR = std::ptr::null_mut();
    // SAFETY: C_GetFunctionList has this signature in every PKCS#11 module;
    // the symbol is used while `library` stays loaded (for ever).
    let rv = unsafe {
        let get: libloading::Symbol<unsafe extern "C" fn(CK_FUNCTION_LIST_PTR_PTR) -> CK_RV> =
            library
                .get(b"C_GetFunctionList\0")
                .map_err(|e| format!("no C_GetFunctionList in {}: {e}", module.display()))?;
        get(&mut list)
    };
    if rv != CKR_OK || list.is_null() {
        return Err(format!(
            "C_GetFunctionList of {} failed: {rv:#x}",
            module.display()
        ));
    }
    // SAFETY: the module's function list is static data of the module,
    // which is never unloaded.
    let functions: &'static CK_FUNCTION_LIST = unsafe { &*list };
    Ok(Target {
        _library: library,
        functions,
        control,
        env,
        shared,
    })
}

fn target() -> Option<&'static Target> {
    TARGET.get_or_init(load).as_ref().ok()
}

/// What the control file says: `Some(rv)` to fail with `rv`.
fn injected(target: &Target) -> Option<CK_RV> {
    let text = std::fs::read_to_string(&target.control).unwrap_or_default();
    let mut words = text.split_whitespace();
    match words.next() {
        Some("fail") => Some(CKR_DEVICE_ERROR),
        Some("removed") => Some(CKR_DEVICE_REMOVED),
        Some("hang") => {
            let ms = words.next().and_then(|w| w.parse().ok()).unwrap_or(1000);
            std::thread::sleep(Duration::from_millis(ms));
            None
        }
        _ => None,
    }
}

/// One forwarding entry point per PKCS#11 function the shim passes on.
macro_rules! forward {
    ($($name:ident ( $($arg:ident : $ty:ty),* );)*) => {
        $(
            unsafe extern "C" fn $name($($arg: $ty),*) -> CK_RV {
                let Some(target) = target() else {
                    return CKR_GENERAL_ERROR;
                };
                if let Some(rv) = injected(target) {
                    return rv;
                }
                match target.functions.$name {
                    // SAFETY: the caller's arguments go unchanged to the
                    // same function of the real module, which has the same
                    // contract as this one.
                    Some(f) => unsafe { f($($arg),*) },
                    None => CKR_FUNCTION_NOT_SUPPORTED,
                }
            }
        )*

        fn install(list: &mut CK_FUNCTION_LIST) {
            $( list.$name = Some($name); )*
        }
    };
}

forward! {
    C_GetInfo(info: CK_INFO_PTR);
    C_GetSlotList(present: CK_BBOOL, list: CK_SLOT_ID_PTR, count: CK_ULONG_PTR);
    C_GetSlotInfo(slot: CK_SLOT_ID, info: CK_SLOT_INFO_PTR);
    C_GetTokenInfo(slot: CK_SLOT_ID, info: CK_TOKEN_INFO_PTR);
    C_GetMechanismList(slot: CK_SLOT_ID, list: CK_MECHANISM_TYPE_PTR, count: CK_ULONG_PTR);
    C_GetMechanismInfo(slot: CK_SLOT_ID, kind: CK_MECHANISM_TYPE, info: CK_MECHANISM_INFO_PTR);
    C_InitToken(slot: CK_SLOT_ID, pin: CK_UTF8CHAR_PTR, len: CK_ULONG, label: CK_UTF8CHAR_PTR);
    C_InitPIN(s: CK_SESSION_HANDLE, pin: CK_UTF8CHAR_PTR, len: CK_ULONG);
    C_SetPIN(s: CK_SESSION_HANDLE, old: CK_UTF8CHAR_PTR, old_len: CK_ULONG, new: CK_UTF8CHAR_PTR, new_len: CK_ULONG);
    C_OpenSession(slot: CK_SLOT_ID, flags: CK_FLAGS, app: CK_VOID_PTR, notify: CK_NOTIFY, s: CK_SESSION_HANDLE_PTR);
    C_CloseSession(s: CK_SESSION_HANDLE);
    C_CloseAllSessions(slot: CK_SLOT_ID);
    C_GetSessionInfo(s: CK_SESSION_HANDLE, info: CK_SESSION_INFO_PTR);
    C_Login(s: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: CK_UTF8CHAR_PTR, len: CK_ULONG);
    C_Logout(s: CK_SESSION_HANDLE);
    C_CreateObject(s: CK_SESSION_HANDLE, t: CK_ATTRIBUTE_PTR, n: CK_ULONG, o: CK_OBJECT_HANDLE_PTR);
    C_CopyObject(s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, t: CK_ATTRIBUTE_PTR, n: CK_ULONG, new: CK_OBJECT_HANDLE_PTR);
    C_DestroyObject(s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE);
    C_GetObjectSize(s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, size: CK_ULONG_PTR);
    C_GetAttributeValue(s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, t: CK_ATTRIBUTE_PTR, n: CK_ULONG);
    C_SetAttributeValue(s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, t: CK_ATTRIBUTE_PTR, n: CK_ULONG);
    C_FindObjectsInit(s: CK_SESSION_HANDLE, t: CK_ATTRIBUTE_PTR, n: CK_ULONG);
    C_FindObjects(s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE_PTR, max: CK_ULONG, count: CK_ULONG_PTR);
    C_FindObjectsFinal(s: CK_SESSION_HANDLE);
    C_EncryptInit(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, k: CK_OBJECT_HANDLE);
    C_Encrypt(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_EncryptUpdate(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_EncryptFinal(s: CK_SESSION_HANDLE, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_DecryptInit(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, k: CK_OBJECT_HANDLE);
    C_Decrypt(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_DecryptUpdate(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_DecryptFinal(s: CK_SESSION_HANDLE, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_DigestInit(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR);
    C_Digest(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_DigestUpdate(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG);
    C_DigestKey(s: CK_SESSION_HANDLE, k: CK_OBJECT_HANDLE);
    C_DigestFinal(s: CK_SESSION_HANDLE, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_SignInit(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, k: CK_OBJECT_HANDLE);
    C_Sign(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_SignUpdate(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG);
    C_SignFinal(s: CK_SESSION_HANDLE, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_VerifyInit(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, k: CK_OBJECT_HANDLE);
    C_Verify(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG, sig: CK_BYTE_PTR, sl: CK_ULONG);
    C_VerifyUpdate(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG);
    C_VerifyFinal(s: CK_SESSION_HANDLE, sig: CK_BYTE_PTR, sl: CK_ULONG);
    C_GenerateKey(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, t: CK_ATTRIBUTE_PTR, n: CK_ULONG, k: CK_OBJECT_HANDLE_PTR);
    C_GenerateKeyPair(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, pt: CK_ATTRIBUTE_PTR, pn: CK_ULONG, vt: CK_ATTRIBUTE_PTR, vn: CK_ULONG, pk: CK_OBJECT_HANDLE_PTR, vk: CK_OBJECT_HANDLE_PTR);
    C_WrapKey(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, w: CK_OBJECT_HANDLE, k: CK_OBJECT_HANDLE, o: CK_BYTE_PTR, ol: CK_ULONG_PTR);
    C_UnwrapKey(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, w: CK_OBJECT_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG, t: CK_ATTRIBUTE_PTR, n: CK_ULONG, k: CK_OBJECT_HANDLE_PTR);
    C_DeriveKey(s: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, b: CK_OBJECT_HANDLE, t: CK_ATTRIBUTE_PTR, n: CK_ULONG, k: CK_OBJECT_HANDLE_PTR);
    C_SeedRandom(s: CK_SESSION_HANDLE, d: CK_BYTE_PTR, dl: CK_ULONG);
    C_GenerateRandom(s: CK_SESSION_HANDLE, o: CK_BYTE_PTR, ol: CK_ULONG);
}

/// `C_Initialize`: the environment of the conf first (SoftHSMv2 reads
/// `SOFTHSM2_CONF` here), then the real module's.
unsafe extern "C" fn C_Initialize(args: CK_VOID_PTR) -> CK_RV {
    let Some(target) = target() else {
        return CKR_GENERAL_ERROR;
    };
    if let Some(rv) = injected(target) {
        return rv;
    }
    for (name, value) in &target.env {
        // SAFETY: the server opens its devices one after the other at
        // start, before any other thread reads the environment; this is a
        // test stand-in, not shipped code.
        unsafe { std::env::set_var(name, value) };
    }
    let rv = match target.functions.C_Initialize {
        // SAFETY: the caller's argument goes unchanged to the real module.
        Some(f) => unsafe { f(args) },
        None => CKR_GENERAL_ERROR,
    };
    match rv {
        CKR_CRYPTOKI_ALREADY_INITIALIZED if target.shared => CKR_OK,
        rv => rv,
    }
}

unsafe extern "C" fn C_Finalize(reserved: CK_VOID_PTR) -> CK_RV {
    match target().and_then(|t| t.functions.C_Finalize) {
        // SAFETY: the caller's argument goes unchanged to the real module.
        Some(f) => unsafe { f(reserved) },
        None => CKR_GENERAL_ERROR,
    }
}

/// The entry point: the real module's list with every function the shim
/// knows replaced by its forwarder.
///
/// # Safety
/// `list` must be valid for a write of one pointer (PKCS#11's contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let Some(target) = target() else {
        return CKR_GENERAL_ERROR;
    };
    // The list handed out: built once, leaked (it must outlive every caller).
    static INSTALLED: OnceLock<usize> = OnceLock::new();
    let address = *INSTALLED.get_or_init(|| {
        let mut functions = *target.functions;
        install(&mut functions);
        functions.C_Initialize = Some(C_Initialize);
        functions.C_Finalize = Some(C_Finalize);
        functions.C_GetFunctionList = Some(C_GetFunctionList);
        Box::leak(Box::new(functions)) as *mut CK_FUNCTION_LIST as usize
    });
    // SAFETY: `list` is valid for a write (checked non-null; the caller's
    // contract); the leaked list lives for the rest of the process.
    unsafe { *list = address as CK_FUNCTION_LIST_PTR };
    CKR_OK
}
