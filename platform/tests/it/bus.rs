//! The event bus against real PostgreSQL: `alpha` publishes, `beta` subscribes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::BoxFuture;
use platform::bus::event::key_hash;
use platform::bus::sequencer::sequence_batch;
use platform::bus::{
    Bus, BusBuilder, BusConfig, BusTasks, Event, HandlerContext, Metadata, ReplayError, RetryPolicy, RewindTarget,
    Subscription, handler_fn,
};
use platform::db::Databases;
use platform::metrics::Metrics;
use platform::testing::kafka::{TestBroker, shared_broker};
use platform::testing::{TestDatabase, eventually};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::SCHEMAS;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WidgetMade {
    widget: String,
    seq: i32,
}

impl Event for WidgetMade {
    const TYPE: &'static str = "alpha.widget_made";
    const VERSION: u32 = 1;

    fn aggregate_key(&self) -> String {
        self.widget.clone()
    }
}

fn made(widget: &str, seq: i32) -> WidgetMade {
    WidgetMade { widget: widget.to_owned(), seq }
}

const WAIT: Duration = Duration::from_secs(20);

/// How events travel from `alpha` to `beta`: the cases that state the bus's semantics run on
/// both (`on_both_transports!`).
#[derive(Debug, Clone)]
enum Transport {
    Postgres,
    /// Each test has topics of its own, under `prefix`, on the process's shared broker.
    Kafka {
        broker: &'static TestBroker,
        prefix: String,
    },
}

impl Transport {
    async fn kafka() -> Self {
        let broker = shared_broker().await.expect("the test broker starts");
        Self::Kafka { broker, prefix: format!("t{}", uuid::Uuid::now_v7().simple()) }
    }
}

/// Runs each `async fn case(transport: Transport)` as two tests, `postgres::case` and
/// `kafka::case`.
macro_rules! on_both_transports {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Transport::Postgres).await;
            })*
        }
        mod kafka {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Transport::kafka().await).await;
            })*
        }
    };
}

on_both_transports!(
    an_event_that_commits_late_is_delivered_after_the_ones_before_it_never_skipped,
    a_connection_lost_after_the_handler_ran_redelivers_and_the_effect_exists_once,
    two_bus_instances_share_the_partitions_handle_each_event_once_and_survive_one_stopping,
    one_keys_events_stay_in_order_while_other_keys_proceed_in_parallel,
    a_poison_event_is_retried_with_backoff_then_dead_lettered_and_a_replay_after_the_fix_succeeds_once,
    rewinding_to_a_position_or_a_time_replays_history,
);

fn test_config() -> BusConfig {
    BusConfig {
        poll_interval: Duration::from_millis(200),
        heartbeat_every: Duration::from_millis(200),
        session_timeout: Duration::from_secs(2),
        gauges_every: Duration::from_millis(200),
        ..BusConfig::default()
    }
}

struct Running {
    bus: Bus,
    stop: CancellationToken,
    tasks: BusTasks,
    metrics: Metrics,
}

impl Running {
    async fn start(databases: &Databases, subscription: Subscription, config: BusConfig) -> Self {
        Self::on(&Transport::Postgres, databases, subscription, config).await
    }

    /// A bus on `transport` with `alpha` publishing and `subscription` of `beta`.
    async fn on(transport: &Transport, databases: &Databases, subscription: Subscription, config: BusConfig) -> Self {
        let metrics = Metrics::new();
        let mut builder = BusBuilder::new(config, &metrics);
        if let Transport::Kafka { broker, prefix } = transport {
            builder = builder.with_kafka(broker.config(prefix, i32::from(subscription.partitions))).unwrap();
        }
        let bus = builder
            .publisher("alpha", databases.pool("alpha").unwrap().clone())
            .subscription("beta", databases.pool("beta").unwrap().clone(), subscription)
            .unwrap()
            .build();
        let stop = CancellationToken::new();
        let tasks = bus.start(stop.clone()).await.unwrap();
        Self { bus, stop, tasks, metrics }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.tasks.join().await;
    }

    /// Dies without a goodbye: every task is aborted mid-flight.
    fn crash(self) {
        drop(self.tasks);
    }
}

async fn setup() -> (TestDatabase, Databases) {
    let database = TestDatabase::create(&SCHEMAS).await.unwrap();
    let databases = database.connect(&SCHEMAS).await.unwrap();
    (database, databases)
}

async fn publish(pool: &PgPool, events: &[WidgetMade]) {
    let mut tx = pool.begin().await.unwrap();
    platform::bus::append_all(&mut tx, events, &Metadata::for_request("req-test", None, None)).await.unwrap();
    tx.commit().await.unwrap();
}

