//! Signing in, refreshing and signing out. A session is one sign-in: a family of refresh
//! tokens, each exchanged once for the next. Presenting an exchanged token again means it
//! leaked, so the whole family is revoked (OAuth 2.0 Security BCP, refresh token rotation).

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use platform::auth::Claims;
use platform::auth::revocation::AccessChanged;
use platform::http::RequestContext;
use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{AuthError, UsersService, delta, hash_secret, new_secret};
use crate::domain::{Account, Email};
use crate::store::accounts;
use crate::store::login_failures::{self, Scope};
use crate::store::sessions::{self, NewSession, RevokeReason};

#[derive(Debug)]
pub(crate) struct LoginRequest {
    pub(crate) email: String,
    pub(crate) password: SecretString,
}

/// What a sign-in or refresh hands out. `Debug` leaves the tokens out.
pub(crate) struct IssuedTokens {
    pub(crate) access_token: String,
    pub(crate) access_expires_in: Duration,
    pub(crate) refresh_token: String,
    pub(crate) refresh_expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens").field("refresh_expires_at", &self.refresh_expires_at).finish_non_exhaustive()
    }
}

impl UsersService {
    /// Checks the password and starts a session. Unknown email and wrong password fail the
    /// same way, in the same time, and both count toward the backoff.
    ///
    /// # Errors
    /// [`AuthError::Throttled`] before checking anything while backing off,
    /// [`AuthError::InvalidCredentials`], or [`AuthError::Deactivated`] (right password only).
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub(crate) async fn login(&self, request: LoginRequest, ctx: &RequestContext) -> Result<IssuedTokens, AuthError> {
        let now = self.now();
        let email = Email::parse(&request.email).ok();
        let client_key = ctx.client_address.map(client_bucket);
        let mut db = self.pool.acquire().await?;
        // Per account, the attempt is counted before the password is checked (in one statement
        // with the backoff test), so parallel guesses at one account get no more tries than
        // serial ones; a right password takes the count back. Per client address only
        // failures count: many people may sign in at once behind one address, and the
        // per-account count already bounds the guesses at each account.
        if let Some(client) = &client_key
            && let Some(failures) = login_failures::read(&mut db, Scope::Client, client).await?
            && let Some(until) = self.config.throttle.client.blocked_until(failures, now)
        {
            return Err(AuthError::Throttled(wait_until(until, now)));
        }
        if let Some(email) = &email
            && let Some(wait) = self.count_attempt(&mut db, Scope::Account, email.as_str(), now).await?
        {
            return Err(AuthError::Throttled(wait));
        }
        let account = match &email {
            Some(email) => accounts::find_by_email(&mut db, email.as_str()).await?,
            None => None,
        };
        drop(db);
        let matched = self.hashing.verify(&request.password, account.as_ref().map(|a| a.password_hash.as_str())).await;
        let mut db = self.pool.acquire().await?;
        let Some(account) = account.filter(|_| matched) else {
            if let Some(client) = &client_key {
                let decay = self.config.throttle.client.decay;
                login_failures::record(&mut db, Scope::Client, client, now, decay).await?;
            }
            return Err(AuthError::InvalidCredentials);
        };
        // The password was right: this attempt was no failure.
        login_failures::clear(&mut db, Scope::Account, &account.email).await?;
        if !account.is_active() {
            return Err(AuthError::Deactivated);
        }
        drop(db);
        let mut tx = self.pool.begin().await?;
        let session = Uuid::now_v7();
        sessions::insert(
            &mut tx,
            &NewSession {
                id: session,
                user_id: account.id,
                created_at: now,
                expires_at: now + delta(self.config.session_ttl),
                client_address: ctx.client_address,
                user_agent: ctx.user_agent.as_deref(),
            },
        )
        .await?;
        let tokens = self.issue(&mut tx, &account, session, now + delta(self.config.session_ttl), now).await?;
        tx.commit().await?;
        tracing::info!(user_id = %account.id, session_id = %session, "signed in");
        Ok(tokens)
    }

