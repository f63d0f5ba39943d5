//! `spec` and `features`.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};

use serde::Serialize;

use super::{Ctx, bundle_dir, no_args, print};
use crate::args::Parsed;
use crate::error::CliError;

/// Serialises `value` with the given indentation (runc uses a tab for config.json and four
/// spaces for the features document).
pub(crate) fn to_json_indented<T: Serialize>(
    value: &T,
    indent: &[u8],
    what: &'static str,
) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value
        .serialize(&mut ser)
        .map_err(|source| CliError::Json { what, source })?;
    Ok(buf)
}

/// `berth spec`: writes a starter config.json (tab-indented, no trailing newline, like runc)
/// into the bundle directory, never overwriting one.
pub(crate) fn spec(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    no_args("spec", p)?;
    let bundle = bundle_dir(p)?;
    let meta = std::fs::metadata(&bundle).map_err(|e| CliError::io("bundle", &bundle, e))?;
    if !meta.is_dir() {
        return Err(CliError::io(
            "bundle",
            &bundle,
            std::io::Error::from(ErrorKind::NotADirectory),
        ));
    }
    let path = bundle.join("config.json");
    let spec = berth_runtime_core::spec::default_spec(p.flag("rootless"));
    let json = to_json_indented(&spec, b"\t", "config.json")?;
    // create_new: an existing file (or a symlink planted there) is never followed or replaced.
    let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(CliError::ConfigExists { path });
        }
        Err(e) => return Err(CliError::io("create", &path, e)),
    };
    if let Err(e) = file.write_all(&json) {
        // Do not leave a truncated config behind.
        let _ = std::fs::remove_file(&path);
        return Err(CliError::io("write", &path, e));
    }
    ctx.log.debug(|| format!("wrote {}", path.display()));
    Ok(0)
}

/// `berth features`: the runtime-spec features document, indented by four spaces.
pub(crate) fn features(_ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    no_args("features", p)?;
    let doc = berth_runtime_core::features::features();
    let mut json = to_json_indented(&doc, b"    ", "features")?;
    json.push(b'\n');
    // serde_json only produces UTF-8.
    print(&String::from_utf8_lossy(&json))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indentation() {
        let v = serde_json::json!({"a": [1], "b": {"c": true}});
        let tab = String::from_utf8(to_json_indented(&v, b"\t", "t").unwrap()).unwrap();
        assert_eq!(
            tab,
            "{\n\t\"a\": [\n\t\t1\n\t],\n\t\"b\": {\n\t\t\"c\": true\n\t}\n}"
        );
        let four = String::from_utf8(to_json_indented(&v, b"    ", "t").unwrap()).unwrap();
        assert!(four.contains("\n    \"a\": [\n        1\n    ],"), "{four}");
    }
}
