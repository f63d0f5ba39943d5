//! `berth image unpack|refs|inspect`: thin wrappers over the `berth-image` library.

use std::path::{Path, PathBuf};

use berth_image::{Image, ImageError, Platform, Selector, UnpackOptions};

use super::{Ctx, print};
use crate::args::Parsed;
use crate::error::CliError;

/// The library's errors, reported with what was being done and on which path.
fn fail(op: &'static str, path: &Path, e: ImageError) -> CliError {
    CliError::io(op, path, std::io::Error::other(e))
}

/// Splits `IMAGE[:REF]` (umoci's `--image layout:tag`, skopeo's `oci:path:ref` without the
/// transport): a path that exists as written is the image itself (a colon in a file name
/// still works); else the ref follows the first colon after which the path exists.
fn image_ref(arg: &str) -> (PathBuf, Option<String>) {
    if Path::new(arg).exists() {
        return (PathBuf::from(arg), None);
    }
    arg.match_indices(':')
        .map(|(i, _)| (&arg[..i], &arg[i + 1..]))
        .find(|(path, _)| !path.is_empty() && Path::new(path).exists())
        .map_or_else(
            || (PathBuf::from(arg), None),
            |(path, r)| {
                (
                    PathBuf::from(path),
                    Some(r.to_string()).filter(|r| !r.is_empty()),
                )
            },
        )
}

/// The image path and what to pick in it: `--ref` or the `:REF` of `IMAGE[:REF]` (not both,
/// unless they agree), `--digest`, `--platform`.
fn image_and_selector(p: &Parsed, arg: &str) -> Result<(PathBuf, Selector), CliError> {
    let (path, reference) = image_ref(arg);
    let mut sel = selector(p)?;
    if let Some(r) = reference {
        match &sel.reference {
            Some(flag) if *flag != r => {
                return Err(CliError::InvalidValue {
                    flag: "ref",
                    value: flag.clone(),
                    expected: "the same ref as the one in IMAGE:REF, or no --ref",
                });
            }
            _ => sel.reference = Some(r),
        }
    }
    Ok((path, sel))
}

fn selector(p: &Parsed) -> Result<Selector, CliError> {
    let platform = match p.value("platform").filter(|v| !v.is_empty()) {
        None => Platform::host(),
        Some(v) => Platform::parse(v).map_err(|_| CliError::InvalidValue {
            flag: "platform",
            value: v.to_string(),
            expected: "os/arch[/variant], e.g. linux/arm64/v8",
        })?,
    };
    let opt = |name: &str| p.value(name).filter(|v| !v.is_empty()).map(str::to_string);
    Ok(Selector::new(opt("ref"), opt("digest"), platform))
}

fn args<'a>(p: &'a Parsed, n: usize, expected: &'static str) -> Result<&'a [String], CliError> {
    let rest = p.positionals.get(1..).unwrap_or_default();
    if p.positionals.len() != n {
        return Err(CliError::ArgCount {
            command: "image",
            expected,
            got: p.positionals.len(),
        });
    }
    Ok(rest)
}

/// `berth image SUBCOMMAND ...`
pub(crate) fn image(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    match p.positionals.first().map(String::as_str) {
        Some("unpack") => unpack(ctx, p),
        Some("refs") => refs(p),
        Some("inspect") => inspect(p),
        Some("rm") => remove(p),
        _ => Err(CliError::ArgCount {
            command: "image",
            expected: "a subcommand: unpack IMAGE[:REF] BUNDLE, refs IMAGE, inspect IMAGE[:REF] \
                       or rm BUNDLE",
            got: p.positionals.len(),
        }),
    }
}

fn unpack(ctx: &Ctx, p: &Parsed) -> Result<i32, CliError> {
    let rest = args(p, 3, "\"unpack IMAGE[:REF] BUNDLE\"")?;
    let bundle = PathBuf::from(&rest[1]);
    let (image_path, sel) = image_and_selector(p, &rest[0])?;
    let image = Image::open(&image_path).map_err(|e| fail("open image", &image_path, e))?;
    let resolved = image
        .resolve(&sel)
        .map_err(|e| fail("resolve image", &image_path, e))?;
    let rootless = p.flag("rootless");
    let store = p
        .value("store")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let opts = UnpackOptions::default()
        .rootless(rootless)
        .mount(store.is_some())
        .store(store);
    let base = berth_runtime_core::spec::default_spec(rootless);
    let report = berth_image::unpack(&image, &resolved, &bundle, base, &opts)
        .map_err(|e| fail("unpack into", &bundle, e))?;
    for w in &report.warnings {
        ctx.log.warn(&format!("{}: {}", w.path, w.message));
    }
    ctx.log.debug(|| {
        format!(
            "unpacked {} into {} ({} layers unpacked, {} reused)",
            image_path.display(),
            report.bundle.display(),
            report.layers_unpacked,
            report.layers_reused
        )
    });
    Ok(0)
}