/// Records each handled event in `beta.effects`, as `handled_by`.
fn recorder(
    handled_by: &'static str,
) -> impl for<'a, 'b> Fn(&'a mut HandlerContext<'b>, WidgetMade) -> BoxFuture<'a, anyhow::Result<()>> + Send + Sync + 'static
{
    handler_fn(move |ctx, event: WidgetMade| Box::pin(async move { record(ctx, &event, handled_by).await }))
}

async fn record(ctx: &mut HandlerContext<'_>, event: &WidgetMade, handled_by: &str) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO effects (event_id, key, seq, handled_by) VALUES ($1, $2, $3, $4)")
        .bind(ctx.envelope.id)
        .bind(&event.widget)
        .bind(event.seq)
        .bind(handled_by)
        .execute(&mut *ctx.tx)
        .await?;
    Ok(())
}

/// (key, seq, handled_by) in handling order.
async fn effects(pool: &PgPool) -> Vec<(String, i32, String)> {
    sqlx::query_as("SELECT key, seq, handled_by FROM effects ORDER BY handled_at, seq").fetch_all(pool).await.unwrap()
}

async fn effects_count(pool: &PgPool) -> usize {
    effects(pool).await.len()
}

async fn wait_for_effects(pool: &PgPool, count: usize) -> Vec<(String, i32, String)> {
    eventually(WAIT, || async {
        let found = effects(pool).await;
        Ok((found.len() >= count).then_some(found))
    })
    .await
    .unwrap()
}

