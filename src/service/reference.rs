//! The reference topics: debtor statuses (`[reference] status_topic`, keyed by `status_id`)
//! and the lender's contact book (`[reference] contacts_topic`, keyed by
//! `<debtor_id>/<phone>`), each read in full before the service is ready, then followed.
//! Compacted topics; a null value (a tombstone) withdraws the record its key names.
//!
//! A [`Feed`] reads one with a consumer of its own, outside the consumer group (every instance
//! needs every record, whatever input partitions it holds), from the beginning at each start.
//! What is known lives in the engine, which is replaced on every assignment: the pipeline moves
//! the statuses out of the old one first and brings the new one to them once its windows are
//! restored ([`sync`]); the contact book it gives the new engine before its windows are
//! restored, so restored calls are enriched and judged as they were.

use crate::codec::Reject;
use crate::config::Settings;
use crate::engine::breach::Breach;
use crate::engine::contacts::Contact;
use crate::engine::event::Text;
use crate::engine::status::{Status, Statuses};
use crate::engine::Engine;
use crate::reference::{Contract, Reference, ReferenceDecoder};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

/// One record of a reference topic, decoded.
pub(crate) enum Update {
    /// A status to apply (new, or replacing the one with its id).
    Apply(Status),
    /// A tombstone: the status with this id is withdrawn.
    Withdraw(Text),
    /// A contact to apply (new, or replacing the one for its debtor and number).
    Contact(Contact),
    /// A tombstone: the contact for this debtor and number is withdrawn.
    Forget(Text, Text),
    /// Not a valid record of the topic's contract: for the dead-letter topic.
    Refused(Reject),
}

/// A reference topic's reader.
pub(crate) struct Feed {
    consumer: BaseConsumer,
    topic: String,
    contract: Contract,
    decoder: ReferenceDecoder,
    /// Partitions not yet read up to the end they had when the feed opened: (partition, that
    /// end). Empty once loaded.
    loading: HashMap<i32, i64>,
}

/// How long opening the feed waits for the broker's metadata and offsets.
const TIMEOUT: Duration = Duration::from_secs(10);

impl Feed {
    /// Opens the topic and positions a reader at the beginning of every partition.
    pub(crate) fn open(
        settings: &Settings,
        topic: &str,
        contract: Contract,
    ) -> Result<Feed, String> {
        let setting = match contract {
            Contract::Status => "reference.status_topic",
            Contract::Contact => "reference.contacts_topic",
        };
        let mut c = super::pipeline::configured_client(&settings.kafka);
        // As the service's other consumers: librdkafka's fetch back-off (1 s by default) left
        // a reader with a full local queue idle most of each second.
        super::kafka::consumer_defaults(&mut c);
        super::pipeline::apply_client(&mut c, &settings.kafka);
        c.set("group.id", format!("{}-reference", settings.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = c.create().map_err(|e| format!("{setting} reader: {e}"))?;
        let md = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| format!("{setting} {topic}: metadata: {e}"))?;
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
                .map_err(|e| format!("{setting} {topic}[{p}]: offsets: {e}"))?;
            if hi > lo {
                loading.insert(p, hi);
            }
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| format!("{setting} {topic}[{p}]: {e}"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("{setting} {topic}: assign: {e}"))?;
        Ok(Feed {
            consumer,
            topic: topic.to_owned(),
            contract,
            decoder: ReferenceDecoder::new(settings.decode.default_region),
            loading,
        })
    }

    /// Whether every partition was read up to the end it had when the feed opened.
    pub(crate) fn loaded(&self) -> bool {
        self.loading.is_empty()
    }

    /// Reads what is there, up to `max` records, waiting up to `wait` for the first; each
    /// record is decoded and handed to `f` with its message.
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
                    tracing::warn!(error = %e, topic = %self.topic, "reading a reference topic");
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
            let u = match self
                .decoder
                .decode_keyed(self.contract, m.key(), m.payload())
            {
                Ok(Reference::Status(st)) => Update::Apply(st),
                Ok(Reference::Withdraw(id)) => Update::Withdraw(id),
                Ok(Reference::Contact(c)) => Update::Contact(c),
                Ok(Reference::Forget { debtor_id, phone }) => Update::Forget(debtor_id, phone),
                Err(r) => Update::Refused(r),
            };
            f(&m, u);
        }
        n
    }

    /// Reads the topic up to the end it had when the feed opened (or until `stop` says so),
    /// handing each record to `f`; returns whether it got there.
    pub(crate) fn load(
        &mut self,
        stop: impl Fn() -> bool,
        mut f: impl FnMut(&OwnedMessage, Update),
    ) -> bool {
        while !self.loaded() {
            if stop() {
                return false;
            }
            self.poll(Duration::from_millis(100), 10_000, &mut f);
        }
        true
    }
}

