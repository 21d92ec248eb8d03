//! Service keys: how one module's process proves to another that a port call comes from the
//! module it names (ADR 0014). Every module has an Ed25519 key pair; the private half signs
//! short-lived service tokens (EdDSA JWTs: `sub` = calling module, `aud` = called module) and
//! stays with the processes hosting that module; the public half is all a callee needs.
//!
//! The keys are files in one directory, a trust bundle shared by every process:
//! `<module>.key.pem` (PKCS#8, private, only where the module is hosted) and
//! `<module>.pub.pem` (SPKI, one or more `PUBLIC KEY` blocks, so a rotation can trust the old
//! and the new key at once). `bulkhead service-keys generate` writes them for operators;
//! a process whose directory is writable generates the pairs of its own modules when
//! missing, which is all a single machine needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::key_files::{create_private_dir, ed25519_thumbprint, write_private_file, write_public_file};

/// The `iss` of every service token; user tokens have another, so neither passes for the other.
pub const SERVICE_TOKEN_ISSUER: &str = "bulkhead-services";

/// How long a service token is valid: long enough for one call and its retries.
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// How often an unknown key id may make the trust bundle be read again.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(2);

const PRIVATE_SUFFIX: &str = ".key.pem";
const PUBLIC_SUFFIX: &str = ".pub.pem";

/// The claims of a service token.
#[derive(Debug, Serialize, Deserialize)]
struct ServiceClaims {
    iss: String,
    /// The calling module.
    sub: String,
    /// The called module.
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Why a service token was refused. The caller sees one 401; the reason is logged.
#[derive(Debug, thiserror::Error)]
pub enum ServiceTokenError {
    #[error("not an EdDSA token with a key id")]
    Malformed,
    #[error("no trusted service key has id {0:?}")]
    UnknownKey(String),
    #[error("the key of module {key_owner} signed a token naming {subject}")]
    WrongSigner { key_owner: String, subject: String },
    #[error("the token fails verification: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

struct Signer {
    kid: String,
    key: EncodingKey,
}

struct Trusted {
    module: String,
    key: DecodingKey,
}

/// The process's service keys: the private keys of modules it signs for, and every module's
/// public keys. Cheap to clone.
#[derive(Clone)]
pub struct ServiceKeys {
    dir: PathBuf,
    signers: Arc<RwLock<HashMap<String, Signer>>>,
    trusted: Arc<RwLock<HashMap<String, Trusted>>>,
    last_reload: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let signers: Vec<String> = self.signers.read().map(|s| s.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("ServiceKeys").field("dir", &self.dir).field("signs_for", &signers).finish_non_exhaustive()
    }
}

impl ServiceKeys {
    /// Opens the trust bundle in `dir`: every module's public keys, read now and again when
    /// a token names a key not seen yet. Signing needs [`ServiceKeys::sign_for`].
    ///
    /// # Errors
    /// An unreadable key file.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let keys =
            Self { dir: dir.to_owned(), signers: Arc::default(), trusted: Arc::default(), last_reload: Arc::default() };
        keys.reload()?;
        Ok(keys)
    }

    /// Loads the private key of `module` (hosted here, calling another module's port), so
    /// this process can sign for it. A missing pair is generated when the directory can be
    /// written.
    ///
    /// # Errors
    /// A missing private key that cannot be generated (naming the command that makes one),
    /// or an unreadable one.
    pub fn sign_for(&self, module: &str) -> anyhow::Result<()> {
        if self.signers.read().is_ok_and(|signers| signers.contains_key(module)) {
            return Ok(());
        }
        let dir = &self.dir;
        let private = dir.join(format!("{module}{PRIVATE_SUFFIX}"));
        if !private.exists() {
            generate_pair(dir, module).with_context(|| {
                format!(
                    "no service key for the {module} module in {} and none could be made there; \
                     run `bulkhead service-keys generate --dir {}` (BULKHEAD_SERVICE_KEYS_DIR)",
                    dir.display(),
                    dir.display()
                )
            })?;
            tracing::info!(module, dir = %dir.display(), "generated a service key pair");
            self.reload()?;
        }
        let signing = read_private(&private)?;
        let der = signing.to_pkcs8_der().map_err(|e| anyhow::anyhow!("{e}")).context("encoding a service key")?;
        let signer =
            Signer { kid: kid(module, &signing.verifying_key()), key: EncodingKey::from_ed_der(der.as_bytes()) };
        self.signers
            .write()
            .map_err(|_| anyhow::anyhow!("the service keys lock is poisoned"))?
            .insert(module.to_owned(), signer);
        Ok(())
    }

