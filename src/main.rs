//! The `dialguard` binary: a thin command line over the library.

use clap::{Parser, Subcommand};
use dialguard::config::Settings;
use dialguard::engine::time::Ts;
use dialguard::replay::{self, ReplayIo, ReplayOptions};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dialguard",
    version,
    about = "Keeps debt-collection dialing inside the law"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Backtest a policy on recorded call events (JSON lines).
    #[command(
        after_help = "Environment: MIMALLOC_ALLOW_THP=1 runs on transparent huge pages: 11-20% faster \
                      on memory the host has backed (measured on memory warmed first, not on a server), \
                      about 11% slower on a VM that hands free memory back to its host \
                      (docs/operations.md, \"Huge pages\")."
    )]
    Replay {
        /// The configuration file.
        #[arg(long, default_value = "config/dialguard.toml")]
        config: PathBuf,
        /// Call events, one JSON object per line; `-` for standard input.
        #[arg(long)]
        input: String,
        /// Where to write alerts (JSON lines); `-` for standard output. Default: not written.
        #[arg(long)]
        alerts: Option<String>,
        /// Where to write rejected lines with their reasons (JSON lines).
        #[arg(long)]
        rejects: Option<String>,
        /// Pin the clock (RFC 3339) for `detected_at` and the future-timestamp check.
        #[arg(long)]
        now: Option<String>,
        /// Decoder threads (default: cores - 1, at least 1).
        #[arg(long)]
        decoders: Option<usize>,
        /// Backtest enforcement: drop every call a pre-dial check would have refused (checked
        /// against everything read before it); the summary shows them by rule, and the alerts
        /// that remain are those a check cannot prevent (late data).
        #[arg(long)]
        enforce: bool,
        /// Reference data read before the calls, one JSON object per line: Status v1 records
        /// (with a `status_id`) and Contact v1 records (the lender's contact book), mixed in
        /// any order; `"tombstone": true` with a record's key fields withdraws it. Refused
        /// lines go to --rejects with `"input": "reference"`.
        #[arg(long)]
        reference: Option<String>,
        /// The input's record format (default: the configuration's `[kafka] input_format`):
        /// call-event-v1, asterisk-cdr-csv, freeswitch-json-cdr or vicidial-log, read through
        /// the configuration's `[mapping]`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Convert a dialer's records (CDRs) to call events v1 (JSON lines), through the
    /// configuration's `[mapping]`: to see or archive what dialguard understood of them.
    Convert {
        /// The records' format: asterisk-cdr-csv, freeswitch-json-cdr, vicidial-log (or
        /// call-event-v1, to normalise events). Default: the configuration's input_format.
        #[arg(long)]
        format: Option<String>,
        /// The configuration file (its `[mapping]` and `[engine]` decoder settings).
        #[arg(long, default_value = "config/dialguard.toml")]
        config: PathBuf,
        /// Records, one per line; `-` for standard input.
        #[arg(long, default_value = "-")]
        input: String,
        /// Call events out; `-` for standard output.
        #[arg(long, default_value = "-")]
        output: String,
        /// Where to write refused records with their reasons (JSON lines).
        #[arg(long)]
        rejects: Option<String>,
        /// Pin the clock (RFC 3339) for the future-timestamp check.
        #[arg(long)]
        now: Option<String>,
        /// The lender's contact book (Contact v1, JSON lines), for a mapping whose debtor_id
        /// ends in @contact_book: each such record gets the one debtor whose book holds its
        /// number at its time.
        #[arg(long)]
        reference: Option<PathBuf>,
    },
    /// Write synthetic dialer traffic (JSON lines) for backtests and benchmarks.
    Generate {
        /// Records to write.
        #[arg(long, default_value_t = 10_000)]
        calls: u64,
        /// Distinct debtors (default: calls / 50).
        #[arg(long)]
        debtors: Option<u64>,
        /// Days the traffic spans.
        #[arg(long, default_value_t = 14)]
        days: u64,
        /// Seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Fraction of records made invalid.
        #[arg(long, default_value_t = 0.0)]
        invalid: f64,
        /// Fraction of records arriving late (out of order, up to 30 minutes).
        #[arg(long, default_value_t = 0.02)]
        late: f64,
        /// Fraction of records sent twice.
        #[arg(long, default_value_t = 0.005)]
        duplicates: f64,
        /// Write the lender's contact book (Contact v1) of the first --debtors debtors instead
        /// of calls: each one's own number and its contacts as the traffic calls them.
        #[arg(long)]
        contacts: bool,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the calls as a dialer's records (asterisk-cdr-csv, freeswitch-json-cdr,
        /// vicidial-log; local times in Asia/Shanghai), as `config/dialers/*.toml` read them.
        #[arg(long, default_value = "call-event-v1")]
        format: String,
    },
    /// The service: consume call events from Kafka, publish alerts and dead letters.
    Run {
        /// The configuration file.
        #[arg(long, default_value = "config/dialguard.toml")]
        config: PathBuf,
    },
    /// The whole pipeline on an in-process Kafka-protocol broker with a synthetic dialer.
    Demo {
        /// The configuration file (its [kafka] brokers are replaced by the embedded broker).
        #[arg(long, default_value = "config/dialguard.toml")]
        config: PathBuf,
        /// Calls per second the synthetic dialer sends.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Calls in all.
        #[arg(long, default_value_t = 300_000)]
        calls: u64,
        /// Days the traffic spans (ending yesterday).
        #[arg(long, default_value_t = 3)]
        days: u64,
        /// Distinct debtors.
        #[arg(long, default_value_t = 2_000)]
        debtors: u64,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
        /// Only print a summary every 10 s, not each alert.
        #[arg(long)]
        quiet: bool,
        /// Agencies (of the traffic's 7) whose dialer asks the pre-dial check before every
        /// call and skips what is refused; the others dial blind.
        #[arg(long, default_value_t = 4)]
        checking_agencies: u64,
        /// The format the synthetic dialer writes (default: the configuration's; with
        /// `[[kafka.inputs]]`, each topic's, the agencies dealt out over them): call-event-v1,
        /// or a dialer's own (asterisk-cdr-csv, freeswitch-json-cdr, vicidial-log), read
        /// through a mapping of the demo's (printed at start; the configuration's is not used).
        #[arg(long)]
        format: Option<String>,
    },
    /// Ask a running instance whether it is alive (or ready): exit 0 on HTTP 200, else 1. The
    /// container image's health check; it needs no shell or curl.
    Health {
        /// The instance's HTTP address (`[http] listen`).
        #[arg(long, default_value = "127.0.0.1:9898")]
        addr: std::net::SocketAddr,
        /// `/livez` or `/readyz`.
        #[arg(long, default_value = "/livez")]
        path: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Validate the configuration and print the compiled rules.
    CheckConfig {
        /// The configuration file.
        #[arg(long, default_value = "config/dialguard.toml")]
        config: PathBuf,
    },
}

// Decoder threads allocate the calls the engine thread frees: glibc's arenas contend on that.
#[path = "allocator.rs"]
mod allocator;
#[global_allocator]
static GLOBAL: allocator::Global = mimalloc::MiMalloc;

// Replay's input file, mapped (unsafe code, which the library forbids).
mod mapped;

/// Exit status for a configuration or usage error (sysexits EX_CONFIG).
const EX_CONFIG: u8 = 78;

/// Logs to stderr; `RUST_LOG` filters (default `info`). Personal data is logged at debug only.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(dialguard::console::LogWriter)
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The shutdown trigger of a long-running command: pulled by SIGTERM/SIGINT (the service
/// listens), by `--seconds`, or by a closed stdout or stderr; once pulled, the process exits
/// within the grace period whatever a library does (the watchdog is the last resort, a few
/// seconds after the bounded drain).
fn stoppable(settings: &Settings) -> dialguard::service::Shutdown {
    let shutdown = dialguard::service::Shutdown::new();
    dialguard::console::on_closed(&shutdown);
    dialguard::console::watchdog(
        &shutdown,
        settings.service.shutdown_grace + std::time::Duration::from_secs(3),
        1,
    );
    shutdown
}

fn load(config: &std::path::Path) -> Result<Settings, ExitCode> {
    Settings::load(config).map_err(|e| {
        dialguard::tell!("error: invalid configuration: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

/// Says why `run` or `demo` failed; a configuration the service cannot work with (or an
/// address it cannot listen on) exits as a configuration error.
fn service_failed(e: &dialguard::service::ServiceError) -> ExitCode {
    dialguard::tell!("error: {e}");
    match e {
        dialguard::service::ServiceError::Listen { .. }
        | dialguard::service::ServiceError::Config { .. } => ExitCode::from(EX_CONFIG),
        _ => ExitCode::FAILURE,
    }
}

fn main() -> ExitCode {
    allocator::tune();
    allocator::small_pages();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { config } => {
            init_logging();
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let shutdown = stoppable(&settings);
            match dialguard::service::run(settings, shutdown, true, |_| {}) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => service_failed(&e),
            }
        }
        Cmd::Demo {
            config,
            rate,
            calls,
            days,
            debtors,
            seconds,
            quiet,
            checking_agencies,
            format,
        } => {
            init_logging();
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let format = match format
                .as_deref()
                .map(dialguard::formats::Format::parse)
                .transpose()
            {
                Ok(f) => f,
                Err(e) => {
                    dialguard::tell!("error: --format: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            let opts = dialguard::demo::DemoOptions {
                rate,
                calls,
                days,
                debtors,
                partitions: 3,
                duration: seconds.map(std::time::Duration::from_secs),
                print_alerts: !quiet,
                checking_agencies,
                format,
            };
            let shutdown = stoppable(&settings);
            match dialguard::demo::run(settings, &opts, shutdown) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => service_failed(&e),
            }
        }
        Cmd::Generate {
            calls,
            debtors,
            days,
            seed,
            invalid,
            late,
            duplicates,
            contacts,
            out,
            format,
        } => {
            let format = match dialguard::formats::Format::parse(&format) {
                Ok(f) => f,
                Err(e) => {
                    dialguard::tell!("error: --format: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            let p = dialguard::synth::SynthParams {
                calls,
                debtors: debtors.unwrap_or((calls / 50).max(1)),
                days,
                seed,
                invalid_fraction: invalid,
                late_fraction: late,
                duplicate_fraction: duplicates,
                ..Default::default()
            };
            let mut w: Box<dyn Write> = match &out {
                Some(path) => match std::fs::File::create(path) {
                    Ok(f) => Box::new(BufWriter::with_capacity(1 << 20, f)),
                    Err(e) => {
                        dialguard::tell!("error: --out {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                },
                None => Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout())),
            };
            if format != dialguard::formats::Format::CallEventV1 {
                if contacts {
                    dialguard::tell!("error: --format is for calls, not the contact book");
                    return ExitCode::from(EX_CONFIG);
                }
                let zone = jiff::tz::TimeZone::get("Asia/Shanghai").expect("a known zone");
                w = Box::new(dialguard::formats::render::Rendering::new(w, format, zone));
            }
            let written = if contacts {
                dialguard::synth::contact_book(&p, &mut w)
            } else {
                dialguard::synth::generate(&p, &mut w)
            };
            match written.and_then(|n| w.flush().map(|_| n)) {
                Ok(n) => {
                    dialguard::tell!("wrote {n} records");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    dialguard::tell!("error: writing: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Health {
            addr,
            path,
            timeout,
        } => match dialguard::http::probe(addr, &path, std::time::Duration::from_secs(timeout)) {
            Ok((200, body)) => {
                dialguard::say!("{body}");
                ExitCode::SUCCESS
            }
            Ok((code, body)) => {
                dialguard::tell!("{addr}{path}: HTTP {code}: {body}");
                ExitCode::FAILURE
            }
            Err(e) => {
                dialguard::tell!("{addr}{path}: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::CheckConfig { config } => match Settings::load(&config) {
            Ok(s) => {
                print!("{}", dialguard::policy::describe(&s));
                ExitCode::SUCCESS
            }
            Err(e) => {
                dialguard::tell!("error: invalid configuration: {e}");
                ExitCode::from(EX_CONFIG)
            }
        },
        Cmd::Convert {
            format,
            config,
            input,
            output,
            rejects,
            now,
            reference,
        } => {
            let settings = match load_with_format(&config, format.as_deref(), reference.is_some()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let book = match &reference {
                None => None,
                Some(p) => {
                    let read = std::fs::File::open(p).and_then(|f| {
                        dialguard::convert::read_book(
                            &settings.decode,
                            &mut BufReader::with_capacity(1 << 20, f),
                        )
                    });
                    match read {
                        Ok((book, refused)) => {
                            if refused > 0 {
                                dialguard::tell!("warning: --reference {}: {refused} lines refused (replay --reference --rejects says why)", p.display());
                            }
                            Some(book)
                        }
                        Err(e) => {
                            dialguard::tell!("error: --reference {}: {e}", p.display());
                            return ExitCode::FAILURE;
                        }
                    }
                }
            };
            let now = match now.as_deref().map(str::parse::<jiff::Timestamp>) {
                None => Ts::from_jiff(jiff::Timestamp::now()),
                Some(Ok(t)) => Ts::from_jiff(t),
                Some(Err(e)) => {
                    dialguard::tell!("error: --now: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            let mut reader: Box<dyn BufRead> = if input == "-" {
                Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()))
            } else {
                match std::fs::File::open(&input) {
                    Ok(f) => Box::new(BufReader::with_capacity(1 << 20, f)),
                    Err(e) => {
                        dialguard::tell!("error: --input {input}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            let create = |p: &str, flag: &str| -> Result<Box<dyn Write>, ExitCode> {
                if p == "-" {
                    return Ok(Box::new(BufWriter::with_capacity(
                        1 << 20,
                        std::io::stdout(),
                    )));
                }
                std::fs::File::create(p)
                    .map(|f| Box::new(BufWriter::with_capacity(1 << 20, f)) as Box<dyn Write>)
                    .map_err(|e| {
                        dialguard::tell!("error: {flag} {p}: {e}");
                        ExitCode::FAILURE
                    })
            };
            let mut out = match create(&output, "--output") {
                Ok(w) => w,
                Err(c) => return c,
            };
            let mut rejects = match rejects.as_deref().map(|p| create(p, "--rejects")) {
                None => None,
                Some(Ok(w)) => Some(w),
                Some(Err(c)) => return c,
            };
            match dialguard::convert::run(
                &settings.decode,
                book.as_ref(),
                &mut reader,
                &mut out,
                rejects.as_mut().map(|w| w as &mut dyn Write),
                now,
            ) {
                Ok(summary) => {
                    eprint!("{}", summary.table());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    dialguard::tell!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Replay {
            config,
            input,
            alerts,
            rejects,
            now,
            decoders,
            enforce,
            reference,
            format,
        } => {
            let settings = match load_with_format(&config, format.as_deref(), reference.is_some()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let now = match now.as_deref().map(str::parse::<jiff::Timestamp>) {
                None => None,
                Some(Ok(t)) => Some(Ts::from_jiff(t)),
                Some(Err(e)) => {
                    dialguard::tell!("error: --now: {e}");
                    return ExitCode::from(EX_CONFIG);
                }
            };
            let io = match open_io(
                &input,
                alerts.as_deref(),
                rejects.as_deref(),
                reference.as_deref(),
            ) {
                Ok(io) => io,
                Err(e) => {
                    dialguard::tell!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let input_bytes = (input != "-")
                .then(|| std::fs::metadata(&input).ok().map(|m| m.len()))
                .flatten();
            let opts = ReplayOptions {
                now,
                decoders,
                progress: std::io::stderr().is_terminal(),
                input_bytes,
                enforce,
            };
            match replay::run(&settings, io, &opts) {
                Ok(summary) => {
                    dialguard::tell!(
                        "replay summary ({} rules from {})",
                        settings.rules.len(),
                        settings.path.display()
                    );
                    eprint!("{}", summary.table());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    dialguard::tell!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The configuration, its input read in `format` when given; the exit code on failure. Warns
/// when the mapping finds debtors in a contact book and no `--reference` gives one.
fn load_with_format(
    config: &std::path::Path,
    format: Option<&str>,
    reference: bool,
) -> Result<Settings, ExitCode> {
    let mut settings = Settings::load(config).map_err(|e| {
        dialguard::tell!("error: invalid configuration: {e}");
        ExitCode::from(EX_CONFIG)
    })?;
    if let Some(f) = format {
        let f = dialguard::formats::Format::parse(f).map_err(|e| {
            dialguard::tell!("error: --format: {e}");
            ExitCode::from(EX_CONFIG)
        })?;
        settings.set_format(f).map_err(|e| {
            dialguard::tell!("error: invalid configuration for --format {f}: {e}");
            ExitCode::from(EX_CONFIG)
        })?;
    }
    if settings.decode.mapping.debtor_from_book() && !reference {
        dialguard::tell!("warning: mapping.debtor_id ends in @contact_book and no --reference gives a contact book: every record that names no debtor will be refused");
    }
    Ok(settings)
}

fn open_io(
    input: &str,
    alerts: Option<&str>,
    rejects: Option<&str>,
    reference: Option<&str>,
) -> Result<ReplayIo, String> {
    let input = if input == "-" {
        replay::Input::reader(BufReader::with_capacity(1 << 20, std::io::stdin()))
    } else {
        let f = std::fs::File::open(input).map_err(|e| format!("--input {input}: {e}"))?;
        match mapped::Mapped::new(&f) {
            Some(m) => replay::Input::Bytes(Box::new(m)),
            None => replay::Input::reader(BufReader::with_capacity(1 << 20, f)),
        }
    };
    let out = |p: Option<&str>, flag: &str| -> Result<Option<Box<dyn Write + Send>>, String> {
        Ok(match p {
            None => None,
            Some("-") => Some(Box::new(BufWriter::with_capacity(
                1 << 20,
                std::io::stdout(),
            ))),
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| format!("{flag} {p}: {e}"))?;
                Some(Box::new(BufWriter::with_capacity(1 << 20, f)))
            }
        })
    };
    Ok(ReplayIo {
        input,
        alerts: out(alerts, "--alerts")?,
        rejects: out(rejects, "--rejects")?,
        reference: match reference {
            None => None,
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|e| format!("--reference {p}: {e}"))?;
                Some(Box::new(BufReader::with_capacity(1 << 20, f)) as Box<dyn BufRead + Send>)
            }
        },
    })
}
