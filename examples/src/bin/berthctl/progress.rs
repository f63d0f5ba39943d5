//! The pull display on stderr: a spinner line redrawn in place on a terminal, plain lines
//! (one a second) otherwise.

use std::io::Write;
use std::time::Duration;

use crate::table::human_size;

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// The state of the display.
#[derive(Debug)]
pub struct Progress {
    what: String,
    tty: bool,
    frame: usize,
    last_plain: Option<Duration>,
}

impl Progress {
    /// A display for pulling `what`; `tty`: stderr is a terminal.
    pub fn new(what: &str, tty: bool) -> Progress {
        Progress {
            what: what.to_string(),
            tty,
            frame: 0,
            last_plain: None,
        }
    }

    /// The text of one update: `grown` bytes more in the image store after `elapsed`
    /// (`None`: the runtime does not say).
    pub fn line(&self, grown: Option<u64>, elapsed: Duration) -> String {
        let bytes = grown.map_or_else(|| "?".to_string(), human_size);
        if self.tty {
            let spin = SPINNER[self.frame % SPINNER.len()];
            format!(
                "\r\x1b[K{spin} pulling {}  {bytes}  {:.1}s",
                self.what,
                elapsed.as_secs_f64()
            )
        } else {
            format!(
                "pulling {}: {bytes} stored, {:.0}s\n",
                self.what,
                elapsed.as_secs_f64()
            )
        }
    }

    /// Shows an update (on a terminal every time, else at most once a second).
    pub fn show(&mut self, grown: Option<u64>, elapsed: Duration) {
        if !self.tty {
            let due = self
                .last_plain
                .is_none_or(|t| elapsed.saturating_sub(t) >= Duration::from_secs(1));
            if !due {
                return;
            }
            self.last_plain = Some(elapsed);
        }
        let text = self.line(grown, elapsed);
        self.frame += 1;
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    /// Ends the display with a summary line.
    pub fn done(&mut self, grown: Option<u64>, elapsed: Duration, ok: bool) {
        let bytes = grown.map_or_else(String::new, |g| format!(", {} stored", human_size(g)));
        let verb = if ok { "pulled" } else { "failed to pull" };
        let clear = if self.tty { "\r\x1b[K" } else { "" };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "{clear}{verb} {} in {:.1}s{bytes}",
            self.what,
            elapsed.as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let p = Progress::new("busybox", false);
        assert_eq!(
            p.line(Some(2_500_000), Duration::from_millis(3200)),
            "pulling busybox: 2.50MB stored, 3s\n"
        );
        let p = Progress::new("busybox", true);
        assert_eq!(
            p.line(None, Duration::from_millis(1200)),
            "\r\x1b[K⠋ pulling busybox  ?  1.2s"
        );
    }
}
