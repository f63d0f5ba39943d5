//! CRI container log files: `<RFC 3339 time> <stream> <tag> <content>` a line, the tag `F`
//! (full: the content ends a line) or `P` (partial: the line goes on in the next record of
//! the same stream). [`Joiner`] turns records back into the lines the container wrote;
//! [`LogFile`] reads a growing file.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::CtlError;

/// The stream a log record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

/// One record of a CRI log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its stream.
    pub stream: Stream,
    /// `P`: the content is not the end of a line.
    pub partial: bool,
    /// The content, without the line's newline.
    pub content: &'a [u8],
}

/// Parses one line of a CRI log file (without its newline); `None` if it is not one.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = parts.next()?;
    if time.is_empty() {
        return None;
    }
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    // The tag may carry more fields after ':' (the format reserves them); the first is P/F.
    let tag = parts.next()?;
    let partial = match tag.split(|b| *b == b':').next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    let content = parts.next().unwrap_or(b"");
    Some(Record {
        stream,
        partial,
        content,
    })
}

/// Joins records into the container's lines: partial records are held until the full record
/// of the same stream ends the line.
#[derive(Debug, Default)]
pub struct Joiner {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Joiner {
    /// Takes one line of the file (without its newline); returns the output to show, if any:
    /// a whole line with its newline, or a line that is not a CRI record as it is.
    pub fn push(&mut self, line: &[u8]) -> Option<(Stream, Vec<u8>)> {
        let Some(r) = parse_record(line) else {
            let mut out = line.to_vec();
            out.push(b'\n');
            return Some((Stream::Stdout, out));
        };
        let pending = match r.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        pending.extend_from_slice(r.content);
        if r.partial {
            return None;
        }
        let mut out = std::mem::take(pending);
        out.push(b'\n');
        Some((r.stream, out))
    }

    /// The partial lines still held (a container that ended without a newline), stdout first.
    pub fn finish(&mut self) -> Vec<(Stream, Vec<u8>)> {
        let mut out = Vec::new();
        for (s, buf) in [
            (Stream::Stdout, &mut self.stdout),
            (Stream::Stderr, &mut self.stderr),
        ] {
            if !buf.is_empty() {
                out.push((s, std::mem::take(buf)));
            }
        }
        out
    }
}

/// Turns a whole log file's bytes into the output to show.
pub fn decode(bytes: &[u8]) -> Vec<(Stream, Vec<u8>)> {
    let mut j = Joiner::default();
    let mut out: Vec<_> = lines(bytes).filter_map(|l| j.push(l)).collect();
    out.extend(j.finish());
    out
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes
        .split(|b| *b == b'\n')
        .filter(move |_| !bytes.is_empty())
}

/// A CRI log file read as it grows.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    offset: u64,
    /// The last bytes read, without their newline yet.
    tail: Vec<u8>,
    joiner: Joiner,
}

impl LogFile {
    /// Reads `path` from its start (it need not exist yet).
    pub fn new(path: &Path) -> LogFile {
        LogFile {
            path: path.to_path_buf(),
            offset: 0,
            tail: Vec::new(),
            joiner: Joiner::default(),
        }
    }

