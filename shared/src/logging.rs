//! The one logging setup every ktsu process uses (cli-and-ops.md §5): `log` records with
//! key-values, filtered with `env_logger`'s directive syntax and written to **stderr only**, as
//! JSON lines or human text, with journald priority prefixes and every line scrubbed of secret
//! values.
//!
//! ```text
//! {"ts":"2026-04-28T10:15:02.114503Z","level":"info","service":"orchestrator","target":"…","msg":"run started","event":"run.running",…}
//! 2026-04-28T10:15:02.934120Z INFO  [orchestrator] step complete run_id=run_4f2a9c1e7b3d5a60 duration_ms=812
//! ```
//!
//! Structured values (arrays, objects) are logged with `log`'s serde capture:
//! `log::info!(event = "step.complete", ktsu_flags:serde = flags; "step complete")`.
//!
//! The line layout is the pure function [`LineFormatter::format`] (record in, bytes out); the
//! rest of this module only wires it to the filter, the stderr writer and to process state (environment,
//! terminal, the global scrubber).

use crate::secret::Scrubber;
use crate::time::Timestamp;
use log::kv::{self, VisitSource};
use log::{Level, Record};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::str::FromStr;
use std::sync::{mpsc, Arc, LazyLock, PoisonError, RwLock};
use std::time::SystemTime;

/// `--log-format` / `KTSU_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal or `JOURNAL_STREAM` is set, else text.
    #[default]
    Auto,
    Json,
    Text,
}

/// The concrete layout of a line, once [`LogFormat::Auto`] is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    Json,
    Text,
}

/// A setting value that is not `auto`, `json` or `text`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected auto, json or text")]
pub struct UnknownLogFormat(pub String);

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A usage error naming the setting (`--log-format` or `KTSU_LOG_FORMAT`): exit 2.
    #[error("invalid value {value:?} for {setting}: expected auto, json or text")]
    InvalidFormat {
        setting: &'static str,
        value: String,
    },
    /// A log filter `env_logger` cannot parse, naming its source (`KTSU_LOG`, `RUST_LOG`).
    #[error("invalid value {value:?} for {setting}: {reason}")]
    InvalidFilter {
        setting: &'static str,
        value: String,
        reason: String,
    },
    #[error("a logger is already installed in this process")]
    AlreadyInstalled,
}

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "auto" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(UnknownLogFormat(other.to_owned())),
        }
    }
}

impl LogFormat {
    /// Decides `Auto`: JSON for machines (a pipe, a file, journald), text for a person.
    pub fn resolve(self, stderr_is_terminal: bool, journald: bool) -> LineFormat {
        match self {
            LogFormat::Json => LineFormat::Json,
            LogFormat::Text => LineFormat::Text,
            LogFormat::Auto if stderr_is_terminal && !journald => LineFormat::Text,
            LogFormat::Auto => LineFormat::Json,
        }
    }
}

/// What a process asks of the logger, resolved from flags and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `service` of records not attributable to one service: `orchestrator`, `runtime`,
    /// `gateway`, `cli`, or `ktsu` for the all-in-one modes.
    pub service: String,
    pub format: LogFormat,
    /// An `env_logger` filter (`info,ktsu_gateway=debug`).
    pub filter: String,
}

impl LogSettings {
    /// Reads `KTSU_LOG_FORMAT` (unless `format_flag`, the `--log-format` value, is given) and the
    /// filter from `KTSU_LOG`, else `RUST_LOG`, else `default_filter`. Empty variables count as
    /// unset; a value that does not parse is an error naming its setting.
    pub fn from_env(
        service: &str,
        format_flag: Option<&str>,
        default_filter: &str,
    ) -> Result<Self, LoggingError> {
        Self::from_lookup(service, format_flag, default_filter, |name| {
            std::env::var(name).ok()
        })
    }

