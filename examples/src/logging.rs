//! Log lines in the two formats runc (through logrus) writes, which containerd's shim reads.
//!
//! * text: `time="2026-11-27T21:05:16Z" level=error msg="container \"x\" does not exist"`
//! * json: `{"level":"error","msg":"container \"x\" does not exist","time":"2026-11-27T21:05:16Z"}`
//!
//! Lines go to `--log FILE` (opened for appending) or, without it, to stderr.
//!
//! ```
//! use berth_cli::logging::{format_line, Level, LogFormat};
//!
//! let line = format_line(LogFormat::Json, Level::Error, "boom", 0);
//! assert_eq!(line, "{\"level\":\"error\",\"msg\":\"boom\",\"time\":\"1970-01-01T00:00:00Z\"}\n");
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::CliError;

/// The `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// logrus' `key=value` text lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Only written with `--debug`.
    Debug,
    /// Something worth knowing that is not a failure.
    Warning,
    /// The command failed.
    Error,
}

impl Level {
    /// The word logrus uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// Formats a UNIX time (seconds) as RFC 3339 in UTC, e.g. `2026-11-27T21:05:16Z`.
pub fn rfc3339_utc(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        (secs_of_day % 3600) / 60,
        secs_of_day % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days end each 400-year era's years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Quotes a value the way logrus' text formatter does: bare when made only of
/// `[A-Za-z0-9-._/@^+]`, otherwise in double quotes with Go escapes.
fn text_value(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if bare {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() => {
                let n = u32::from(c);
                if n < 0x80 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else {
                    out.push_str(&format!("\\u{n:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Formats one log line (with its trailing newline).
pub fn format_line(format: LogFormat, level: Level, msg: &str, unix_secs: i64) -> String {
    let time = rfc3339_utc(unix_secs);
    match format {
        LogFormat::Text => format!(
            "time={} level={} msg={}\n",
            text_value(&time),
            level.as_str(),
            text_value(msg)
        ),
        LogFormat::Json => {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                level: &'a str,
                msg: &'a str,
                time: &'a str,
            }
            let line = Line {
                level: level.as_str(),
                msg,
                time: &time,
            };
            // Serialising three strings cannot fail; fall back to an empty object if it did.
            let mut s = serde_json::to_string(&line).unwrap_or_else(|_| "{}".to_string());
            s.push('\n');
            s
        }
    }
}

#[derive(Debug)]
enum Dest {
    Stderr,
    File(File),
}

/// Where and how `berth` logs.
///
/// ```no_run
/// use berth_cli::logging::{Logger, LogFormat};
///
/// let log = Logger::file("/var/log/berth.json".as_ref(), LogFormat::Json, false)?;
/// log.debug(|| "not written: --debug is off".to_string());
/// log.error("container \"web\" does not exist");
/// # Ok::<(), berth_cli::CliError>(())
/// ```
#[derive(Debug)]
pub struct Logger {
    dest: Dest,
    format: LogFormat,
    debug: bool,
}

impl Logger {
    /// Logs to stderr.
    pub fn stderr(format: LogFormat, debug: bool) -> Logger {
        Logger {
            dest: Dest::Stderr,
            format,
            debug,
        }
    }

    /// Logs to `path`, created if needed (mode 0644) and appended to.
    pub fn file(path: &Path, format: LogFormat, debug: bool) -> Result<Logger, CliError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| CliError::io("open log file", path, e))?;
        Ok(Logger {
            dest: Dest::File(file),
            format,
            debug,
        })
    }

    /// A second handle on the same destination (for the runtime's warnings).
    pub fn try_clone(&self) -> std::io::Result<Logger> {
        Ok(Logger {
            dest: match &self.dest {
                Dest::Stderr => Dest::Stderr,
                Dest::File(f) => Dest::File(f.try_clone()?),
            },
            format: self.format,
            debug: self.debug,
        })
    }

    /// True when log lines already go to stderr.
    pub fn to_stderr(&self) -> bool {
        matches!(self.dest, Dest::Stderr)
    }

    /// True with `--debug`.
    pub fn debug_enabled(&self) -> bool {
        self.debug
    }

    /// Writes one line; failures to log are ignored (there is nowhere left to report them).
    pub fn log(&self, level: Level, msg: &str) {
        if level == Level::Debug && !self.debug {
            return;
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let line = format_line(self.format, level, msg, secs);
        let _ = match &self.dest {
            Dest::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            // One write(2) on an O_APPEND file: lines of concurrent writers do not interleave.
            Dest::File(f) => (&*f).write_all(line.as_bytes()),
        };
    }

    /// Logs an error.
    pub fn error(&self, msg: &str) {
        self.log(Level::Error, msg);
    }

    /// Logs a warning.
    pub fn warn(&self, msg: &str) {
        self.log(Level::Warning, msg);
    }

    /// Logs a debug line; `msg` is only built with `--debug`.
    pub fn debug(&self, msg: impl FnOnce() -> String) {
        if self.debug {
            self.log(Level::Debug, &msg());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(0, "1970-01-01T00:00:00Z")]
    #[case(951_782_400, "2000-02-29T00:00:00Z")]
    #[case(1_709_251_199, "2024-02-29T23:59:59Z")]
    #[case(1_795_813_516, "2026-11-27T21:05:16Z")]
    #[case(4_102_444_800, "2100-01-01T00:00:00Z")]
    #[case(-1, "1969-12-31T23:59:59Z")]
    fn rfc3339(#[case] secs: i64, #[case] want: &str) {
        assert_eq!(rfc3339_utc(secs), want);
    }

    #[test]
    fn rfc3339_agrees_with_the_system_date_command() {
        // Cross-check a spread of instants against date(1), which uses the C library.
        for secs in [
            86_399_i64,
            1_000_000_000,
            1_234_567_890,
            2_000_000_000,
            253_402_300_799,
        ] {
            let out = std::process::Command::new("date")
                .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
                .output()
                .unwrap();
            assert!(out.status.success());
            assert_eq!(
                rfc3339_utc(secs),
                String::from_utf8(out.stdout).unwrap().trim()
            );
        }
    }

    #[rstest]
    #[case("simple", "simple")]
    #[case("a-b.c_d/e@f^g+h", "a-b.c_d/e@f^g+h")]
    #[case("two words", "\"two words\"")]
    #[case("", "\"\"")]
    #[case("say \"hi\"", "\"say \\\"hi\\\"\"")]
    #[case("back\\slash", "\"back\\\\slash\"")]
    #[case("line\nbreak\ttab", "\"line\\nbreak\\ttab\"")]
    #[case("bell\u{7}\u{1}", "\"bell\\a\\x01\"")]
    #[case("ünï", "\"ünï\"")]
    fn text_quoting(#[case] input: &str, #[case] want: &str) {
        assert_eq!(text_value(input), want);
    }

    #[test]
    fn text_line() {
        assert_eq!(
            format_line(
                LogFormat::Text,
                Level::Error,
                "container \"x\" does not exist",
                1_795_813_516
            ),
            "time=\"2026-11-27T21:05:16Z\" level=error msg=\"container \\\"x\\\" does not exist\"\n"
        );
        assert_eq!(
            format_line(LogFormat::Text, Level::Warning, "careful", 0),
            "time=\"1970-01-01T00:00:00Z\" level=warning msg=careful\n"
        );
    }

    #[test]
    fn json_line_is_one_object_with_sorted_keys() {
        let line = format_line(LogFormat::Json, Level::Debug, "a \"q\"\nb", 1_795_813_516);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(
            line,
            "{\"level\":\"debug\",\"msg\":\"a \\\"q\\\"\\nb\",\"time\":\"2026-11-27T21:05:16Z\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "a \"q\"\nb");
    }

    #[test]
    fn log_format_words() {
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("JSON"), None);
        assert_eq!(LogFormat::parse(""), None);
    }

    #[test]
    fn file_logger_appends_and_filters_debug() {
        let dir = crate::test_support::TempDir::new("log-test");
        let path = dir.join("log.json");
        std::fs::write(&path, "existing\n").unwrap();
        {
            let quiet = Logger::file(&path, LogFormat::Json, false).unwrap();
            assert!(!quiet.to_stderr());
            quiet.debug(|| panic!("debug message built without --debug"));
            quiet.error("first");
            let loud = Logger::file(&path, LogFormat::Json, true).unwrap();
            loud.debug(|| "second".to_string());
        }
        let text = std::fs::read_to_string(&path).unwrap();
        drop(dir);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "existing");
        let first: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(first["level"], "error");
        assert_eq!(first["msg"], "first");
        let second: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(second["level"], "debug");
    }

    #[test]
    fn file_logger_error_names_the_path() {
        let err = Logger::file(
            Path::new("/nonexistent-berth-dir/log"),
            LogFormat::Text,
            false,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-berth-dir/log"),
            "{err}"
        );
    }
}