    /// Writes a key pair for each of `modules` that has none in `dir`; returns those written.
    ///
    /// # Errors
    /// When `dir` or a key cannot be written.
    pub fn generate(dir: &Path, modules: &[&str]) -> anyhow::Result<Vec<String>> {
        let mut written = Vec::new();
        for module in modules {
            if !dir.join(format!("{module}{PRIVATE_SUFFIX}")).exists() {
                generate_pair(dir, module)?;
                written.push((*module).to_owned());
            }
        }
        Ok(written)
    }

    /// The directory the keys live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A service token for a call from `caller` to `audience`.
    ///
    /// # Errors
    /// When this process holds no key of `caller`.
    pub fn mint(&self, caller: &str, audience: &str) -> anyhow::Result<String> {
        let signers = self.signers.read().map_err(|_| anyhow::anyhow!("the service keys lock is poisoned"))?;
        let signer = signers.get(caller).with_context(|| format!("this process holds no service key of {caller}"))?;
        let now = chrono::Utc::now().timestamp();
        let lifetime = i64::try_from(TOKEN_LIFETIME.as_secs()).unwrap_or(60);
        let claims = ServiceClaims {
            iss: SERVICE_TOKEN_ISSUER.to_owned(),
            sub: caller.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            exp: now + lifetime,
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.kid.clone());
        jsonwebtoken::encode(&header, &claims, &signer.key).context("signing a service token")
    }

    /// The calling module, if `token` is a valid service token for `audience` signed by that
    /// module's key. An unknown key id reads the bundle again (a rotated or newly added
    /// module), at most every two seconds.
    ///
    /// # Errors
    /// [`ServiceTokenError`] saying what was wrong.
    pub fn verify(&self, token: &str, audience: &str) -> Result<String, ServiceTokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ServiceTokenError::Malformed)?;
        // Pinning the algorithm defeats `alg: none` and HS256 signed with a public key.
        if header.alg != Algorithm::EdDSA {
            return Err(ServiceTokenError::Malformed);
        }
        let kid = header.kid.ok_or(ServiceTokenError::Malformed)?;
        if !self.knows(&kid)
            && self.reload_allowed()
            && let Err(error) = self.reload()
        {
            tracing::warn!("reading the service keys again: {error:#}");
        }
        let trusted = self.trusted.read().map_err(|_| ServiceTokenError::UnknownKey(kid.clone()))?;
        let key = trusted.get(&kid).ok_or_else(|| ServiceTokenError::UnknownKey(kid.clone()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[SERVICE_TOKEN_ISSUER]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<ServiceClaims>(token, &key.key, &validation)?.claims;
        // A module's key speaks for that module only.
        if claims.sub != key.module {
            return Err(ServiceTokenError::WrongSigner { key_owner: key.module.clone(), subject: claims.sub });
        }
        Ok(claims.sub)
    }

    fn knows(&self, kid: &str) -> bool {
        self.trusted.read().is_ok_and(|trusted| trusted.contains_key(kid))
    }

    fn reload_allowed(&self) -> bool {
        let Ok(mut last) = self.last_reload.lock() else { return false };
        let due = last.is_none_or(|at| at.elapsed() >= RELOAD_AT_MOST_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// Reads every `<module>.pub.pem` in the directory.
    fn reload(&self) -> anyhow::Result<()> {
        let mut fresh = HashMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            // Nothing to trust yet: a monolith, or a process whose callers have not started.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                return Err(error).with_context(|| format!("reading the service keys in {}", self.dir.display()));
            }
        };
        for entry in entries {
            let path = entry?.path();
            let Some(module) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(PUBLIC_SUFFIX))
            else {
                continue;
            };
            for public in read_public(&path)? {
                fresh.insert(
                    kid(module, &public),
                    Trusted { module: module.to_owned(), key: DecodingKey::from_ed_der(public.as_bytes()) },
                );
            }
        }
        if let Ok(mut trusted) = self.trusted.write() {
            *trusted = fresh;
        }
        Ok(())
    }
}

/// `<module>.<RFC 7638 thumbprint>`: names the module in logs, the key exactly.
fn kid(module: &str, public: &VerifyingKey) -> String {
    format!("{module}.{}", ed25519_thumbprint(public.as_bytes()))
}

