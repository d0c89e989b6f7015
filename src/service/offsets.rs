//! Which offsets may be committed: at-least-once bookkeeping.
//!
//! A record's offset becomes committable only when the record and every record before it in
//! its partition have been processed and every message they caused (alerts, dead-letter
//! records) has been acknowledged by the broker. Pure: no Kafka types, unit-tested.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Default)]
struct Part {
    /// One past the last processed offset; `None` before the first record.
    next: Option<i64>,
    /// Processed records still waiting for acknowledgements: (offset, outstanding), ascending.
    pending: VecDeque<(i64, u32)>,
    /// The offset last handed out for commit.
    committed: Option<i64>,
    /// The oldest offset handed out for commit and not yet confirmed by the broker, with the
    /// confirmation round it was handed out in.
    unconfirmed: Option<(i64, u64)>,
}

impl Part {
    fn committable(&self) -> Option<i64> {
        self.pending.front().map(|p| p.0).or(self.next)
    }
}

/// Per-partition bookkeeping for one assignment generation.
#[derive(Debug, Default)]
pub struct OffsetBook {
    parts: HashMap<i32, Part>,
    generation: u64,
    in_flight: usize,
    /// Confirmation rounds started ([`OffsetBook::due`]).
    round: u64,
}

impl OffsetBook {
    /// The current generation; acknowledgements from an earlier one are ignored.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Forgets everything (the assignment changed); returns the new generation.
    pub fn reset(&mut self) -> u64 {
        self.parts.clear();
        self.in_flight = 0;
        self.generation += 1;
        self.generation
    }

    /// The partition resumes at `offset`, its committed offset: its next record should carry
    /// that offset, and nothing before it needs committing. Without this, gaps are seen only
    /// between records processed in this assignment.
    pub fn resume_at(&mut self, partition: i32, offset: i64) {
        let p = self.parts.entry(partition).or_default();
        if p.next.is_none() {
            p.next = Some(offset);
            p.committed = Some(offset);
        }
    }

    /// Record `offset` of `partition` is processed and caused `produced` messages, each of which
    /// will be acknowledged once through [`OffsetBook::ack`]. Returns how many offsets were passed
    /// over since the partition's previous record (or the offset it resumed at): records that
    /// were never read, such as those deleted by retention before the consumer reached them.
    pub fn processed(&mut self, partition: i32, offset: i64, produced: u32) -> u64 {
        let p = self.parts.entry(partition).or_default();
        let skipped = match p.next {
            Some(n) if offset > n => (offset - n) as u64,
            _ => 0,
        };
        p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
        if produced > 0 {
            p.pending.push_back((offset, produced));
            self.in_flight += produced as usize;
        }
        skipped
    }

    /// One message caused by `offset` of `partition` in `generation` was acknowledged.
    pub fn ack(&mut self, generation: u64, partition: i32, offset: i64) {
        if generation != self.generation {
            return;
        }
        let Some(p) = self.parts.get_mut(&partition) else {
            return;
        };
        let Ok(i) = p.pending.binary_search_by_key(&offset, |e| e.0) else {
            return;
        };
        p.pending[i].1 -= 1;
        self.in_flight -= 1;
        while p.pending.front().is_some_and(|e| e.1 == 0) {
            p.pending.pop_front();
        }
    }

