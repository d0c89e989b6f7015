//! The command line's own output: writes that never panic.
//!
//! `println!` and `eprintln!` panic when their stream is closed (`dialguard demo | head`), and
//! tracing-subscriber reports a failed log write with `eprintln!`, which then panics on the
//! thread that logged — inside a librdkafka callback, that left a rebalance unanswered and the
//! consumer's close waiting forever. Here a failed write is no error: the first one on a closed
//! stream pulls the shutdown trigger registered with [`on_closed`], so the command drains and
//! ends quietly, as command-line tools do when their reader goes away.

use crate::lifecycle::Shutdown;
use std::io::Write;
use std::sync::OnceLock;

static ON_CLOSED: OnceLock<Shutdown> = OnceLock::new();

/// Pulls `shutdown` when stdout or stderr turns out to be closed (first registration wins).
pub fn on_closed(shutdown: &Shutdown) {
    let _ = ON_CLOSED.set(shutdown.clone());
}

fn closed(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        if let Some(s) = ON_CLOSED.get() {
            s.trigger();
        }
    }
}

/// Writes a line to stdout; false when it could not (the trigger is pulled on a closed pipe).
pub fn out(args: std::fmt::Arguments<'_>) -> bool {
    line(std::io::stdout().lock(), args)
}

/// Writes a line to stderr; false when it could not (the trigger is pulled on a closed pipe).
pub fn err(args: std::fmt::Arguments<'_>) -> bool {
    line(std::io::stderr().lock(), args)
}

fn line(mut w: impl Write, args: std::fmt::Arguments<'_>) -> bool {
    match w.write_fmt(args).and_then(|()| w.write_all(b"\n")) {
        Ok(()) => true,
        Err(e) => {
            closed(&e);
            false
        }
    }
}

/// `println!` that never panics: see the module documentation.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::console::out(format_args!($($t)*)) };
}

/// `eprintln!` that never panics: see the module documentation.
#[macro_export]
macro_rules! tell {
    ($($t:tt)*) => { $crate::console::err(format_args!($($t)*)) };
}

/// Stderr for the log: write errors are swallowed (a closed stderr pulls the trigger) instead
/// of being reported with a panicking `eprintln!`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Err(e) = std::io::stderr().write_all(buf) {
            closed(&e);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// The last resort behind every bounded shutdown: once `shutdown` is triggered, the process
/// exits with `code` after `grace` even if something (librdkafka's close, a stuck thread) has
/// not returned by then.
pub fn watchdog(shutdown: &Shutdown, grace: std::time::Duration, code: i32) {
    let s = shutdown.clone();
    let _ = std::thread::Builder::new()
        .name("dialguard-watchdog".into())
        .spawn(move || {
            while !s.is_triggered() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            std::thread::sleep(grace);
            tracing::error!(
                grace_s = grace.as_secs_f64(),
                "shutdown did not finish within its grace period: exiting"
            );
            std::process::exit(code);
        });
}