fn generate_pair(dir: &Path, module: &str) -> anyhow::Result<()> {
    create_private_dir(dir)?;
    let signing = SigningKey::from_bytes(&rand::random());
    let private = signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("{e}"))?;
    let public = signing.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("{e}"))?;
    let private_path = dir.join(format!("{module}{PRIVATE_SUFFIX}"));
    match write_private_file(&private_path, private.as_bytes()) {
        Ok(()) => {}
        // Another process made the pair first: its key stands.
        Err(error) if is_already_there(&error) => return Ok(()),
        Err(error) => return Err(error),
    }
    let public_path = dir.join(format!("{module}{PUBLIC_SUFFIX}"));
    // Replacing a stale public file is safe: its private half is gone.
    std::fs::remove_file(&public_path).ok();
    write_public_file(&public_path, public.as_bytes())
}

fn is_already_there(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::AlreadyExists)
}

fn read_private(path: &Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading the service key {}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{} is not an Ed25519 private key (PKCS#8 PEM)", path.display()))
}

/// Every `PUBLIC KEY` block of a PEM file.
fn read_public(path: &Path) -> anyhow::Result<Vec<VerifyingKey>> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut keys = Vec::new();
    for (index, _) in text.match_indices(BEGIN) {
        let block = &text[index..];
        let end = block.find("-----END PUBLIC KEY-----").map(|end| end + "-----END PUBLIC KEY-----".len());
        let pem = end.map(|end| &block[..end]).with_context(|| format!("{}: an unterminated key", path.display()))?;
        let key = VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{} holds a key that is not an Ed25519 public key", path.display()))?;
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn a_token_names_its_module_and_opens_only_its_audience() {
        let dir = tempfile::tempdir().unwrap();
        let orders = ServiceKeys::open(dir.path()).unwrap();
        orders.sign_for("orders").unwrap();
        let inventory = ServiceKeys::open(dir.path()).unwrap();
        let token = orders.mint("orders", "inventory").unwrap();
        assert_eq!(inventory.verify(&token, "inventory").unwrap(), "orders");
        assert!(matches!(inventory.verify(&token, "users"), Err(ServiceTokenError::Invalid(_))), "wrong audience");
        assert!(orders.mint("payments", "inventory").is_err(), "no key of another module");
    }

    #[test]
    fn a_key_speaks_only_for_its_own_module() {
        let dir = tempfile::tempdir().unwrap();
        ServiceKeys::generate(dir.path(), &["orders"]).unwrap();
        // Someone copies orders' public key under notifications' name and signs as
        // notifications with orders' private key.
        std::fs::copy(dir.path().join("orders.pub.pem"), dir.path().join("notifications.pub.pem")).unwrap();
        let forged = {
            let pem = std::fs::read_to_string(dir.path().join("orders.key.pem")).unwrap();
            let signing = SigningKey::from_pkcs8_pem(&pem).unwrap();
            let der = signing.to_pkcs8_der().unwrap();
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(kid("notifications", &signing.verifying_key()));
            let now = chrono::Utc::now().timestamp();
            let claims = ServiceClaims {
                iss: SERVICE_TOKEN_ISSUER.into(),
                sub: "orders".into(),
                aud: "users".into(),
                iat: now,
                exp: now + 60,
                jti: "x".into(),
            };
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
        };
        let users = ServiceKeys::open(dir.path()).unwrap();
        assert!(matches!(users.verify(&forged, "users"), Err(ServiceTokenError::WrongSigner { .. })));
    }

    #[test]
    fn a_key_added_later_is_found_and_a_read_only_bundle_without_one_says_how_to_make_it() {
        let dir = tempfile::tempdir().unwrap();
        let callee = ServiceKeys::open(dir.path()).unwrap();
        let caller = ServiceKeys::open(dir.path()).unwrap();
        caller.sign_for("notifications").unwrap();
        let token = caller.mint("notifications", "users").unwrap();
        assert_eq!(callee.verify(&token, "users").unwrap(), "notifications", "read again on an unknown key id");

        // Nothing can be created under /proc, not even by root: a read-only bundle.
        #[cfg(target_os = "linux")]
        {
            let read_only = ServiceKeys::open(Path::new("/proc/self/bulkhead-service-keys")).unwrap();
            let error = read_only.sign_for("orders").unwrap_err();
            assert!(format!("{error:#}").contains("bulkhead service-keys generate"), "{error:#}");
        }
    }

    #[test]
    fn user_tokens_and_unsigned_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ServiceKeys::open(dir.path()).unwrap();
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJvcmRlcnMiLCJhdWQiOiJpbnZlbnRvcnkifQ.";
        assert!(keys.verify(none, "inventory").is_err());
        let other = crate::testing::TestSigner::new();
        let verifier = crate::auth::JwtVerifier::new("bulkhead", "inventory");
        let user_token = other.token(&verifier, "someone", &[crate::auth::Role::Admin]);
        assert!(matches!(keys.verify(&user_token, "inventory"), Err(ServiceTokenError::UnknownKey(_))));
    }
}
