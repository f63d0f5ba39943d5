//! Signal names and numbers as `kill` accepts them.

use crate::error::Error;

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses a signal as runc's `kill` does: a number (`9`; `0` only checks that the target
/// exists), a name with or without the `SIG`
/// prefix in any case (`KILL`, `sigterm`), or a real-time signal (`RTMIN+3`, `SIGRTMAX-1`).
///
/// ```
/// use berth_runtime_core::parse_signal;
/// assert_eq!(parse_signal("KILL").unwrap(), 9);
/// assert_eq!(parse_signal("sigterm").unwrap(), 15);
/// assert_eq!(parse_signal("10").unwrap(), 10);
/// assert!(parse_signal("NOPE").is_err());
/// ```
pub fn parse_signal(s: &str) -> Result<i32, Error> {
    let bad = || Error::InvalidSignal(s.to_owned());
    let max = libc::SIGRTMAX();
    if let Ok(n) = s.parse::<i32>() {
        return if (0..=max).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Result<i32, Error> {
        let off = if rest.is_empty() {
            0
        } else {
            rest.parse::<i32>().map_err(|_| bad())?
        };
        let n = base + sign * off;
        if (libc::SIGRTMIN()..=max).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return match rest.strip_prefix('+') {
            Some(r) => rt(libc::SIGRTMIN(), r, 1),
            None if rest.is_empty() => rt(libc::SIGRTMIN(), "", 1),
            None => Err(bad()),
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return match rest.strip_prefix('-') {
            Some(r) => rt(max, r, -1),
            None if rest.is_empty() => rt(max, "", 1),
            None => Err(bad()),
        };
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("KILL", 9)]
    #[case("SIGKILL", 9)]
    #[case("kill", 9)]
    #[case("9", 9)]
    #[case("TERM", 15)]
    #[case("SIGWINCH", 28)]
    #[case("RTMIN", 34)]
    #[case("RTMIN+3", 37)]
    #[case("SIGRTMAX-1", 63)]
    #[case("64", 64)]
    #[case("0", 0)]
    fn good(#[case] s: &str, #[case] n: i32) {
        assert_eq!(parse_signal(s).unwrap(), n);
    }

    #[rstest]
    #[case("")]
    #[case("65")]
    #[case("-1")]
    #[case("FOO")]
    #[case("RTMIN+40")]
    #[case("RTMINX")]
    fn bad(#[case] s: &str) {
        assert!(matches!(parse_signal(s), Err(Error::InvalidSignal(x)) if x == s));
    }
}