    /// [`LogSettings::from_env`] over any variable lookup (tests pass a map).
    pub fn from_lookup(
        service: &str,
        format_flag: Option<&str>,
        default_filter: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LoggingError> {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let format = match (format_flag, non_empty("KTSU_LOG_FORMAT")) {
            (Some(flag), _) => parse_setting("--log-format", flag)?,
            (None, Some(env)) => parse_setting("KTSU_LOG_FORMAT", &env)?,
            (None, None) => LogFormat::Auto,
        };
        let (setting, filter) = match (non_empty("KTSU_LOG"), non_empty("RUST_LOG")) {
            (Some(filter), _) => ("KTSU_LOG", filter),
            (None, Some(filter)) => ("RUST_LOG", filter),
            (None, None) => ("the default log filter", default_filter.to_owned()),
        };
        // The parser env_logger itself uses: a bad filter is a usage error, not a silent
        // warning.
        if let Err(err) = env_filter::Builder::new().try_parse(&filter) {
            return Err(LoggingError::InvalidFilter {
                setting,
                value: filter,
                reason: err.to_string(),
            });
        }
        Ok(LogSettings {
            service: service.to_owned(),
            format,
            filter,
        })
    }
}

fn parse_setting(setting: &'static str, value: &str) -> Result<LogFormat, LoggingError> {
    value.parse().map_err(|_| LoggingError::InvalidFormat {
        setting,
        value: value.to_owned(),
    })
}

/// Installs the process logger (stderr) and the panic hook. Call once, before anything logs.
///
/// Output: the resolved format; journald prefixes when `JOURNAL_STREAM` is non-empty; colour
/// only for text on a terminal with `NO_COLOR` unset or empty.
pub fn init(settings: &LogSettings) -> Result<(), LoggingError> {
    let is_set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let terminal = std::io::stderr().is_terminal();
    let journald = is_set("JOURNAL_STREAM");
    let format = settings.format.resolve(terminal, journald);
    let color = format == LineFormat::Text && terminal && !is_set("NO_COLOR");
    let formatter = LineFormatter::new(settings.service.clone(), format)
        .with_color(color)
        .with_journald_prefix(journald);
    let sink = match queued_stderr() {
        Some(queue) => Sink::Queue(queue),
        // No writer thread (thread creation failed): write synchronously instead.
        None => Sink::Stderr,
    };
    let logger = ProcessLogger::new(&settings.filter, formatter, sink);
    let max_level = logger.filter.filter();
    log::set_boxed_logger(Box::new(logger)).map_err(|_| LoggingError::AlreadyInstalled)?;
    log::set_max_level(max_level);
    install_panic_hook();
    Ok(())
}

/// The stderr writer behind [`init`]: each formatted line is queued to one `ktsu-log-writer`
/// thread that writes everything queued so far with a single `write`. Under load one syscall
/// (and one wake-up of journald or whoever reads the pipe) then serves many lines, and no
/// request thread waits on stderr or on the other threads' writes. The queue is bounded, so a
/// reader that stops reading slows logging threads down instead of growing memory. Lines keep
/// their order; [`flush`] waits until everything queued is written.
enum Queued {
    Line(Vec<u8>),
    Flushed(mpsc::SyncSender<()>),
}

/// Lines that may wait for the writer thread before logging threads block.
const LOG_QUEUE_LINES: usize = 16 * 1024;
/// How long the writer lets lines gather after a busy batch.
const LOG_GATHER: std::time::Duration = std::time::Duration::from_millis(1);
/// Upper bound of one write (a burst is split into writes of about this size).
const LOG_BATCH_BYTES: usize = 256 * 1024;

static LOG_QUEUE: std::sync::OnceLock<mpsc::SyncSender<Queued>> = std::sync::OnceLock::new();

fn queued_stderr() -> Option<mpsc::SyncSender<Queued>> {
    let (queue, lines) = mpsc::sync_channel(LOG_QUEUE_LINES);
    std::thread::Builder::new()
        .name("ktsu-log-writer".into())
        .spawn(move || write_queued(&lines, &mut std::io::stderr()))
        .ok()?;
    let _ = LOG_QUEUE.set(queue.clone());
    Some(queue)
}

fn write_queued(lines: &mpsc::Receiver<Queued>, out: &mut dyn Write) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut waiting = Vec::new();
    while let Ok(first) = lines.recv() {
        let mut next = Some(first);
        let mut count = 0usize;
        while let Some(item) = next.take() {
            match item {
                Queued::Line(line) => batch.extend_from_slice(&line),
                Queued::Flushed(done) => waiting.push(done),
            }
            count += 1;
            if batch.len() < LOG_BATCH_BYTES {
                next = lines.try_recv().ok();
            }
        }
        // A failed write (stderr closed) drops the lines: logging must never stop a service.
        let _ = out.write_all(&batch);
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if count > 1 {
            // Busy: let the next lines gather for a moment. While this thread is not blocked
            // in `recv`, a logging thread's send needs no wake-up syscall.
            std::thread::sleep(LOG_GATHER);
        }
    }
}

/// Waits (at most 2 s) until every line logged so far is written. Call before the process
/// exits: queued lines would be lost otherwise.
pub fn flush() {
    let Some(queue) = LOG_QUEUE.get() else {
        return;
    };
    let (done, written) = mpsc::sync_channel(1);
    if queue.send(Queued::Flushed(done)).is_ok() {
        let _ = written.recv_timeout(std::time::Duration::from_secs(2));
    }
}

