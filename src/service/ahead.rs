//! Decode-ahead: a thread that decodes the records the processing thread polled, and interns
//! their strings for the engine, while the processing thread judges the records before them.
//!
//! The processing thread owns the consumer (librdkafka runs the rebalance callbacks inside its
//! `poll`) and the engine, so it polls and judges; decoding (JSON, phone numbers, timestamps)
//! and interning (probes of a string table the size of the state) were 30% of its time at
//! 100,000 records/s and need neither. Batches travel in order through one thread, so records
//! are judged in the order they were polled.
//!
//! Each batch carries the assignment generation it was polled in and the interner of the engine
//! of that generation: a batch from an earlier assignment is dropped unjudged (its offsets were
//! not committed, so the new assignment reads its records again), and a call interned for
//! another engine's interner is interned again by the engine that judges it
//! ([`crate::engine::Engine::ingest_owned`]).

use super::inputs::Decoders;
use crate::codec::{DecodeSettings, Reject};
use crate::engine::event::Call;
use crate::engine::intern::{InternMemo, SharedInterner};
use crate::judge;
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

/// Records polled into one batch at most.
pub(super) const BATCH: usize = 128;

/// Fewer records than this, polled while nothing is in flight, are decoded on the processing
/// thread: a trickle is not worth a hand-over.
pub(super) const INLINE_BELOW: usize = 32;

/// Batches handed to the decoder and not yet judged, at most: one being judged, one decoded
/// and waiting, one being decoded.
pub(super) const DEPTH: usize = 3;

struct Job {
    generation: u64,
    interner: SharedInterner,
    records: Vec<OwnedMessage>,
}

/// A decoded batch, in the order its records were polled.
pub(super) struct Decoded {
    /// The assignment generation the records were polled in.
    pub generation: u64,
    pub records: Vec<OwnedMessage>,
    /// What decoding each record gave (taken as it is judged).
    pub decoded: Vec<Option<Result<Call, Reject>>>,
}

/// The decoder thread and the batches in flight to and from it.
pub(super) struct Ahead {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Decoded>,
    worker: Option<JoinHandle<()>>,
    in_flight: usize,
}

impl Ahead {
    /// Starts the decoder thread, for the input topics `inputs` (each with how its records are
    /// decoded, [`Decoders::settings`]).
    pub fn start(
        inputs: Vec<(String, DecodeSettings)>,
        now: fn() -> crate::engine::time::Ts,
    ) -> std::io::Result<Ahead> {
        let (jobs, rx) = sync_channel::<Job>(DEPTH);
        let (tx, done) = sync_channel::<Decoded>(DEPTH);
        let worker = std::thread::Builder::new()
            .name("dialguard-decode".into())
            .spawn(move || work(inputs, rx, tx, now))?;
        Ok(Ahead {
            jobs: Some(jobs),
            done,
            worker: Some(worker),
            in_flight: 0,
        })
    }

