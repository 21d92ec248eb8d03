//! Revocation: tokens that claim more than their subject holds now are refused before they
//! expire (ADR 0020).
//!
//! The users module appends [`AccessChanged`] to its outbox whenever a user's access changes.
//! [`Revocations`] remembers the latest change per user, and the sessions that ended, for as
//! long as a token issued before the change can live; [`super::JwtVerifier`] consults it on
//! every token. [`RevocationFeed`] keeps it current in every process by tailing
//! `users.outbox` (every module role may read it), so the rule holds whether or not the
//! process hosts users; the users module also applies each change to its own process's
//! verifier as soon as it commits, so in one process the effect is immediate.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use shared_kernel::access::AccessChanged;
use shared_kernel::event::Event;

use super::{Claims, Role};

/// Why a verified token was refused anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Revoked {
    #[error("the token's session has ended")]
    SessionEnded,
    #[error("the token's account is deactivated")]
    Deactivated,
    #[error("the token claims a role its subject no longer holds")]
    RoleWithdrawn,
}

/// What is known of one user's access since a recent change.
#[derive(Debug, Clone)]
struct Access {
    active: bool,
    roles: Vec<Role>,
    changed_at: DateTime<Utc>,
    /// After this no token from before the change is alive: forget it.
    until: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<String, Access>,
    /// Ended session → until when its tokens can still be presented.
    ended_sessions: HashMap<String, DateTime<Utc>>,
}

/// Recent access changes, consulted by the verifier. Cheap to clone; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    state: Arc<RwLock<State>>,
}

/// Tolerance on `tokens_expire_by`, as the verifier's on `exp`.
const LEEWAY: TimeDelta = TimeDelta::seconds(super::LEEWAY_SECONDS);

impl Revocations {
    /// Records a change. An older change than the one known for the user (applied out of
    /// order: in process at commit, then again from the outbox) does not undo a newer one.
    pub fn apply(&self, change: &AccessChanged, now: DateTime<Utc>) {
        let until = change.tokens_expire_by + LEEWAY;
        if until <= now {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.users.retain(|_, access| access.until > now);
        state.ended_sessions.retain(|_, until| *until > now);
        for session in &change.ended_sessions {
            let kept = state.ended_sessions.entry(session.to_string()).or_insert(until);
            *kept = (*kept).max(until);
        }
        let user = change.user_id.to_string();
        if state.users.get(&user).is_some_and(|known| known.changed_at > change.changed_at) {
            return;
        }
        let access =
            Access { active: change.active, roles: change.roles.clone(), changed_at: change.changed_at, until };
        state.users.insert(user, access);
    }

    /// Why a token with these claims must be refused, if it must.
    pub(crate) fn refusal(&self, claims: &Claims, now: DateTime<Utc>) -> Option<Revoked> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(session) = &claims.sid
            && state.ended_sessions.get(session).is_some_and(|until| *until > now)
        {
            return Some(Revoked::SessionEnded);
        }
        let access = state.users.get(&claims.sub).filter(|access| access.until > now)?;
        if !access.active {
            return Some(Revoked::Deactivated);
        }
        claims.roles.iter().any(|role| !access.roles.contains(role)).then_some(Revoked::RoleWithdrawn)
    }

