//! Keeping an idle supervisor small: dropping the mappings of code it ran once.
//!
//! A shim runs the whole runtime in its own process for each create and exec (namespaces,
//! mounts, cgroups, seccomp, the JSON of the bundle), then sits idle for as long as the
//! container lives, waiting in `epoll` and `signalfd`. The code of those bursts stays mapped:
//! the kernel maps a whole page-cache folio (or a fault-around window) on every instruction
//! fetch, so after one create a shim's resident set holds most of its executable and of
//! libc, although none of it runs again until the next request. Counted once per shim, that
//! is most of a shim's `Rss`.
//!
//! [`CodePages::release`] drops this process' page-table entries for those private,
//! read-only, file-backed mappings (the text and read-only data of the program and its
//! libraries; `madvise(MADV_DONTNEED)`). Nothing is lost: the pages
//! are clean copies of the files, still in the page cache (shared with every other process
//! that maps them), and the next instruction fetch maps them again: a minor fault, or a
//! read from disk if memory pressure has evicted them meanwhile. The
//! ranges are recorded by [`CodePages::at_startup`] before any `dlopen` could add (and a
//! `dlclose` later remove) a mapping, so a range is never one that has since been unmapped
//! and reused for data; a range with any private copy of a page in it (a RELRO segment's
//! relocations, in memory or swapped out, a debugger's breakpoint, a uprobe) is left alone.
//!
//! ```no_run
//! use berth_shim_core::footprint::CodePages;
//!
//! let code = CodePages::at_startup()?; // first thing in main
//! // ... create and start a container, then, idle:
//! let dropped = code.release();
//! println!("dropped {dropped} bytes of code mappings");
//! # Ok::<(), berth_shim_core::Error>(())
//! ```

use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Result};

const SMAPS: &str = "/proc/self/smaps";

/// The read-only, file-backed mappings of this process at startup: the program's text and
/// read-only data and those of the libraries loaded with it (never unloaded).
#[derive(Debug, Clone)]
pub struct CodePages {
    ranges: Vec<(usize, usize)>,
}

/// One mapping of `/proc/self/smaps`: its range, whether it is a private read-only
/// (`r-xp` or `r--p`) mapping of a file, and whether it is known to hold only the file's
/// pages: its `Anonymous:`, `Swap:` and `Private_Hugetlb:` (copies made on write, such as a
/// RELRO segment's relocated pages, in memory, swapped out or in huge pages) all shown and 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    read_only_file: bool,
    clean: bool,
}

/// The smaps lines that count a mapping's private copies; each must be there and 0.
const COPIES: [&str; 3] = ["Anonymous:", "Swap:", "Private_Hugetlb:"];

impl CodePages {
    /// Records the ranges. Call it early in `main`, before anything loads a library at run
    /// time.
    ///
    /// # Errors
    /// [`Error::Io`] when `/proc/self/smaps` can't be read (a kernel without
    /// `CONFIG_PROC_PAGE_MONITOR`): [`CodePages::none`] then does nothing.
    pub fn at_startup() -> Result<CodePages> {
        let smaps = read_smaps()?;
        let ranges = parse(&smaps)
            .filter(|m| m.read_only_file)
            .map(|m| (m.start, m.end))
            .collect();
        Ok(CodePages { ranges })
    }

    /// Nothing to release.
    pub fn none() -> CodePages {
        CodePages { ranges: Vec::new() }
    }

    /// Drops this process' mappings of the recorded code pages that hold no anonymous
    /// page; returns how many bytes of ranges were released. Any thread may keep running
    /// code in them: it faults the page back in.
    pub fn release(&self) -> usize {
        let Ok(smaps) = read_smaps() else {
            return 0;
        };
        let mut released = 0;
        for m in parse(&smaps) {
            if !m.read_only_file || !m.clean || !self.ranges.contains(&(m.start, m.end)) {
                continue;
            }
            // SAFETY: [start, end) is a private, read-only mapping of a file that was
            // there when the process started (recorded by `at_startup`, before any dlopen,
            // and still there with the same range: the program and the libraries loaded
            // with it are never unmapped), and smaps shows no private copy of any of its
            // pages, in memory, in swap or in huge pages: its every page is the file's.
            // MADV_DONTNEED only drops the page-table entries; the next access maps the same
            // file contents again.
            let r = unsafe {
                libc::madvise(m.start as *mut c_void, m.end - m.start, libc::MADV_DONTNEED)
            };
            if r == 0 {
                released += m.end - m.start;
            }
        }
        released
    }
}

/// Releases [`CodePages`] once a process has been quiet for a while: each
/// [`touch`](ReleaseWhenQuiet::touch) (a request that ran code) pushes the release back, so
/// a burst of requests is followed by one release, and a process that stays busy is left
/// alone.
#[derive(Debug, Clone)]
pub struct ReleaseWhenQuiet {
    last: Arc<(Mutex<Option<Instant>>, Condvar)>,
}