/// The process logger: `env_logger`'s filter syntax and semantics (the `env_filter` crate it is
/// built on) and [`LineFormatter`], writing each formatted line straight to its [`Sink`].
///
/// `env_logger`'s own `Logger` was used before; it formats into a buffer of its own, copies
/// it once more to adapt colours (scanning every byte for escape sequences even with colours
/// off) and writes it through a mutex shared by all threads: a visible share of the
/// orchestrator's cost per step (bench/README.md). Here the formatter's bytes are the line.
struct ProcessLogger {
    filter: env_filter::Filter,
    formatter: LineFormatter,
    sink: Sink,
}

/// Where formatted lines go.
enum Sink {
    /// The `ktsu-log-writer` thread (see [`queued_stderr`]).
    Queue(mpsc::SyncSender<Queued>),
    /// Synchronous writes to stderr, when the writer thread could not be started.
    Stderr,
    /// Any writer (tests read what the real pipeline writes).
    #[cfg(test)]
    Writer(std::sync::Mutex<Box<dyn Write + Send>>),
}

impl ProcessLogger {
    /// `filter` was checked by [`LogSettings`]; a directive `env_filter` cannot parse is
    /// ignored here, as `env_logger` ignored it.
    fn new(filter: &str, formatter: LineFormatter, sink: Sink) -> Self {
        ProcessLogger {
            filter: env_filter::Builder::new().parse(filter).build(),
            formatter,
            sink,
        }
    }
}

impl log::Log for ProcessLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let line = {
            let scrubber = SCRUBBER.read().unwrap_or_else(PoisonError::into_inner);
            self.formatter.format(record, SystemTime::now(), &scrubber)
        };
        // A failed write (stderr closed, writer thread gone) drops the line: logging must
        // never stop a service.
        match &self.sink {
            Sink::Queue(queue) => {
                let _ = queue.send(Queued::Line(line));
            }
            Sink::Stderr => {
                let _ = std::io::stderr().lock().write_all(&line);
            }
            #[cfg(test)]
            Sink::Writer(out) => {
                let _ = out
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write_all(&line);
            }
        }
    }

    fn flush(&self) {}
}

/// The scrubber applied to every line. Swapped (rarely) when the secret set changes; read under
/// an uncontended read lock on every line, without cloning.
static SCRUBBER: LazyLock<RwLock<Arc<Scrubber>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Scrubber::empty())));

/// Replaces the scrubber used for every following line.
pub fn set_scrubber(scrubber: Arc<Scrubber>) {
    *SCRUBBER.write().unwrap_or_else(PoisonError::into_inner) = scrubber;
}

/// Adds secret values to the current scrubber (atomic with respect to other updates).
pub fn extend_scrubber<I, S>(values: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut current = SCRUBBER.write().unwrap_or_else(PoisonError::into_inner);
    *current = Arc::new(current.with_values(values));
}

/// The scrubber currently applied to log lines (also handy for error messages).
pub fn scrubber() -> Arc<Scrubber> {
    SCRUBBER
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Logs every panic as an `error` record with `event` `panic`, the scrubbed message and its
/// `location`, instead of the default hook's unscrubbed stderr text. Installed by [`init`].
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_message(info.payload());
        let location = info.location().map_or_else(
            || "unknown".to_owned(),
            |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
        );
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        // Honours RUST_BACKTRACE like the default hook did.
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = (backtrace.status() == std::backtrace::BacktraceStatus::Captured)
            .then(|| backtrace.to_string());
        if !log::log_enabled!(Level::Error) {
            // No logger (or everything filtered out): a panic must still be visible, scrubbed.
            let line = format!("panic: {message} at {location} (thread {thread})");
            let _ = writeln!(std::io::stderr(), "{}", scrubber().scrub_str(&line));
        } else if let Some(backtrace) = backtrace {
            log::error!(event = "panic", location = location, thread = thread, backtrace = backtrace; "panic: {message}");
        } else {
            log::error!(event = "panic", location = location, thread = thread; "panic: {message}");
        }
        // The process may be about to end (a panic on the main thread).
        flush();
    }));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "non-string panic payload"
    }
}

/// The `service` of a record: an explicit `service` key-value wins, then the crate of its target
/// (all three services can share one process), then the process default.
pub fn service_for_target<'a>(target: &str, default: &'a str) -> &'a str {
    match target.split("::").next() {
        Some("ktsu_orchestrator") => "orchestrator",
        Some("ktsu_runtime") => "runtime",
        Some("ktsu_gateway") => "gateway",
        _ => default,
    }
}