    /// Batches handed over and not yet taken back.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hands a batch polled in `generation` to the decoder, to be interned into `interner`.
    /// Returns the records back if the decoder thread is gone.
    pub fn send(
        &mut self,
        generation: u64,
        interner: SharedInterner,
        records: Vec<OwnedMessage>,
    ) -> Result<(), Vec<OwnedMessage>> {
        let Some(jobs) = &self.jobs else {
            return Err(records);
        };
        match jobs.send(Job {
            generation,
            interner,
            records,
        }) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(e) => {
                self.jobs = None;
                Err(e.0.records)
            }
        }
    }

    /// The oldest batch in flight: waiting for it when `wait`, else only if it is decoded.
    /// `None` when nothing is in flight (or, waiting, the decoder thread is gone).
    pub fn take(&mut self, wait: bool) -> Option<Decoded> {
        if self.in_flight == 0 {
            return None;
        }
        let d = if wait {
            self.done.recv().ok()
        } else {
            match self.done.try_recv() {
                Ok(d) => Some(d),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => None,
            }
        };
        match d {
            Some(d) => {
                self.in_flight -= 1;
                Some(d)
            }
            None => {
                // The decoder thread is gone: nothing more will come back.
                self.in_flight = 0;
                self.jobs = None;
                None
            }
        }
    }

    /// Whether the decoder thread is gone (it panicked), with whatever batches it held.
    pub fn lost(&self) -> bool {
        self.jobs.is_none()
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has finished (or dropped) its batch.
        self.jobs = None;
        while self.done.recv().is_ok() {}
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn work(
    inputs: Vec<(String, DecodeSettings)>,
    jobs: Receiver<Job>,
    done: SyncSender<Decoded>,
    now: fn() -> crate::engine::time::Ts,
) {
    let mut decoders = Decoders::of_each(inputs);
    let mut memo = InternMemo::default();
    let mut memo_of = 0;
    while let Ok(job) = jobs.recv() {
        let t = now();
        // Each run of records from one topic is decoded in one pass by that topic's decoder.
        let mut decoded = Vec::with_capacity(job.records.len());
        for run in job.records.chunk_by(|a, b| a.topic() == b.topic()) {
            judge::decode_each(
                decoders.of(run[0].topic()),
                run.iter().map(|m| m.payload().unwrap_or_default()),
                t,
                |o| decoded.push(Some(o)),
            );
        }
        if memo_of != job.interner.id() {
            // The memo's symbols are hints checked against the table, but they belong to one.
            memo = InternMemo::default();
            memo_of = job.interner.id();
        }
        job.interner.intern_calls(
            &mut memo,
            decoded.iter_mut().filter_map(|d| d.as_mut()?.as_mut().ok()),
        );
        let d = Decoded {
            generation: job.generation,
            records: job.records,
            decoded,
        };
        if done.send(d).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::StrField;
    use crate::engine::time::Ts;
    use rdkafka::message::Timestamp;

    fn record(offset: i64, payload: &str) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.as_bytes().to_vec()),
            None,
            "calls".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    fn now() -> Ts {
        Ts::from_jiff("2026-12-01T12:00:00Z".parse().unwrap())
    }

    fn dies() -> Ts {
        panic!("the decoder thread dies (a test)")
    }

    /// A decoder thread that panics takes the batch it held with it: the batch is not waited
    /// for for ever, the loss is seen (the pipeline then stops rather than judge past it), and
    /// a batch handed over afterwards comes straight back.
    #[test]
    fn a_dead_decoder_thread_is_seen_and_its_batch_not_waited_for() {
        let mut a = Ahead::start(vec![("calls".into(), DecodeSettings::default())], dies).unwrap();
        let interner = SharedInterner::default();
        a.send(0, interner.clone(), vec![record(0, CALL)]).unwrap();
        assert_eq!(a.in_flight(), 1);
        assert!(
            a.take(true).is_none(),
            "nothing comes back from a dead thread"
        );
        assert!(a.lost());
        assert_eq!(a.in_flight(), 0);
        let back = a.send(1, interner, vec![record(1, CALL)]).unwrap_err();
        assert_eq!(back.iter().map(|m| m.offset()).collect::<Vec<_>>(), [1]);
        assert!(a.take(false).is_none());
    }

    const CALL: &str = r#"{"call_id":"c1","occurred_at":"2026-12-01T09:00:00Z","debtor_id":"D1","phone":"+14155550100","relation":"self","outcome":"no_answer","direction":"outbound","channel":"voice","agent_id":"agent-1"}"#;

    #[test]
    fn batches_come_back_in_order_decoded_and_interned_for_the_interner_they_name() {
        let mut a = Ahead::start(vec![("calls".into(), DecodeSettings::default())], now).unwrap();
        let interner = SharedInterner::default();
        for g in 0..3u64 {
            let recs = (0..5)
                .map(|i| record(g as i64 * 10 + i, if i == 2 { "{" } else { CALL }))
                .collect();
            a.send(g, interner.clone(), recs).unwrap();
        }
        assert_eq!(a.in_flight(), 3);
        for g in 0..3u64 {
            let d = a.take(true).unwrap();
            assert_eq!(d.generation, g);
            let offsets: Vec<i64> = d.records.iter().map(|m| m.offset()).collect();
            assert_eq!(
                offsets,
                (0..5).map(|i| g as i64 * 10 + i).collect::<Vec<_>>()
            );
            assert_eq!(d.decoded.len(), 5);
            for (i, r) in d.decoded.iter().enumerate() {
                match r.as_ref().unwrap() {
                    Ok(c) => {
                        assert_ne!(i, 2);
                        let by = c.interned.unwrap();
                        assert_eq!(by.by, interner.id());
                        let debtor = by.syms[StrField::DebtorId as usize];
                        assert_eq!(interner.lock().get(debtor), "D1");
                    }
                    Err(rej) => {
                        assert_eq!(i, 2);
                        assert_eq!(rej.reason.as_str(), "not_json");
                    }
                }
            }
        }
        assert_eq!(a.in_flight(), 0);
        assert!(a.take(true).is_none());
    }
}
