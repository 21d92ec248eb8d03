//! The reading side: subscriptions read their source's topic.
//!
//! Each subscription hosted here gets one consumer in its own consumer group, assigned by
//! hand the partitions this process has claimed in the subscriber's database (the claims,
//! not Kafka's group protocol, decide who reads what, exactly as on PostgreSQL). A thread per
//! consumer (the pump) fetches into a buffer per partition and wakes the partitions' tasks
//! with the same wake-ups the PostgreSQL listener gives.
//!
//! The subscriber's cursor is the truth. A read after cursor `after` proves that everything up
//! to it is handled for good, so those events leave the buffer, and their offsets are
//! committed to the group now and then: a hint where to restart, checked on use, never trusted
//! over the cursor. Whenever the cursor is not where the buffer continues (first read, a
//! rewind), the pump seeks to the last offset known to be at or before it, or to the group's
//! committed offset (verified), or to the beginning, and skips what the cursor has passed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::PgConnection;
use tokio::sync::watch;

use super::config::KafkaConfig;
use super::{FETCH_ONE_TIMEOUT, wire};
use crate::bus::event::EventEnvelope;
use crate::bus::listener::{Sequenced, Wakeups};
use crate::bus::transport::{EventLog, Partition};

/// Events buffered per partition before its fetching pauses.
const PAUSE_AT: usize = 5_000;
/// Positions remembered per partition with their offsets, for exact restarts.
const REMEMBERED: usize = 10_000;
/// How often handled offsets are committed to the group.
const COMMIT_EVERY: Duration = Duration::from_secs(5);
/// How long a computed head is reused (the gauges ask every few seconds).
const HEAD_FOR: Duration = Duration::from_secs(10);

/// Reads sources' topics for the subscriptions hosted here.
pub struct KafkaLog {
    config: KafkaConfig,
    wakeups: Wakeups,
    readers: Mutex<HashMap<String, Arc<Reader>>>,
    /// Heads computed by asking the broker, per source, with when.
    heads: Mutex<HashMap<String, (i64, Instant)>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog").field("brokers", &self.config.brokers).finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// A log on `config`'s brokers whose arrivals wake the waiters of `wakeups`.
    ///
    /// # Errors
    /// None yet; kept fallible for clients that check their configuration up front.
    pub fn new(config: KafkaConfig, wakeups: Wakeups) -> anyhow::Result<Self> {
        Ok(Self { config, wakeups, readers: Mutex::default(), heads: Mutex::default() })
    }

    fn reader(&self, subscription: &str, source: &str) -> anyhow::Result<Arc<Reader>> {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reader) = readers.get(subscription) {
            return Ok(reader.clone());
        }
        let reader = Reader::start(&self.config, subscription, source, self.wakeups.clone())?;
        readers.insert(subscription.to_owned(), reader.clone());
        Ok(reader)
    }

    fn existing_reader(&self, subscription: &str) -> Option<Arc<Reader>> {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner).get(subscription).cloned()
    }

    /// A client for one-off questions (watermarks, offsets by time); blocking calls.
    fn questions(&self, group: Option<&str>) -> anyhow::Result<BaseConsumer> {
        let mut config = self.config.client_config();
        config.set("enable.auto.commit", "false");
        if let Some(group) = group {
            config.set("group.id", group);
        }
        config.create().context("a Kafka client")
    }
}

