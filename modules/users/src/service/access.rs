//! Telling every token verifier that a user's access changed (ADR 0020): `users.access_changed`
//! is appended in the transaction of the change, and once it commits this process's own
//! verifier applies it at once; other processes read it from the outbox.

use chrono::{DateTime, Utc};
use platform::auth::revocation::AccessChanged;
use platform::bus::{self, Metadata};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{UsersService, delta};
use crate::domain::Account;

impl UsersService {
    /// Appends what `account`'s tokens may carry from now on (it as it stands after the
    /// change), with the sessions the change ended. Apply the result with
    /// [`UsersService::enforce`] after the commit.
    pub(crate) async fn record_access_change(
        &self,
        tx: &mut PgConnection,
        account: &Account,
        ended_sessions: Vec<Uuid>,
        now: DateTime<Utc>,
        metadata: &Metadata,
    ) -> anyhow::Result<AccessChanged> {
        let change = AccessChanged {
            user_id: account.id.0,
            active: account.is_active(),
            roles: account.roles.clone(),
            ended_sessions,
            changed_at: now,
            tokens_expire_by: now + delta(self.config.access_token_ttl),
        };
        bus::append(tx, &change, metadata).await?;
        Ok(change)
    }

    /// This process refuses, from now on, the tokens a committed change took access from.
    pub(crate) fn enforce(&self, change: &AccessChanged) {
        self.verifier.revocations().apply(change, self.now());
    }
}

/// Metadata of a change a user made without a request context at hand (sign-out, a new
/// password): the user is the actor.
pub(crate) fn by_user(user: Uuid, what: &str) -> Metadata {
    Metadata { actor: Some(user.to_string()), ..Metadata::system(what) }
}
