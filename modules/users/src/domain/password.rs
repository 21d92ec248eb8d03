//! Passwords: the policy a new one must meet (NIST SP 800-63B: length over composition rules,
//! and not a known-breached password) and argon2id hashing with OWASP's parameters.

use std::collections::HashSet;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use super::Email;

pub(crate) const MIN_LENGTH: usize = 12;
pub(crate) const MAX_LENGTH: usize = 128;

/// Passwords of 12+ characters from SecLists' top-1M list (see `common_passwords.md`).
const COMMON_PASSWORDS: &str = include_str!("../common_passwords.txt");

/// Why a new password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PasswordRejection {
    #[error("must be at least {MIN_LENGTH} characters long")]
    TooShort,
    #[error("must be at most {MAX_LENGTH} characters long")]
    TooLong,
    #[error("is one of the most commonly used passwords")]
    Common,
    #[error("must not contain the email address")]
    ContainsEmail,
}

impl PasswordRejection {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::TooShort | Self::TooLong => "length",
            Self::Common => "common_password",
            Self::ContainsEmail => "contains_email",
        }
    }
}

/// The rules a new password must meet. Holds the common-password list, so build it once.
#[derive(Debug, Clone)]
pub(crate) struct PasswordPolicy {
    common: Arc<HashSet<&'static str>>,
}

impl PasswordPolicy {
    pub(crate) fn new() -> Self {
        Self { common: Arc::new(COMMON_PASSWORDS.lines().collect()) }
    }

    /// # Errors
    /// The first rule `candidate` breaks.
    pub(crate) fn check(
        &self,
        candidate: &SecretString,
        email: Option<&Email>,
    ) -> Result<NewPassword, PasswordRejection> {
        let password = candidate.expose_secret();
        let length = password.chars().count();
        if length < MIN_LENGTH {
            return Err(PasswordRejection::TooShort);
        }
        if length > MAX_LENGTH {
            return Err(PasswordRejection::TooLong);
        }
        let folded = password.trim().to_lowercase();
        if self.common.contains(folded.as_str()) {
            return Err(PasswordRejection::Common);
        }
        if let Some(email) = email {
            let local = email.local_part();
            if folded.contains(email.as_str()) || (local.chars().count() >= 4 && folded.contains(local)) {
                return Err(PasswordRejection::ContainsEmail);
            }
        }
        Ok(NewPassword(candidate.clone()))
    }
}

/// A password that met the policy.
#[derive(Debug, Clone)]
pub(crate) struct NewPassword(SecretString);

impl NewPassword {
    pub(crate) fn secret(&self) -> &SecretString {
        &self.0
    }
}

/// argon2id with OWASP's recommended minimum (19 MiB memory, 2 iterations, 1 lane). Hashing
/// is CPU-bound and slow on purpose: call it from `spawn_blocking`.
#[derive(Clone)]
pub(crate) struct PasswordHashing {
    argon2: Argon2<'static>,
    /// A hash of a random password, verified against when an account does not exist so that
    /// "no such account" takes as long as "wrong password".
    decoy: Arc<str>,
    /// Each hash takes 19 MiB: at most two per core at once, so a flood of sign-ins queues
    /// instead of exhausting memory (requests time out while they wait).
    permits: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for PasswordHashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHashing").finish_non_exhaustive()
    }
}

impl PasswordHashing {
    /// # Errors
    /// Invalid parameters (not with the constants here).
    pub(crate) fn new() -> anyhow::Result<Self> {
        let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let decoy_password: [u8; 32] = rand::random();
        let decoy = argon2
            .hash_password(&decoy_password)
            .map_err(|e| anyhow::anyhow!("hashing the decoy password: {e}"))?
            .to_string();
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Ok(Self { argon2, decoy: decoy.into(), permits: Arc::new(tokio::sync::Semaphore::new(2 * cores)) })
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password`, with a random salt.
    ///
    /// # Errors
    /// Only on internal argon2 failures.
    pub(crate) async fn hash(&self, password: &NewPassword) -> anyhow::Result<String> {
        let argon2 = self.argon2.clone();
        let password = password.secret().clone();
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            argon2
                .hash_password(password.expose_secret().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
        })
        .await?
    }

    /// Whether `password` matches `hash`; with no hash (unknown account) it verifies against a
    /// decoy and answers `false`, taking the same time.
    pub(crate) async fn verify(&self, password: &SecretString, hash: Option<&str>) -> bool {
        let (argon2, password) = (self.argon2.clone(), password.clone());
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| self.decoy.clone(), Arc::from);
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let matched = tokio::task::spawn_blocking(move || {
            argon2.verify_password(password.expose_secret().as_bytes(), &*hash).is_ok()
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    fn check(password: &str) -> Result<NewPassword, PasswordRejection> {
        PasswordPolicy::new()
            .check(&SecretString::from(password), Some(&Email::parse("alice.smith@example.com").unwrap()))
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert_eq!(check("short-pass1").unwrap_err(), PasswordRejection::TooShort);
        assert!(check("ééééééééééé!").is_ok(), "12 characters, 24 bytes");
        assert!(check(&"x7".repeat(64)).is_ok());
        assert_eq!(check(&format!("{}!", "x7".repeat(64))).unwrap_err(), PasswordRejection::TooLong);
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        assert_eq!(check("password1234").unwrap_err(), PasswordRejection::Common);
        assert_eq!(check("QwErTy123456").unwrap_err(), PasswordRejection::Common);
        assert!(check("correct horse battery staple").is_ok());
    }

    #[test]
    fn the_email_is_not_a_password() {
        assert_eq!(check("Alice.Smith@example.com").unwrap_err(), PasswordRejection::ContainsEmail);
        assert_eq!(check("my name is alice.smith").unwrap_err(), PasswordRejection::ContainsEmail);
    }

    #[tokio::test]
    async fn hashes_verify_only_their_own_password() {
        let hashing = PasswordHashing::new().unwrap();
        let password = check("correct horse battery staple").unwrap();
        let hash = hashing.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hashing.verify(password.secret(), Some(&hash)).await);
        assert!(!hashing.verify(&SecretString::from("correct horse battery stapler"), Some(&hash)).await);
        assert!(!hashing.verify(password.secret(), None).await);
    }
}