impl Drop for KafkaLog {
    fn drop(&mut self) {
        for reader in self.readers.lock().unwrap_or_else(PoisonError::into_inner).values() {
            reader.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs a blocking broker call off the async threads.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(call).await.context("a Kafka call panicked")?
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn prepare(&self, source: &str, partitions: i32) -> anyhow::Result<()> {
        super::check_source(&self.config, source, partitions).await
    }

    async fn read(
        &self,
        _tx: &mut PgConnection,
        subscription: &str,
        source: &str,
        partition: Partition,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<EventEnvelope>> {
        let reader = self.reader(subscription, source)?;
        Ok(reader.read(partition.index, after, usize::try_from(limit).unwrap_or(usize::MAX)))
    }

    async fn head(&self, _conn: &mut PgConnection, source: &str, _partition: Partition) -> anyhow::Result<i64> {
        let seen = {
            let readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            readers.values().filter(|r| r.source == source).map(|r| r.state().newest).max().unwrap_or(0)
        };
        let cached = self.heads.lock().unwrap_or_else(PoisonError::into_inner).get(source).copied();
        let asked = match cached {
            Some((head, at)) if at.elapsed() < HEAD_FOR => head,
            _ => {
                let (config, topic) = (self.config.clone(), self.config.topic(source));
                let head = blocking(move || newest_position(&config, &topic)).await?;
                self.heads
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(source.to_owned(), (head, Instant::now()));
                head
            }
        };
        Ok(seen.max(asked))
    }

    async fn lag(
        &self,
        _conn: &mut PgConnection,
        subscription: &str,
        source: &str,
        partition: Partition,
        after: i64,
        cap: i64,
    ) -> anyhow::Result<i64> {
        // Read here: after the offset of the cursor's event; elsewhere: the group's commits.
        let handled = self.existing_reader(subscription).and_then(|reader| reader.offset_of(partition.index, after));
        let group = self.config.group(subscription);
        let client = self.questions(handled.is_none().then_some(group.as_str()))?;
        let (topic, timeout) = (self.config.topic(source), self.config.request_timeout);
        let behind = blocking(move || {
            let (low, high) = client.fetch_watermarks(&topic, partition.index, timeout)?;
            let next = match handled {
                Some(offset) => offset + 1,
                None => {
                    let mut wanted = TopicPartitionList::new();
                    wanted.add_partition(&topic, partition.index);
                    let committed = client.committed_offsets(wanted, timeout)?;
                    match committed.find_partition(&topic, partition.index).map(|e| e.offset()) {
                        Some(Offset::Offset(offset)) => offset,
                        _ => low,
                    }
                }
            };
            Ok(high - next.max(low))
        })
        .await?;
        Ok(behind.clamp(0, cap))
    }

    async fn position_at(
        &self,
        _conn: &mut PgConnection,
        source: &str,
        partition: Partition,
        time: DateTime<Utc>,
    ) -> anyhow::Result<Option<i64>> {
        let client = self.questions(None)?;
        let (config, topic) = (self.config.clone(), self.config.topic(source));
        blocking(move || {
            let mut wanted = TopicPartitionList::new();
            wanted.add_partition_offset(&topic, partition.index, Offset::Offset(time.timestamp_millis()))?;
            let found = client.offsets_for_times(wanted, config.request_timeout)?;
            match found.find_partition(&topic, partition.index).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => {
                    Ok(read_one(&config, &topic, partition.index, offset)?.map(|event| event.position))
                }
                _ => Ok(None),
            }
        })
        .await
    }

    fn wakeups(&self, source: &str) -> watch::Receiver<u64> {
        self.wakeups.sequenced(source)
    }

    fn partition_wakeups(&self, source: &str, partition: Partition, types: &[&str]) -> watch::Receiver<u64> {
        self.wakeups.sequenced_in_of(source, partition.count, partition.index, types)
    }

    /// The pumps wake partitions as events arrive; polling is only a safety net.
    fn pushes_wakeups(&self) -> bool {
        true
    }
}

/// The newest position in `topic` (0: empty or missing): the last record of each partition.
fn newest_position(config: &KafkaConfig, topic: &str) -> anyhow::Result<i64> {
    let client: BaseConsumer = config.client_config().create()?;
    let metadata = client.fetch_metadata(Some(topic), config.request_timeout)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none()) else {
        return Ok(0);
    };
    let mut newest = 0;
    for partition in found.partitions() {
        let (low, high) = client.fetch_watermarks(topic, partition.id(), config.request_timeout)?;
        if high > low
            && let Some(event) = read_one(config, topic, partition.id(), high - 1)?
        {
            newest = newest.max(event.position);
        }
    }
    Ok(newest)
}

/// The event at `offset` of a partition, if it is there. Blocking.
fn read_one(config: &KafkaConfig, topic: &str, partition: i32, offset: i64) -> anyhow::Result<Option<EventEnvelope>> {
    let mut client = config.client_config();
    client.set("enable.auto.commit", "false").set("group.id", "bulkhead-lookup");
    let client: BaseConsumer = client.create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    client.assign(&assignment)?;
    let source = source_of(config, topic);
    let until = Instant::now() + FETCH_ONE_TIMEOUT;
    while Instant::now() < until {
        match client.poll(Duration::from_millis(100)) {
            Some(Ok(message)) if message.offset() >= offset => {
                return Ok(wire::decode(&source, &message).ok());
            }
            Some(Ok(_)) | None => {}
            Some(Err(error)) => return Err(error.into()),
        }
    }
    Ok(None)
}

fn source_of(config: &KafkaConfig, topic: &str) -> String {
    topic
        .strip_prefix(&format!("{}.", config.topic_prefix))
        .and_then(|rest| rest.strip_suffix(".events"))
        .unwrap_or(topic)
        .to_owned()
}

/// Where a partition's reading starts after it was (re)positioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// At an offset whose event is known to be at or before the cursor.
    Known(i64),
    /// Where the group last committed: usually right, but checked (a rewind may have moved
    /// the cursor back since).
    Committed,
    /// From the oldest record kept.
    Beginning,
}