/// Envelope fields a key-value cannot replace (`service` excepted, see
/// [`service_for_target`]); a clashing key-value is kept as `kv_<name>`.
const ENVELOPE: [&str; 4] = ["ts", "level", "target", "msg"];

/// Lays out one record as one line: a pure function of the record, the time, the scrubber and
/// the options, so that the format is tested without a global logger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFormatter {
    service: String,
    format: LineFormat,
    color: bool,
    journald: bool,
}

impl LineFormatter {
    /// No colour, no journald prefix.
    pub fn new(service: impl Into<String>, format: LineFormat) -> Self {
        LineFormatter {
            service: service.into(),
            format,
            color: false,
            journald: false,
        }
    }

    /// ANSI colour for the level and timestamp (text only).
    pub fn with_color(mut self, color: bool) -> Self {
        self.color = color;
        self
    }

    /// Starts every line with the syslog priority journald strips (`<3>` … `<7>`).
    pub fn with_journald_prefix(mut self, journald: bool) -> Self {
        self.journald = journald;
        self
    }

    /// The complete line, newline included. `msg` and every string in the key-values (nested
    /// ones and object keys included) pass `scrubber` first.
    pub fn format(&self, record: &Record<'_>, time: SystemTime, scrubber: &Scrubber) -> Vec<u8> {
        let mut fields = collect_fields(record.key_values());
        let service = match fields.remove("service") {
            Some(Value::String(service)) => Cow::Owned(service),
            Some(other) => Cow::Owned(other.to_string()),
            None => Cow::Borrowed(service_for_target(record.target(), &self.service)),
        };
        for value in fields.values_mut() {
            scrubber.scrub_value(value);
        }
        let message = match record.args().as_str() {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(record.args().to_string()),
        };
        let line = Line {
            ts: Timestamp::from_system_time(time).to_string(),
            level: record.level(),
            service: scrubber.scrub_str(&service),
            target: record.target(),
            msg: scrubber.scrub_str(&message),
            fields,
        };

        let mut out = Vec::with_capacity(256);
        if self.journald {
            out.extend_from_slice(journald_prefix(line.level).as_bytes());
        }
        match self.format {
            LineFormat::Json => line.write_json(&mut out),
            LineFormat::Text => line.write_text(&mut out, self.color),
        }
        out.push(b'\n');
        out
    }
}

/// One record, ready to be written.
struct Line<'a> {
    ts: String,
    level: Level,
    service: Cow<'a, str>,
    target: &'a str,
    msg: Cow<'a, str>,
    fields: Map<String, Value>,
}

impl Line<'_> {
    fn write_json(self, out: &mut Vec<u8>) {
        let mut object = Map::with_capacity(5 + self.fields.len());
        object.insert("ts".into(), Value::String(self.ts));
        object.insert("level".into(), level_name(self.level).into());
        object.insert("service".into(), Value::String(self.service.into_owned()));
        object.insert("target".into(), self.target.into());
        object.insert("msg".into(), Value::String(self.msg.into_owned()));
        object.extend(self.fields);
        if serde_json::to_writer(&mut *out, &Value::Object(object)).is_err() {
            // Serialising a `Value` into memory cannot fail; never lose the line's existence.
            out.extend_from_slice(br#"{"msg":"unserialisable log line"}"#);
        }
    }

    fn write_text(self, out: &mut Vec<u8>, color: bool) {
        let level = format!("{:<5}", self.level.as_str());
        let text = if color {
            format!(
                "\x1b[2m{}\x1b[0m {}{level}\x1b[0m [{:<12}] {}",
                self.ts,
                level_color(self.level),
                self.service,
                self.msg
            )
        } else {
            format!("{} {level} [{:<12}] {}", self.ts, self.service, self.msg)
        };
        out.extend_from_slice(text.as_bytes());
        for (key, value) in &self.fields {
            out.push(b' ');
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            out.extend_from_slice(text_value(value).as_bytes());
        }
    }
}

/// Key-values as typed JSON, in logging order; envelope names get a `kv_` prefix.
fn collect_fields(source: &dyn kv::Source) -> Map<String, Value> {
    struct Collector(Map<String, Value>);

    impl<'kvs> VisitSource<'kvs> for Collector {
        fn visit_pair(
            &mut self,
            key: kv::Key<'kvs>,
            value: kv::Value<'kvs>,
        ) -> Result<(), kv::Error> {
            let key = key.as_str();
            let key = if ENVELOPE.contains(&key) {
                format!("kv_{key}")
            } else {
                key.to_owned()
            };
            // Numbers stay numbers, serde captures stay structured; what JSON cannot hold
            // (e.g. a u128 beyond u64) falls back to its text.
            let json =
                serde_json::to_value(&value).unwrap_or_else(|_| Value::String(value.to_string()));
            self.0.insert(key, json);
            Ok(())
        }
    }

    let mut collector = Collector(Map::new());
    // A failing source only stops collecting; the fields gathered so far are kept.
    let _ = source.visit(&mut collector);
    collector.0
}

