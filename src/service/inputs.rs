//! The input topics and the lanes their partitions become.
//!
//! Everything the service keeps per input partition — the engine's event-time lanes, the offset
//! book, positions, commits, rebuild ranges, snapshots — is keyed by one number, the *lane*:
//! partition `p` of the `i`-th of `n` input topics is lane `p × n + i`. With one input topic a
//! lane is its partition number, as before several topics could be read (so snapshots of a
//! single-topic service stay valid); with several, lanes stay small and dense (the engine keeps
//! its lanes in a vector) whatever the topics' partition counts. Only the Kafka edge — the
//! consumer's assignment, pause and resume, commits, watermarks, the rebuild's reads — turns a
//! lane back into its topic and partition.
//!
//! Several input topics are meant to be co-partitioned (the same partition count, debtors keyed
//! the same way): the range assignor then gives one instance the same partitions of each, so a
//! debtor's calls from every dialer meet in one engine.

use crate::codec::{DecodeSettings, Decoder};
use crate::config::Settings;
use rdkafka::{Offset, TopicPartitionList};

/// The input topics, in configuration order.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    topics: Vec<String>,
}

impl Inputs {
    /// The inputs `settings` name.
    pub(crate) fn of(settings: &Settings) -> Inputs {
        Inputs::new(
            settings
                .kafka
                .inputs
                .iter()
                .map(|i| i.topic.clone())
                .collect(),
        )
    }

    pub(crate) fn new(topics: Vec<String>) -> Inputs {
        assert!(!topics.is_empty(), "at least one input topic");
        Inputs { topics }
    }

    /// The topics, in order.
    pub(crate) fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The index of `topic`, if it is an input.
    pub(crate) fn index(&self, topic: &str) -> Option<usize> {
        if self.topics.len() == 1 {
            return (self.topics[0] == topic).then_some(0);
        }
        self.topics.iter().position(|t| t == topic)
    }

    /// The lane of `partition` of `topic` (an input: another topic is taken for the first).
    pub(crate) fn lane(&self, topic: &str, partition: i32) -> i32 {
        let n = self.topics.len() as i32;
        if n == 1 {
            return partition;
        }
        partition * n + self.index(topic).unwrap_or(0) as i32
    }

    /// The lane of `partition` of the input at `index`.
    pub(crate) fn lane_at(&self, index: usize, partition: i32) -> i32 {
        partition * self.topics.len() as i32 + index as i32
    }

    /// The input index of `lane`.
    pub(crate) fn index_of(&self, lane: i32) -> usize {
        (lane % self.topics.len() as i32) as usize
    }

    /// The topic and partition of `lane`.
    pub(crate) fn split(&self, lane: i32) -> (&str, i32) {
        let n = self.topics.len() as i32;
        (&self.topics[(lane % n) as usize], lane / n)
    }

    /// How `lane` is named in logs and check answers: its partition number with one input
    /// topic, `topic:partition` with several.
    pub(crate) fn name(&self, lane: i32) -> String {
        crate::check::lane_name(&self.topics, lane)
    }

    /// The lanes of the input partitions in `tpl`, sorted (other topics left out).
    pub(crate) fn lanes_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        let mut lanes: Vec<i32> = tpl
            .elements()
            .iter()
            .filter(|e| self.index(e.topic()).is_some())
            .map(|e| self.lane(e.topic(), e.partition()))
            .collect();
        lanes.sort_unstable();
        lanes
    }

    /// A list of the topic partitions of `lanes`.
    pub(crate) fn list(&self, lanes: impl IntoIterator<Item = i32>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for lane in lanes {
            let (topic, p) = self.split(lane);
            tpl.add_partition(topic, p);
        }
        tpl
    }

    /// A list of the topic partitions of `lanes`, each at its offset.
    pub(crate) fn list_at(&self, offsets: &[(i32, i64)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (lane, o) in offsets {
            let (topic, p) = self.split(*lane);
            // Only an out-of-range partition is refused, and lanes come from assignments.
            let _ = tpl.add_partition_offset(topic, p, Offset::Offset(*o));
        }
        tpl
    }

    /// Where snapshots of a service reading these inputs are kept apart from those of another
    /// set: the group id alone with one input topic (as before several could be read), else the
    /// group id and a digest of the topics in order (lanes mean other partitions then).
    pub(crate) fn snapshot_scope(&self, group: &str) -> String {
        if self.topics.len() == 1 {
            return group.to_owned();
        }
        let mut h = super::snapshots::Sum::default();
        for t in &self.topics {
            h.add(t.as_bytes());
            h.add(&[0]);
        }
        format!("{group}.inputs-{:016x}", h.finish())
    }
}

