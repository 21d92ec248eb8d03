//! Files that hold private keys: a directory only the owner can enter, files only the owner
//! can read, written once (never overwritten, so two processes starting together cannot
//! replace each other's key), and RFC 7638 thumbprints to name Ed25519 public keys by.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Creates `dir` (and its parents) readable by its owner only.
///
/// # Errors
/// When it cannot be created.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating the key directory {}", dir.display()))
}

/// Writes a new file readable by its owner only; fails if it exists.
///
/// # Errors
/// An existing file (`ErrorKind::AlreadyExists` in the chain) or a write failure.
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_new_file(path, contents, 0o600)
}

/// Writes a new file anyone may read (a public key); fails if it exists.
///
/// # Errors
/// An existing file or a write failure.
pub fn write_public_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_new_file(path, contents, 0o644)
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", path.display()))
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key: SHA-256 over the required members in
/// lexicographic order.
pub fn ed25519_thumbprint(public: &[u8; 32]) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public));
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn thumbprints_follow_rfc_7638() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        assert_eq!(ed25519_thumbprint(&x.try_into().unwrap()), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn key_files_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_private_file(&path, b"one").unwrap();
        assert!(write_private_file(&path, b"two").is_err(), "an existing key is never replaced");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