async fn an_event_that_commits_late_is_delivered_after_the_ones_before_it_never_skipped(transport: Transport) {
    let (_db, databases) = setup().await;
    let (alpha, beta) = (databases.pool("alpha").unwrap(), databases.pool("beta").unwrap());
    let running = Running::on(
        &transport,
        &databases,
        Subscription::new("beta.record", "alpha").on::<WidgetMade>(recorder("beta")),
        test_config(),
    )
    .await;

    // The slow transaction appends first but commits last.
    let mut slow = alpha.begin().await.unwrap();
    platform::bus::append(&mut slow, &made("w", 1), &Metadata::system("test")).await.unwrap();
    publish(alpha, &[made("w", 2)]).await;
    wait_for_effects(beta, 1).await;

    slow.commit().await.unwrap();
    let handled = wait_for_effects(beta, 2).await;
    assert_eq!(handled.iter().map(|e| e.1).collect::<Vec<_>>(), [2, 1], "delivered in commit (position) order");
    let positions: Vec<(i32, i64)> =
        sqlx::query_as("SELECT (payload->>'seq')::int, position FROM alpha.outbox ORDER BY position")
            .fetch_all(alpha)
            .await
            .unwrap();
    assert_eq!(positions, [(2, 1), (1, 2)], "the late commit got the later position");

    let rendered = eventually(WAIT, || async {
        let rendered = running.metrics.render();
        Ok(rendered
            .contains(r#"bulkhead_bus_lag_events{subscription="beta.record",partition="0"} 0"#)
            .then_some(rendered))
    })
    .await
    .unwrap();
    for expected in [
        r#"bulkhead_bus_appended_events_total{module="alpha"} 2"#,
        r#"bulkhead_bus_delivered_events_total{subscription="beta.record"} 2"#,
        r#"bulkhead_bus_handler_duration_seconds_count{subscription="beta.record"} 2"#,
        r#"bulkhead_bus_dead_letters{subscription="beta.record"} 0"#,
    ] {
        assert!(rendered.contains(expected), "{expected} in {rendered}");
    }
    if let Transport::Kafka { .. } = transport {
        let relayed = r#"bulkhead_bus_relayed_events_total{module="alpha"} 2"#;
        assert!(rendered.contains(relayed), "the events went through the broker: {rendered}");
    }
    running.stop().await;
}

async fn a_connection_lost_after_the_handler_ran_redelivers_and_the_effect_exists_once(transport: Transport) {
    let (_db, databases) = setup().await;
    let (alpha, beta) = (databases.pool("alpha").unwrap(), databases.pool("beta").unwrap());
    let crashed = Arc::new(AtomicBool::new(false));
    let crash = crashed.clone();
    let handler = handler_fn(move |ctx, event: WidgetMade| {
        let crash = crash.clone();
        Box::pin(async move {
            record(ctx, &event, "beta").await?;
            if !crash.swap(true, Ordering::SeqCst) {
                // The effect is written; now the delivering connection dies before commit.
                let _ = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())").execute(&mut *ctx.tx).await;
            }
            Ok(())
        })
    });
    let running = Running::on(
        &transport,
        &databases,
        Subscription::new("beta.crashy", "alpha").on::<WidgetMade>(handler),
        test_config(),
    )
    .await;
    publish(alpha, &[made("w", 1)]).await;

    wait_for_effects(beta, 1).await;
    let cursor: i64 = eventually(WAIT, || async {
        let position: i64 = sqlx::query_scalar("SELECT position FROM bus_cursors WHERE subscription = 'beta.crashy'")
            .fetch_one(beta)
            .await?;
        Ok((position == 1).then_some(position))
    })
    .await
    .unwrap();
    assert!(crashed.load(Ordering::SeqCst), "the first delivery crashed");
    assert_eq!(cursor, 1);
    assert_eq!(effects_count(beta).await, 1, "the crashed attempt left nothing behind");
    let rendered = running.metrics.render();
    assert!(
        rendered.contains(r#"bulkhead_bus_retried_events_total{subscription="beta.crashy"} 1"#),
        "the lost attempt counted as a failure: {rendered}"
    );
    running.stop().await;
}

/// Waits until every bus in `members` handles its own share of the partitions and together
/// they cover all of them once.
async fn owners_become(members: &[&Bus]) {
    eventually(WAIT, || async {
        let shares: Vec<Vec<i32>> = members.iter().map(|bus| bus.owned_partitions("beta.shared")).collect();
        let mut all: Vec<i32> = shares.iter().flatten().copied().collect();
        all.sort_unstable();
        Ok((shares.iter().all(|share| !share.is_empty()) && all == [0, 1, 2, 3]).then_some(()))
    })
    .await
    .unwrap();
}

async fn two_bus_instances_share_the_partitions_handle_each_event_once_and_survive_one_stopping(transport: Transport) {
    let (database, first) = setup().await;
    let second = database.connect(&SCHEMAS).await.unwrap();
    let (alpha, beta) = (first.pool("alpha").unwrap(), first.pool("beta").unwrap());
    let config = BusConfig { batch_size: 5, ..test_config() };
    let subscription =
        |who: &'static str| Subscription::new("beta.shared", "alpha").partitions(4).on::<WidgetMade>(recorder(who));
    let one = Running::on(&transport, &first, subscription("first"), config.clone()).await;
    let two = Running::on(&transport, &second, subscription("second"), config.clone()).await;
    // Both members are in the group before any event exists: two partitions each.
    owners_become(&[&one.bus, &two.bus]).await;

    let events: Vec<WidgetMade> = (0..200).map(|i| made(&format!("w{}", i % 20), i)).collect();
    let partitions: std::collections::BTreeSet<i32> = events.iter().map(|e| key_hash(&e.widget) % 4).collect();
    assert_eq!(partitions.len(), 4, "the keys cover every partition");
    publish(alpha, &events).await;
    let handled = wait_for_effects(beta, 200).await;
    let by: HashMap<&str, usize> = handled.iter().fold(HashMap::new(), |mut counts, (_, _, who)| {
        *counts.entry(who.as_str()).or_default() += 1;
        counts
    });
    assert!(by.get("first").copied().unwrap_or(0) > 0 && by.get("second").copied().unwrap_or(0) > 0, "{by:?}");

    // A graceful stop leaves the group at once; the survivor takes every partition.
    one.stop().await;
    let more: Vec<WidgetMade> = (200..300).map(|i| made(&format!("w{}", i % 20), i)).collect();
    publish(alpha, &more).await;
    let handled = wait_for_effects(beta, 300).await;
    assert!(handled[200..].iter().all(|(_, _, who)| who == "second"), "the survivor took every partition");

    // A crashed instance (no goodbye) loses its partitions once its session times out.
    let three = Running::on(&transport, &first, subscription("third"), config.clone()).await;
    owners_become(&[&two.bus, &three.bus]).await;
    let survivor = three.bus.clone();
    two.crash();
    owners_become(&[&survivor]).await;
    let last: Vec<WidgetMade> = (300..400).map(|i| made(&format!("w{}", i % 20), i)).collect();
    publish(alpha, &last).await;
    let handled = wait_for_effects(beta, 400).await;
    assert!(handled[300..].iter().all(|(_, _, who)| who == "third"), "the crashed member's partitions moved");

    let duplicates: i64 =
        sqlx::query_scalar("SELECT count(*) - count(DISTINCT event_id) FROM effects").fetch_one(beta).await.unwrap();
    assert_eq!(duplicates, 0, "no event handled twice");
    assert_eq!(effects_count(beta).await, 400);
    three.stop().await;
}

async fn one_keys_events_stay_in_order_while_other_keys_proceed_in_parallel(transport: Transport) {
    let (_db, databases) = setup().await;
    let (alpha, beta) = (databases.pool("alpha").unwrap(), databases.pool("beta").unwrap());
    // Two keys that fall into different partitions of two.
    let first = "key-a".to_owned();
    let second = (0..).map(|i| format!("key-{i}")).find(|k| key_hash(k) % 2 != key_hash(&first) % 2).unwrap();

    // The first key's first event waits until the second key's handling has begun: only
    // parallel partitions let this finish.
    let second_started = Arc::new(AtomicBool::new(false));
    let overlapped = Arc::new(AtomicBool::new(false));
    let (started, saw_overlap, watched) = (second_started.clone(), overlapped.clone(), second.clone());
    let first_key = first.clone();
    let handler = handler_fn(move |ctx, event: WidgetMade| {
        let (started, saw_overlap, watched, first_key) =
            (started.clone(), saw_overlap.clone(), watched.clone(), first_key.clone());
        Box::pin(async move {
            if event.widget == watched {
                started.store(true, Ordering::SeqCst);
            }
            if event.widget == first_key && event.seq == 0 {
                let deadline = Instant::now() + WAIT;
                while !started.load(Ordering::SeqCst) {
                    anyhow::ensure!(Instant::now() < deadline, "the other partition never started");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                saw_overlap.store(true, Ordering::SeqCst);
            }
            record(ctx, &event, "beta").await
        })
    });
    let running = Running::on(
        &transport,
        &databases,
        Subscription::new("beta.ordered", "alpha").partitions(2).on::<WidgetMade>(handler),
        test_config(),
    )
    .await;
    let events: Vec<WidgetMade> = (0..10).flat_map(|seq| [made(&first, seq), made(&second, seq)]).collect();
    publish(alpha, &events).await;

    let handled = wait_for_effects(beta, 20).await;
    assert!(overlapped.load(Ordering::SeqCst), "the two keys were handled at the same time");
    for key in [&first, &second] {
        let order: Vec<i32> = handled.iter().filter(|e| &e.0 == key).map(|e| e.1).collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>(), "{key} in append order");
    }
    running.stop().await;
}

async fn a_poison_event_is_retried_with_backoff_then_dead_lettered_and_a_replay_after_the_fix_succeeds_once(
    transport: Transport,
) {
    let (_db, databases) = setup().await;
    let (alpha, beta) = (databases.pool("alpha").unwrap(), databases.pool("beta").unwrap());
    let broken = Arc::new(AtomicBool::new(true));
    let attempts_at = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let (is_broken, attempts) = (broken.clone(), attempts_at.clone());
    let handler = handler_fn(move |ctx, event: WidgetMade| {
        let (is_broken, attempts) = (is_broken.clone(), attempts.clone());
        Box::pin(async move {
            if event.seq == 3 && is_broken.load(Ordering::SeqCst) {
                attempts.lock().unwrap().push(Instant::now());
                anyhow::bail!("cannot digest widget {} (poison)", event.seq);
            }
            record(ctx, &event, "beta").await
        })
    });
    let retry =
        RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
    let running = Running::on(
        &transport,
        &databases,
        Subscription::new("beta.poison", "alpha").retry(retry).on::<WidgetMade>(handler),
        test_config(),
    )
    .await;
    publish(alpha, &(1..=5).map(|seq| made("w", seq)).collect::<Vec<_>>()).await;

    let handled = wait_for_effects(beta, 4).await;
    assert_eq!(handled.iter().map(|e| e.1).collect::<Vec<_>>(), [1, 2, 4, 5], "later events proceeded");
    let letters = running.bus.dead_letters(Some("beta.poison"), false, None, 100).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!((letter.attempts, letter.position, letter.event_type.as_str()), (3, 3, "alpha.widget_made"));
    assert!(letter.error.contains("cannot digest widget 3 (poison)"), "{}", letter.error);

    let times = attempts_at.lock().unwrap().clone();
    assert_eq!(times.len(), 3);
    for (pair, minimum) in times.windows(2).zip([Duration::from_millis(50), Duration::from_millis(100)]) {
        assert!(pair[1] - pair[0] >= minimum, "retries back off: {:?}", pair[1] - pair[0]);
    }
    // Counters are added once the batch's transaction has committed, a moment after the
    // letter is visible: wait for them rather than race them.
    let counted = eventually(WAIT, || async {
        let rendered = running.metrics.render();
        Ok(rendered
            .contains(r#"bulkhead_bus_dead_lettered_events_total{subscription="beta.poison"} 1"#)
            .then_some(rendered))
    })
    .await;
    let rendered = counted.unwrap_or_else(|_| running.metrics.render());
    assert!(
        rendered.contains(r#"bulkhead_bus_dead_lettered_events_total{subscription="beta.poison"} 1"#),
        "{rendered}"
    );
    assert!(rendered.contains(r#"bulkhead_bus_retried_events_total{subscription="beta.poison"} 2"#), "{rendered}");

    broken.store(false, Ordering::SeqCst);
    let replayed = running.bus.replay(letter.id).await.unwrap();
    assert!(replayed.replayed_at.is_some());
    assert!(matches!(running.bus.replay(letter.id).await, Err(ReplayError::AlreadyReplayed(_))));
    let seqs: Vec<i32> = effects(beta).await.iter().map(|e| e.1).collect();
    assert_eq!(seqs.iter().filter(|s| **s == 3).count(), 1, "the replay took effect once");
    assert!(running.bus.dead_letters(Some("beta.poison"), false, None, 100).await.unwrap().is_empty());

    // Broken again and rewound: the same event fails again and its letter waits once more.
    broken.store(true, Ordering::SeqCst);
    running.bus.rewind("beta.poison", RewindTarget::Position(3)).await.unwrap();
    let again = eventually(WAIT, || async {
        let letters = running.bus.dead_letters(Some("beta.poison"), false, None, 100).await?;
        Ok((letters.len() == 1).then_some(letters))
    })
    .await
    .unwrap();
    assert_eq!((again[0].id, again[0].position, again[0].replayed_at), (letter.id, 3, None));
    running.stop().await;
}

async fn rewinding_to_a_position_or_a_time_replays_history(transport: Transport) {
    let (_db, databases) = setup().await;
    let (alpha, beta) = (databases.pool("alpha").unwrap(), databases.pool("beta").unwrap());
    let running = Running::on(
        &transport,
        &databases,
        Subscription::new("beta.history", "alpha").on::<WidgetMade>(recorder("beta")),
        test_config(),
    )
    .await;
    let before: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT now() - interval '1 second'").fetch_one(beta).await.unwrap();
    publish(alpha, &(1..=5).map(|seq| made("w", seq)).collect::<Vec<_>>()).await;
    wait_for_effects(beta, 5).await;

    assert_eq!(running.bus.rewind("beta.history", RewindTarget::Position(2)).await.unwrap(), 1);
    let handled = wait_for_effects(beta, 9).await;
    assert_eq!(handled[5..].iter().map(|e| e.1).collect::<Vec<_>>(), [2, 3, 4, 5]);

    running.bus.rewind("beta.history", RewindTarget::Time(before)).await.unwrap();
    let handled = wait_for_effects(beta, 14).await;
    assert_eq!(handled[9..].iter().map(|e| e.1).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);

    let status = eventually(WAIT, || async {
        let status = running.bus.status().await?;
        Ok((status[0].lag == 0).then_some(status))
    })
    .await
    .unwrap();
    assert_eq!((status[0].position, status[0].head, status[0].dead_letters), (5, 5, 0));
    assert!(matches!(
        running.bus.rewind("beta.nothing", RewindTarget::Position(1)).await,
        Err(platform::bus::RewindError::UnknownSubscription(_))
    ));
    running.stop().await;
}

#[tokio::test]
async fn retention_deletes_only_sequenced_events_past_the_window_and_keeps_the_newest() {
    let (database, databases) = setup().await;
    let alpha = databases.pool("alpha").unwrap();
    publish(alpha, &(1..=4).map(|seq| made("w", seq)).collect::<Vec<_>>()).await;
    assert_eq!(sequence_batch(alpha, 100).await.unwrap(), 4);
    publish(alpha, &[made("w", 5)]).await; // committed but not yet sequenced

    let mut admin = database.admin_connection().await.unwrap();
    sqlx::query("UPDATE alpha.outbox SET sequenced_at = now() - interval '8 days' WHERE position <= 2")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("UPDATE alpha.outbox SET occurred_at = now() - interval '30 days' WHERE position IS NULL")
        .execute(&mut admin)
        .await
        .unwrap();

    let metrics = Metrics::new();
    let bus = BusBuilder::new(BusConfig { retention: Duration::from_secs(7 * 24 * 3600), ..test_config() }, &metrics)
        .publisher("alpha", alpha.clone())
        .build();
    assert_eq!(bus.sweep_retention().await.unwrap(), 2);
    let left: Vec<Option<i64>> =
        sqlx::query_scalar("SELECT position FROM alpha.outbox ORDER BY append_seq").fetch_all(alpha).await.unwrap();
    assert_eq!(left, [Some(3), Some(4), None]);

    // Even when everything is old, the newest sequenced event stays: it carries the head.
    sqlx::query("UPDATE alpha.outbox SET sequenced_at = now() - interval '8 days' WHERE position IS NOT NULL")
        .execute(&mut admin)
        .await
        .unwrap();
    assert_eq!(bus.sweep_retention().await.unwrap(), 1);
    assert_eq!(sequence_batch(alpha, 100).await.unwrap(), 1);
    let newest: i64 = sqlx::query_scalar("SELECT max(position) FROM alpha.outbox").fetch_one(alpha).await.unwrap();
    assert_eq!(newest, 5, "positions continue after a sweep");
}

#[tokio::test]
async fn retention_keeps_events_a_relay_has_not_forwarded_yet() {
    let (database, databases) = setup().await;
    let alpha = databases.pool("alpha").unwrap();
    publish(alpha, &(1..=4).map(|seq| made("w", seq)).collect::<Vec<_>>()).await;
    assert_eq!(sequence_batch(alpha, 100).await.unwrap(), 4);
    let mut admin = database.admin_connection().await.unwrap();
    sqlx::query("UPDATE alpha.outbox SET sequenced_at = now() - interval '8 days'").execute(&mut admin).await.unwrap();
    // A Kafka relay has forwarded up to position 1 only.
    sqlx::query("INSERT INTO alpha.bus_relay (topic, position) VALUES ('t.alpha.events', 1)")
        .execute(&mut admin)
        .await
        .unwrap();

    let metrics = Metrics::new();
    let bus = BusBuilder::new(BusConfig { retention: Duration::from_secs(7 * 24 * 3600), ..test_config() }, &metrics)
        .publisher("alpha", alpha.clone())
        .build();
    assert_eq!(bus.sweep_retention().await.unwrap(), 1, "only what the relay forwarded goes");
    let left: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM alpha.outbox ORDER BY position").fetch_all(alpha).await.unwrap();
    assert_eq!(left, [2, 3, 4]);
}

#[tokio::test]
async fn a_topic_with_another_partition_count_is_a_start_up_error() {
    let (_db, databases) = setup().await;
    let Transport::Kafka { broker, prefix } = Transport::kafka().await else { unreachable!() };
    let start = |partitions: i32| {
        let metrics = Metrics::new();
        let bus = BusBuilder::new(test_config(), &metrics)
            .with_kafka(broker.config(&prefix, partitions))
            .unwrap()
            .publisher("alpha", databases.pool("alpha").unwrap().clone())
            .build();
        async move {
            let stop = CancellationToken::new();
            // Started or not is all this asks; the tasks end with the token.
            bus.start(stop.clone()).await.map(|_| stop.cancel())
        }
    };
    start(4).await.expect("the relay creates the topic with 4 partitions");
    let refused = start(2).await.expect_err("2 partitions against a topic of 4");
    assert!(format!("{refused:#}").contains("has 4 partitions"), "{refused:#}");
}

#[tokio::test]
async fn a_handler_that_swallows_a_database_error_counts_as_failed() {
    let (_db, databases) = setup().await;
    let (alpha, beta) = (databases.pool("alpha").unwrap(), databases.pool("beta").unwrap());
    let handler = handler_fn(move |ctx, event: WidgetMade| {
        Box::pin(async move {
            if event.seq == 1 {
                // The error is ignored, but it has aborted the transaction.
                let _ = sqlx::query("SELECT * FROM no_such_table").execute(&mut *ctx.tx).await;
                return Ok(());
            }
            record(ctx, &event, "beta").await
        })
    });
    let retry =
        RetryPolicy { max_attempts: 2, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(1) };
    let running = Running::start(
        &databases,
        Subscription::new("beta.sloppy", "alpha").retry(retry).on::<WidgetMade>(handler),
        test_config(),
    )
    .await;
    publish(alpha, &[made("w", 1), made("w", 2)]).await;

    let handled = wait_for_effects(beta, 1).await;
    assert_eq!(handled[0].1, 2, "the next event proceeded");
    let letters = running.bus.dead_letters(Some("beta.sloppy"), false, None, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].error.contains("left its transaction unusable"), "{}", letters[0].error);
    running.stop().await;
}

#[tokio::test]
async fn a_process_with_an_old_partition_count_stops_consuming_instead_of_skipping_events() {
    let (database, old) = setup().await;
    let new = database.connect(&SCHEMAS).await.unwrap();
    let (alpha, beta) = (old.pool("alpha").unwrap(), old.pool("beta").unwrap());
    let config = test_config();
    let before = Running::start(
        &old,
        Subscription::new("beta.resized", "alpha").partitions(2).on::<WidgetMade>(recorder("old")),
        config.clone(),
    )
    .await;
    publish(alpha, &(0..20).map(|i| made(&format!("w{i}"), i)).collect::<Vec<_>>()).await;
    wait_for_effects(beta, 20).await;

    // A rolling deploy: the new process splits the subscription into 4 while the old runs on.
    let after = Running::start(
        &new,
        Subscription::new("beta.resized", "alpha").partitions(4).on::<WidgetMade>(recorder("new")),
        config,
    )
    .await;
    publish(alpha, &(20..60).map(|i| made(&format!("w{i}"), i)).collect::<Vec<_>>()).await;
    let handled = eventually(WAIT, || async {
        let handled = effects(beta).await;
        let seqs: std::collections::BTreeSet<i32> = handled.iter().map(|e| e.1).collect();
        Ok((seqs.len() == 60).then_some(handled))
    })
    .await
    .unwrap();
    // Resizing restarts every new partition from the slowest old cursor: events near the
    // switch may come again (handlers are idempotent), none is skipped, and everything
    // published after it is handled by the new process exactly once.
    let after_resize: Vec<&(String, i32, String)> = handled.iter().filter(|e| e.1 >= 20).collect();
    assert_eq!(after_resize.len(), 40, "each later event exactly once");
    assert!(after_resize.iter().all(|(_, _, who)| who == "new"), "the old process stood aside");
    before.stop().await;
    after.stop().await;
}

#[tokio::test]
async fn a_subscription_started_from_latest_sees_only_later_events() {
    let (_db, databases) = setup().await;
    let (alpha, beta) = (databases.pool("alpha").unwrap(), databases.pool("beta").unwrap());
    publish(alpha, &[made("w", 1), made("w", 2)]).await;
    assert_eq!(sequence_batch(alpha, 100).await.unwrap(), 2);
    let running = Running::start(
        &databases,
        Subscription::new("beta.latest", "alpha")
            .start_from(platform::bus::StartFrom::Latest)
            .on::<WidgetMade>(recorder("beta")),
        test_config(),
    )
    .await;
    publish(alpha, &[made("w", 3)]).await;
    let handled = wait_for_effects(beta, 1).await;
    assert_eq!(handled.iter().map(|e| e.1).collect::<Vec<_>>(), [3]);
    running.stop().await;
}

mod admin_api {
    use axum::Router;
    use platform::auth::Role;
    use platform::bus::admin::{AdminState, router};
    use platform::http::HttpSettings;
    use reqwest::StatusCode;
    use serde_json::{Value, json};

    use super::*;
    use crate::auth::{TestKey, claims, verifier_trusting};
    use crate::support::Served;

    /// A bus whose handler fails on odd sequence numbers while `broken` is set, served with
    /// its admin API.
    async fn served(broken: Arc<AtomicBool>) -> (Served, Running, TestKey, PgPool, Databases, TestDatabase) {
        let (database, databases) = setup().await;
        let handler = handler_fn(move |ctx, event: WidgetMade| {
            let broken = broken.clone();
            Box::pin(async move {
                anyhow::ensure!(event.seq % 2 == 0 || !broken.load(Ordering::SeqCst), "odd widget {}", event.seq);
                record(ctx, &event, "beta").await
            })
        });
        let retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
        let running = Running::start(
            &databases,
            Subscription::new("beta.admin", "alpha").retry(retry).on::<WidgetMade>(handler),
            test_config(),
        )
        .await;
        let key = TestKey::generate("k1");
        let state = AdminState { bus: running.bus.clone(), verifier: verifier_trusting(&key) };
        let (api, _) = router(state).split_for_parts();
        let served = Served::start(Router::new().nest("/api/v1", api), HttpSettings::default()).await;
        let beta = databases.pool("beta").unwrap().clone();
        (served, running, key, beta, databases, database)
    }

    #[tokio::test]
    async fn every_admin_route_refuses_strangers_and_customers() {
        let (app, running, key, ..) = served(Arc::default()).await;
        let customer = key.sign(&claims("customer-1", &[Role::Customer]));
        let id = uuid::Uuid::now_v7();
        let routes = [
            ("GET", "/api/v1/admin/bus/subscriptions".to_owned()),
            ("GET", "/api/v1/admin/bus/dead-letters".to_owned()),
            ("POST", format!("/api/v1/admin/bus/dead-letters/{id}/replay")),
            ("POST", "/api/v1/admin/bus/subscriptions/beta.admin/rewind".to_owned()),
        ];
        for (method, path) in &routes {
            let request = |token: Option<&str>| {
                let builder =
                    app.client.request(method.parse().unwrap(), app.url(path)).json(&json!({ "to_position": 1 }));
                match token {
                    Some(token) => builder.bearer_auth(token),
                    None => builder,
                }
            };
            assert_eq!(request(None).send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(
                request(Some(&customer)).send().await.unwrap().status(),
                StatusCode::FORBIDDEN,
                "{method} {path}"
            );
        }
        running.stop().await;
    }

    #[tokio::test]
    async fn admins_see_status_page_through_dead_letters_replay_them_and_rewind() {
        let broken = Arc::new(AtomicBool::new(true));
        let (app, running, key, beta, databases, _db) = served(broken.clone()).await;
        let admin = key.sign(&claims("admin-1", &[Role::Admin]));
        let get = |path: String| app.client.get(app.url(&path)).bearer_auth(&admin).send();
        let post = |path: String, body: Value| app.client.post(app.url(&path)).bearer_auth(&admin).json(&body).send();

        publish(databases.pool("alpha").unwrap(), &(1..=6).map(|seq| made("w", seq)).collect::<Vec<_>>()).await;
        wait_for_effects(&beta, 3).await; // the even ones; the odd ones are dead letters
        let letters = eventually(WAIT, || async {
            let page: Value = get("/api/v1/admin/bus/dead-letters?limit=2".to_owned()).await?.json().await?;
            Ok((page["data"].as_array().map_or(0, Vec::len) == 2).then_some(page))
        })
        .await
        .unwrap();
        let cursor = letters["meta"]["next_cursor"].as_str().unwrap().to_owned();
        let rest: Value =
            get(format!("/api/v1/admin/bus/dead-letters?limit=2&after={cursor}")).await.unwrap().json().await.unwrap();
        assert_eq!(rest["data"].as_array().unwrap().len(), 1);
        assert!(rest["meta"]["next_cursor"].is_null());
        let first = letters["data"][0].clone();
        assert_eq!(first["error"], "odd widget 1");

        let status: Value = get("/api/v1/admin/bus/subscriptions".to_owned()).await.unwrap().json().await.unwrap();
        assert_eq!(status["data"][0]["subscription"], "beta.admin");
        assert_eq!(status["data"][0]["dead_letters"], 3);
        assert_eq!(status["data"][0]["owner"], running.bus.member().to_string());

        let id = first["id"].as_str().unwrap().to_owned();
        let failed = post(format!("/api/v1/admin/bus/dead-letters/{id}/replay"), json!({})).await.unwrap();
        assert_eq!(failed.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let failed: Value = failed.json().await.unwrap();
        assert_eq!(
            (failed["error"]["code"].as_str(), failed["error"]["details"]["error"].as_str()),
            (Some("replay_failed"), Some("odd widget 1"))
        );

        broken.store(false, Ordering::SeqCst);
        let replayed = post(format!("/api/v1/admin/bus/dead-letters/{id}/replay"), json!({})).await.unwrap();
        assert_eq!(replayed.status(), StatusCode::OK);
        let again = post(format!("/api/v1/admin/bus/dead-letters/{id}/replay"), json!({})).await.unwrap();
        assert_eq!(again.status(), StatusCode::CONFLICT);
        let unknown =
            post(format!("/api/v1/admin/bus/dead-letters/{}/replay", uuid::Uuid::now_v7()), json!({})).await.unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

        for body in
            [json!({}), json!({ "to_position": 0 }), json!({ "to_position": 1, "to_time": "2026-01-01T00:00:00Z" })]
        {
            let refused =
                post("/api/v1/admin/bus/subscriptions/beta.admin/rewind".to_owned(), body.clone()).await.unwrap();
            assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
        let missing =
            post("/api/v1/admin/bus/subscriptions/beta.nothing/rewind".to_owned(), json!({ "to_position": 1 }))
                .await
                .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let rewound = post("/api/v1/admin/bus/subscriptions/beta.admin/rewind".to_owned(), json!({ "to_position": 1 }))
            .await
            .unwrap();
        let rewound: Value = rewound.json().await.unwrap();
        assert_eq!(rewound["data"], json!({ "subscription": "beta.admin", "position": 0 }));
        // History again, now that nothing is broken: all six, on top of the 3 + 1 before.
        let handled = wait_for_effects(&beta, 10).await;
        let mut again: Vec<i32> = handled[4..].iter().map(|e| e.1).collect();
        again.sort_unstable();
        assert_eq!(again, [1, 2, 3, 4, 5, 6]);
        running.stop().await;
    }
}

#[tokio::test]
async fn lock_contention_is_retried_without_counting_toward_the_dead_letter() {
    let (_db, databases) = setup().await;
    let (alpha, beta) = (databases.pool("alpha").unwrap(), databases.pool("beta").unwrap());
    let conflicts_left = Arc::new(std::sync::atomic::AtomicU32::new(5));
    let left = conflicts_left.clone();
    let handler = handler_fn(move |ctx, event: WidgetMade| {
        let left = left.clone();
        Box::pin(async move {
            if left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                // What a deadlock victim sees: SQLSTATE 40001/40P01 from PostgreSQL itself.
                sqlx::query("DO $$ BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$")
                    .execute(&mut *ctx.tx)
                    .await?;
            }
            record(ctx, &event, "beta").await
        })
    });
    // Fewer attempts than conflicts: counted, they would dead-letter the event.
    let retry =
        RetryPolicy { max_attempts: 2, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(1) };
    let running = Running::start(
        &databases,
        Subscription::new("beta.contended", "alpha").retry(retry).on::<WidgetMade>(handler),
        test_config(),
    )
    .await;
    publish(alpha, &[made("w", 1)]).await;

    let handled = wait_for_effects(beta, 1).await;
    assert_eq!(handled[0].1, 1);
    assert_eq!(conflicts_left.load(Ordering::SeqCst), 0, "it met every conflict");
    assert!(running.bus.dead_letters(Some("beta.contended"), true, None, 10).await.unwrap().is_empty());
    running.stop().await;
}
