//! The tenant's key and certificate chain from a PKCS#12 file (`pkcs12` in
//! client.toml), decrypted with a passphrase from a file or an environment
//! variable, never from client.toml.
//!
//! Parsed by `p12-keystore` (pure Rust, on RustCrypto's PKCS#12/PKCS#5
//! types): PBES2 with AES (OpenSSL 3's and Java's default) and the legacy
//! PBE-SHA1-3DES / RC2 schemes of older exports; the MAC is checked, so a
//! wrong passphrase is told apart from a damaged file. The passphrase and
//! the decrypted key are zeroized (and the module's allocator wipes every
//! block it frees).

use std::path::Path;

use p12_keystore::KeyStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::config::PassphraseSource;

/// The certificate chain (leaf first) and the private key of `file`.
pub fn read(
    file: &Path,
    passphrase: &PassphraseSource,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let passphrase = read_passphrase(passphrase)?;
    let data = Zeroizing::new(
        std::fs::read(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?,
    );
    let store = KeyStore::from_pkcs12(&data, &passphrase).map_err(|e| {
        format!(
            "{}: cannot open the PKCS#12 file ({e}): a wrong passphrase or not a PKCS#12 file",
            file.display()
        )
    })?;
    let (_, chain) = store.private_key_chain().ok_or_else(|| {
        format!(
            "{}: holds no private key with its certificate",
            file.display()
        )
    })?;
    let certs: Vec<CertificateDer<'static>> = chain
        .chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err(format!("{}: the key has no certificate", file.display()));
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().to_vec()));
    Ok((certs, key))
}

/// The passphrase, a trailing newline of a file apart.
fn read_passphrase(source: &PassphraseSource) -> Result<Zeroizing<String>, String> {
    match source {
        PassphraseSource::Env(name) => std::env::var(name).map(Zeroizing::new).map_err(|_| {
            format!("the environment variable {name} (pkcs12_passphrase_env) is not set")
        }),
        PassphraseSource::File(path) => {
            let mut text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                format!("cannot read pkcs12_passphrase_file {}: {e}", path.display())
            })?);
            while text.ends_with('\n') || text.ends_with('\r') {
                text.pop();
            }
            Ok(text)
        }
    }
}