/// A decoder per input, each through its topic's mapping.
pub(crate) struct Decoders {
    inputs: Inputs,
    decoders: Vec<Decoder>,
}

impl Decoders {
    pub(crate) fn new(settings: &Settings) -> Decoders {
        Decoders::of_each(Decoders::settings(settings))
    }

    /// Each input topic with how its records are decoded.
    pub(crate) fn settings(settings: &Settings) -> Vec<(String, DecodeSettings)> {
        (0..settings.kafka.inputs.len())
            .map(|i| {
                let topic = settings.kafka.inputs[i].topic.clone();
                (topic, settings.decode_for(i))
            })
            .collect()
    }

    /// A decoder for each topic.
    pub(crate) fn of_each(inputs: Vec<(String, DecodeSettings)>) -> Decoders {
        let (topics, decoders) = inputs
            .into_iter()
            .map(|(t, s)| (t, Decoder::new(s)))
            .unzip();
        Decoders {
            inputs: Inputs::new(topics),
            decoders,
        }
    }

    /// The decoder of `topic`'s records.
    pub(crate) fn of(&mut self, topic: &str) -> &mut Decoder {
        if self.decoders.len() == 1 {
            return &mut self.decoders[0];
        }
        let i = self.inputs.index(topic).unwrap_or(0);
        &mut self.decoders[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_topic_lanes_are_its_partitions() {
        let i = Inputs::new(vec!["calls".into()]);
        for p in [0, 1, 7, 4095] {
            assert_eq!(i.lane("calls", p), p);
            assert_eq!(i.split(p), ("calls", p));
            assert_eq!(i.name(p), p.to_string());
        }
        assert_eq!(i.snapshot_scope("g"), "g");
    }

    #[test]
    fn several_topics_give_dense_lanes_that_split_back() {
        let i = Inputs::new(vec!["a".into(), "b".into(), "c".into()]);
        let mut seen = Vec::new();
        for t in ["a", "b", "c"] {
            for p in 0..5 {
                let lane = i.lane(t, p);
                assert_eq!(i.split(lane), (t, p));
                assert_eq!(i.lane_at(i.index(t).unwrap(), p), lane);
                assert_eq!(i.index_of(lane), i.index(t).unwrap());
                seen.push(lane);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..15).collect::<Vec<_>>(), "dense, one each");
        assert_eq!(i.name(i.lane("b", 3)), "b:3");
        let tpl = i.list([i.lane("c", 2), i.lane("a", 0)]);
        assert_eq!(i.lanes_of(&tpl), vec![0, 8]);
    }

    #[test]
    fn snapshot_scopes_differ_with_the_topics_and_their_order() {
        let ab = Inputs::new(vec!["a".into(), "b".into()]);
        let ba = Inputs::new(vec!["b".into(), "a".into()]);
        let abc = Inputs::new(vec!["a".into(), "b".into(), "c".into()]);
        let scopes = [
            ab.snapshot_scope("g"),
            ba.snapshot_scope("g"),
            abc.snapshot_scope("g"),
        ];
        assert!(scopes.iter().all(|s| s.starts_with("g.inputs-")));
        assert_ne!(scopes[0], scopes[1]);
        assert_ne!(scopes[0], scopes[2]);
        assert_eq!(ab.snapshot_scope("g"), scopes[0], "stable");
    }
}
