//! The first admin, created on first start so a fresh system can be administered.

use anyhow::Context;
use platform::auth::Role;
use rand::distr::{Alphanumeric, SampleString};
use secrecy::SecretString;
use users_contract::{Preferences, UserId};
use uuid::Uuid;

use super::UsersService;
use crate::FirstAdmin;
use crate::domain::{Account, Email, Status};
use crate::store::{accounts, is_unique_violation};

impl UsersService {
    /// Creates the configured admin when no admin exists; the existence check and the insert
    /// run under a lock, so replicas starting together create one.
    ///
    /// # Errors
    /// A configured password that breaks the policy, the email taken by a non-admin account,
    /// or a database failure.
    pub(crate) async fn ensure_first_admin(&self) -> anyhow::Result<Option<FirstAdmin>> {
        let settings = &self.config.first_admin;
        let email = Email::parse(&settings.email).map_err(|m| anyhow::anyhow!("BULKHEAD_ADMIN_EMAIL {m}"))?;
        let mut tx = self.pool.begin().await?;
        if accounts::any_admin(&mut tx).await? {
            return Ok(None);
        }
        let (password, generated) = match &settings.password {
            Some(password) => (password.clone(), false),
            // 24 alphanumerics: about 143 bits.
            None => (SecretString::from(Alphanumeric.sample_string(&mut rand::rng(), 24)), true),
        };
        let checked = self
            .policy
            .check(&password, Some(&email))
            .map_err(|rejection| anyhow::anyhow!("BULKHEAD_ADMIN_PASSWORD {rejection}"))?;
        let now = self.now();
        let account = Account {
            id: UserId(Uuid::now_v7()),
            email: email.as_str().to_owned(),
            display_name: "Administrator".to_owned(),
            password_hash: self.hashing.hash(&checked).await?,
            roles: vec![Role::Admin, Role::Customer],
            status: Status::Active,
            email_verified_at: Some(now),
            preferences: Preferences::default(),
            created_at: now,
            updated_at: now,
        };
        match accounts::insert(&mut tx, &account).await {
            Err(error) if is_unique_violation(&error, "users_email_key") => anyhow::bail!(
                "BULKHEAD_ADMIN_EMAIL {} belongs to an existing account that is not an admin; choose another address",
                email.as_str()
            ),
            other => other.context("creating the first admin")?,
        }
        tx.commit().await?;
        tracing::info!(user_id = %account.id, email = email.as_str(), "created the first admin");
        Ok(Some(FirstAdmin { email: account.email, generated_password: generated.then_some(password) }))
    }
}
