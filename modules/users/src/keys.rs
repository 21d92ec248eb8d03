//! The Ed25519 keys access tokens are signed with. They live as PKCS#8 PEM files named
//! `<created, unix ms>.ed25519.pem` in a directory (the data dir's `keys/` unless configured);
//! the newest signs, every key in the directory verifies. Rotation adds a key, so tokens
//! signed with the previous one stay valid until it is retired. The public halves are
//! published as a JWKS, with RFC 7638 thumbprints as key ids.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::{Claims, JwtVerifier};
use platform::key_files::{create_private_dir, ed25519_thumbprint, write_private_file};
use serde::Serialize;

const SUFFIX: &str = ".ed25519.pem";

struct Key {
    kid: String,
    created_at: DateTime<Utc>,
    public: [u8; 32],
    encoding: EncodingKey,
    file: PathBuf,
}

/// What an admin sees of a key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"kid": "3yvkOQ7ck4K5r6wK1qkq4y8sJXa1Q6b1l8i0b1x3yJk", "created_at": "2026-11-21T09:30:00Z", "active": true}))]
pub(crate) struct KeyInfo {
    /// RFC 7638 thumbprint of the public key; the `kid` of tokens it signs.
    pub(crate) kid: String,
    pub(crate) created_at: DateTime<Utc>,
    /// Whether it signs new tokens (the newest key).
    pub(crate) active: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RetireError {
    #[error("no key {0}")]
    Unknown(String),
    #[error("key {0} signs new tokens; rotate first")]
    Active(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The signing keys, shared by clones. Adds every key it knows to the process's verifier.
#[derive(Clone)]
pub(crate) struct KeyRing {
    dir: PathBuf,
    /// Oldest first; the last one signs.
    keys: Arc<RwLock<Vec<Key>>>,
    verifier: JwtVerifier,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Loads the keys in `dir`, generating the first one when there is none.
    ///
    /// # Errors
    /// An unreadable directory or key file (named, with the reason).
    pub(crate) fn load_or_create(dir: &Path, verifier: JwtVerifier, now: DateTime<Utc>) -> anyhow::Result<Self> {
        create_private_dir(dir)?;
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading signing keys in {}", dir.display()))? {
            let path = entry?.path();
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(SUFFIX)) {
                keys.push(read_key(&path)?);
            }
        }
        let ring = Self { dir: dir.to_owned(), keys: Arc::default(), verifier };
        if keys.is_empty() {
            keys.push(ring.generate(now)?);
            tracing::info!(dir = %dir.display(), "generated the first token signing key");
        }
        keys.sort_by_key(|key| (key.created_at, key.kid.clone()));
        for key in &keys {
            ring.verifier.add_ed25519_key(&key.kid, &key.public);
        }
        if let Ok(mut held) = ring.keys.write() {
            *held = keys;
        }
        Ok(ring)
    }

    fn generate(&self, now: DateTime<Utc>) -> anyhow::Result<Key> {
        let signing = SigningKey::from_bytes(&rand::random());
        let pem = signing.to_pkcs8_pem(Default::default()).context("encoding a new signing key")?;
        let file = self.dir.join(format!("{}{SUFFIX}", now.timestamp_millis()));
        write_private_file(&file, pem.as_bytes())?;
        read_key(&file)
    }

    /// Adds a new key that signs from now on; older keys keep verifying.
    ///
    /// # Errors
    /// When the key file cannot be written.
    pub(crate) fn rotate(&self, now: DateTime<Utc>) -> anyhow::Result<KeyInfo> {
        // One rotation at a time: the key written last is the one that signs, now and after a
        // restart.
        let mut keys = self.keys.write().map_err(|_| anyhow::anyhow!("the key ring lock is poisoned"))?;
        // Names are creation times; never reuse or go behind the newest.
        let newest = keys.last().map(|k| k.created_at);
        let created = newest.map_or(now, |newest| now.max(newest + chrono::TimeDelta::milliseconds(1)));
        let key = self.generate(created)?;
        self.verifier.add_ed25519_key(&key.kid, &key.public);
        let info = KeyInfo { kid: key.kid.clone(), created_at: key.created_at, active: true };
        keys.push(key);
        tracing::info!(kid = %info.kid, "rotated the token signing key");
        Ok(info)
    }

    /// Stops trusting an old key and deletes its file. Tokens it signed stop verifying.
    ///
    /// # Errors
    /// [`RetireError`]: unknown key, or the key that signs now.
    pub(crate) fn retire(&self, kid: &str) -> Result<(), RetireError> {
        let mut keys = self.keys.write().map_err(|_| anyhow::anyhow!("the key ring lock is poisoned"))?;
        let position = keys.iter().position(|k| k.kid == kid).ok_or_else(|| RetireError::Unknown(kid.to_owned()))?;
        if position + 1 == keys.len() {
            return Err(RetireError::Active(kid.to_owned()));
        }
        // The file first: a key that failed to go must not come back at the next start.
        std::fs::remove_file(&keys[position].file)
            .with_context(|| format!("deleting {}", keys[position].file.display()))?;
        let key = keys.remove(position);
        self.verifier.remove_key(&key.kid);
        tracing::info!(kid, "retired a token signing key");
        Ok(())
    }

    pub(crate) fn list(&self) -> Vec<KeyInfo> {
        let keys = self.keys.read();
        let Ok(keys) = keys else { return Vec::new() };
        let last = keys.len().saturating_sub(1);
        keys.iter()
            .enumerate()
            .map(|(i, k)| KeyInfo { kid: k.kid.clone(), created_at: k.created_at, active: i == last })
            .collect()
    }

    /// The public keys as a JWKS (RFC 7517), newest first.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        let keys = self.keys.read().map(|keys| {
            keys.iter()
                .rev()
                .map(|k| {
                    serde_json::json!({
                        "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(k.public),
                        "kid": k.kid, "use": "sig", "alg": "EdDSA"
                    })
                })
                .collect::<Vec<_>>()
        });
        serde_json::json!({ "keys": keys.unwrap_or_default() })
    }

    /// Signs `claims` with the newest key, naming it in the header's `kid`.
    ///
    /// # Errors
    /// When there is no key (not after `load_or_create`) or encoding fails.
    pub(crate) fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let keys = self.keys.read().map_err(|_| anyhow::anyhow!("the key ring lock is poisoned"))?;
        let key = keys.last().context("no signing key")?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).context("signing an access token")
    }
}

fn read_key(path: &Path) -> anyhow::Result<Key> {
    let describe = || format!("reading the signing key {}", path.display());
    let pem = std::fs::read_to_string(path).with_context(describe)?;
    let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| anyhow::anyhow!("{e}")).with_context(describe)?;
    let millis: i64 = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(SUFFIX))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{} is not named `<created, unix milliseconds>{SUFFIX}`", path.display()))?;
    let created_at = DateTime::from_timestamp_millis(millis).with_context(describe)?;
    let der = signing.to_pkcs8_der().map_err(|e| anyhow::anyhow!("{e}")).with_context(describe)?;
    let public = signing.verifying_key().to_bytes();
    Ok(Key {
        kid: ed25519_thumbprint(&public),
        created_at,
        public,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        file: path.to_owned(),
    })
}
