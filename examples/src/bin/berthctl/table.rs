//! Human output: aligned columns (as crictl's tabwriter), sizes, ages, short ids.

/// Spaces between two columns.
const GAP: usize = 3;

/// Aligns rows into columns: every column but the last is padded to its widest cell plus
/// three spaces; the last is written as is, with no trailing spaces.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] + GAP - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Builds a row from cells.
pub fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// An id cut to 13 characters, without a `sha256:` prefix (as crictl shows ids).
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(13).collect()
}

/// A byte count in decimal units, as crictl (docker's `HumanSize`): `512B`, `4.27MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        let digits = if v < 10.0 {
            2
        } else if v < 100.0 {
            1
        } else {
            0
        };
        format!("{v:.digits$}{}", UNITS[unit])
    }
}

/// How long before `now_ns` the time `then_ns` (both nanoseconds since the epoch) was:
/// `5 seconds ago`, `About a minute ago`, `3 hours ago`.
pub fn ago(then_ns: i64, now_ns: i64) -> String {
    if then_ns <= 0 {
        return "Unknown".to_string();
    }
    let s = (now_ns.saturating_sub(then_ns) / 1_000_000_000).max(0);
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match s {
        0 => "Less than a second ago".to_string(),
        1..60 => plural(s, "second"),
        60..120 => "About a minute ago".to_string(),
        120..3600 => plural(s / 60, "minute"),
        3600..7200 => "About an hour ago".to_string(),
        7200..172_800 => plural(s / 3600, "hour"),
        _ => plural(s / 86_400, "day"),
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let rows = vec![
            row(["CONTAINER", "IMAGE", "STATE"]),
            row(["abc", "localhost/berth:busybox", "CONTAINER_RUNNING"]),
            row(["0123456789abc", "x", ""]),
        ];
        assert_eq!(
            render(&rows),
            "CONTAINER       IMAGE                     STATE\n\
             abc             localhost/berth:busybox   CONTAINER_RUNNING\n\
             0123456789abc   x\n"
        );
    }

    #[test]
    fn header_alone_and_nothing() {
        assert_eq!(render(&[row(["A", "BB"])]), "A   BB\n");
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn wide_characters_count_once() {
        let rows = vec![row(["é", "x"]), row(["ab", "y"])];
        assert_eq!(render(&rows), "é    x\nab   y\n");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_270_000), "4.27MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
    }

    #[test]
    fn ids() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789abc");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn ages() {
        let s = 1_000_000_000i64;
        let now = 1_000_000 * s;
        assert_eq!(ago(now, now), "Less than a second ago");
        assert_eq!(ago(now - s, now), "1 second ago");
        assert_eq!(ago(now - 59 * s, now), "59 seconds ago");
        assert_eq!(ago(now - 90 * s, now), "About a minute ago");
        assert_eq!(ago(now - 600 * s, now), "10 minutes ago");
        assert_eq!(ago(now - 3 * 3600 * s, now), "3 hours ago");
        assert_eq!(ago(now - 3 * 86_400 * s, now), "3 days ago");
        assert_eq!(ago(0, now), "Unknown");
        assert_eq!(ago(now + s, now), "Less than a second ago");
    }
}
