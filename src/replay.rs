//! `dialguard replay`: a backtest of a policy over recorded call events (JSON lines).
//!
//! Reading and decoding run on worker threads, in batches (the calling thread decodes too when
//! its next batch is not ready), while the engine judges on the calling thread in input order;
//! the result is the same as decoding one line at a time.
//! Invalid lines never stop the run: each is written to the rejects output with its reason.

use crate::alert;
use crate::codec::{DecodeSettings, Decoder, Reason, Reject};
use crate::config::Settings;
use crate::engine::breach::Breach;
use crate::engine::contacts::Contacts;
use crate::engine::event::Call;
use crate::engine::intern::{InternMemo, SharedInterner};
use crate::engine::rule::Rule;
use crate::engine::time::Ts;
use crate::engine::Engine;
use crate::judge::{self, Outcome};
use crate::reference::{Reference, ReferenceDecoder};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes per batch handed to a decoder thread (whole lines: about 2,700 call events).
const BATCH_BYTES: usize = 1 << 20;

/// Breaches ahead of the one rendered whose memory the alert writer asks for
/// ([`alert::prefetch`]).
const RENDER_AHEAD: usize = 4;

/// Where replay's call events come from.
pub enum Input {
    /// Read as a stream (standard input, a file that cannot be mapped).
    Reader(Box<dyn BufRead + Send>),
    /// The whole input in memory: the binary maps a regular file (no copy of every byte from
    /// the page cache: `perf` put 15% of a replay's CPU in that copy); batches are parts of it.
    Bytes(Box<dyn InMemory>),
}

/// An input held in memory whole ([`Input::Bytes`]).
pub trait InMemory: Send + Sync {
    /// The input.
    fn bytes(&self) -> &[u8];
    /// The lines in `range` (of [`InMemory::bytes`]) were judged and their alerts written:
    /// nothing reads them again, so their memory may be given back (a mapped file's pages,
    /// which would otherwise count in the process's resident memory to the end).
    fn done(&self, _range: Range<usize>) {}
}

impl InMemory for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Input {
    /// A stream to read.
    pub fn reader(r: impl BufRead + Send + 'static) -> Input {
        Input::Reader(Box::new(r))
    }
}

/// Where replay reads and writes.
pub struct ReplayIo {
    /// JSON lines of call events.
    pub input: Input,
    /// Alerts, one JSON object per line (written on a thread of its own).
    pub alerts: Option<Box<dyn Write + Send>>,
    /// Rejected lines with their reasons, one JSON object per line.
    pub rejects: Option<Box<dyn Write + Send>>,
    /// Reference data (Status v1 and Contact v1 records, JSON lines; `crate::reference`), applied before
    /// the first call is judged, as the service reads its reference topics in full before it
    /// is ready.
    pub reference: Option<Box<dyn BufRead + Send>>,
}

/// Replay options.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Pins the clock (`detected_at`, future-skew check); default: the wall clock.
    pub now: Option<Ts>,
    /// Decoder threads; default: one less than the cores, at least one.
    pub decoders: Option<usize>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// The input's size in bytes, when known (a file): the bar then shows a percentage.
    pub input_bytes: Option<u64>,
    /// Backtest enforcement: check each call before it is "placed" (against everything read
    /// before it) and drop it when the check refuses it, as a dialer asking `/v1/check` would.
    pub enforce: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Lines read (blank lines excluded).
    pub records: u64,
    /// Blank lines skipped.
    pub blank: u64,
    /// Calls accepted by the engine.
    pub valid: u64,
    /// Duplicates (same call_id as a retained call).
    pub duplicates: u64,
    /// Rejected lines by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Alerts by rule id.
    pub alerts_by_rule: BTreeMap<String, u64>,
    /// Alerts in total.
    pub alerts: u64,
    /// Of those, late.
    pub late_alerts: u64,
    /// Rule applications skipped for a missing key field.
    pub skipped: u64,
    /// With `enforce`: calls a pre-dial check refused, which were therefore not placed.
    pub blocked: u64,
    /// With `enforce`: refusals by rule (a call refused by two rules counts for both).
    pub blocked_by_rule: BTreeMap<String, u64>,
    /// Whether this was an enforcement backtest.
    pub enforced: bool,
    /// Reference records read (`--reference`, blank lines excluded).
    pub reference_records: u64,
    /// Of those, refused, by reason.
    pub reference_rejected: BTreeMap<&'static str, u64>,
    /// Statuses known once the reference data was read.
    pub statuses: u64,
    /// Contacts known once the reference data was read.
    pub contacts: u64,
    /// Time spent reading the reference data.
    pub reference_elapsed: Duration,
    /// Calls retained at the end.
    pub retained_calls: u64,
    /// Engine heap estimate at the end, bytes.
    pub engine_heap_bytes: u64,
    /// Wall time judging the calls (after the reference data was read).
    pub elapsed: Duration,
}

