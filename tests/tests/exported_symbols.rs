//! The .so is a thin shim: it exports exactly the three PKCS#11 entry points
//! that hand out function tables, and nothing else of ours.

// Test code: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

#[test]
fn only_the_function_table_entry_points_are_exported() {
    let out = Command::new("nm")
        .args(["-D", "--defined-only", "--format=posix"])
        .arg(common::module_path())
        .output()
        .expect("run nm (binutils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut exported: Vec<&str> = listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let kind = fields.next()?;
            // Code symbols in the text section; data and the Rust runtime's
            // versioned glibc references are not ours.
            (kind == "T").then_some(name)
        })
        .collect();
    exported.sort_unstable();
    assert_eq!(
        exported,
        ["C_GetFunctionList", "C_GetInterface", "C_GetInterfaceList"],
        "unexpected exports in libhsmlink_pkcs11.so"
    );
}