/// One partition of a subscription as the pump and the reads share it.
#[derive(Debug, Default)]
struct PartitionState {
    /// Fetched events not yet proven handled, in offset order, with their offsets.
    buffered: VecDeque<(i64, EventEnvelope)>,
    /// The cursor of the last read: buffered events at or before it are handled or repeats.
    floor: i64,
    /// A start the pump has not applied yet.
    start: Option<Start>,
    /// Where the consumer reads next, once started.
    next: Option<Offset>,
    /// The first event after a checked start must be at or before `floor`.
    verify: bool,
    /// Records below this offset are from before the last start, and dropped.
    from_offset: i64,
    /// The offset of the last event proven handled.
    handled: Option<i64>,
    /// The handled offset last committed to the group.
    committed: Option<i64>,
    /// Recent positions with their offsets.
    remembered: BTreeMap<i64, i64>,
    paused: bool,
}

#[derive(Debug, Default)]
struct ReaderState {
    partitions: BTreeMap<i32, PartitionState>,
    /// The consumer's assignment must be rebuilt (a partition was added or must seek).
    reassign: bool,
    /// The highest position fetched.
    newest: i64,
}

/// One subscription's consumer, its pump thread and its buffers.
struct Reader {
    source: String,
    topic: String,
    state: Arc<Mutex<ReaderState>>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn start(config: &KafkaConfig, subscription: &str, source: &str, wakeups: Wakeups) -> anyhow::Result<Arc<Self>> {
        let mut client = config.client_config();
        client
            .set("group.id", config.group(subscription))
            .set("client.id", format!("bulkhead:{subscription}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // What a partition may hold fetched ahead; the buffer behind it is bounded too.
            .set("queued.max.messages.kbytes", "8192")
            .set("fetch.wait.max.ms", "100")
            // A fetch that failed (a broker restarting, a partition moving) is retried soon,
            // not after librdkafka's default half second.
            .set("fetch.error.backoff.ms", "20");
        let consumer: BaseConsumer = client.create().context("a Kafka consumer")?;
        let reader = Arc::new(Self {
            source: source.to_owned(),
            topic: config.topic(source),
            state: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
        });
        let pump = Pump {
            consumer,
            source: reader.source.clone(),
            topic: reader.topic.clone(),
            state: reader.state.clone(),
            stop: reader.stop.clone(),
            wakeups,
            timeout: config.request_timeout,
        };
        std::thread::Builder::new()
            .name(format!("kafka:{subscription}"))
            .spawn(move || pump.run())
            .context("starting a Kafka consumer thread")?;
        Ok(reader)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ReaderState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The offset of the newest event at or before position `after`, when it is known here.
    fn offset_of(&self, partition: i32, after: i64) -> Option<i64> {
        let state = self.state();
        let p = state.partitions.get(&partition)?;
        p.remembered.range(..=after).next_back().map(|(_, offset)| *offset).or(p.handled)
    }

    /// Up to `limit` buffered events after `after`. Empty while the partition is being
    /// positioned: the pump wakes the partition when events arrive.
    fn read(&self, partition: i32, after: i64, limit: usize) -> Vec<EventEnvelope> {
        let mut state = self.state();
        let events = state.partitions.entry(partition).or_default().read(after, limit);
        if events.is_none() {
            state.reassign = true;
        }
        events.unwrap_or_default()
    }
}

impl PartitionState {
    /// Up to `limit` buffered events after cursor `after`, dropping those the cursor has
    /// passed; `None` when the partition must first be (re)positioned, which this asks for.
    fn read(&mut self, after: i64, limit: usize) -> Option<Vec<EventEnvelope>> {
        let started = self.next.is_some() || self.start.is_some();
        if !started || after < self.floor {
            let known = self.remembered.range(..=after).next_back().map(|(_, offset)| *offset);
            self.start = Some(match known {
                Some(offset) if started => Start::Known(offset),
                _ if after == 0 => Start::Beginning,
                _ if !started => Start::Committed,
                _ => Start::Beginning,
            });
            self.buffered.clear();
            self.next = None;
            self.floor = after;
            return None;
        }
        self.floor = after;
        while let Some((offset, event)) = self.buffered.front() {
            if event.position > after {
                break;
            }
            self.handled = Some(*offset);
            self.buffered.pop_front();
        }
        let mut last = after;
        let mut events = Vec::new();
        for (_, event) in &self.buffered {
            if events.len() >= limit {
                break;
            }
            // A repeat (a re-sent batch) of something already returned or handled.
            if event.position <= last {
                continue;
            }
            last = event.position;
            events.push(event.clone());
        }
        Some(events)
    }
}

/// The thread that owns a subscription's consumer.
struct Pump {
    consumer: BaseConsumer,
    source: String,
    topic: String,
    state: Arc<Mutex<ReaderState>>,
    stop: Arc<AtomicBool>,
    wakeups: Wakeups,
    timeout: Duration,
}

impl Pump {
    fn run(self) {
        let mut committed_at = Instant::now();
        let mut failing_since: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(error) = self.reposition() {
                tracing::warn!(topic = self.topic, "positioning a Kafka consumer failed, will retry: {error:#}");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    failing_since = None;
                    let mut arrived = Vec::new();
                    self.take(&message, &mut arrived);
                    drop(message);
                    // Whatever else is already fetched, up to a bound, before waking anyone.
                    for _ in 0..1_000 {
                        match self.consumer.poll(Duration::ZERO) {
                            Some(Ok(message)) => self.take(&message, &mut arrived),
                            _ => break,
                        }
                    }
                    if !arrived.is_empty() {
                        self.wakeups.sequenced_now(&self.source, Some(&arrived));
                    }
                }
                Some(Err(error)) => {
                    // librdkafka reconnects by itself; say so once a while, not per poll.
                    if failing_since.is_none_or(|since| since.elapsed() > Duration::from_secs(30)) {
                        tracing::warn!(topic = self.topic, "consuming from Kafka failed, retrying: {error}");
                        failing_since = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            self.pause_or_resume();
            if committed_at.elapsed() >= COMMIT_EVERY {
                self.commit_handled();
                committed_at = Instant::now();
            }
        }
        self.commit_handled();
    }

    /// Applies the starts reads asked for, as one new assignment of every partition.
    fn reposition(&self) -> anyhow::Result<()> {
        let starts: Vec<(i32, Start)> = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.reassign {
                return Ok(());
            }
            state.partitions.iter().filter_map(|(index, p)| p.start.map(|start| (*index, start))).collect()
        };
        // The group's commits, for the partitions that start from them (a broker call).
        let committed = if starts.iter().any(|(_, start)| *start == Start::Committed) {
            let mut wanted = TopicPartitionList::new();
            for (index, _) in &starts {
                wanted.add_partition(&self.topic, *index);
            }
            Some(self.consumer.committed_offsets(wanted, self.timeout)?)
        } else {
            None
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut assignment = TopicPartitionList::new();
        for (index, p) in &mut state.partitions {
            let offset = match starts.iter().find(|(i, _)| i == index).map(|(_, start)| *start) {
                // A read asked again meanwhile: the next round applies it.
                Some(asked) if p.start != Some(asked) => continue,
                Some(Start::Known(offset)) => {
                    p.verify = false;
                    Offset::Offset(offset)
                }
                Some(Start::Committed) => {
                    let found = committed.as_ref().and_then(|c| c.find_partition(&self.topic, *index));
                    match found.map(|e| e.offset()) {
                        // The last handled event itself, to check it is at or before the cursor.
                        Some(Offset::Offset(next)) if next > 0 => {
                            p.verify = true;
                            Offset::Offset(next - 1)
                        }
                        _ => {
                            p.verify = false;
                            Offset::Beginning
                        }
                    }
                }
                Some(Start::Beginning) => {
                    p.verify = false;
                    Offset::Beginning
                }
                None => match p.next {
                    Some(next) => next,
                    None => continue,
                },
            };
            if p.start.take().is_some() {
                p.buffered.clear();
                p.paused = false;
                p.from_offset = match offset {
                    Offset::Offset(offset) => offset,
                    _ => 0,
                };
            }
            p.next = Some(offset);
            assignment.add_partition_offset(&self.topic, *index, offset)?;
        }
        if state.partitions.values().all(|p| p.start.is_none()) {
            state.reassign = false;
        }
        self.consumer.assign(&assignment)?;
        Ok(())
    }

    /// Buffers one fetched record, noting what arrived.
    fn take(&self, message: &rdkafka::message::BorrowedMessage<'_>, arrived: &mut Vec<Sequenced>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        let Some(p) = state.partitions.get_mut(&message.partition()) else { return };
        let offset = message.offset();
        if p.start.is_some() || offset < p.from_offset {
            return; // fetched before the latest start
        }
        p.next = Some(Offset::Offset(offset + 1));
        let event = match wire::decode(&self.source, message) {
            Ok(event) => event,
            Err(error) => {
                // Not written by a relay: nothing a handler could make sense of.
                tracing::error!(
                    topic = self.topic,
                    partition = message.partition(),
                    offset,
                    "skipping a record that is not an event: {error}"
                );
                return;
            }
        };
        if std::mem::take(&mut p.verify) && event.position > p.floor {
            // The group's commit was past the cursor (a rewind since): read it all again.
            p.start = Some(Start::Beginning);
            state.reassign = true;
            return;
        }
        p.remembered.insert(event.position, offset);
        if p.remembered.len() > REMEMBERED {
            p.remembered.pop_first();
        }
        state.newest = state.newest.max(event.position);
        let short_type = event.event_type.strip_prefix(&format!("{}.", self.source)).map(str::to_owned);
        arrived.push(Sequenced { hash: shared_kernel::event::key_hash(&event.aggregate_key), short_type });
        p.buffered.push_back((offset, event));
    }

    /// Stops fetching for partitions whose buffer is full, resumes them once it drained.
    fn pause_or_resume(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for (index, p) in &mut state.partitions {
            let full = p.buffered.len() >= PAUSE_AT;
            if full != p.paused {
                let mut list = TopicPartitionList::new();
                list.add_partition(&self.topic, *index);
                let outcome = if full { self.consumer.pause(&list) } else { self.consumer.resume(&list) };
                if outcome.is_ok() {
                    p.paused = full;
                }
            }
        }
    }

    /// Commits the handled offsets that moved, so a restart need not read from the beginning.
    fn commit_handled(&self) {
        let mut list = TopicPartitionList::new();
        let mut moved = Vec::new();
        {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for (index, p) in &state.partitions {
                if let Some(handled) = p.handled
                    && p.committed != Some(handled)
                    && list.add_partition_offset(&self.topic, *index, Offset::Offset(handled + 1)).is_ok()
                {
                    moved.push((*index, handled));
                }
            }
        }
        if moved.is_empty() {
            return;
        }
        // Asynchronous: a commit is a hint, and waiting for the coordinator would stall the
        // pump (and every partition behind it) for a round trip or more.
        match self.consumer.commit(&list, CommitMode::Async) {
            Ok(()) => {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                for (index, handled) in moved {
                    if let Some(p) = state.partitions.get_mut(&index) {
                        p.committed = Some(handled);
                    }
                }
            }
            Err(error) => tracing::debug!(topic = self.topic, "committing offsets to the group failed: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64) -> EventEnvelope {
        EventEnvelope {
            id: uuid::Uuid::now_v7(),
            source: "alpha".to_owned(),
            position,
            event_type: "alpha.made".to_owned(),
            event_version: 1,
            aggregate_key: "k".to_owned(),
            payload: serde_json::json!({}),
            metadata: crate::bus::event::Metadata::system("test"),
            occurred_at: Utc::now(),
        }
    }

    /// A partition that started at offset 0 and fetched records with these positions.
    fn fetched(positions: &[i64]) -> PartitionState {
        let mut p = PartitionState { next: Some(Offset::Beginning), ..PartitionState::default() };
        for (offset, position) in (0..).zip(positions) {
            p.remembered.insert(*position, offset);
            p.buffered.push_back((offset, event(*position)));
        }
        p
    }

    fn positions(events: &[EventEnvelope]) -> Vec<i64> {
        events.iter().map(|e| e.position).collect()
    }

    #[test]
    fn a_first_read_asks_for_a_start_from_the_groups_commit_or_the_beginning() {
        let mut p = PartitionState::default();
        assert!(p.read(7, 10).is_none());
        assert_eq!(p.start, Some(Start::Committed), "a cursor past 0 restarts where the group committed, checked");
        let mut p = PartitionState::default();
        assert!(p.read(0, 10).is_none());
        assert_eq!(p.start, Some(Start::Beginning));
    }

    #[test]
    fn a_resent_batch_is_skipped_and_each_position_read_once_in_order() {
        // 1 2 3, then the relay crashed and sent 2 3 again, then 4.
        let mut p = fetched(&[1, 2, 3, 2, 3, 4]);
        assert_eq!(positions(&p.read(0, 10).unwrap()), [1, 2, 3, 4]);
        assert_eq!(positions(&p.read(0, 2).unwrap()), [1, 2], "a limit counts events returned");
        assert_eq!(positions(&p.read(3, 10).unwrap()), [4], "after the cursor only");
        assert_eq!(p.handled, Some(4), "the repeats before 4 are handled too");
        assert!(p.read(4, 10).unwrap().is_empty());
    }

    #[test]
    fn a_read_that_failed_gets_the_same_events_again() {
        let mut p = fetched(&[1, 2, 3]);
        assert_eq!(positions(&p.read(0, 10).unwrap()), [1, 2, 3]);
        // The handler's transaction rolled back: the cursor is still 0.
        assert_eq!(positions(&p.read(0, 10).unwrap()), [1, 2, 3]);
    }

    #[test]
    fn a_rewind_restarts_at_the_newest_offset_known_at_or_before_the_new_cursor() {
        let mut p = fetched(&[5, 6, 7, 8]);
        assert_eq!(positions(&p.read(8, 10).unwrap()), Vec::<i64>::new());
        assert!(p.read(6, 10).is_none(), "the cursor went back");
        assert_eq!(p.start, Some(Start::Known(1)), "offset 1 holds position 6");
        assert!(p.buffered.is_empty());
        let mut p = fetched(&[5, 6]);
        p.read(6, 10);
        assert!(p.read(2, 10).is_none());
        assert_eq!(p.start, Some(Start::Beginning), "nothing known that far back");
    }
}