    /// The output of every whole record written since the last call. A missing file has
    /// none (the runtime creates it when the container starts).
    pub fn read_new(&mut self) -> Result<Vec<(Stream, Vec<u8>)>, CtlError> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CtlError::io("open", &self.path, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| CtlError::io("stat", &self.path, e))?
            .len();
        if len < self.offset {
            // Rotated or truncated: start again.
            self.offset = 0;
            self.tail.clear();
        }
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| CtlError::io("seek", &self.path, e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| CtlError::io("read", &self.path, e))?;
        self.offset += buf.len() as u64;
        self.tail.extend_from_slice(&buf);
        let mut out = Vec::new();
        let Some(last_nl) = self.tail.iter().rposition(|b| *b == b'\n') else {
            return Ok(out);
        };
        let rest = self.tail.split_off(last_nl + 1);
        let whole = std::mem::replace(&mut self.tail, rest);
        out.extend(lines(&whole).filter_map(|l| self.joiner.push(l)));
        Ok(out)
    }

    /// The rest once the file is complete: a last line without a newline, held partials.
    pub fn finish(&mut self) -> Result<Vec<(Stream, Vec<u8>)>, CtlError> {
        let mut out = self.read_new()?;
        let tail = std::mem::take(&mut self.tail);
        if !tail.is_empty() {
            out.extend(self.joiner.push(&tail));
        }
        out.extend(self.joiner.finish());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-12-02T15:45:37.123456789Z";

    fn text(out: &[(Stream, Vec<u8>)]) -> Vec<(Stream, String)> {
        out.iter()
            .map(|(s, b)| (*s, String::from_utf8_lossy(b).into_owned()))
            .collect()
    }

    #[test]
    fn full_record_is_parsed() {
        let line = format!("{TS} stdout F hello world");
        let r = parse_record(line.as_bytes()).unwrap();
        assert_eq!(r.stream, Stream::Stdout);
        assert!(!r.partial);
        assert_eq!(r.content, b"hello world");
    }

    fn rec(line: &str) -> (Stream, bool, String) {
        let r = parse_record(line.as_bytes()).unwrap();
        (
            r.stream,
            r.partial,
            String::from_utf8_lossy(r.content).into_owned(),
        )
    }

    #[test]
    fn empty_content_is_an_empty_line() {
        let want = (Stream::Stderr, false, String::new());
        assert_eq!(rec(&format!("{TS} stderr F ")), want);
        assert_eq!(rec(&format!("{TS} stderr F")), want);
    }

    #[test]
    fn tag_with_more_fields_keeps_its_first() {
        let want = (Stream::Stdout, true, "y".to_string());
        assert_eq!(rec(&format!("{TS} stdout P:x y")), want);
    }

    #[test]
    fn content_keeps_its_spaces() {
        assert_eq!(rec(&format!("{TS} stdout F  a  b ")).2, " a  b ");
    }

    #[test]
    fn non_records_are_rejected() {
        for l in ["", "hello", "ts stdin F x", "ts stdout X x", " stdout F x"] {
            assert!(parse_record(l.as_bytes()).is_none(), "{l:?}");
        }
    }

    #[test]
    fn partials_join_per_stream() {
        let file = format!(
            "{TS} stdout P hel\n{TS} stderr P e1\n{TS} stdout F lo\n{TS} stderr F e2\n{TS} stdout F bye\n"
        );
        assert_eq!(
            text(&decode(file.as_bytes())),
            [
                (Stream::Stdout, "hello\n".to_string()),
                (Stream::Stderr, "e1e2\n".to_string()),
                (Stream::Stdout, "bye\n".to_string()),
            ]
        );
    }

    #[test]
    fn trailing_partial_is_flushed_without_newline() {
        let file = format!("{TS} stdout F a\n{TS} stdout P no-newline\n");
        assert_eq!(
            text(&decode(file.as_bytes())),
            [
                (Stream::Stdout, "a\n".to_string()),
                (Stream::Stdout, "no-newline".to_string()),
            ]
        );
    }

    #[test]
    fn foreign_lines_pass_through() {
        assert_eq!(
            text(&decode(b"plain text\n")),
            [(Stream::Stdout, "plain text\n".to_string())]
        );
        assert!(decode(b"").is_empty());
    }

    #[test]
    fn growing_file_is_read_by_whole_lines() {
        let dir = std::env::temp_dir().join(format!("berthctl-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        let mut log = LogFile::new(&path);
        assert!(log.read_new().unwrap().is_empty(), "missing file");
        // The second record is still being written.
        std::fs::write(&path, format!("{TS} stdout F one\n{TS} stdout F tw")).unwrap();
        assert_eq!(
            text(&log.read_new().unwrap()),
            [(Stream::Stdout, "one\n".to_string())]
        );
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(
            f,
            "o\n{TS} stdout P th\n{TS} stdout F ree\n{TS} stderr F four"
        )
        .unwrap();
        assert_eq!(
            text(&log.read_new().unwrap()),
            [
                (Stream::Stdout, "two\n".to_string()),
                (Stream::Stdout, "three\n".to_string())
            ]
        );
        assert_eq!(
            text(&log.finish().unwrap()),
            [(Stream::Stderr, "four\n".to_string())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
