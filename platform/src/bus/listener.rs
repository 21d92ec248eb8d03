//! Wake-ups: one `LISTEN` connection per process (tokio-postgres, which exposes
//! notifications as a stream) turns `NOTIFY`s into watch channels: per module, and per
//! partition of a subscription. A sequencing `NOTIFY` names the key hash and type of each event
//! it numbered, so only the partitions those keys fall in, of subscriptions that handle those
//! types, wake (a partition that wakes for nothing still opens, claims and rolls back a
//! transaction, or commits one that skips). Everything that waits on them also polls, so a
//! lost connection delays work but never loses it.

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

/// What a waiter wants to hear of: events of `module` whose key hash is `index` modulo
/// `count`, of the given types (short names, without the module; `None`: any type).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Interest {
    module: String,
    count: i32,
    index: i32,
    types: Option<Vec<String>>,
}

impl Interest {
    fn concerns(&self, module: &str, events: Option<&[Sequenced]>) -> bool {
        self.module == module
            && events.is_none_or(|events| {
                events.iter().any(|event| {
                    event.hash.rem_euclid(self.count.max(1)) == self.index
                        && match (&self.types, &event.short_type) {
                            (Some(types), Some(short)) => types.iter().any(|t| t == short),
                            _ => true,
                        }
                })
            })
    }
}

/// One numbered event as a sequencing notification names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sequenced {
    pub(crate) hash: i32,
    /// The event type without its module (`None`: not named, so any).
    pub(crate) short_type: Option<String>,
}

type PartitionChannels = Mutex<HashMap<Interest, watch::Sender<u64>>>;

/// Per-module counters that move whenever that module appended or sequenced events.
#[derive(Debug, Clone, Default)]
pub struct Wakeups {
    appended: Arc<Channels>,
    sequenced: Arc<Channels>,
    /// Per partition of a module's events: moves when events of keys in it were sequenced.
    partitions: Arc<PartitionChannels>,
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

    /// Changes when events of `module` whose keys fall in partition `index` of `count` got
    /// positions (or when it cannot be known which keys did).
    pub fn sequenced_in(&self, module: &str, count: i32, index: i32) -> watch::Receiver<u64> {
        self.interest(Interest { module: module.to_owned(), count, index, types: None })
    }

    /// [`Wakeups::sequenced_in`], for events of `types` only (full names, `<module>.<name>`;
    /// none: any type).
    pub fn sequenced_in_of(&self, module: &str, count: i32, index: i32, types: &[&str]) -> watch::Receiver<u64> {
        if types.is_empty() {
            return self.sequenced_in(module, count, index);
        }
        let prefix = format!("{module}.");
        let mut short: Vec<String> =
            types.iter().map(|t| t.strip_prefix(prefix.as_str()).unwrap_or(t).to_owned()).collect();
        short.sort_unstable();
        short.dedup();
        self.interest(Interest { module: module.to_owned(), count, index, types: Some(short) })
    }