impl Summary {
    /// Records per second of wall time.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<36} {v:>14}\n"));
        if self.reference_records > 0 {
            row("reference records", self.reference_records.to_string());
            row(
                "  rejected",
                self.reference_rejected.values().sum::<u64>().to_string(),
            );
            for (r, n) in &self.reference_rejected {
                row(&format!("    {r}"), n.to_string());
            }
            row("  statuses known", self.statuses.to_string());
            row("  contacts known", self.contacts.to_string());
            row(
                "  read in",
                format!("{:.3} s", self.reference_elapsed.as_secs_f64()),
            );
        }
        row("records", self.records.to_string());
        row("valid (accepted)", self.valid.to_string());
        row("duplicates", self.duplicates.to_string());
        if self.enforced {
            row("blocked before dialing (enforce)", self.blocked.to_string());
            for (r, n) in &self.blocked_by_rule {
                row(&format!("  {r}"), n.to_string());
            }
        }
        row("rejected", self.rejected.values().sum::<u64>().to_string());
        for (r, n) in &self.rejected {
            row(&format!("  {r}"), n.to_string());
        }
        if self.blank > 0 {
            row("blank lines skipped", self.blank.to_string());
        }
        row(
            "rules skipped (missing key field)",
            self.skipped.to_string(),
        );
        row("alerts", self.alerts.to_string());
        row("  of which late", self.late_alerts.to_string());
        for (r, n) in &self.alerts_by_rule {
            row(&format!("  {r}"), n.to_string());
        }
        row("retained calls at end", self.retained_calls.to_string());
        row(
            "engine heap at end (estimate)",
            format!("{:.1} MiB", self.engine_heap_bytes as f64 / 1048576.0),
        );
        row("elapsed", format!("{:.3} s", self.elapsed.as_secs_f64()));
        row("events/s", format!("{:.0}", self.rate()));
        s
    }
}

/// Replay failed (only I/O: bad records are data, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Read(std::io::Error),
    /// Writing an output failed.
    #[error("writing output: {0}")]
    Write(std::io::Error),
}

/// Whole lines as read, in one buffer (no allocation per line).
struct Batch<'m> {
    /// Position in the input, in batches: the engine judges them in this order.
    seq: u64,
    buf: Buf<'m>,
}

/// A batch's lines: read into a buffer of its own, or a part of the mapped input file.
enum Buf<'m> {
    Owned(Vec<u8>),
    Mapped(&'m [u8]),
}

impl Default for Buf<'_> {
    fn default() -> Self {
        Buf::Owned(Vec::new())
    }
}

impl std::ops::Deref for Buf<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buf::Owned(v) => v,
            Buf::Mapped(b) => b,
        }
    }
}

/// A batch decoded: the lines' buffer (rejects quote from it), what each line is, and the
/// calls, in one vector (not a box each).
#[derive(Default)]
struct DecodedBatch<'m> {
    seq: u64,
    buf: Buf<'m>,
    items: Vec<Decoded>,
    calls: Vec<Call>,
}

/// Batches done with, kept to be filled again by whichever thread needs one next: a fresh
/// megabyte of input and a fresh vector of calls per batch were fresh pages from the kernel
/// each time, zeroed on first touch (`perf`: ~9% of a replay in `clear_page_erms`).
struct Pool<'m> {
    /// The input in memory, told of the parts done with.
    whole: Option<&'m dyn InMemory>,
    bufs: Mutex<Vec<Vec<u8>>>,
    shells: Mutex<Vec<(Vec<Decoded>, Vec<Call>)>>,
    /// Parts of the input done with, not yet told to `whole`: telling it is a system call
    /// (`madvise`), left to the decoder thread taking the next shell, not the engine thread
    /// that gives a batch back (`perf`: 1.5% of the engine thread's samples there).
    done: Mutex<Vec<std::ops::Range<usize>>>,
}

/// Batches a pool keeps (more are freed): about as many as are ever in flight.
const POOL_MAX: usize = 32;

