//! The notifications module: it listens to the other modules' events and tells people (email)
//! and systems (signed webhooks) what happened, exactly once per event, channel and
//! recipient. docs/notifications.md tells how; other modules see nothing of it but its
//! events subscribed and its HTTP API.

mod domain;
mod http;
mod jobs;
mod mail;
mod metrics;
mod service;
mod settings;
mod store;
mod subscriptions;
mod webhook_client;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use platform::auth::JwtVerifier;
use platform::bus::Subscription;
use platform::clock::SystemClock;
use platform::db::ModuleSchema;
use platform::jobs::Job;
use platform::jobs::JobQueue;
use platform::metrics::Metrics;
use platform::{Manifest, Module, ModuleDescriptor};
use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use users_contract::UsersApi;
use utoipa_axum::router::OpenApiRouter;

pub use settings::NotificationsArgs;

static MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/notifications");

/// What `app` needs before it has a pool: the schema to provision and migrate.
pub const DESCRIPTOR: ModuleDescriptor =
    ModuleDescriptor { schema: ModuleSchema { name: "notifications", migrations: &MIGRATIONS }, manifest };

/// How the module behaves; [`NotificationsConfig::default`] gives the documented values.
#[derive(Debug, Clone)]
pub struct NotificationsConfig {
    /// The shop's name in messages and subjects ("Bulkhead").
    pub shop_name: String,
    pub email: EmailConfig,
    pub webhooks: WebhookConfig,
    /// How often notifications left `pending` by a delivery job that ended without an outcome
    /// (a database error or a panic on its last attempt) are marked `failed`, so an admin
    /// can retry them (10 min). Only rows untouched for longer than their channel's whole
    /// retry window are swept ([`RetryConfig::stale_after`]).
    pub sweep_every: Duration,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            shop_name: "Bulkhead".to_owned(),
            email: EmailConfig::default(),
            webhooks: WebhookConfig::default(),
            sweep_every: Duration::from_secs(10 * 60),
        }
    }
}

/// How email leaves.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// The `From` of every message, an RFC 5322 mailbox
    /// (`Bulkhead <no-reply@bulkhead.localhost>`).
    pub from: String,
    /// SMTP or the file mailbox (the default: a mailbox under `.bulkhead/mailbox`).
    pub transport: MailTransport,
    /// Attempts and backoff of one message's delivery (8 attempts, 5 s doubling to 10 min,
    /// so about half an hour of an SMTP server's absence is outlasted).
    pub retry: RetryConfig,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            from: "Bulkhead <no-reply@bulkhead.localhost>".to_owned(),
            transport: MailTransport::default(),
            retry: RetryConfig { attempts: 8, base_delay: Duration::from_secs(5), max_delay: Duration::from_secs(600) },
        }
    }
}

/// Where email goes.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// Nothing leaves the machine: each message is written as `<uuid>.eml` into `dir`
    /// (created when needed), where a newcomer can open it with any mail client. The default,
    /// with `dir` = `.bulkhead/mailbox` (beside the embedded database's data).
    Mailbox { dir: PathBuf },
    /// A real SMTP server.
    Smtp(SmtpConfig),
}

impl Default for MailTransport {
    fn default() -> Self {
        Self::Mailbox { dir: PathBuf::from(".bulkhead/mailbox") }
    }
}

/// An SMTP relay.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    /// 25 for `none`, 587 for `starttls`, 465 for `tls` are usual; no default is guessed.
    pub port: u16,
    pub tls: SmtpTls,
    /// Both or neither: the credentials of `AUTH PLAIN`/`LOGIN`.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Longest wait for the server on each command (30 s).
    pub timeout: Duration,
}

impl SmtpConfig {
    /// `host:port` in `tls` mode, without credentials, with the 30 s timeout.
    pub fn new(host: impl Into<String>, port: u16, tls: SmtpTls) -> Self {
        Self { host: host.into(), port, tls, username: None, password: None, timeout: Duration::from_secs(30) }
    }
}

/// How the SMTP connection is protected. TLS uses rustls with the Mozilla root certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or a test server.
    None,
    /// Plain connection upgraded with `STARTTLS`, which must succeed (port 587).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Let endpoints point at loopback, private, link-local and other non-global addresses
    /// (false). Only for development and tests: it opens the server to SSRF.
    pub allow_private_targets: bool,
    /// Longest a receiver may take to answer one delivery (10 s).
    pub timeout: Duration,
    /// An endpoint is disabled after this many failed attempts in a row (15); a success
    /// resets the count.
    pub disable_after_failures: u32,
    /// Attempts and backoff of one delivery (6 attempts, 10 s doubling to 30 min).
    pub retry: RetryConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            timeout: Duration::from_secs(10),
            disable_after_failures: 15,
            retry: RetryConfig {
                attempts: 6,
                base_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(30 * 60),
            },
        }
    }
}

