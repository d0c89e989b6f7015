//! The producer side: a thread that writes alerts from their breaches and hands every message
//! the processing thread's records caused (alerts, suppression directives, dead letters) to the
//! producer, while the processing thread judges the records after them.
//!
//! Writing an alert's JSON and `rd_kafka_producev` (headers, partitioner, the local queue)
//! were a fifth to a third of the processing thread's time at 100,000 records/s (docs/performance.md,
//! "The service's producer side"), and need neither the engine nor the consumer. What the
//! processing thread keeps is what decides: judging, which alerts are new
//! (`Pipeline::count_alert`), the directives' holds, and registering how many messages each
//! record caused ([`super::offsets::OffsetBook::processed`]) — before they are handed over, so
//! a record's offset is not committed until the messages still queued here are delivered.
//!
//! Messages travel in order through one thread, so each output topic receives them in the
//! order the records were judged. If the thread is gone, the processing loop stops: what it
//! held is registered and was never delivered, so those records stay uncommitted and are read
//! again.

use super::kafka::{send, ProducerCtx};
use super::messages::{self, Origin, Outgoing};
use super::Shutdown;
use crate::alert::AlertJson;
use crate::directive;
use crate::engine::breach::{Breach, Hold};
use crate::engine::event::Call;
use crate::engine::rule::Rule;
use crate::engine::time::Ts;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::ThreadedProducer;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Batches handed over and not yet produced, at most: the processing thread waits when the
/// producer side is this far behind (librdkafka's full queue holds it back in turn).
const DEPTH: usize = 4;

/// Where a judged record's messages come from: the record (its index among the batch's
/// records: its headers and offset), the judged call (its index among the batch's calls),
/// when it was judged, and the assignment it was judged in.
#[derive(Clone, Copy)]
pub(super) struct At {
    pub record: usize,
    pub call: usize,
    pub now: Ts,
    pub origin: Origin,
}

/// One message to produce.
enum Job {
    /// Sent as it is.
    Ready(Outgoing),
    /// The alert of `batch.breaches[breach]`, named `id`.
    Alert { at: At, breach: usize, id: String },
    /// The suppression directive of a hold.
    Directive { at: At, hold: Hold },
}

/// The messages of the records judged since the last hand-over, in order, with what they are
/// written from.
#[derive(Default)]
pub(super) struct Batch {
    jobs: Vec<Job>,
    records: Vec<OwnedMessage>,
    calls: Vec<Call>,
    breaches: Vec<Breach>,
}

impl Batch {
    /// Queues a message made whole on the processing thread.
    pub(super) fn ready(&mut self, o: Outgoing) {
        self.jobs.push(Job::Ready(o));
    }

    /// The index the next record given to [`Batch::record`] will have.
    pub(super) fn next_record(&self) -> usize {
        self.records.len()
    }

    /// Adds a record the jobs name by its index.
    pub(super) fn record(&mut self, m: OwnedMessage) {
        self.records.push(m);
    }

    /// Adds the records of a batch judged with indexes from 0 (none added before).
    pub(super) fn records(&mut self, records: Vec<OwnedMessage>) {
        debug_assert!(self.records.is_empty());
        self.records = records;
    }

    /// Adds a judged call the jobs name by its index; returns the index.
    pub(super) fn call(&mut self, call: Call) -> usize {
        self.calls.push(call);
        self.calls.len() - 1
    }

    /// Queues the alert of `breach`, named `id`.
    pub(super) fn alert(&mut self, at: At, breach: Breach, id: String) {
        self.breaches.push(breach);
        self.jobs.push(Job::Alert {
            at,
            breach: self.breaches.len() - 1,
            id,
        });
    }

    /// Queues the suppression directive of `hold`.
    pub(super) fn directive(&mut self, at: At, hold: Hold) {
        self.jobs.push(Job::Directive { at, hold });
    }

    /// Whether no message is queued (records and calls may be).
    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Drops the records and calls no message was queued for.
    pub(super) fn clear(&mut self) {
        debug_assert!(self.jobs.is_empty());
        self.records.clear();
        self.calls.clear();
        self.breaches.clear();
    }
}

/// Where the producer side sends alerts and directives.
pub(super) struct Topics {
    pub alerts: String,
    pub suppressions: Option<String>,
}

/// The producer-side thread. Dropped without [`Writer::stop`] (the loop ended by an error), its
/// thread finishes what it was handed on its own.
pub(super) struct Writer {
    jobs: Option<SyncSender<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread; alerts are written for `rules` (the engine's, as breaches name them).
    pub(super) fn start(
        rules: Vec<Rule>,
        topics: Topics,
        producer: Arc<ThreadedProducer<ProducerCtx>>,
        shutdown: Shutdown,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = sync_channel::<Batch>(DEPTH);
        let worker = std::thread::Builder::new()
            .name("dialguard-produce".into())
            .spawn(move || {
                let mut json = AlertJson::new(&rules);
                for batch in rx {
                    let Batch {
                        jobs,
                        records,
                        calls,
                        breaches,
                    } = batch;
                    for job in jobs {
                        let o = match job {
                            Job::Ready(o) => o,
                            Job::Alert { at, breach, id } => {
                                let b = &breaches[breach];
                                let call = &calls[at.call];
                                let rule = &rules[b.rule as usize];
                                let mut payload = Vec::with_capacity(1024);
                                json.write_with_id(b, call, at.now, &id, &mut payload);
                                messages::alert_json(
                                    &topics.alerts,
                                    &records[at.record],
                                    (&id, &rule.id),
                                    &b.call(call).debtor_id,
                                    payload,
                                    at.origin,
                                )
                            }
                            Job::Directive { at, hold } => {
                                let d = directive::render(&rules, &hold, &calls[at.call], at.now);
                                messages::directive(
                                    topics.suppressions.as_deref().unwrap_or_default(),
                                    &records[at.record],
                                    &d,
                                    at.origin,
                                )
                            }
                        };
                        send(&producer, o, Some(&shutdown));
                    }
                }
            })?;
        Ok(Writer {
            jobs: Some(tx),
            worker: Some(worker),
        })
    }

    /// Hands `batch` over (waiting while the thread is [`DEPTH`] batches behind). Err when the
    /// thread is gone.
    pub(super) fn send(&self, batch: Batch) -> Result<(), Gone> {
        match &self.jobs {
            Some(tx) => tx.send(batch).map_err(|_| Gone),
            None => Err(Gone),
        }
    }

    /// Lets the thread finish what it was handed and waits for it until `end` at most (it may
    /// be waiting on a producer queue that never empties, with the broker gone): what it did
    /// not send was never acknowledged, so its records stay uncommitted.
    pub(super) fn stop(&mut self, end: Instant) {
        self.jobs = None;
        let Some(worker) = self.worker.take() else {
            return;
        };
        while !worker.is_finished() {
            if Instant::now() >= end {
                tracing::warn!(
                    "the producer side did not finish within the shutdown grace: leaving it"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = worker.join();
    }
}

/// The producer-side thread has stopped (it panicked).
#[derive(Debug)]
pub(super) struct Gone;