impl ReleaseWhenQuiet {
    /// Starts the thread that waits for `quiet` to pass after the last touch.
    ///
    /// # Errors
    /// [`Error::Io`] when the thread can't be spawned.
    pub fn start(code: CodePages, quiet: Duration) -> Result<ReleaseWhenQuiet> {
        let last = Arc::new((Mutex::new(None::<Instant>), Condvar::new()));
        let shared = Arc::clone(&last);
        std::thread::Builder::new()
            .name("release-code".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let (lock, cv) = &*shared;
                let Ok(mut last) = lock.lock() else { return };
                loop {
                    match *last {
                        None => match cv.wait(last) {
                            Ok(g) => last = g,
                            Err(_) => return,
                        },
                        Some(at) if at.elapsed() >= quiet => {
                            *last = None;
                            drop(last);
                            code.release();
                            last = match lock.lock() {
                                Ok(g) => g,
                                Err(_) => return,
                            };
                        }
                        Some(at) => {
                            let left = quiet.saturating_sub(at.elapsed());
                            match cv.wait_timeout(last, left) {
                                Ok((g, _)) => last = g,
                                Err(_) => return,
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::io("spawn thread", "release-code", e))?;
        Ok(ReleaseWhenQuiet { last })
    }

    /// Marks activity now and again when the returned guard drops (a request's start and
    /// end): the release comes `quiet` after the last one.
    pub fn busy(&self) -> Busy<'_> {
        self.touch();
        Busy(self)
    }

    /// Marks activity now: the release comes `quiet` after the last touch.
    pub fn touch(&self) {
        let (lock, cv) = &*self.last;
        if let Ok(mut last) = lock.lock() {
            *last = Some(Instant::now());
            cv.notify_one();
        }
    }
}

/// A request in progress (see [`ReleaseWhenQuiet::busy`]).
#[derive(Debug)]
#[must_use = "the end of the request is marked when the guard drops"]
pub struct Busy<'a>(&'a ReleaseWhenQuiet);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
    }
}

fn read_smaps() -> Result<String> {
    std::fs::read_to_string(SMAPS).map_err(|e| Error::io("read", SMAPS, e))
}

/// The mappings of an smaps text: a header line `start-end perms offset dev inode [path]`
/// followed by `Key: value kB` lines.
fn parse(smaps: &str) -> impl Iterator<Item = Mapping> + '_ {
    let mut lines = smaps.lines().peekable();
    std::iter::from_fn(move || {
        loop {
            let header = lines.next()?;
            let Some(mut m) = parse_header(header) else {
                continue;
            };
            // Each of COPIES seen with 0; a missing or unreadable line leaves it unclean.
            let mut zero = [false; COPIES.len()];
            while let Some(line) = lines.peek() {
                if parse_header(line).is_some() {
                    break;
                }
                for (i, key) in COPIES.iter().enumerate() {
                    if let Some(v) = line.strip_prefix(key) {
                        zero[i] = v.trim().trim_end_matches("kB").trim() == "0";
                    }
                }
                lines.next();
            }
            m.clean = zero.iter().all(|z| *z);
            return Some(m);
        }
    })
}

fn parse_header(line: &str) -> Option<Mapping> {
    let mut f = line.split_ascii_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = f.next()?;
    let (_offset, _dev, inode) = (f.next()?, f.next()?, f.next()?);
    let path = f.next().unwrap_or("");
    Some(Mapping {
        start,
        end,
        read_only_file: (perms == "r-xp" || perms == "r--p")
            && inode != "0"
            && path.starts_with('/'),
        clean: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fe:01 1234                       /usr/bin/shim
Rss:                 100 kB
Anonymous:             0 kB
Swap:                  0 kB
Private_Hugetlb:       0 kB
55d0c0b00000-55d0c0e00000 r-xp 00100000 fe:01 1234                       /usr/bin/shim
Rss:                2048 kB
Anonymous:             0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
VmFlags: rd ex mr mw me
55d0c0e00000-55d0c0e10000 r--p 00400000 fe:01 1234                       /usr/bin/shim
Anonymous:             0 kB
Swap:                  8 kB
Private_Hugetlb:       0 kB
55d0c0e10000-55d0c0e20000 r--p 00410000 fe:01 1234                       /usr/bin/shim
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00028000 fe:01 99                         /usr/lib/libc.so.6
Anonymous:             4 kB
Swap:                  0 kB
Private_Hugetlb:       0 kB
7f0000200000-7f0000201000 rw-p 00000000 00:00 0 
Anonymous:             4 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
Swap:                  0 kB
Private_Hugetlb:       0 kB
";

    #[test]
    fn parses_headers_and_private_copies() {
        let maps: Vec<Mapping> = parse(SAMPLE).collect();
        assert_eq!(maps.len(), 7, "{maps:#?}");
        let code: Vec<(usize, bool)> = maps
            .iter()
            .filter(|m| m.read_only_file)
            .map(|m| (m.start, m.clean))
            .collect();
        // The shim's read-only data and text are clean; its relocated pages swapped out,
        // a mapping whose smaps lacks the Swap line and libc's text with a copied page are
        // not; the anonymous mapping and the vdso are no file's.
        assert_eq!(
            code,
            [
                (0x55d0c0a00000, true),
                (0x55d0c0b00000, true),
                (0x55d0c0e00000, false),
                (0x55d0c0e10000, false),
                (0x7f0000000000, false)
            ]
        );
    }

    #[test]
    fn release_keeps_the_process_running_its_code() {
        let code = CodePages::at_startup().unwrap();
        assert!(!code.ranges.is_empty(), "no code mapping found in {SMAPS}");
        let released = code.release();
        assert!(released > 0);
        // The code runs on, faulted back in (this very test, the formatting machinery).
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
