//! Sending one email: over SMTP with lettre (rustls), or into the file mailbox. Failures are
//! sorted into what is worth another attempt (4xx replies, connection, TLS and
//! authentication trouble, timeouts, a full disk) and what is not (5xx replies to the
//! message's MAIL, RCPT or DATA, an address that cannot be written).

use std::path::PathBuf;

use anyhow::Context;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::domain::Rendered;
use crate::{EmailConfig, MailTransport, SmtpConfig, SmtpTls};

/// The way out, built once.
#[derive(Clone)]
pub(crate) enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Mailbox(PathBuf),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp(_) => f.write_str("Mailer::Smtp"),
            Self::Mailbox(dir) => f.debug_tuple("Mailer::Mailbox").field(dir).finish(),
        }
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// Try again later: a 4xx reply, no connection, a timeout.
    #[error("{message}")]
    Transient { code: Option<u16>, message: String },
    /// Never going to work as it is: a 5xx reply, an invalid address.
    #[error("{message}")]
    Permanent { code: Option<u16>, message: String },
}

impl SendError {
    pub(crate) fn code(&self) -> Option<u16> {
        match self {
            Self::Transient { code, .. } | Self::Permanent { code, .. } => *code,
        }
    }
}

/// The addresses and content of one message.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    /// Becomes the `Message-ID`, so a receiver can tell a resend after a crash from a new
    /// message.
    pub(crate) id: uuid::Uuid,
    pub(crate) to_name: &'a str,
    pub(crate) to_address: &'a str,
    pub(crate) rendered: &'a Rendered,
}

impl Mailer {
    /// # Errors
    /// SMTP settings lettre refuses (e.g. a host that is not a valid TLS server name).
    pub(crate) fn new(config: &EmailConfig) -> anyhow::Result<Self> {
        match &config.transport {
            MailTransport::Mailbox { dir } => Ok(Self::Mailbox(dir.clone())),
            MailTransport::Smtp(smtp) => Ok(Self::Smtp(smtp_transport(smtp)?)),
        }
    }

    /// Sends one message from `from`.
    ///
    /// # Errors
    /// [`SendError`], sorted by whether retrying may help.
    pub(crate) async fn send(&self, from: &Mailbox, outgoing: &Outgoing<'_>) -> Result<(), SendError> {
        let message = build(from, outgoing)?;
        match self {
            Self::Smtp(transport) => transport.send(message).await.map(drop).map_err(|error| classify(&error)),
            Self::Mailbox(dir) => {
                tokio::fs::create_dir_all(dir).await.map_err(|error| SendError::Transient {
                    code: None,
                    message: format!("creating the mailbox {}: {error}", dir.display()),
                })?;
                AsyncFileTransport::<Tokio1Executor>::new(dir).send(message).await.map(drop).map_err(|error| {
                    SendError::Transient { code: None, message: format!("writing to the mailbox: {error}") }
                })
            }
        }
    }
}

fn smtp_transport(config: &SmtpConfig) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let builder = match config.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
            .with_context(|| format!("setting up STARTTLS to {}", config.host))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)
            .with_context(|| format!("setting up TLS to {}", config.host))?,
    };
    let mut builder = builder.port(config.port).timeout(Some(config.timeout));
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_owned()));
        }
        (None, None) => {}
        _ => anyhow::bail!("SMTP credentials need both a user name and a password"),
    }
    Ok(builder.build())
}

/// Parses a mailbox such as `Bulkhead <no-reply@example.com>`.
///
/// # Errors
/// Not a mailbox.
pub(crate) fn parse_mailbox(raw: &str) -> anyhow::Result<Mailbox> {
    raw.parse().with_context(|| format!("`{raw}` is not an email address"))
}

fn build(from: &Mailbox, outgoing: &Outgoing<'_>) -> Result<Message, SendError> {
    let permanent = |message: String| SendError::Permanent { code: None, message };
    let address = outgoing
        .to_address
        .parse()
        .map_err(|error| permanent(format!("the recipient's address is not valid: {error}")))?;
    let to = Mailbox::new(Some(outgoing.to_name.to_owned()), address);
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(outgoing.rendered.subject.clone())
        .message_id(Some(format!("<{}@notifications.bulkhead>", outgoing.id)))
        .multipart(MultiPart::alternative_plain_html(outgoing.rendered.text.clone(), outgoing.rendered.html.clone()))
        .map_err(|error| permanent(format!("the message cannot be built: {error}")))
}

/// Replies to `AUTH` (RFC 4954) and "authenticate first": about the relay's configuration
/// (our credentials, its policy), not about the message.
const AUTHENTICATION_CODES: [u16; 4] = [530, 534, 535, 538];

fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    let code = error.status().and_then(|code| code.to_string().parse::<u16>().ok());
    let message = format!("{error}");
    let authentication = code.is_some_and(|code| AUTHENTICATION_CODES.contains(&code));
    // lettre's client errors are mostly the relay's setup (STARTTLS not offered, no
    // authentication mechanism in common, a connection that is not encrypted); only the
    // non-ASCII ones are about this message. lettre gives no finer kind than the text.
    let client_about_message = error.is_client() && message.contains("non-ascii");
    if (error.is_permanent() && !authentication) || client_about_message {
        // 5xx replies to MAIL, RCPT or DATA: this message will not go as it is.
        SendError::Permanent { code, message }
    } else {
        // 4xx replies, and everything about reaching the server and setting up the session:
        // refused or dropped connections, TLS, authentication, timeouts. Retried; a relay
        // misconfigured for longer than the retry window leaves the message failed, for an
        // admin to retry once it is fixed.
        SendError::Transient { code, message }
    }
}