impl Pool<'_> {
    /// Gives a batch back. Its calls are dropped by the thread that takes the shell next.
    fn put(&self, b: DecodedBatch<'_>) {
        match b.buf {
            Buf::Owned(buf) => {
                if let Ok(mut bufs) = self.bufs.lock() {
                    if bufs.len() < POOL_MAX {
                        bufs.push(buf);
                    }
                }
            }
            Buf::Mapped(part) => {
                if let Some(w) = self.whole {
                    let start = part.as_ptr() as usize - w.bytes().as_ptr() as usize;
                    if let Ok(mut done) = self.done.lock() {
                        done.push(start..start + part.len());
                    }
                }
            }
        }
        if let Ok(mut shells) = self.shells.lock() {
            if shells.len() < POOL_MAX {
                shells.push((b.items, b.calls));
            }
        }
    }

    /// An empty input buffer.
    fn buf(&self) -> Vec<u8> {
        let mut b = self
            .bufs
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default();
        b.clear();
        b
    }

    /// Tells the input of the parts done with since the last time, adjacent ones among them as
    /// one (so the page two such batches share goes too; a part whose neighbour is still in
    /// flight keeps their shared page, as every part did before).
    fn tell_done(&self) {
        let (Some(w), Ok(mut done)) = (self.whole, self.done.lock()) else {
            return;
        };
        if done.is_empty() {
            return;
        }
        let mut parts = std::mem::take(&mut *done);
        drop(done);
        parts.sort_unstable_by_key(|r| r.start);
        let mut run = parts[0].clone();
        for r in &parts[1..] {
            if r.start == run.end {
                run.end = r.end;
            } else {
                w.done(std::mem::replace(&mut run, r.clone()));
            }
        }
        w.done(run);
    }

    /// Empty vectors for a batch's lines and calls.
    fn shell(&self) -> (Vec<Decoded>, Vec<Call>) {
        self.tell_done();
        let (mut items, mut calls) = self
            .shells
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default();
        items.clear();
        calls.clear();
        (items, calls)
    }
}

/// A decoded batch after judging, on its way to the alert writer: the breaches found, each
/// with the index in `calls` of the call judged when it was found, rendered there.
struct Judged<'m> {
    calls: DecodedBatch<'m>,
    breaches: Vec<Breach>,
    at: Vec<u32>,
    now: Ts,
}

/// What one line of a batch is, one per line in order: the line number is the engine thread's
/// count of the lines before the batch plus the item's index (counting the lines of each batch
/// ahead, on the thread that cuts the input, was another pass over every byte).
enum Decoded {
    /// The call's index in the batch's calls, and where the line is in the batch's buffer (for
    /// a `too_late` reject).
    Call(u32, Range<usize>),
    Rejected {
        reject: Reject,
        raw: Range<usize>,
    },
    Blank,
}

/// A thread builder with `name`: the name shows in `top -H`, `perf` and
/// `scripts/thread-cpu.sh`, which tell the decoders, the reader and the writer apart by it.
fn named(name: &str) -> std::thread::Builder {
    std::thread::Builder::new().name(name.to_owned())
}

/// `std::thread::Scope::spawn` panics when the system cannot start a thread; so does replay.
const SPAWN: &str = "the system could not start a replay thread";