    /// How many users and sessions are remembered (for tests and the log).
    pub fn len(&self) -> (usize, usize) {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        (state.users.len(), state.ended_sessions.len())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

/// Where the changes come from: the users module's outbox, in the same database.
const SOURCE: &str = "users.outbox";

/// How far back a feed reads at its start: longer than an access token lives (15 minutes).
const LOOKBACK: Duration = Duration::from_secs(3600);

/// Keeps a process's [`Revocations`] current by reading `users.outbox`: on start, every
/// change of the last `lookback` (at least the access-token lifetime); then each new one, as
/// soon as the bus's `NOTIFY` says users' events were sequenced, or after `poll_interval`.
/// Nothing is stored: a restarted process reads the window again.
#[derive(Debug, Clone)]
pub struct RevocationFeed {
    pool: PgPool,
    revocations: Revocations,
    /// How far back the start reads (1 hour; the access-token lifetime is 15 minutes).
    pub lookback: Duration,
    /// Longest wait between reads when wake-ups are lost (1 s).
    pub poll_interval: Duration,
    /// Longest wait between reads while the bus's wake-ups arrive (30 s): a safety net.
    pub listening_poll_interval: Duration,
    /// The bus whose wake-ups the feed follows, to know whether they arrive.
    bus: Option<crate::bus::Bus>,
}

impl RevocationFeed {
    /// A feed into `revocations`, reading with `pool` (any module role may read the outbox).
    pub fn new(pool: PgPool, revocations: Revocations) -> Self {
        Self {
            pool,
            revocations,
            lookback: LOOKBACK,
            poll_interval: Duration::from_secs(1),
            listening_poll_interval: Duration::from_secs(30),
            bus: None,
        }
    }

    /// Reads only when `bus` says users' events were sequenced, while its notifications
    /// arrive; polls every `poll_interval` while they do not.
    #[must_use]
    pub fn woken_by(mut self, bus: &crate::bus::Bus) -> Self {
        self.bus = Some(bus.clone());
        self
    }

    /// For a process on a database of its own (the Kafka transport): reads the window of
    /// recent changes from the users module's topic, then follows it until `cancel` fires.
    /// Changes are applied as they come; one that arrives late does not undo a newer one.
    ///
    /// # Errors
    /// A Kafka consumer that cannot be configured.
    #[cfg(feature = "kafka")]
    pub async fn start_over_kafka(
        revocations: Revocations,
        config: &crate::bus::kafka::KafkaConfig,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let since = Utc::now() - TimeDelta::from_std(LOOKBACK).unwrap_or(TimeDelta::MAX);
        let apply = std::sync::Arc::new(move |event: &crate::bus::EventEnvelope| {
            let decoded = u32::try_from(event.event_version)
                .ok()
                .filter(|version| *version == AccessChanged::VERSION)
                .and_then(|_| serde_json::from_value::<AccessChanged>(event.payload.clone()).ok());
            match decoded {
                Some(change) => revocations.apply(&change, Utc::now()),
                None => tracing::error!(event_id = %event.id, "an access change this process cannot read; skipped"),
            }
        });
        crate::bus::kafka::follow_topic(config, "users", AccessChanged::TYPE, since, apply, cancel).await
    }

    /// Reads the window of recent changes, then follows new ones until `cancel` fires. The
    /// first read is done before this returns, so a process serves no request before it
    /// knows what was revoked.
    ///
    /// # Errors
    /// None yet; a first read that fails is retried while following.
    pub async fn start(
        self,
        wakeups: Option<watch::Receiver<u64>>,
        cancel: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        // In a split, users' outbox may exist but not be readable by this module's role yet
        // (its process is between migrating and granting): follow from the start of the log,
        // where changes whose tokens have expired are dropped as they are read.
        let cursor = match self.start_position().await {
            Ok(start) => match self.catch_up(start).await {
                Ok(cursor) => cursor,
                Err(error) => {
                    tracing::warn!("cannot read access changes yet; retrying: {error:#}");
                    start
                }
            },
            Err(error) => {
                tracing::warn!("cannot read access changes yet; retrying: {error:#}");
                0
            }
        };
        Ok(tokio::spawn(self.follow(cursor, wakeups, cancel)))
    }

    async fn follow(self, mut cursor: i64, mut wakeups: Option<watch::Receiver<u64>>, cancel: CancellationToken) {
        let mut failing = false;
        loop {
            let pushed = wakeups.is_some() && self.bus.as_ref().is_some_and(crate::bus::Bus::notifications_connected);
            let wait = if pushed { self.listening_poll_interval } else { self.poll_interval };
            let woken = async {
                match wakeups.as_mut() {
                    Some(wakeups) => {
                        if wakeups.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = woken => {}
                () = tokio::time::sleep(wait) => {}
            }
            match self.catch_up(cursor).await {
                Ok(next) => {
                    if failing {
                        tracing::info!("reading access changes again");
                    }
                    failing = false;
                    cursor = next;
                }
                Err(error) if !failing => {
                    // Tokens are still checked against what is known; new revocations wait.
                    tracing::warn!("cannot read access changes; retrying: {error:#}");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }

    /// The position before the first change of the window (0 for an empty or missing log).
    async fn start_position(&self) -> anyhow::Result<i64> {
        let mut db = self.pool.acquire().await.context("connecting to read access changes")?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(SOURCE)
            .fetch_one(&mut *db)
            .await
            .context("looking for the users module's outbox")?;
        if !exists {
            return Ok(0);
        }
        let since = Utc::now() - TimeDelta::from_std(self.lookback).unwrap_or(TimeDelta::MAX);
        let sql = format!(
            "SELECT coalesce((SELECT min(position) - 1 FROM {SOURCE} WHERE position IS NOT NULL AND sequenced_at >= $1),
                             (SELECT coalesce(max(position), 0) FROM {SOURCE}))"
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(since)
            .fetch_one(&mut *db)
            .await
            .context("finding where recent access changes start")
    }

    /// Applies every change after `cursor`; returns the new cursor.
    async fn catch_up(&self, mut cursor: i64) -> anyhow::Result<i64> {
        const BATCH: i64 = 500;
        let mut db = self.pool.acquire().await.context("connecting to read access changes")?;
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(SOURCE).fetch_one(&mut *db).await?;
        if !exists {
            return Ok(cursor);
        }
        let sql = format!(
            "SELECT position, event_version, payload FROM {SOURCE}
              WHERE position > $1 AND event_type = $2 ORDER BY position LIMIT $3"
        );
        loop {
            let rows: Vec<(i64, i32, serde_json::Value)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(cursor)
                .bind(AccessChanged::TYPE)
                .bind(BATCH)
                .fetch_all(&mut *db)
                .await
                .context("reading access changes")?;
            let now = Utc::now();
            for (position, version, payload) in &rows {
                cursor = *position;
                let decoded = u32::try_from(*version)
                    .ok()
                    .filter(|version| *version == AccessChanged::VERSION)
                    .and_then(|_| serde_json::from_value::<AccessChanged>(payload.clone()).ok());
                match decoded {
                    Some(change) => self.revocations.apply(&change, now),
                    None => tracing::error!(position, version, "an access change this process cannot read; skipped"),
                }
            }
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < BATCH {
                return Ok(cursor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use uuid::Uuid;

    use super::*;

    fn claims(sub: Uuid, roles: &[Role], sid: Option<Uuid>) -> Claims {
        Claims {
            sub: sub.to_string(),
            roles: roles.to_vec(),
            iss: "bulkhead".to_owned(),
            aud: "bulkhead-api".to_owned(),
            exp: 0,
            iat: 0,
            nbf: None,
            jti: None,
            sid: sid.map(|s| s.to_string()),
        }
    }

    fn change(user: Uuid, active: bool, roles: &[Role], ended: &[Uuid], at: DateTime<Utc>) -> AccessChanged {
        AccessChanged {
            user_id: user,
            active,
            roles: roles.to_vec(),
            ended_sessions: ended.to_vec(),
            changed_at: at,
            tokens_expire_by: at + TimeDelta::minutes(15),
        }
    }

    #[test]
    fn a_demoted_admin_token_is_refused_and_a_fresh_customer_token_is_not() {
        let (revocations, user, now) = (Revocations::default(), Uuid::now_v7(), Utc::now());
        revocations.apply(&change(user, true, &[Role::Customer], &[], now), now);
        let old = claims(user, &[Role::Customer, Role::Admin], None);
        assert_eq!(revocations.refusal(&old, now), Some(Revoked::RoleWithdrawn));
        assert_eq!(revocations.refusal(&claims(user, &[Role::Customer], None), now), None);
        assert_eq!(revocations.refusal(&claims(Uuid::now_v7(), &[Role::Admin], None), now), None);
    }

    #[test]
    fn ended_sessions_and_closed_accounts_are_refused_until_their_tokens_expire() {
        let (revocations, user, session, now) = (Revocations::default(), Uuid::now_v7(), Uuid::now_v7(), Utc::now());
        revocations.apply(&change(user, true, &[Role::Customer], &[session], now), now);
        let token = claims(user, &[Role::Customer], Some(session));
        assert_eq!(revocations.refusal(&token, now), Some(Revoked::SessionEnded));
        assert_eq!(revocations.refusal(&claims(user, &[Role::Customer], Some(Uuid::now_v7())), now), None);
        let later = now + TimeDelta::minutes(16);
        assert_eq!(revocations.refusal(&token, later), None, "every such token has expired by then");

        revocations.apply(&change(user, false, &[Role::Customer], &[], now), now);
        assert_eq!(revocations.refusal(&claims(user, &[Role::Customer], None), now), Some(Revoked::Deactivated));
    }

    #[test]
    fn an_older_change_applied_late_does_not_undo_a_newer_one() {
        let (revocations, user, now) = (Revocations::default(), Uuid::now_v7(), Utc::now());
        revocations.apply(&change(user, true, &[Role::Customer], &[], now), now);
        revocations.apply(&change(user, true, &[Role::Customer, Role::Admin], &[], now - TimeDelta::seconds(1)), now);
        assert_eq!(
            revocations.refusal(&claims(user, &[Role::Admin], None), now),
            Some(Revoked::RoleWithdrawn),
            "the demotion came last"
        );
    }

    #[test]
    fn changes_whose_tokens_have_all_expired_are_not_kept() {
        let (revocations, user, now) = (Revocations::default(), Uuid::now_v7(), Utc::now());
        revocations.apply(&change(user, false, &[], &[Uuid::now_v7()], now - TimeDelta::hours(1)), now);
        assert!(revocations.is_empty());
    }
}
