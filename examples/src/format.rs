//! Output formats of `berth list` and `berth state`, byte-compatible with runc's.
//!
//! ```
//! use berth_cli::format::render_table;
//!
//! let rows = vec![
//!     vec!["ID".to_string(), "PID".to_string(), "OWNER".to_string()],
//!     vec!["web".to_string(), "4242".to_string(), "root".to_string()],
//! ];
//! assert_eq!(
//!     render_table(&rows),
//!     "ID          PID         OWNER\nweb         4242        root\n"
//! );
//! ```

use berth_runtime_core::State;

use crate::error::CliError;

/// Smallest width of a column, padding included (runc's tabwriter setting).
const MIN_WIDTH: usize = 12;
/// Spaces added after the widest cell of a column.
const PADDING: usize = 3;

/// Aligns rows of cells into columns like Go's `tabwriter` as runc configures it
/// (minimum width 12, padding 3, spaces): every column but the last is padded to
/// `max(widest cell + 3, 12)` characters; the last column is written as is.
pub fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let widths: Vec<usize> = widths
        .into_iter()
        .map(|w| (w + PADDING).max(MIN_WIDTH))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// The `berth list` table: `ID PID STATUS BUNDLE CREATED OWNER`, one row per container.
pub fn list_table(states: &[State]) -> String {
    let mut rows = Vec::with_capacity(states.len() + 1);
    rows.push(
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    for s in states {
        rows.push(vec![
            s.id.clone(),
            s.pid.to_string(),
            s.status.to_string(),
            s.bundle.clone(),
            s.created.clone(),
            s.owner.clone(),
        ]);
    }
    render_table(&rows)
}

/// The `berth list --format json` document: a compact JSON array and a newline; `null` when
/// there is no container, as runc prints.
pub fn list_json(states: &[State]) -> Result<String, CliError> {
    if states.is_empty() {
        return Ok("null\n".to_string());
    }
    let mut s = serde_json::to_string(states).map_err(|source| CliError::Json {
        what: "container list",
        source,
    })?;
    s.push('\n');
    Ok(s)
}

/// The `berth state` document: JSON indented by two spaces, without a trailing newline
/// (runc's exact output).
pub fn state_json(state: &State) -> Result<String, CliError> {
    serde_json::to_string_pretty(state).map_err(|source| CliError::Json {
        what: "container state",
        source,
    })
}

/// The user name of `uid` in the contents of an `/etc/passwd` file, `#uid` when absent.
pub fn user_name(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let _password = fields.next()?;
            let id: u32 = fields.next()?.parse().ok()?;
            (id == uid && !name.is_empty()).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime_core::Status;
    use std::collections::BTreeMap;

    fn state(id: &str, pid: i32, status: Status, owner: &str) -> State {
        State {
            oci_version: "1.0.2".to_string(),
            id: id.to_string(),
            pid,
            status,
            bundle: format!("/bundles/{id}"),
            rootfs: format!("/bundles/{id}/rootfs"),
            created: "2026-11-27T21:13:34.424654712Z".to_string(),
            annotations: BTreeMap::new(),
            owner: owner.to_string(),
        }
    }

    #[test]
    fn empty_table_is_the_header_runc_prints() {
        // Byte-for-byte what `runc list` prints with no container.
        assert_eq!(
            list_table(&[]),
            "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
        );
    }

    #[test]
    fn table_matches_runc_layout() {
        // Layout observed from runc 1.1 for one created container (bundle /tmp/rb).
        let mut s = state("c1", 5541, Status::Created, "root");
        s.bundle = "/tmp/rb".to_string();
        assert_eq!(
            list_table(&[s]),
            "ID          PID         STATUS      BUNDLE      CREATED                          OWNER\n\
             c1          5541        created     /tmp/rb     2026-11-27T21:13:34.424654712Z   root\n"
        );
    }

    #[test]
    fn wide_cells_widen_their_column_only() {
        let states = [
            state("a-very-long-container-id", 1, Status::Running, "root"),
            state("b", 0, Status::Stopped, "#1000"),
        ];
        let table = list_table(&states);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        // Column 2 (PID) starts right after "a-very-long-container-id" + 3 spaces on each line.
        let pid_col = "a-very-long-container-id".len() + 3;
        for line in &lines {
            assert_eq!(&line[pid_col - 3..pid_col], "   ", "{line:?}");
            assert_ne!(&line[pid_col..pid_col + 1], " ", "{line:?}");
        }
        assert!(lines[2].starts_with("b  "));
        assert!(lines[2].ends_with("#1000"));
        assert!(lines[1].contains(" running "));
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let rows = vec![
            vec!["ééé".to_string(), "x".to_string()],
            vec!["abc".to_string(), "y".to_string()],
        ];
        let out = render_table(&rows);
        assert_eq!(out, "ééé         x\nabc         y\n");
    }

    #[test]
    fn json_list_is_compact_with_runc_keys() {
        let out = list_json(&[state("c1", 7, Status::Running, "root")]).unwrap();
        assert!(out.ends_with("]\n"));
        assert!(!out.contains("\n "));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let obj = v[0].as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut want = vec![
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "owner",
        ];
        want.sort();
        let mut got = keys.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(v[0]["status"], "running");
        assert_eq!(v[0]["pid"], 7);
        assert_eq!(v[0]["owner"], "root");
        // Field order as runc writes it.
        let pos = |k: &str| out.find(&format!("\"{k}\"")).unwrap();
        assert!(pos("ociVersion") < pos("id"));
        assert!(pos("created") < pos("owner"));
    }

    #[test]
    fn json_list_of_nothing_is_null() {
        assert_eq!(list_json(&[]).unwrap(), "null\n");
    }

    #[test]
    fn json_list_keeps_annotations() {
        let mut s = state("c1", 7, Status::Running, "root");
        s.annotations.insert("k".to_string(), "v".to_string());
        let v: serde_json::Value = serde_json::from_str(&list_json(&[s]).unwrap()).unwrap();
        assert_eq!(v[0]["annotations"]["k"], "v");
    }

    #[test]
    fn state_json_is_indented_by_two_without_trailing_newline() {
        let out = state_json(&state("c1", 7, Status::Created, "")).unwrap();
        assert!(out.starts_with("{\n  \"ociVersion\": \"1.0.2\",\n  \"id\": \"c1\",\n"));
        assert!(out.ends_with("\"owner\": \"\"\n}"));
        assert!(!out.contains("annotations"));
    }

    #[test]
    fn user_names_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment:x:5:\n\
                      broken\n\
                      daemon:x:1:1::/:/usr/sbin/nologin\n\
                      alice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 0), "root");
        assert_eq!(user_name(passwd, 1000), "alice");
        assert_eq!(user_name(passwd, 5), "#5");
        assert_eq!(user_name(passwd, 4242), "#4242");
        assert_eq!(user_name("", 0), "#0");
    }
}