/// Runs a replay.
pub fn run(
    settings: &Settings,
    io: ReplayIo,
    opts: &ReplayOptions,
) -> Result<Summary, ReplayError> {
    let workers = opts
        .decoders
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1))
        })
        .max(1);
    let clock = opts.now;
    let now = move || clock.unwrap_or_else(|| Ts::from_jiff(jiff::Timestamp::now()));
    let ReplayIo {
        input,
        mut alerts,
        mut rejects,
        reference,
    } = io;
    // Bytes in memory outlive every thread reading them: batches borrow from them.
    let mut whole: Option<Box<dyn InMemory>> = None;
    let stream: Box<dyn BufRead + Send> = match input {
        Input::Reader(r) => r,
        Input::Bytes(b) => {
            whole = Some(b);
            Box::new(std::io::empty())
        }
    };
    // Without an alerts output no alert is rendered: the engine need not collect evidence,
    // nor work out the bounds of the windows that breached.
    let mut engine_settings = settings.engine.clone();
    // Nor need retained calls keep the strings no rule reads (agent, creditor, …): they
    // would only show in an alert. Fewer strings interned, a smaller state.
    if alerts.is_none() {
        engine_settings.evidence_limit = 0;
        engine_settings.window_bounds = false;
        engine_settings.keep_call_fields = false;
    }
    // The earlier call a late breach names is read on the writer thread: on the engine thread
    // it waited for the interner's lock, held by a decoder thread the writer had preempted
    // (README, "Late breaches read on the writer thread").
    engine_settings.defer_late_strings = alerts.is_some();
    engine_settings.defer_evidence = alerts.is_some();
    // The reference data is applied before the first call (below), never after one: status
    // and contact rules need not keep calls to flag late.
    engine_settings.late_statuses = false;
    engine_settings.late_contacts = false;
    // A number called about one debtor keeps its calls for a distinct cap in a log instead of
    // a window (`thin_windows`), read back into a window only if another debtor comes — but not
    // where every call is checked first (`enforce`): a check reads the key's calls along its
    // chain in the log, a cache miss each, and checking every call so ran 42% slower than
    // reading its window.
    engine_settings.thin_windows = !opts.enforce;
    let mut engine = Engine::new(settings.rules.clone(), engine_settings);
    let mut summary = Summary {
        enforced: opts.enforce,
        ..Summary::default()
    };
    if let Some(r) = reference {
        load_reference(settings, &mut engine, r, &mut rejects, &mut summary)?;
    }
    // The calls' time and rate leave the reference data out (its time is reported apart).
    let started = Instant::now();
    let shared_book = engine.shared_contacts();

    let bytes_read = AtomicU64::new(0);
    let (raw_tx, raw_rx) = sync_channel::<Batch>(2 * workers + 2);
    // `None` once judging has stopped early (the alert writer failed): the reader's and the
    // decoders' sends then fail and they end, instead of waiting on full queues for ever.
    let raw_rx = Mutex::new(Some(raw_rx));
    let pool = Pool {
        whole: whole.as_deref(),
        bufs: Mutex::default(),
        shells: Mutex::default(),
        done: Mutex::default(),
    };
    std::thread::scope(|scope| -> Result<(), ReplayError> {
        // Raw batches wait in one queue that every decoder thread — and the engine thread, when
        // it would otherwise wait — takes from; decoded batches come back tagged with their
        // place in the input and are judged in that order. The engine thread decoding for
        // itself when nothing is ready keeps both cores busy whichever side is slower.
        let raw = &raw_rx;
        let (done_tx, done_rx) = sync_channel::<DecodedBatch>(2 * workers + 2);
        let pool = &pool;
        // The contact book does not change while the calls are judged (it was read before
        // them): the decoder threads fill in what calls lack from it, off the engine thread,
        // which then finds them filled (`Call::filled`).
        let book = (!shared_book.is_empty()).then_some(&*shared_book);
        for _ in 0..workers {
            let ds: DecodeSettings = settings.decode.clone();
            let interner = engine.interner();
            let done = done_tx.clone();
            named("dialguard-decode")
                .spawn_scoped(scope, move || {
                    decode_worker(ds, interner, book, raw, pool, done, now)
                })
                .expect(SPAWN);
        }
        drop(done_tx);
        let mut own_decoder = Decoder::new(settings.decode.clone());
        let own_interner = engine.interner();
        let mut own_memo = InternMemo::default();
        let mut pending: BTreeMap<u64, DecodedBatch> = BTreeMap::new();
        let mut next_seq = 0u64;
        // Lines of the batches judged so far: a line's number is this plus its index + 1.
        let mut lines_before = 0u64;
        let bytes = &bytes_read;
        let in_memory: Option<&[u8]> = whole.as_deref().map(InMemory::bytes);
        let reader = named("dialguard-read")
            .spawn_scoped(scope, move || match in_memory {
                Some(m) => {
                    split_batches(m, raw_tx, bytes);
                    Ok(())
                }
                None => read_batches(stream, raw_tx, pool, bytes),
            })
            .expect(SPAWN);
        // Breaches are rendered as alerts, serialised and written on their own thread, a batch
        // at a time; the batch's calls travel with them (a breach refers to the call judged).
        let (alert_tx, alert_rx) = sync_channel::<Judged>(8);
        // Emptied buffers come back to be filled again: fresh multi-megabyte vectors per batch
        // were fresh pages from the kernel each time, zeroed on the engine thread.
        let (spent_tx, spent_rx) = sync_channel::<(Vec<Breach>, Vec<u32>)>(16);
        let rules: Vec<Rule> = engine.rules().to_vec();
        let strings = engine.interner();
        let writer = alerts.take().map(|w| {
            named("dialguard-write")
                .spawn_scoped(scope, move || {
                    write_alerts(w, &rules, &strings, alert_rx, spent_tx, pool)
                })
                .expect(SPAWN)
        });

        let mut found: Vec<Breach> = Vec::new();
        let mut at: Vec<u32> = Vec::new();
        let mut last_progress = Instant::now();
        'outer: loop {
            let mut batch = match pending.remove(&next_seq) {
                Some(b) => b,
                None => {
                    match done_rx.try_recv() {
                        Ok(b) => {
                            pending.insert(b.seq, b);
                            continue;
                        }
                        Err(TryRecvError::Disconnected) => break 'outer,
                        Err(TryRecvError::Empty) => {}
                    }
                    // Nothing decoded yet: decode the next raw batch here rather than wait.
                    let stolen = raw
                        .lock()
                        .map_or(None, |r| r.as_ref().and_then(|r| r.try_recv().ok()));
                    match stolen {
                        Some(b) => {
                            let d = decode_batch(
                                &mut own_decoder,
                                &own_interner,
                                book,
                                &mut own_memo,
                                pool,
                                b,
                                now(),
                            );
                            pending.insert(d.seq, d);
                        }
                        None => match done_rx.recv() {
                            Ok(b) => {
                                pending.insert(b.seq, b);
                            }
                            Err(_) => break 'outer,
                        },
                    }
                    continue;
                }
            };
            next_seq += 1;
            let t_now = now();
            let DecodedBatch {
                buf, items, calls, ..
            } = &mut batch;
            for (j, d) in items.iter().enumerate() {
                // The decoder wrote these on its core: the item a few ahead is asked for now
                // (reading each as it came stalled the loop, 3% of the engine thread).
                if let Some(ahead) = items.get(j + Engine::CALL_AHEAD) {
                    crate::engine::prefetch(ahead);
                }
                match d {
                    Decoded::Blank => summary.blank += 1,
                    Decoded::Rejected { reject, raw } => {
                        let line = lines_before + j as u64 + 1;
                        summary.records += 1;
                        *summary.rejected.entry(reject.reason.as_str()).or_default() += 1;
                        write_reject(&mut rejects, line, reject, &buf[raw.clone()])?;
                    }
                    Decoded::Call(c, raw) => {
                        // The state a call a few ahead will touch is read now, so its cache
                        // misses overlap judging this one (Engine::warm).
                        if let Some(ahead) = calls.get(*c as usize + Engine::WARM_AHEAD) {
                            std::hint::black_box(engine.warm(ahead));
                        }
                        // And, further on, the slots `warm` will look hosts and windows up in.
                        if let Some(ahead) = calls.get(*c as usize + Engine::PREWARM_AHEAD) {
                            engine.prewarm(ahead);
                        }
                        // And before that, the words that say where those slots are.
                        if let Some(ahead) = calls.get(*c as usize + Engine::LOCATE_AHEAD) {
                            engine.locate(ahead);
                        }
                        // And the call `warm` will read then, decoded on another core.
                        if let Some(far) = calls.get(*c as usize + Engine::CALL_AHEAD) {
                            far.prefetch();
                        }
                        // The evidence the call before asked for has had that long to come.
                        engine.settle(&mut found);
                        let call = &mut calls[*c as usize];
                        summary.records += 1;
                        // (A call with no debtor in the book is refused by the judge step below.)
                        if opts.enforce
                            && engine.find_debtor(call).is_ok()
                            && !engine.is_retained(&call.call_id)
                        {
                            engine.enrich(call);
                            let refused = engine.check(call);
                            if !refused.is_empty() {
                                summary.blocked += 1;
                                for b in &refused {
                                    let id = &engine.rules()[b.rule as usize].id;
                                    match summary.blocked_by_rule.get_mut(id) {
                                        Some(n) => *n += 1,
                                        None => {
                                            summary.blocked_by_rule.insert(id.clone(), 1);
                                        }
                                    }
                                }
                                engine.discard(call);
                                continue;
                            }
                        }
                        let before = found.len();
                        match judge::judge(&mut engine, 0, call, &mut found) {
                            Outcome::Accepted { skipped } => {
                                summary.valid += 1;
                                summary.skipped += skipped as u64;
                            }
                            Outcome::Duplicate => summary.duplicates += 1,
                            Outcome::Rejected(reject) => {
                                *summary.rejected.entry(reject.reason.as_str()).or_default() += 1;
                                let line = lines_before + j as u64 + 1;
                                write_reject(&mut rejects, line, &reject, &buf[raw.clone()])?;
                            }
                        }
                        if writer.is_some() {
                            at.resize(found.len(), j as u32);
                        } else {
                            found.truncate(before);
                        }
                    }
                }
            }
            lines_before += items.len() as u64;
            engine.settle(&mut found);
            if !found.is_empty() {
                let (next_found, next_at) = spent_rx.try_recv().unwrap_or_default();
                let judged = Judged {
                    calls: batch,
                    breaches: std::mem::replace(&mut found, next_found),
                    at: std::mem::replace(&mut at, next_at),
                    now: t_now,
                };
                if alert_tx.send(judged).is_err() {
                    break 'outer; // the writer failed: its error is reported below
                }
            } else {
                pool.put(batch);
            }
            if opts.progress && last_progress.elapsed() > Duration::from_millis(200) {
                last_progress = Instant::now();
                let rate = summary.records as f64 / started.elapsed().as_secs_f64().max(1e-9);
                let bar = progress_bar(bytes_read.load(Ordering::Relaxed), opts.input_bytes);
                eprint!(
                    "\r{bar} {} records, {} alerts, {:.0} records/s   ",
                    summary.records,
                    engine.stats().alerts,
                    rate
                );
            }
        }
        if opts.progress {
            eprint!("\r{:100}\r", "");
        }
        // If judging stopped early, the decoders and the reader may be waiting to hand over
        // batches nobody will take: closing both queues ends them.
        drop(done_rx);
        if let Ok(mut r) = raw.lock() {
            r.take();
        }
        drop(alert_tx);
        if let Some(w) = writer {
            w.join().unwrap_or(Ok(()))?;
        }
        reader.join().unwrap_or(Ok(()))?;
        Ok(())
    })?;
    pool.tell_done();

    if let Some(w) = rejects.as_mut() {
        w.flush().map_err(ReplayError::Write)?;
    }
    let st = engine.stats();
    summary.alerts = st.alerts;
    summary.late_alerts = st.late_alerts;
    for (r, n) in engine.rules().iter().zip(&st.rule_alerts) {
        summary.alerts_by_rule.insert(r.id.clone(), *n);
    }
    summary.retained_calls = engine.retained_calls() as u64;
    summary.engine_heap_bytes = engine.heap_bytes() as u64;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn write_alerts(
    mut w: Box<dyn Write + Send>,
    rules: &[Rule],
    strings: &SharedInterner,
    rx: Receiver<Judged<'_>>,
    spent: SyncSender<(Vec<Breach>, Vec<u32>)>,
    pool: &Pool,
) -> Result<(), ReplayError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 17);
    let mut json = alert::AlertJson::new(rules);
    while let Ok(Judged {
        calls,
        mut breaches,
        mut at,
        now,
    }) = rx.recv()
    {
        // Late breaches' earlier calls, whose strings the engine left to be read here.
        strings.read_strings(&mut breaches);
        let judged = |j: u32| {
            let Decoded::Call(c, _) = &calls.items[j as usize] else {
                unreachable!("breaches come from calls")
            };
            &calls.calls[*c as usize]
        };
        for (i, (b, &j)) in breaches.iter().zip(&at).enumerate() {
            // What the alert a few ahead will read was written on the engine's and a decoder's
            // cores: asked for now, it is here when that alert is rendered.
            if let (Some(ahead), Some(&aj)) =
                (breaches.get(i + RENDER_AHEAD), at.get(i + RENDER_AHEAD))
            {
                alert::prefetch(ahead, judged(aj));
            }
            json.write(b, judged(j), now, &mut buf);
            buf.push(b'\n');
            if buf.len() >= 1 << 16 {
                w.write_all(&buf).map_err(ReplayError::Write)?;
                buf.clear();
            }
        }
        pool.put(calls);
        breaches.clear();
        at.clear();
        let _ = spent.try_send((breaches, at));
    }
    w.write_all(&buf).map_err(ReplayError::Write)?;
    w.flush().map_err(ReplayError::Write)
}