    /// Messages produced and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Offsets (the next offset to read, Kafka's commit convention) that advanced since they
    /// were last taken; marks them taken.
    pub fn take_commits(&mut self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&partition, p) in &mut self.parts {
            if let Some(c) = p.committable() {
                if p.committed.is_none_or(|prev| c > prev) {
                    p.committed = Some(c);
                    p.unconfirmed.get_or_insert((c, self.round));
                    out.push((partition, c));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Marks offsets as not committed after a failed commit, so the next commit retries them.
    pub fn commit_failed(&mut self, offsets: &[(i32, i64)]) {
        for (partition, _) in offsets {
            if let Some(p) = self.parts.get_mut(partition) {
                p.committed = None;
                p.unconfirmed = None;
            }
        }
    }

    /// Starts a confirmation round and returns the commits to confirm with the broker: the
    /// oldest unconfirmed offset of each partition, handed out before the previous round began
    /// (so each has had a whole round to complete). An asynchronous commit's outcome is not
    /// reported by the client (rust-rdkafka #856): the broker is asked instead.
    pub fn due(&mut self) -> Vec<(i32, i64)> {
        let round = self.round;
        self.round += 1;
        let mut out: Vec<(i32, i64)> = self
            .parts
            .iter()
            .filter_map(|(k, p)| match p.unconfirmed {
                Some((o, r)) if r < round => Some((*k, o)),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The broker's committed offsets (`broker`, absent where it has none) for the commits
    /// [`OffsetBook::due`] returned in `generation`: a partition at or past what was handed
    /// out is confirmed; one behind it had its commit refused, and its offset is handed out
    /// again by the next [`OffsetBook::take_commits`]. Returns the refused commits.
    pub fn confirm(
        &mut self,
        generation: u64,
        due: &[(i32, i64)],
        broker: &HashMap<i32, i64>,
    ) -> Vec<(i32, i64)> {
        let mut refused = Vec::new();
        if generation != self.generation {
            return refused;
        }
        for (partition, offset) in due {
            let Some(p) = self.parts.get_mut(partition) else {
                continue;
            };
            // Refused and handed out again since (by a client callback): not this answer's.
            if p.unconfirmed.map(|u| u.0) != Some(*offset) {
                continue;
            }
            match broker.get(partition) {
                Some(b) if b >= offset => {
                    p.unconfirmed = match p.committed {
                        Some(c) if c > *b => Some((c, self.round)),
                        _ => None,
                    };
                }
                _ => {
                    p.committed = None;
                    p.unconfirmed = None;
                    refused.push((*partition, *offset));
                }
            }
        }
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_waits_for_every_message_it_and_earlier_records_caused() {
        let mut b = OffsetBook::default();
        let g = b.generation();
        b.processed(0, 10, 2); // two alerts
        b.processed(0, 11, 0);
        b.processed(0, 12, 1); // a dead-letter record
        b.processed(1, 5, 0);
        assert_eq!(b.in_flight(), 3);
        // Nothing of partition 0 is committable past offset 10 until 10's messages are acked.
        assert_eq!(b.take_commits(), vec![(0, 10), (1, 6)]);
        b.ack(g, 0, 12);
        assert_eq!(b.take_commits(), vec![]);
        b.ack(g, 0, 10);
        assert_eq!(b.take_commits(), vec![]);
        b.ack(g, 0, 10);
        assert_eq!(b.take_commits(), vec![(0, 13)]);
        assert_eq!(b.in_flight(), 0);
        // A failed commit is handed out again.
        b.commit_failed(&[(0, 13)]);
        assert_eq!(b.take_commits(), vec![(0, 13)]);
    }

    #[test]
    fn a_commit_the_broker_does_not_hold_after_a_round_is_handed_out_again() {
        let mut b = OffsetBook::default();
        let g = b.generation();
        let broker = |v: &[(i32, i64)]| -> HashMap<i32, i64> { v.iter().copied().collect() };
        b.resume_at(1, 40); // read from the broker: nothing to confirm
        b.processed(0, 10, 0);
        b.processed(1, 40, 0);
        assert_eq!(b.take_commits(), vec![(0, 11), (1, 41)]);
        // Handed out in this round: given until the next to complete.
        assert_eq!(b.due(), vec![]);
        b.processed(0, 11, 0);
        assert_eq!(b.take_commits(), vec![(0, 12)]);
        // The oldest unconfirmed offset of each partition is asked about.
        let due = b.due();
        assert_eq!(due, vec![(0, 11), (1, 41)]);
        // Partition 0's first commit took (and its second is still unconfirmed); 1's was
        // refused, so it is handed out again, and nothing else is.
        assert_eq!(
            b.confirm(g, &due, &broker(&[(0, 11), (1, 40)])),
            vec![(1, 41)]
        );
        assert_eq!(b.take_commits(), vec![(1, 41)]);
        assert_eq!(b.due(), vec![]);
        let due = b.due();
        assert_eq!(due, vec![(0, 12), (1, 41)]);
        // A partition with no committed offset at all was refused too.
        assert_eq!(b.confirm(g, &due, &broker(&[(0, 12)])), vec![(1, 41)]);
        assert_eq!(b.take_commits(), vec![(1, 41)]);
        b.due();
        let due = b.due();
        assert_eq!(b.confirm(g, &due, &broker(&[(0, 12), (1, 41)])), vec![]);
        assert_eq!(b.due(), vec![]);
        assert_eq!(b.due(), vec![], "everything confirmed");
        // An answer about an earlier assignment changes nothing.
        b.processed(0, 12, 0);
        b.take_commits();
        b.due();
        let due = b.due();
        let next = b.reset();
        assert_ne!(next, g);
        assert_eq!(b.confirm(g, &due, &broker(&[])), vec![]);
    }

    #[test]
    fn acknowledgements_from_an_earlier_assignment_are_ignored() {
        let mut b = OffsetBook::default();
        let old = b.generation();
        b.processed(3, 1, 1);
        let new = b.reset();
        assert_ne!(old, new);
        b.processed(3, 7, 1);
        b.ack(old, 3, 1);
        assert_eq!(b.in_flight(), 1);
        assert_eq!(b.take_commits(), vec![(3, 7)]);
        b.ack(new, 3, 7);
        assert_eq!(b.take_commits(), vec![(3, 8)]);
    }

    #[test]
    fn offsets_passed_over_are_counted_from_the_resume_point_on() {
        let mut b = OffsetBook::default();
        b.resume_at(0, 100);
        // Resuming is not progress: nothing to commit yet.
        assert_eq!(b.take_commits(), vec![]);
        assert_eq!(b.processed(0, 100, 0), 0);
        assert_eq!(b.processed(0, 101, 0), 0);
        // Retention deleted 102..=149 before they were read.
        assert_eq!(b.processed(0, 150, 0), 48);
        // A record read again (an earlier offset) is no gap.
        assert_eq!(b.processed(0, 120, 0), 0);
        assert_eq!(b.processed(0, 151, 0), 0);
        assert_eq!(b.take_commits(), vec![(0, 152)]);
        // The consumer reset straight past the resume point.
        b.resume_at(1, 10);
        assert_eq!(b.processed(1, 40, 0), 30);
        // Without a resume point the first record is no gap; later ones are judged.
        assert_eq!(b.processed(2, 7, 0), 0);
        assert_eq!(b.processed(2, 9, 0), 1);
        // A second resume_at does not move a partition already under way.
        b.resume_at(2, 0);
        assert_eq!(b.processed(2, 10, 0), 0);
    }
}