/// `berth image rm BUNDLE`: unmounts an overlay rootfs made from the layer store (if any)
/// and removes the bundle, without following symlinks out of it.
fn remove(p: &Parsed) -> Result<i32, CliError> {
    let rest = args(p, 2, "\"rm BUNDLE\"")?;
    let path = PathBuf::from(&rest[0]);
    berth_image::remove_bundle(&path).map_err(|e| fail("remove bundle", &path, e))?;
    Ok(0)
}

fn refs(p: &Parsed) -> Result<i32, CliError> {
    let rest = args(p, 2, "\"refs IMAGE\"")?;
    let path = PathBuf::from(&rest[0]);
    let image = Image::open(&path).map_err(|e| fail("open image", &path, e))?;
    let list = image.refs().map_err(|e| fail("list refs of", &path, e))?;
    let mut out = String::from("REF\tDIGEST\tMEDIA TYPE\tPLATFORM\n");
    for r in list {
        out.push_str(&format!(
            "{}{}\t{}\t{}\t{}\n",
            "  ".repeat(r.depth),
            r.name.as_deref().unwrap_or("-"),
            r.digest,
            r.media_type,
            r.platform.as_deref().unwrap_or("-")
        ));
    }
    print(&out)?;
    Ok(0)
}

fn inspect(p: &Parsed) -> Result<i32, CliError> {
    let rest = args(p, 2, "\"inspect IMAGE[:REF]\"")?;
    let (path, sel) = image_and_selector(p, &rest[0])?;
    let image = Image::open(&path).map_err(|e| fail("open image", &path, e))?;
    let resolved = image
        .resolve(&sel)
        .map_err(|e| fail("resolve image", &path, e))?;
    // Re-indent the config exactly as stored (all of its fields, known to berth or not).
    let value: serde_json::Value =
        serde_json::from_slice(&resolved.config_json).map_err(|source| CliError::Json {
            what: "image config",
            source,
        })?;
    let mut json = serde_json::to_string_pretty(&value).map_err(|source| CliError::Json {
        what: "image config",
        source,
    })?;
    json.push('\n');
    print(&json)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Mode, parse};

    fn parsed(v: &[&str]) -> Parsed {
        let args: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        let cmd = super::super::find("image").unwrap();
        parse(cmd.flags, &args, Mode::Interspersed).unwrap()
    }

    #[test]
    fn selector_from_flags() {
        let s = selector(&parsed(&[
            "unpack",
            "--ref",
            "v1",
            "--platform",
            "linux/arm/v7",
        ]))
        .unwrap();
        assert_eq!(s.reference.as_deref(), Some("v1"));
        assert_eq!(s.platform.variant.as_deref(), Some("v7"));
        let e = selector(&parsed(&["unpack", "--platform", "linux"])).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("--platform"), "{e}");
        assert_eq!(
            selector(&parsed(&["refs"])).unwrap().platform,
            Platform::host()
        );
    }

    #[test]
    fn image_and_ref_split_where_the_path_exists() {
        let tmp = crate::test_support::TempDir::new("image-ref");
        let dir = tmp.path().to_path_buf();
        let odd = dir.join("a:b");
        std::fs::create_dir_all(&odd).unwrap();
        let d = dir.to_str().unwrap();
        let split = |arg: &str| image_ref(arg);
        assert_eq!(split(d), (dir.clone(), None));
        assert_eq!(split(&format!("{d}:v1")), (dir.clone(), Some("v1".into())));
        assert_eq!(split(&format!("{d}:")), (dir.clone(), None));
        // A ref may hold a colon too; a path with one is taken whole when it exists.
        assert_eq!(
            split(&format!("{d}:r:1")),
            (dir.clone(), Some("r:1".into()))
        );
        assert_eq!(split(&format!("{d}/a:b")), (odd.clone(), None));
        assert_eq!(
            split(&format!("{d}/a:b:t")),
            (odd.clone(), Some("t".into()))
        );
        assert_eq!(split("/no/such:t"), (PathBuf::from("/no/such:t"), None));
        let (_, sel) = image_and_selector(&parsed(&["unpack", "--ref", "v1"]), d).unwrap();
        assert_eq!(sel.reference.as_deref(), Some("v1"));
        let (_, sel) =
            image_and_selector(&parsed(&["unpack", "--ref", "v1"]), &format!("{d}:v1")).unwrap();
        assert_eq!(sel.reference.as_deref(), Some("v1"));
        let e = image_and_selector(&parsed(&["unpack", "--ref", "v2"]), &format!("{d}:v1"))
            .unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("--ref"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn argument_counts() {
        assert!(args(&parsed(&["unpack", "img"]), 3, "x").is_err());
        assert_eq!(
            args(&parsed(&["unpack", "img", "b"]), 3, "x")
                .unwrap()
                .len(),
            2
        );
    }
}
