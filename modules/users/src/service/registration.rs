//! Registration: a customer account with an unverified email and a verification request.

use platform::auth::Role;
use platform::bus;
use platform::http::RequestContext;
use secrecy::SecretString;
use users_contract::events::UserRegistered;
use users_contract::{ActionPurpose, Preferences, UserId};
use uuid::Uuid;

use super::{RegistrationError, UsersService, delta};
use crate::domain::{Account, DisplayName, Email, Status};
use crate::store::{accounts, action_requests, is_unique_violation};

/// How long after a request its link may still be minted (the message may be delayed).
pub(super) const VERIFICATION_MINTABLE_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) email: String,
    pub(crate) password: SecretString,
    pub(crate) display_name: String,
}

impl UsersService {
    /// Creates a customer account and asks for its email to be verified (`users.user_registered`).
    ///
    /// # Errors
    /// Per-field rejections (all of them at once), or [`RegistrationError::EmailTaken`].
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub(crate) async fn register(
        &self,
        request: Registration,
        ctx: &RequestContext,
    ) -> Result<Account, RegistrationError> {
        let mut problems = Vec::new();
        let email = Email::parse(&request.email).map_err(|m| problems.push(("email", "email", m.to_owned()))).ok();
        let name = DisplayName::parse(&request.display_name)
            .map_err(|m| problems.push(("display_name", "invalid", m.to_owned())))
            .ok();
        let password = self
            .policy
            .check(&request.password, email.as_ref())
            .map_err(|rejection| problems.push(("password", rejection.code(), rejection.to_string())))
            .ok();
        let (Some(email), Some(name), Some(password)) = (email, name, password) else {
            return Err(RegistrationError::Invalid(
                problems
                    .into_iter()
                    .map(|(field, code, message)| platform::http::FieldError {
                        field: field.to_owned(),
                        code: code.to_owned(),
                        message,
                    })
                    .collect(),
            ));
        };
        // Registration answers 409 for a taken email anyway, so checking first only spares
        // the hashing; the unique index below settles races.
        if accounts::find_by_email(&mut *self.pool.acquire().await?, email.as_str()).await?.is_some() {
            return Err(RegistrationError::EmailTaken);
        }
        let password_hash = self.hashing.hash(&password).await?;
        let now = self.now();
        let account = Account {
            id: UserId(Uuid::now_v7()),
            email: email.as_str().to_owned(),
            display_name: name.into_inner(),
            password_hash,
            roles: vec![Role::Customer],
            status: Status::Active,
            email_verified_at: None,
            preferences: Preferences::default(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.pool.begin().await?;
        match accounts::insert(&mut tx, &account).await {
            Err(error) if is_unique_violation(&error, "users_email_key") => return Err(RegistrationError::EmailTaken),
            other => other?,
        }
        let request = action_requests::open(
            &mut tx,
            account.id,
            ActionPurpose::VerifyEmail,
            now,
            now + delta(VERIFICATION_MINTABLE_FOR),
        )
        .await?;
        let event = UserRegistered { user_id: account.id, verification_request: request, registered_at: now };
        bus::append(&mut tx, &event, &ctx.metadata(Some(account.id.to_string()))).await?;
        tx.commit().await?;
        tracing::info!(user_id = %account.id, "registered");
        Ok(account)
    }
}
