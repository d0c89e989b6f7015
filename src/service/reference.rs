//! The status topic (`[reference] status_topic`): debtor statuses read in full before the
//! service is ready, then followed. A compacted topic keyed by `status_id`; a null value (a
//! tombstone) withdraws one.
//!
//! [`StatusFeed`] reads it with a consumer of its own, outside the consumer group (every
//! instance needs every status, whatever input partitions it holds), from the beginning at each
//! start, and keeps the view of the statuses known: the engine is replaced on every assignment,
//! and the view is applied to each new one ([`StatusFeed::sync`]).

use crate::codec::Reject;
use crate::config::Settings;
use crate::engine::breach::Breach;
use crate::engine::event::Text;
use crate::engine::status::Status;
use crate::engine::Engine;
use crate::reference::{Reference, ReferenceDecoder};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// One record of the status topic, decoded.
pub(crate) enum Update {
    /// A status to apply (new, or replacing the one with its id).
    Apply(Status),
    /// A tombstone: the status with this id is withdrawn.
    Withdraw(Text),
    /// Not a valid Status v1 record: for the dead-letter topic.
    Refused(Reject),
}

/// The status topic's reader and the statuses it has read.
pub(crate) struct StatusFeed {
    consumer: BaseConsumer,
    topic: String,
    decoder: ReferenceDecoder,
    /// The statuses known, by id: what a new engine is given.
    view: BTreeMap<Text, Status>,
    /// Partitions not yet read up to the end they had when the feed opened: (partition, that
    /// end). Empty once loaded.
    loading: HashMap<i32, i64>,
}

/// How long opening the feed waits for the broker's metadata and offsets.
const TIMEOUT: Duration = Duration::from_secs(10);

impl StatusFeed {
    /// Opens the topic and positions a reader at the beginning of every partition.
    pub(crate) fn open(settings: &Settings, topic: &str) -> Result<StatusFeed, String> {
        let mut c = super::pipeline::configured_client(&settings.kafka);
        c.set("group.id", format!("{}-reference", settings.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = c
            .create()
            .map_err(|e| format!("status topic reader: {e}"))?;
        let md = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| format!("reference.status_topic {topic}: metadata: {e}"))?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if parts.is_empty() {
            return Err(format!(
                "reference.status_topic {topic}: the topic does not exist (create it compacted, see docs/operations.md)"
            ));
        }
        let mut tpl = TopicPartitionList::new();
        let mut loading = HashMap::new();
        for p in parts {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p, TIMEOUT)
                .map_err(|e| format!("reference.status_topic {topic}[{p}]: offsets: {e}"))?;
            if hi > lo {
                loading.insert(p, hi);
            }
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| format!("reference.status_topic {topic}[{p}]: {e}"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("reference.status_topic {topic}: assign: {e}"))?;
        Ok(StatusFeed {
            consumer,
            topic: topic.to_owned(),
            decoder: ReferenceDecoder::new(settings.decode.default_region),
            view: BTreeMap::new(),
            loading,
        })
    }

    /// Whether every partition was read up to the end it had when the feed opened.
    pub(crate) fn loaded(&self) -> bool {
        self.loading.is_empty()
    }

    /// The statuses known.
    pub(crate) fn len(&self) -> usize {
        self.view.len()
    }

    /// Reads what is there, up to `max` records, waiting up to `wait` for the first; each
    /// record is decoded, kept in the view, and handed to `f` with its message.
    pub(crate) fn poll(
        &mut self,
        wait: Duration,
        max: usize,
        mut f: impl FnMut(&OwnedMessage, Update),
    ) -> usize {
        let mut n = 0;
        let mut wait = wait;
        while n < max {
            let m = match self.consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => m.detach(),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic = %self.topic, "reading the status topic");
                    break;
                }
            };
            wait = Duration::ZERO;
            n += 1;
            if let Some(&end) = self.loading.get(&m.partition()) {
                if m.offset() >= end - 1 {
                    self.loading.remove(&m.partition());
                }
            }
            let u = match self.decoder.decode_keyed(m.key(), m.payload()) {
                Ok(Reference::Status(st)) => {
                    self.view.insert(st.id.clone(), st.clone());
                    Update::Apply(st)
                }
                Ok(Reference::Withdraw(id)) => {
                    self.view.remove(&id);
                    Update::Withdraw(id)
                }
                Err(r) => Update::Refused(r),
            };
            f(&m, u);
        }
        n
    }

    /// Reads the topic up to the end it had when the feed opened (or until `deadline`, or
    /// `stop` says so), handing each record to `f`; returns whether it got there.
    pub(crate) fn load(
        &mut self,
        deadline: Instant,
        stop: impl Fn() -> bool,
        mut f: impl FnMut(&OwnedMessage, Update),
    ) -> bool {
        while !self.loaded() {
            if stop() || Instant::now() >= deadline {
                return false;
            }
            self.poll(Duration::from_millis(100), 10_000, &mut f);
        }
        true
    }

    /// Brings `engine`'s statuses to the view: withdraws those no longer known, applies the
    /// others (a status it already holds, unchanged, flags nothing new). Breaches found — calls
    /// the engine retains that a status covers and that no status had flagged — go to `out`.
    pub(crate) fn sync(&self, engine: &mut Engine, out: &mut Vec<Breach>) {
        let gone: Vec<Text> = engine
            .statuses()
            .all()
            .iter()
            .filter(|st| !self.view.contains_key(&st.id))
            .map(|st| st.id.clone())
            .collect();
        for id in gone {
            engine.end_status(&id);
        }
        for st in self.view.values() {
            if engine.statuses().get(&st.id) != Some(st) {
                engine.apply_status(st.clone(), out);
            }
        }
    }
}