    /// Counts a password attempt against `key`; `Some(wait)` while it is backing off (then
    /// nothing was counted and the password must not be checked).
    pub(super) async fn count_attempt(
        &self,
        db: &mut PgConnection,
        scope: Scope,
        key: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<Duration>> {
        let backoff = match scope {
            Scope::Account => self.config.throttle.account,
            Scope::Client => self.config.throttle.client,
        };
        Ok(login_failures::count_attempt(db, scope, key, now, &backoff)
            .await?
            .err()
            .map(|until| wait_until(until, now)))
    }

    /// Exchanges a refresh token for a new access token and a new refresh token.
    ///
    /// # Errors
    /// [`AuthError::InvalidRefreshToken`] for an unknown, expired or revoked token (or a
    /// deactivated account); [`AuthError::RefreshTokenReused`] when the token was exchanged
    /// already, which also revokes its session.
    #[tracing::instrument(skip_all, err(level = "info"))]
    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens, AuthError> {
        let now = self.now();
        let hash = hash_secret(refresh_token);
        let mut tx = self.pool.begin().await?;
        let presented = sessions::find_token_for_update(&mut tx, &hash).await?.ok_or(AuthError::InvalidRefreshToken)?;
        if presented.rotated_at.is_some() {
            // The family leaked: its access tokens stop working too, not only its refreshes.
            let change = self
                .end_session(
                    &mut tx,
                    presented.session_id,
                    RevokeReason::RefreshTokenReused,
                    "refresh_token_reused",
                    now,
                )
                .await?;
            tx.commit().await?;
            if let Some(change) = &change {
                self.enforce(change);
            }
            tracing::warn!(session_id = %presented.session_id, user_id = %presented.user_id, "refresh token reused; session revoked");
            return Err(AuthError::RefreshTokenReused);
        }
        if presented.revoked_at.is_some() || presented.token_expires_at <= now || presented.session_expires_at <= now {
            return Err(AuthError::InvalidRefreshToken);
        }
        let account = accounts::find(&mut tx, users_contract::UserId(presented.user_id))
            .await?
            .filter(Account::is_active)
            .ok_or(AuthError::InvalidRefreshToken)?;
        sessions::mark_rotated(&mut tx, &hash, now).await?;
        sessions::touch(&mut tx, presented.session_id, now).await?;
        let tokens = self.issue(&mut tx, &account, presented.session_id, presented.session_expires_at, now).await?;
        tx.commit().await?;
        Ok(tokens)
    }

    /// Ends the session of a refresh token. Unknown tokens are ignored (RFC 7009): the
    /// outcome the caller wants holds either way.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, err)]
    pub(crate) async fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        let mut tx = self.pool.begin().await?;
        if let Some(session) = sessions::session_of_token(&mut tx, &hash_secret(refresh_token)).await? {
            let change = self.end_session(&mut tx, session, RevokeReason::Logout, "logout", self.now()).await?;
            tx.commit().await?;
            if let Some(change) = &change {
                self.enforce(change);
            }
            tracing::info!(session_id = %session, "signed out");
        }
        Ok(())
    }

    /// Revokes `session` and, if it was live, records that its access tokens are refused
    /// from now on (returned, to enforce after the commit).
    async fn end_session(
        &self,
        tx: &mut PgConnection,
        session: Uuid,
        reason: RevokeReason,
        what: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<AccessChanged>> {
        if !sessions::revoke(tx, session, reason, now).await? {
            return Ok(None);
        }
        let Some(user) = sessions::user_of(tx, session).await? else { return Ok(None) };
        let Some(account) = accounts::find(tx, user).await? else { return Ok(None) };
        let metadata = super::access::by_user(user.0, what);
        Ok(Some(self.record_access_change(tx, &account, vec![session], now, &metadata).await?))
    }

    /// A new refresh token in `session` and an access token naming it.
    async fn issue(
        &self,
        tx: &mut PgConnection,
        account: &Account,
        session: Uuid,
        session_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IssuedTokens> {
        // The prefix lets secret scanners recognise a leaked token.
        let refresh_token = format!("rt_{}", new_secret().0);
        let hash = hash_secret(&refresh_token);
        let refresh_expires_at = (now + delta(self.config.refresh_token_ttl)).min(session_expires_at);
        sessions::insert_refresh_token(tx, &hash, session, now, refresh_expires_at).await?;
        let claims = Claims {
            sub: account.id.to_string(),
            roles: account.roles.clone(),
            iss: self.verifier.issuer().to_owned(),
            aud: self.verifier.audience().to_owned(),
            exp: (now + delta(self.config.access_token_ttl)).timestamp(),
            iat: now.timestamp(),
            nbf: Some(now.timestamp()),
            jti: Some(Uuid::now_v7().to_string()),
            sid: Some(session.to_string()),
        };
        let access_token = self.keys.sign(&claims).context("signing an access token")?;
        Ok(IssuedTokens {
            access_token,
            access_expires_in: self.config.access_token_ttl,
            refresh_token,
            refresh_expires_at,
        })
    }
}

/// Whole seconds until `until`, rounded up, for `Retry-After`.
fn wait_until(until: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    Duration::from_secs((until - now).to_std().unwrap_or_default().as_secs() + 1)
}

/// The throttling key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's
/// network), so rotating through one's own IPv6 addresses buys no extra attempts.
fn client_bucket(address: std::net::IpAddr) -> String {
    match address {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::client_bucket;

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_bit_prefix() {
        let a = client_bucket("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = client_bucket("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_eq!(client_bucket(std::net::Ipv4Addr::new(192, 0, 2, 7).into()), "192.0.2.7");
        assert_eq!(client_bucket("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
