//! The notifications module's settings as flags and environment variables, known only to
//! binaries that compile the module in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use platform::settings::{duration_in, secret};
use secrecy::SecretString;

use crate::{MailTransport, NotificationsConfig, SmtpConfig, SmtpTls};

/// Where email goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MailTransportKind {
    Mailbox,
    Smtp,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTlsMode {
    None,
    Starttls,
    Tls,
}

/// `BULKHEAD_SHOP_NAME`, `BULKHEAD_MAIL_*`, `BULKHEAD_SMTP_*`, `BULKHEAD_WEBHOOK*`.
#[derive(Debug, Clone, clap::Args)]
pub struct NotificationsArgs {
    /// The shop's name in the messages notifications sends.
    #[arg(long, env = "BULKHEAD_SHOP_NAME", default_value = "Bulkhead", global = true)]
    pub shop_name: String,

    /// The `From` of every email, e.g. `Shop <orders@shop.example>`.
    #[arg(long, env = "BULKHEAD_MAIL_FROM", default_value = "Bulkhead <no-reply@bulkhead.localhost>", global = true)]
    pub mail_from: String,

    /// Where email goes: `mailbox` (one `.eml` file per message under BULKHEAD_MAILBOX_DIR;
    /// nothing leaves the machine) or `smtp` (BULKHEAD_SMTP_*).
    #[arg(long, env = "BULKHEAD_MAIL_TRANSPORT", default_value = "mailbox", global = true, value_enum)]
    pub mail_transport: MailTransportKind,

    /// The file mailbox's directory (default: `<data dir>/mailbox`).
    #[arg(long, env = "BULKHEAD_MAILBOX_DIR", global = true)]
    pub mailbox_dir: Option<PathBuf>,

    /// SMTP server host (required with BULKHEAD_MAIL_TRANSPORT=smtp).
    #[arg(long, env = "BULKHEAD_SMTP_HOST", global = true)]
    pub smtp_host: Option<String>,

    /// SMTP server port (required with BULKHEAD_MAIL_TRANSPORT=smtp; usually 587 for
    /// `starttls`, 465 for `tls`, 25 for `none`).
    #[arg(long, env = "BULKHEAD_SMTP_PORT", global = true)]
    pub smtp_port: Option<u16>,

    /// How the SMTP connection is protected: `starttls`, `tls` or `none` (a relay on the same
    /// host or a test server only).
    #[arg(long, env = "BULKHEAD_SMTP_TLS", default_value = "starttls", global = true, value_enum)]
    pub smtp_tls: SmtpTlsMode,

    /// SMTP user name (with BULKHEAD_SMTP_PASSWORD, or neither).
    #[arg(long, env = "BULKHEAD_SMTP_USERNAME", global = true)]
    pub smtp_username: Option<String>,

    /// SMTP password.
    #[arg(long, env = "BULKHEAD_SMTP_PASSWORD", global = true, hide_env_values = true, value_parser = secret)]
    pub smtp_password: Option<SecretString>,

    /// Longest wait for the SMTP server on each command.
    #[arg(long, env = "BULKHEAD_SMTP_TIMEOUT", default_value = "30s", global = true, value_parser = |v: &str| duration_in(v, "BULKHEAD_SMTP_TIMEOUT", Some(Duration::from_secs(1)), None))]
    pub smtp_timeout: Duration,

    /// Let webhook endpoints point at loopback, private and link-local addresses (development
    /// and tests only: it opens the server to SSRF).
    #[arg(long, env = "BULKHEAD_WEBHOOKS_ALLOW_PRIVATE_TARGETS", default_value_t = false, global = true, action = clap::ArgAction::Set)]
    pub webhooks_allow_private_targets: bool,

    /// Longest a webhook receiver may take to answer one delivery.
    #[arg(long, env = "BULKHEAD_WEBHOOK_TIMEOUT", default_value = "10s", global = true, value_parser = |v: &str| duration_in(v, "BULKHEAD_WEBHOOK_TIMEOUT", Some(Duration::from_secs(1)), Some(Duration::from_secs(60))))]
    pub webhook_timeout: Duration,

    /// A webhook endpoint is disabled after this many failed delivery attempts in a row (a
    /// success resets the count).
    #[arg(long, env = "BULKHEAD_WEBHOOK_DISABLE_AFTER", default_value = "15", global = true, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub webhook_disable_after: u32,
}

impl NotificationsArgs {
    /// The module's configuration; the mailbox lives under `data_dir` unless configured.
    ///
    /// # Errors
    /// SMTP chosen without a host and port, or with only one of user name and password.
    pub fn config(&self, data_dir: &Path) -> anyhow::Result<NotificationsConfig> {
        let mut config = NotificationsConfig { shop_name: self.shop_name.clone(), ..Default::default() };
        config.email.from.clone_from(&self.mail_from);
        config.email.transport = match self.mail_transport {
            MailTransportKind::Mailbox => MailTransport::Mailbox { dir: self.mailbox_dir(data_dir) },
            MailTransportKind::Smtp => {
                let (Some(host), Some(port)) = (self.smtp_host.clone(), self.smtp_port) else {
                    anyhow::bail!("BULKHEAD_MAIL_TRANSPORT=smtp needs BULKHEAD_SMTP_HOST and BULKHEAD_SMTP_PORT");
                };
                let tls = match self.smtp_tls {
                    SmtpTlsMode::None => SmtpTls::None,
                    SmtpTlsMode::Starttls => SmtpTls::StartTls,
                    SmtpTlsMode::Tls => SmtpTls::Tls,
                };
                let mut smtp = SmtpConfig::new(host, port, tls);
                match (&self.smtp_username, &self.smtp_password) {
                    (Some(_), Some(_)) | (None, None) => {}
                    _ => anyhow::bail!("set both BULKHEAD_SMTP_USERNAME and BULKHEAD_SMTP_PASSWORD, or neither"),
                }
                smtp.username.clone_from(&self.smtp_username);
                smtp.password.clone_from(&self.smtp_password);
                smtp.timeout = self.smtp_timeout;
                MailTransport::Smtp(smtp)
            }
        };
        config.webhooks.allow_private_targets = self.webhooks_allow_private_targets;
        config.webhooks.timeout = self.webhook_timeout;
        config.webhooks.disable_after_failures = self.webhook_disable_after;
        Ok(config)
    }

    /// Where email goes, for the start-up banner: a newcomer opens the mailbox's `.eml` files
    /// to see what was sent.
    pub fn destination(&self, data_dir: &Path) -> String {
        match self.mail_transport {
            MailTransportKind::Mailbox => {
                format!("Mailbox  {} (one .eml per email sent)", self.mailbox_dir(data_dir).display())
            }
            MailTransportKind::Smtp => format!(
                "Mail     smtp://{}:{}",
                self.smtp_host.as_deref().unwrap_or_default(),
                self.smtp_port.unwrap_or_default()
            ),
        }
    }

    fn mailbox_dir(&self, data_dir: &Path) -> PathBuf {
        self.mailbox_dir.clone().unwrap_or_else(|| data_dir.join("mailbox"))
    }
}