/// Applies the reference file to the engine before any call: statuses, contacts and
/// tombstones in file order (the last record for a key wins, as compaction keeps it); refused
/// lines are written to the rejects output, marked `"input": "reference"`.
fn load_reference(
    settings: &Settings,
    engine: &mut Engine,
    mut r: Box<dyn BufRead + Send>,
    rejects: &mut Option<Box<dyn Write + Send>>,
    summary: &mut Summary,
) -> Result<(), ReplayError> {
    let started = Instant::now();
    let mut dec = ReferenceDecoder::new(settings.decode.default_region);
    let mut line = Vec::new();
    let mut n = 0u64;
    // No call is retained yet, so no status finds one to flag.
    let mut none = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(ReplayError::Read)? == 0 {
            break;
        }
        n += 1;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        summary.reference_records += 1;
        match dec.decode_line(&line) {
            Ok(Reference::Status(st)) => {
                engine.apply_status(st, &mut none);
            }
            Ok(Reference::Withdraw(id)) => {
                engine.end_status(&id);
            }
            Ok(Reference::Contact(c)) => {
                // The decoder refuses what the book cannot hold; were one through, it is
                // refused here the same way, never applied half.
                if let Err(why) = engine.apply_contact(c, &mut none) {
                    let reject = Reject {
                        reason: Reason::BadValue,
                        detail: why.to_owned(),
                    };
                    *summary
                        .reference_rejected
                        .entry(reject.reason.as_str())
                        .or_default() += 1;
                    write_reject_from(rejects, Some("reference"), n, &reject, trim_newline(&line))?;
                }
            }
            Ok(Reference::Forget { debtor_id, phone }) => {
                engine.end_contact(&debtor_id, &phone);
            }
            Err(reject) => {
                *summary
                    .reference_rejected
                    .entry(reject.reason.as_str())
                    .or_default() += 1;
                write_reject_from(rejects, Some("reference"), n, &reject, trim_newline(&line))?;
            }
        }
    }
    debug_assert!(none.is_empty());
    summary.statuses = engine.statuses().len() as u64;
    engine.shrink_contacts();
    summary.contacts = engine.contacts().len() as u64;
    summary.reference_elapsed = started.elapsed();
    Ok(())
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn write_reject(
    w: &mut Option<Box<dyn Write + Send>>,
    line: u64,
    r: &Reject,
    raw: &[u8],
) -> Result<(), ReplayError> {
    write_reject_from(w, None, line, r, raw)
}