/// Brings `engine`'s statuses to `known` (those the old engine held, moved out of it): withdraws
/// those not known, applies the others it lacks or holds otherwise (a snapshot's, older). A
/// status it already holds unchanged flags nothing new. Breaches found — calls the engine
/// restored that a status covers and that no status had flagged — go to `out`.
pub(crate) fn sync(engine: &mut Engine, known: Statuses, out: &mut Vec<Breach>) {
    let gone: Vec<Text> = engine
        .statuses()
        .all()
        .iter()
        .filter(|st| known.get(&st.id).is_none())
        .map(|st| st.id.clone())
        .collect();
    for id in gone {
        engine.end_status(&id);
    }
    for st in known.into_all() {
        if engine.statuses().get(&st.id) != Some(&st) {
            engine.apply_status(st, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::Call;
    use crate::engine::time::Ts;

    fn status(id: &str, debtor: &str, from: &str) -> Status {
        let line = format!(
            r#"{{"status_id":"{id}","status":"cease_communication","debtor_id":"{debtor}","from":"{from}","source":"t"}}"#
        );
        match ReferenceDecoder::new(phonenumber::country::Id::US)
            .decode_line(line.as_bytes())
            .unwrap()
        {
            Reference::Status(st) => st,
            _ => unreachable!(),
        }
    }

    /// A new engine (a snapshot's statuses, or none) is brought to the statuses known: those
    /// withdrawn since are ended, the others applied, and restored calls they cover are flagged
    /// once.
    #[test]
    fn sync_brings_a_new_engine_to_the_statuses_known() {
        let settings = crate::config::Settings::load_with_env(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/pack-us-regf-status/policy.toml"),
            Some(std::collections::HashMap::new()),
        )
        .unwrap();
        let mut old = Engine::new(settings.rules.clone(), settings.engine.clone());
        let mut out = Vec::new();
        old.apply_status(status("a", "D1", "2026-11-01T00:00:00Z"), &mut out);
        old.apply_status(status("b", "D2", "2026-11-01T00:00:00Z"), &mut out);
        let known = old.take_statuses();
        assert!(old.statuses().is_empty());
        // The new engine restored a call of D1's, and holds a status withdrawn since.
        let mut new = Engine::new(settings.rules.clone(), settings.engine.clone());
        new.apply_status(status("gone", "D3", "2026-11-01T00:00:00Z"), &mut out);
        let t: jiff::Timestamp = "2026-11-02T15:00:00Z".parse().unwrap();
        let call = Call::new(
            "c1",
            Ts::from_jiff(t),
            "D1",
            "+12125550101",
            crate::engine::event::Relation::SelfDebtor,
        );
        assert!(new.restore(&call, &mut out));
        out.clear();
        sync(&mut new, known, &mut out);
        assert!(new.statuses().get("gone").is_none());
        assert!(new.statuses().get("a").is_some() && new.statuses().get("b").is_some());
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].late);
        // Brought to the same statuses again, nothing is flagged twice.
        let again = new.take_statuses();
        out.clear();
        sync(&mut new, again, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