/// Text value: strings bare unless they need quotes, arrays and objects as compact JSON.
fn text_value(value: &Value) -> String {
    match value {
        Value::String(text) if !needs_quotes(text) => text.clone(),
        other => other.to_string(),
    }
}

fn needs_quotes(text: &str) -> bool {
    text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=')
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

fn level_color(level: Level) -> &'static str {
    match level {
        Level::Error => "\x1b[1;31m",
        Level::Warn => "\x1b[33m",
        Level::Info => "\x1b[32m",
        Level::Debug => "\x1b[34m",
        Level::Trace => "\x1b[35m",
    }
}

fn journald_prefix(level: Level) -> &'static str {
    match level {
        Level::Error => "<3>",
        Level::Warn => "<4>",
        Level::Info => "<6>",
        Level::Debug | Level::Trace => "<7>",
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn queued_lines_are_written_in_order_and_flush_waits_for_them() {
        let (queue, lines) = mpsc::sync_channel(LOG_QUEUE_LINES);
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>();
        struct Sink(mpsc::Sender<Vec<u8>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.send(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let writer = std::thread::spawn(move || write_queued(&lines, &mut Sink(out_tx)));
        for i in 0..1000 {
            queue
                .send(Queued::Line(format!("line {i}\n").into_bytes()))
                .unwrap();
        }
        let (done, written) = mpsc::sync_channel(1);
        queue.send(Queued::Flushed(done)).unwrap();
        written.recv().unwrap();
        let text: String = out_rx
            .try_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            text, expected,
            "every line, in order, before the flush is acknowledged"
        );
        drop(queue);
        writer.join().unwrap();
    }
    use super::*;
    use log::kv::Value as KvValue;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, UNIX_EPOCH};

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_777_371_302, 114_503_000)
    }

    fn render(
        formatter: &LineFormatter,
        level: Level,
        target: &str,
        kvs: &[(&str, KvValue<'_>)],
        scrubber: &Scrubber,
        args: std::fmt::Arguments<'_>,
    ) -> String {
        let record = Record::builder()
            .level(level)
            .target(target)
            .args(args)
            .key_values(&kvs)
            .build();
        String::from_utf8(formatter.format(&record, at(), scrubber)).unwrap()
    }

    fn json_line(line: &str) -> Value {
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        serde_json::from_str(line.trim_end()).unwrap()
    }

    #[test]
    fn json_line_has_envelope_and_typed_fields() {
        let formatter = LineFormatter::new("orchestrator", LineFormat::Json);
        let flags = vec!["low_risk".to_owned(), "vip".to_owned()];
        let detail = json!({"kind": "schema", "violations": [{"pointer": "/a"}]});
        let line = render(
            &formatter,
            Level::Info,
            "ktsu_orchestrator::actors::run",
            &[
                ("event", KvValue::from("step.complete")),
                ("attempt", KvValue::from(1u32)),
                ("duration_ms", KvValue::from(812u64)),
                ("cost_usd", KvValue::from(0.00042f64)),
                ("delta", KvValue::from(-3i64)),
                ("reflected", KvValue::from(false)),
                ("ktsu_flags", KvValue::from_serde(&flags)),
                ("error_detail", KvValue::from_serde(&detail)),
                ("cause", KvValue::from_display(&"upstream 529")),
                ("nothing", KvValue::null()),
            ],
            &Scrubber::empty(),
            format_args!("step {} complete", "greet"),
        );
        let value = json_line(&line);
        assert_eq!(
            value,
            json!({
                "ts": "2026-04-28T10:15:02.114503Z",
                "level": "info",
                "service": "orchestrator",
                "target": "ktsu_orchestrator::actors::run",
                "msg": "step greet complete",
                "event": "step.complete",
                "attempt": 1,
                "duration_ms": 812,
                "cost_usd": 0.00042,
                "delta": -3,
                "reflected": false,
                "ktsu_flags": ["low_risk", "vip"],
                "error_detail": {"kind": "schema", "violations": [{"pointer": "/a"}]},
                "cause": "upstream 529",
                "nothing": null
            })
        );
        let keys: Vec<&String> = value.as_object().unwrap().keys().take(5).collect();
        assert_eq!(keys, ["ts", "level", "service", "target", "msg"]);
    }

    #[test]
    fn json_levels_are_lowercase() {
        let formatter = LineFormatter::new("cli", LineFormat::Json);
        for (level, name) in [
            (Level::Error, "error"),
            (Level::Warn, "warn"),
            (Level::Info, "info"),
            (Level::Debug, "debug"),
            (Level::Trace, "trace"),
        ] {
            let line = render(
                &formatter,
                level,
                "x",
                &[],
                &Scrubber::empty(),
                format_args!("m"),
            );
            assert_eq!(json_line(&line)["level"], name);
        }
    }

    #[test]
    fn service_comes_from_kv_then_target_then_default() {
        let formatter = LineFormatter::new("ktsu", LineFormat::Json);
        let service = |target: &str, kvs: &[(&str, KvValue<'_>)]| {
            let line = render(
                &formatter,
                Level::Info,
                target,
                kvs,
                &Scrubber::empty(),
                format_args!("m"),
            );
            json_line(&line)
        };
        assert_eq!(service("ktsu_gateway::router", &[])["service"], "gateway");
        assert_eq!(service("ktsu_runtime", &[])["service"], "runtime");
        assert_eq!(
            service("ktsu_orchestrator::api", &[])["service"],
            "orchestrator"
        );
        assert_eq!(service("ktsu_shared::logging", &[])["service"], "ktsu");
        assert_eq!(service("ktsu_gatewayish", &[])["service"], "ktsu");
        assert_eq!(service("actix_server::worker", &[])["service"], "ktsu");
        let explicit = service("ktsu_gateway::x", &[("service", KvValue::from("cli"))]);
        assert_eq!(explicit["service"], "cli");
        assert_eq!(
            explicit.as_object().unwrap().len(),
            5,
            "service not repeated as a field"
        );
        assert_eq!(service_for_target("ktsu_runtime::agent", "x"), "runtime");
    }

    #[test]
    fn envelope_names_cannot_be_overwritten() {
        let formatter = LineFormatter::new("gateway", LineFormat::Json);
        let line = render(
            &formatter,
            Level::Warn,
            "t",
            &[
                ("msg", KvValue::from("other")),
                ("level", KvValue::from(1u8)),
            ],
            &Scrubber::empty(),
            format_args!("real"),
        );
        let value = json_line(&line);
        assert_eq!(value["msg"], "real");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["kv_msg"], "other");
        assert_eq!(value["kv_level"], 1);
    }

    #[test]
    fn scrubs_msg_and_every_string_field() {
        let scrubber = Scrubber::new(["sk-123", "tok\"en"]);
        let formatter = LineFormatter::new("runtime", LineFormat::Json);
        let nested =
            json!({"headers": {"authorization": "Bearer sk-123"}, "sk-123": [1, "x sk-123"]});
        let line = render(
            &formatter,
            Level::Error,
            "ktsu_runtime::mcp",
            &[
                ("error", KvValue::from("auth sk-123 rejected")),
                ("detail", KvValue::from_serde(&nested)),
                ("count", KvValue::from(3u8)),
                ("body", KvValue::from(r#"{"t":"tok\"en"}"#)),
            ],
            &scrubber,
            format_args!("call failed with key {}", "sk-123"),
        );
        assert!(!line.contains("sk-123"), "{line}");
        let value = json_line(&line);
        assert_eq!(value["msg"], "call failed with key [REDACTED]");
        assert_eq!(value["error"], "auth [REDACTED] rejected");
        assert_eq!(
            value["detail"],
            json!({"headers": {"authorization": "Bearer [REDACTED]"}, "[REDACTED]": [1, "x [REDACTED]"]})
        );
        assert_eq!(value["count"], 3);
        assert_eq!(value["body"], r#"{"t":"[REDACTED]"}"#);
    }

    #[test]
    fn text_line_layout() {
        let formatter = LineFormatter::new("ktsu", LineFormat::Text);
        let flags = vec!["a", "b"];
        let line = render(
            &formatter,
            Level::Info,
            "ktsu_orchestrator::actors::run",
            &[
                ("run_id", KvValue::from("run_4f2a9c1e7b3d5a60")),
                ("step_id", KvValue::from("greet")),
                ("duration_ms", KvValue::from(812u64)),
            ],
            &Scrubber::empty(),
            format_args!("step complete"),
        );
        assert_eq!(
            line,
            "2026-04-28T10:15:02.114503Z INFO  [orchestrator] step complete run_id=run_4f2a9c1e7b3d5a60 step_id=greet duration_ms=812\n"
        );
        let line = render(
            &formatter,
            Level::Warn,
            "other",
            &[
                ("error", KvValue::from("upstream returned 529: Overloaded")),
                ("empty", KvValue::from("")),
                ("flags", KvValue::from_serde(&flags)),
                ("obj", KvValue::from_serde(&json!({"k": 1}))),
                ("ok", KvValue::from(true)),
            ],
            &Scrubber::empty(),
            format_args!("retrying"),
        );
        assert_eq!(
            line,
            "2026-04-28T10:15:02.114503Z WARN  [ktsu        ] retrying error=\"upstream returned 529: Overloaded\" empty=\"\" flags=[\"a\",\"b\"] obj={\"k\":1} ok=true\n"
        );
    }

    #[test]
    fn text_line_scrubs_and_colours() {
        let scrubber = Scrubber::new(["pw"]);
        let formatter = LineFormatter::new("cli", LineFormat::Text).with_color(true);
        let line = render(
            &formatter,
            Level::Error,
            "x",
            &[("cause", KvValue::from("bad pw"))],
            &scrubber,
            format_args!("login pw"),
        );
        assert_eq!(
            line,
            "\x1b[2m2026-04-28T10:15:02.114503Z\x1b[0m \x1b[1;31mERROR\x1b[0m [cli         ] login [REDACTED] cause=\"bad [REDACTED]\"\n"
        );
    }

    #[test]
    fn journald_prefixes() {
        for (format, level, prefix) in [
            (LineFormat::Json, Level::Error, "<3>{"),
            (LineFormat::Json, Level::Warn, "<4>{"),
            (LineFormat::Json, Level::Info, "<6>{"),
            (LineFormat::Text, Level::Debug, "<7>2026"),
            (LineFormat::Text, Level::Trace, "<7>2026"),
        ] {
            let formatter = LineFormatter::new("gateway", format).with_journald_prefix(true);
            let line = render(
                &formatter,
                level,
                "x",
                &[],
                &Scrubber::empty(),
                format_args!("m"),
            );
            assert!(line.starts_with(prefix), "{line}");
            if format == LineFormat::Json {
                json_line(&line[3..]);
            }
        }
        let plain = LineFormatter::new("gateway", LineFormat::Json);
        let line = render(
            &plain,
            Level::Error,
            "x",
            &[],
            &Scrubber::empty(),
            format_args!("m"),
        );
        assert!(line.starts_with('{'));
    }

    #[test]
    fn unrepresentable_numbers_fall_back_to_text() {
        let formatter = LineFormatter::new("cli", LineFormat::Json);
        let big = u128::MAX;
        let line = render(
            &formatter,
            Level::Info,
            "x",
            &[
                ("big", KvValue::from(big)),
                ("nan", KvValue::from(f64::NAN)),
            ],
            &Scrubber::empty(),
            format_args!("m"),
        );
        let value = json_line(&line);
        assert_eq!(value["big"], big.to_string());
        assert_eq!(value["nan"], Value::Null);
    }

    #[test]
    fn log_format_parsing() {
        assert_eq!("auto".parse::<LogFormat>(), Ok(LogFormat::Auto));
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("JSON".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Auto.resolve(true, false), LineFormat::Text);
        assert_eq!(LogFormat::Auto.resolve(false, false), LineFormat::Json);
        assert_eq!(LogFormat::Auto.resolve(true, true), LineFormat::Json);
        assert_eq!(LogFormat::Text.resolve(false, true), LineFormat::Text);
        assert_eq!(LogFormat::Json.resolve(true, false), LineFormat::Json);
    }

    #[test]
    fn settings_precedence() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            move |name: &str| map.get(name).cloned()
        };
        let s = LogSettings::from_lookup("gateway", None, "info", env(&[])).unwrap();
        assert_eq!((s.format, s.filter.as_str()), (LogFormat::Auto, "info"));
        assert_eq!(s.service, "gateway");

        let vars = [
            ("KTSU_LOG_FORMAT", "text"),
            ("RUST_LOG", "debug"),
            ("KTSU_LOG", "warn,ktsu_gateway=trace"),
        ];
        let s = LogSettings::from_lookup("gateway", None, "info", env(&vars)).unwrap();
        assert_eq!(
            (s.format, s.filter.as_str()),
            (LogFormat::Text, "warn,ktsu_gateway=trace")
        );
        let s = LogSettings::from_lookup("gateway", Some("json"), "info", env(&vars)).unwrap();
        assert_eq!(s.format, LogFormat::Json);

        let vars = [
            ("KTSU_LOG_FORMAT", ""),
            ("KTSU_LOG", ""),
            ("RUST_LOG", "debug"),
        ];
        let s = LogSettings::from_lookup("cli", None, "warn", env(&vars)).unwrap();
        assert_eq!((s.format, s.filter.as_str()), (LogFormat::Auto, "debug"));

        let err = LogSettings::from_lookup("cli", None, "warn", env(&[("KTSU_LOG_FORMAT", "xml")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("KTSU_LOG_FORMAT") && err.contains("xml"),
            "{err}"
        );
        let err = LogSettings::from_lookup("cli", Some("yaml"), "warn", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--log-format") && err.contains("yaml"),
            "{err}"
        );

        let err = LogSettings::from_lookup("cli", None, "warn", env(&[("KTSU_LOG", "a=b=c")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("KTSU_LOG") && err.contains("a=b=c"), "{err}");
        let err = LogSettings::from_lookup("cli", None, "warn", env(&[("RUST_LOG", "x=loud")]))
            .unwrap_err();
        assert!(matches!(
            err,
            LoggingError::InvalidFilter {
                setting: "RUST_LOG",
                ..
            }
        ));
        let default = "info,ktsu_gateway=debug,actix_web=off";
        assert!(LogSettings::from_lookup("cli", None, default, env(&[])).is_ok());
    }

    /// A `Write` into shared memory, to read what the real logging pipeline writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn process_logger_filters_and_formats() {
        use log::Log;
        let captured = Captured::default();
        let formatter = LineFormatter::new("ktsu", LineFormat::Json);
        let logger = ProcessLogger::new(
            "warn,ktsu_gateway=debug",
            formatter,
            Sink::Writer(Mutex::new(Box::new(captured.clone()))),
        );
        let kvs = [("call_id", KvValue::from("gw_5d0c9a7e1f2b3c4d"))];
        for (level, target) in [
            (Level::Debug, "ktsu_gateway::router"),
            (Level::Info, "ktsu_runtime::agent"),
            (Level::Warn, "ktsu_runtime::agent"),
        ] {
            logger.log(
                &Record::builder()
                    .level(level)
                    .target(target)
                    .args(format_args!("hello"))
                    .key_values(&kvs)
                    .build(),
            );
        }
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["service"], "gateway");
        assert_eq!(lines[0]["level"], "debug");
        assert_eq!(lines[0]["call_id"], "gw_5d0c9a7e1f2b3c4d");
        assert_eq!(lines[1]["service"], "runtime");
        assert_eq!(lines[1]["level"], "warn");
    }

    #[test]
    fn global_scrubber_is_swappable() {
        // The only test touching the global scrubber.
        set_scrubber(Arc::new(Scrubber::new(["global-one"])));
        extend_scrubber(["global-two"]);
        let current = scrubber();
        assert_eq!(
            current.scrub_str("global-one global-two"),
            "[REDACTED] [REDACTED]"
        );
        set_scrubber(Arc::new(Scrubber::empty()));
        assert!(scrubber().is_empty());
    }

    /// End to end in a child process (a logger is global): `init` + the panic hook write one
    /// scrubbed JSON `panic` record to stderr.
    #[test]
    fn panic_is_logged_as_scrubbed_json() {
        const CHILD: &str = "KTSU_TEST_PANIC_CHILD";
        if std::env::var_os(CHILD).is_some() {
            set_scrubber(Arc::new(Scrubber::new(["sk-child-secret"])));
            let settings = LogSettings {
                service: "cli".into(),
                format: LogFormat::Json,
                filter: "info".into(),
            };
            init(&settings).unwrap();
            assert!(matches!(
                init(&settings),
                Err(LoggingError::AlreadyInstalled)
            ));
            log::info!(event = "ktsu.ready", port = 5050; "ready");
            panic!("boom with sk-child-secret");
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "logging::tests::panic_is_logged_as_scrubbed_json",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stderr.contains("sk-child-secret"), "{stderr}");
        let records: Vec<Value> = stderr
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let ready = records.iter().find(|r| r["event"] == "ktsu.ready");
        assert_eq!(ready.unwrap()["port"], 5050, "{stderr}");
        let panic = records.iter().find(|r| r["event"] == "panic");
        let panic = panic.unwrap_or_else(|| panic!("no panic record in {stderr}"));
        assert_eq!(panic["level"], "error");
        assert_eq!(panic["service"], "cli");
        assert_eq!(panic["msg"], "panic: boom with [REDACTED]");
        assert!(panic["location"].as_str().unwrap().contains("logging.rs:"));
        assert!(panic.get("backtrace").is_none());
    }

    #[test]
    fn panic_payload_text() {
        assert_eq!(panic_message(&"static text"), "static text");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&42), "non-string panic payload");
    }
}