/// A refused line as JSON: `input` names the input it came from when it is not the calls.
fn write_reject_from(
    w: &mut Option<Box<dyn Write + Send>>,
    input: Option<&str>,
    line: u64,
    r: &Reject,
    raw: &[u8],
) -> Result<(), ReplayError> {
    let Some(w) = w.as_mut() else { return Ok(()) };
    let mut v = serde_json::json!({
        "line": line,
        "reason": r.reason.as_str(),
        "detail": r.detail,
        "record": String::from_utf8_lossy(raw),
    });
    if let Some(input) = input {
        v["input"] = serde_json::Value::from(input);
    }
    serde_json::to_writer(&mut *w, &v).map_err(|e| ReplayError::Write(e.into()))?;
    w.write_all(b"\n").map_err(ReplayError::Write)
}

/// `[#########...........]  45%` when the total is known, else an empty string.
fn progress_bar(done: u64, total: Option<u64>) -> String {
    match total {
        Some(t) if t > 0 => {
            let frac = (done as f64 / t as f64).clamp(0.0, 1.0);
            let filled = (frac * 30.0).round() as usize;
            format!(
                "[{}{}] {:3.0}%",
                "#".repeat(filled),
                ".".repeat(30 - filled),
                frac * 100.0
            )
        }
        _ => String::new(),
    }
}