/// Attempts and exponential backoff (with jitter) of a delivery job.
#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait after the first failure; doubles after each.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryConfig {
    /// The longest a pending notification may go untouched while its job is still alive:
    /// twice the sum of the backoffs between all its attempts, and at least an hour. Each
    /// attempt touches the row, so a row older than this has no job left to settle it.
    #[must_use]
    pub fn stale_after(self) -> Duration {
        let policy = self.policy();
        let waits: Duration = (1..self.attempts.max(1))
            .map(|failed| policy.base_delay.saturating_mul(1 << failed.saturating_sub(1).min(30)).min(policy.max_delay))
            .sum();
        waits.saturating_mul(2).max(Duration::from_secs(60 * 60))
    }

    fn policy(self) -> platform::bus::RetryPolicy {
        platform::bus::RetryPolicy {
            max_attempts: self.attempts,
            base_delay: self.base_delay,
            max_delay: self.max_delay,
        }
    }
}

/// The notifications module, built from its pool, the users port, the process's verifier
/// and its config.
#[derive(Debug, Clone)]
pub struct NotificationsModule {
    service: Arc<service::NotificationsService>,
    verifier: JwtVerifier,
}

impl NotificationsModule {
    /// # Errors
    /// A template that does not parse, an invalid `From` address or SMTP settings, or an
    /// HTTP client that cannot be built.
    pub fn new(
        pool: PgPool,
        users: Arc<dyn UsersApi>,
        verifier: JwtVerifier,
        config: NotificationsConfig,
    ) -> anyhow::Result<Self> {
        let service = service::NotificationsService::new(pool, users, config, Arc::new(SystemClock))?;
        Ok(Self { service: Arc::new(service), verifier })
    }

    /// Registers the module's metrics (`bulkhead_notifications_*`) in the process's registry.
    #[must_use]
    pub fn with_metrics(self, metrics: &Metrics) -> Self {
        self.service.metrics.register(metrics);
        self
    }
}

impl Module for NotificationsModule {
    fn name(&self) -> &'static str {
        DESCRIPTOR.schema.name
    }

    fn public_routes(&self) -> OpenApiRouter {
        http::router(self.service.clone(), self.verifier.clone())
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        subscriptions::all(&self.service)
    }

    fn jobs(&self) -> Vec<JobQueue> {
        let config = &self.service.config;
        vec![
            JobQueue::new(jobs::EmailHandler(self.service.clone())).retry(config.email.retry.policy()),
            JobQueue::new(jobs::WebhookHandler(self.service.clone())).retry(config.webhooks.retry.policy()),
            JobQueue::recurring(
                jobs::SweepHandler(self.service.clone()),
                config.sweep_every.max(Duration::from_secs(1)),
                jobs::SweepStale {},
            )
            .concurrency(1),
        ]
    }

    fn manifest(&self) -> Manifest {
        manifest()
    }
}

/// What the module uses and offers (DESIGN §2), known without building it.
fn manifest() -> Manifest {
    Manifest {
        ports_used: vec![users_contract::PORT],
        ports_served: Vec::new(),
        events_published: Vec::new(),
        // Plus the placed orders, to know whom an order's payment events are about.
        events_subscribed: [subscriptions::EVENT_TYPES.as_slice(), &[subscriptions::ORDER_OWNERS]].concat(),
        jobs: vec![service::EmailDelivery::QUEUE, service::WebhookDelivery::QUEUE, jobs::SweepStale::QUEUE],
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn webhook_retries_back_off_exponentially_up_to_the_cap() {
        let policy = WebhookConfig::default().retry.policy();
        for (failed, full) in [(1, 10), (2, 20), (3, 40), (4, 80)] {
            let delay = policy.delay_after(failed);
            let full = Duration::from_secs(full);
            assert!(delay >= full / 2 && delay <= full, "after {failed} failures: {delay:?}");
        }
        assert!(policy.delay_after(30) <= Duration::from_secs(30 * 60));
    }

    #[test]
    fn a_pending_notification_is_stale_after_twice_its_retry_window_and_never_before_an_hour() {
        assert_eq!(WebhookConfig::default().retry.stale_after(), Duration::from_secs(60 * 60));
        let slow =
            RetryConfig { attempts: 10, base_delay: Duration::from_secs(60), max_delay: Duration::from_secs(600) };
        // 60 + 120 + 240 + 480 + 5 × 600 seconds between ten attempts, twice.
        assert_eq!(slow.stale_after(), Duration::from_secs(2 * (60 + 120 + 240 + 480 + 5 * 600)));
        let single = RetryConfig { attempts: 1, ..slow };
        assert_eq!(single.stale_after(), Duration::from_secs(60 * 60));
    }

    #[test]
    fn the_default_mail_transport_is_the_file_mailbox() {
        let config = NotificationsConfig::default();
        assert!(matches!(config.email.transport, MailTransport::Mailbox { ref dir } if dir.ends_with("mailbox")));
        assert!(!config.webhooks.allow_private_targets);
    }
}