    fn interest(&self, interest: Interest) -> watch::Receiver<u64> {
        let mut partitions = self.partitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        partitions.entry(interest).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Changes when events of `module` with aggregate key `key` got positions (and, rarely,
    /// for other keys: those whose hash is the same). For readers that follow one aggregate,
    /// such as an order's event stream.
    pub fn sequenced_for_key(&self, module: &str, key: &str) -> watch::Receiver<u64> {
        // A partition interest with as many partitions as there are hashes.
        self.sequenced_in(module, i32::MAX, shared_kernel::event::key_hash(key).rem_euclid(i32::MAX))
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
        let partitions = self.partitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for sender in partitions.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes the waiters of `module`'s events: every one, or only those `events` concern.
    pub(crate) fn sequenced_now(&self, module: &str, events: Option<&[Sequenced]>) {
        bump(&self.sequenced, module);
        let mut partitions = self.partitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Interests nobody waits on any more (a stopped bus in tests, a closed stream) go.
        partitions.retain(|_, sender| sender.receiver_count() > 0);
        for (interest, sender) in partitions.iter() {
            if interest.concerns(module, events) {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    fn dispatch(&self, channel: &str, payload: &str) {
        match channel {
            APPENDED_CHANNEL => bump(&self.appended, payload),
            SEQUENCED_CHANNEL => {
                let (module, events) = sequenced_payload(payload);
                self.sequenced_now(module, events.as_deref());
            }
            _ => {}
        }
    }
}

/// Reads a sequencing `NOTIFY`'s payload, `<module>` or `<module>:<hash>/<type>,…` (types
/// without their module; `<hash>` alone names no type): the module and, when given, what was
/// numbered (`None`: anything, wake everyone).
pub(crate) fn sequenced_payload(payload: &str) -> (&str, Option<Vec<Sequenced>>) {
    let Some((module, entries)) = payload.split_once(':') else { return (payload, None) };
    let parsed: Option<Vec<Sequenced>> = entries
        .split(',')
        .map(|entry| {
            let (hash, short_type) = match entry.split_once('/') {
                Some((hash, short)) => (hash, Some(short.to_owned())),
                None => (entry, None),
            };
            Some(Sequenced { hash: hash.parse().ok()?, short_type })
        })
        .collect();
    (module, parsed)
}

/// The payload [`sequenced_payload`] reads: each distinct (key hash, type) numbered, when they
/// fit in a `NOTIFY` (8,000 bytes), else the module alone.
pub(crate) fn sequenced_notice(module: &str, events: &[(i32, String)]) -> String {
    const MOST: usize = 7_900;
    let prefix = format!("{module}.");
    let mut payload = format!("{module}:");
    for (i, (hash, event_type)) in events.iter().enumerate() {
        if i > 0 {
            payload.push(',');
        }
        let short = event_type.strip_prefix(prefix.as_str()).unwrap_or(event_type);
        payload.push_str(&format!("{hash}/{short}"));
        if payload.len() > MOST {
            return module.to_owned();
        }
    }
    if events.is_empty() { module.to_owned() } else { payload }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(hash: i32, short: &str) -> Sequenced {
        Sequenced { hash, short_type: Some(short.to_owned()) }
    }

    #[test]
    fn a_sequencing_notice_names_keys_and_types_or_else_the_module_alone() {
        let events = [(7, "orders.order_placed".to_owned()), (12, "orders.order_confirmed".to_owned())];
        assert_eq!(sequenced_notice("orders", &events), "orders:7/order_placed,12/order_confirmed");
        assert_eq!(
            sequenced_payload("orders:7/order_placed,12/order_confirmed"),
            ("orders", Some(vec![numbered(7, "order_placed"), numbered(12, "order_confirmed")]))
        );
        assert_eq!(sequenced_payload("orders:7"), ("orders", Some(vec![Sequenced { hash: 7, short_type: None }])));
        assert_eq!(sequenced_payload("orders"), ("orders", None));
        let many: Vec<(i32, String)> = (0..5_000).map(|n| (n, "orders.order_placed".to_owned())).collect();
        assert_eq!(sequenced_notice("orders", &many), "orders");
        assert_eq!(sequenced_payload("orders:7/x,y"), ("orders", None));
    }

    #[test]
    fn only_the_partitions_the_keys_fall_in_wake_and_only_for_their_types() {
        let wakeups = Wakeups::default();
        let zero = wakeups.sequenced_in("orders", 4, 0);
        let mut one = wakeups.sequenced_in("orders", 4, 1);
        let placed_only = wakeups.sequenced_in_of("orders", 4, 1, &["orders.order_placed"]);
        let other = wakeups.sequenced_in("users", 4, 1);
        let mut module = wakeups.sequenced("orders");
        wakeups.dispatch(SEQUENCED_CHANNEL, "orders:5/order_confirmed,9/order_confirmed");
        assert!(one.has_changed().unwrap());
        assert!(!placed_only.has_changed().unwrap(), "not a type it handles");
        assert!(!zero.has_changed().unwrap());
        assert!(!other.has_changed().unwrap());
        assert!(module.has_changed().unwrap());
        one.borrow_and_update();
        module.borrow_and_update();
        wakeups.dispatch(SEQUENCED_CHANNEL, "orders");
        assert!(zero.has_changed().unwrap() && one.has_changed().unwrap() && module.has_changed().unwrap());
        assert!(placed_only.has_changed().unwrap(), "a notice that names nothing wakes everyone");
        assert!(!other.has_changed().unwrap());
    }

    #[test]
    fn a_reader_of_one_key_wakes_for_that_key() {
        let wakeups = Wakeups::default();
        let order = wakeups.sequenced_for_key("orders", "0193b5f2-9b00-7000-8000-000000000001");
        let hash = shared_kernel::event::key_hash("0193b5f2-9b00-7000-8000-000000000001");
        wakeups.dispatch(SEQUENCED_CHANNEL, &format!("orders:{}/order_placed", hash.wrapping_add(1)));
        assert!(!order.has_changed().unwrap());
        wakeups.dispatch(SEQUENCED_CHANNEL, &format!("orders:{hash}/order_placed"));
        assert!(order.has_changed().unwrap());
    }
}