/// The batches of a mapped input: whole lines, about [`BATCH_BYTES`] each, as parts of it.
fn split_batches<'m>(mut rest: &'m [u8], to: SyncSender<Batch<'m>>, bytes: &AtomicU64) {
    let mut seq = 0u64;
    while !rest.is_empty() {
        let end = if rest.len() <= BATCH_BYTES {
            rest.len()
        } else {
            // Up to the last line end in the batch's span, or past the end of a longer line.
            match memchr::memrchr(b'\n', &rest[..BATCH_BYTES]) {
                Some(i) => i + 1,
                None => memchr::memchr(b'\n', &rest[BATCH_BYTES..])
                    .map_or(rest.len(), |i| BATCH_BYTES + i + 1),
            }
        };
        let (buf, next) = rest.split_at(end);
        rest = next;
        bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let batch = Batch {
            seq,
            buf: Buf::Mapped(buf),
        };
        if to.send(batch).is_err() {
            return;
        }
        seq += 1;
    }
}

fn read_batches(
    mut input: Box<dyn BufRead + Send>,
    to: SyncSender<Batch<'_>>,
    pool: &Pool,
    bytes: &AtomicU64,
) -> Result<(), ReplayError> {
    let mut seq = 0u64;
    let mut carry: Vec<u8> = pool.buf();
    loop {
        let mut buf = std::mem::take(&mut carry);
        buf.reserve(BATCH_BYTES);
        let n = (&mut input)
            .take(BATCH_BYTES as u64)
            .read_to_end(&mut buf)
            .map_err(ReplayError::Read)?;
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        let eof = n < BATCH_BYTES;
        if !eof {
            match memchr::memrchr(b'\n', &buf) {
                // The part after the last newline starts the next batch.
                Some(i) => {
                    carry = pool.buf();
                    carry.extend_from_slice(&buf[i + 1..]);
                    buf.truncate(i + 1);
                }
                // One line longer than a batch: read on.
                None => {
                    carry = buf;
                    continue;
                }
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        if to
            .send(Batch {
                seq,
                buf: Buf::Owned(buf),
            })
            .is_err()
        {
            return Ok(());
        }
        seq += 1;
        if eof {
            return Ok(());
        }
    }
}

/// The lines of a batch: ranges without their line ends.
fn lines(buf: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', buf)
        .map(Some)
        .chain(std::iter::once(None));
    ends.filter_map(move |end| {
        let (s, e) = match end {
            Some(e) => (start, e),
            None if start < buf.len() => (start, buf.len()),
            None => return None,
        };
        start = e + 1;
        let mut e = e;
        while e > s && (buf[e - 1] == b'\r' || buf[e - 1] == b'\n') {
            e -= 1;
        }
        Some(s..e)
    })
}

fn decode_worker<'m>(
    settings: DecodeSettings,
    interner: SharedInterner,
    book: Option<&Contacts>,
    raw: &Mutex<Option<Receiver<Batch<'m>>>>,
    pool: &Pool,
    tx: SyncSender<DecodedBatch<'m>>,
    now: impl Fn() -> Ts,
) {
    let mut dec = Decoder::new(settings);
    let mut memo = InternMemo::default();
    loop {
        // The lock is held only to take one batch (thousands of lines).
        let Some(batch) = raw
            .lock()
            .map_or(None, |r| r.as_ref().and_then(|r| r.recv().ok()))
        else {
            return;
        };
        let d = decode_batch(&mut dec, &interner, book, &mut memo, pool, batch, now());
        if tx.send(d).is_err() {
            return;
        }
    }
}

/// Decodes a batch's lines, interns its calls' strings for the engine and fills in what they
/// lack from the contact book, if any.
fn decode_batch<'m>(
    dec: &mut Decoder,
    interner: &SharedInterner,
    book: Option<&Contacts>,
    memo: &mut InternMemo,
    pool: &Pool,
    batch: Batch<'m>,
    t: Ts,
) -> DecodedBatch<'m> {
    let buf = batch.buf;
    let (mut items, mut calls) = pool.shell();
    // Blank lines are marked first; the others are decoded in one pass (which reads each a
    // few records before it validates it), their outcomes put in the marks' place.
    let mut records = Vec::new();
    for r in lines(&buf) {
        if buf[r.clone()].iter().all(|b| b.is_ascii_whitespace()) {
            items.push(Decoded::Blank);
        } else {
            items.push(Decoded::Call(u32::MAX, r.clone()));
            records.push(r);
        }
    }
    let mut marks = items.iter_mut().filter(|d| !matches!(d, Decoded::Blank));
    judge::decode_each(dec, records.iter().map(|r| &buf[r.clone()]), t, |outcome| {
        let d = marks.next().expect("one mark a record");
        let Decoded::Call(_, r) = d else {
            unreachable!("marks are calls")
        };
        let r = r.clone();
        *d = match outcome {
            Ok(c) => {
                calls.push(c);
                Decoded::Call(calls.len() as u32 - 1, r)
            }
            Err(reject) => Decoded::Rejected { reject, raw: r },
        };
    });
    // A debtor the mapping left to the book is found first, so its symbol is the debtor's;
    // one the book cannot name is left for the judge step to refuse.
    if let Some(book) = book {
        for c in calls.iter_mut() {
            let _ = book.find_debtor(c);
        }
    }
    // The batch's strings are interned here, so the engine thread gets symbols and probes no
    // string table for them.
    interner.intern_calls(memo, calls.iter_mut());
    if let Some(book) = book {
        for c in calls.iter_mut() {
            book.enrich(c);
        }
    }
    DecodedBatch {
        seq: batch.seq,
        buf,
        items,
        calls,
    }
}
