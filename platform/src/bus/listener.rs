//! Wake-ups: one `LISTEN` connection per process (tokio-postgres, which exposes
//! notifications as a stream) turns `NOTIFY`s into per-module watch channels. Everything that
//! waits on them also polls, so a lost connection delays work but never loses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::append::APPENDED_CHANNEL;
use super::sequencer::SEQUENCED_CHANNEL;

type Channels = Mutex<HashMap<String, watch::Sender<u64>>>;

/// Per-module counters that move whenever that module appended or sequenced events.
#[derive(Debug, Clone, Default)]
pub struct Wakeups {
    appended: Arc<Channels>,
    sequenced: Arc<Channels>,
    /// Whether the `LISTEN` connection is up (else everything runs on polling).
    listening: Arc<AtomicBool>,
}

fn receiver(channels: &Channels, module: &str) -> watch::Receiver<u64> {
    let mut channels = channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    channels.entry(module.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
}

fn bump(channels: &Channels, module: &str) {
    let channels = channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(sender) = channels.get(module) {
        sender.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Wakeups {
    /// Changes when `module` appended events (the sequencer waits on this).
    pub fn appended(&self, module: &str) -> watch::Receiver<u64> {
        receiver(&self.appended, module)
    }

    /// Changes when `module`'s events got positions (subscribers wait on this).
    pub fn sequenced(&self, module: &str) -> watch::Receiver<u64> {
        receiver(&self.sequenced, module)
    }

    /// Whether notifications arrive (false: work is found by polling only).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Wakes every waiter, e.g. after a reconnect, when notifications may have been missed.
    pub fn everything(&self) {
        for channels in [&self.appended, &self.sequenced] {
            let channels = channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for sender in channels.values() {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    fn dispatch(&self, channel: &str, module: &str) {
        match channel {
            APPENDED_CHANNEL => bump(&self.appended, module),
            SEQUENCED_CHANNEL => bump(&self.sequenced, module),
            _ => {}
        }
    }
}

/// Listens until cancelled, reconnecting with backoff when the connection drops.
pub async fn run(options: PgConnectOptions, wakeups: Wakeups, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = tokio::select! {
            () = cancel.cancelled() => return,
            outcome = listen(&options, &wakeups) => outcome,
        };
        // A connection that got as far as listening earns a fresh start on the backoff.
        if wakeups.listening.swap(false, Ordering::Relaxed) {
            backoff = Duration::from_millis(100);
        }
        if let Err(error) = outcome {
            tracing::warn!("bus notifications lost, polling until they are back: {error:#}");
        }
        wakeups.everything();
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn listen(options: &PgConnectOptions, wakeups: &Wakeups) -> anyhow::Result<()> {
    let config = tokio_config(options)?;
    let (client, mut connection) = config.connect(NoTls).await.context("connecting the bus listener")?;
    let dispatcher = wakeups.clone();
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let driver = async move {
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(notification) = message? {
                dispatcher.dispatch(notification.channel(), notification.payload());
            }
        }
        anyhow::Ok(())
    };
    let subscribe = async {
        client.batch_execute(&format!("LISTEN {APPENDED_CHANNEL}; LISTEN {SEQUENCED_CHANNEL}")).await?;
        // Anything that happened before LISTEN took effect is picked up now.
        wakeups.listening.store(true, Ordering::Relaxed);
        wakeups.everything();
        std::future::pending::<anyhow::Result<()>>().await
    };
    tokio::select! {
        outcome = driver => outcome.and_then(|()| Err(anyhow::anyhow!("the listener connection closed"))),
        outcome = subscribe => outcome,
    }
}

/// tokio-postgres settings equivalent to sqlx's (host, port, user, password, database).
fn tokio_config(options: &PgConnectOptions) -> anyhow::Result<tokio_postgres::Config> {
    let url = url::Url::parse(options.to_url_lossy().as_str())?;
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let mut config = tokio_postgres::Config::new();
    config
        .host(url.host_str().unwrap_or("localhost"))
        .port(url.port().unwrap_or(5432))
        .user(decode(url.username()))
        .dbname(decode(url.path().trim_start_matches('/')))
        .application_name("bulkhead:bus-listener")
        .connect_timeout(Duration::from_secs(10));
    if let Some(password) = url.password() {
        config.password(decode(password));
    }
    Ok(config)
}
