//! A small command-line parser with the conventions of runc's command line.
//!
//! * A flag may be written `-name` or `--name`; a value as `--name value` or `--name=value`.
//! * Boolean flags take no separate value; `--name=true` / `--name=false` is accepted (the
//!   words `1 t T TRUE true True` and `0 f F FALSE false False`).
//! * `--` ends the flags: everything after it is positional. A lone `-` is positional.
//! * `-h` / `--help` is always understood and sets [`Parsed::help`].
//! * Repeating a flag keeps the last value ([`Parsed::value`]); [`Parsed::values`] has them all.
//!
//! Global flags stop at the first positional argument (the command name); command flags may
//! come before or after the positional arguments ([`Mode`]).
//!
//! ```
//! use berth_cli::args::{parse, Flag, Mode};
//!
//! const FLAGS: &[Flag] = &[
//!     Flag::value(&["bundle", "b"], "DIR", "path to the bundle"),
//!     Flag::boolean(&["detach", "d"], "detach from the container"),
//! ];
//! let argv: Vec<String> = ["mycontainer", "-b=/srv/b", "--detach"]
//!     .iter().map(|s| s.to_string()).collect();
//! let parsed = parse(FLAGS, &argv, Mode::Interspersed).unwrap();
//! assert_eq!(parsed.value("bundle"), Some("/srv/b"));
//! assert!(parsed.flag("detach"));
//! assert_eq!(parsed.positionals, vec!["mycontainer".to_string()]);
//! ```

use crate::error::CliError;

/// Description of one flag a command (or the global level) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// Names without dashes; the first is the canonical one used for look-ups.
    pub names: &'static [&'static str],
    /// Placeholder of the value shown in help, `None` for a boolean flag.
    pub value: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

impl Flag {
    /// A flag taking a value.
    pub const fn value(
        names: &'static [&'static str],
        placeholder: &'static str,
        help: &'static str,
    ) -> Flag {
        Flag {
            names,
            value: Some(placeholder),
            help,
        }
    }

    /// A boolean flag.
    pub const fn boolean(names: &'static [&'static str], help: &'static str) -> Flag {
        Flag {
            names,
            value: None,
            help,
        }
    }

    /// The canonical name.
    pub fn name(&self) -> &'static str {
        self.names.first().copied().unwrap_or("")
    }

    /// The flag as shown in help: `--bundle DIR, -b DIR`.
    pub fn synopsis(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(if n.chars().count() == 1 { "-" } else { "--" });
            out.push_str(n);
            if let Some(v) = self.value {
                out.push(' ');
                out.push_str(v);
            }
        }
        out
    }
}

/// Where flags may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Stop at the first positional argument: it and everything after it become positionals
    /// untouched (used for the global flags, the first positional being the command).
    StopAtFirstPositional,
    /// Flags may appear anywhere until `--`.
    Interspersed,
}

/// Result of [`parse`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    values: Vec<(&'static str, String)>,
    bools: Vec<(&'static str, bool)>,
    /// Positional arguments in order.
    pub positionals: Vec<String>,
    /// `-h` or `--help` was given.
    pub help: bool,
}

impl Parsed {
    /// The value of a boolean flag (false when absent).
    pub fn flag(&self, name: &str) -> bool {
        self.bools
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, v)| *v)
    }

    /// Every value given for a repeatable flag taking a value (`--env A=1 -e B=2`), in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value given for a flag taking a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses Go-style boolean words.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `args` (without the program name) against `flags`.
///
/// Errors name the flag as the user wrote it: unknown flag, missing value, bad boolean value,
/// bad syntax (`---x`, `-=x`).
///
/// ```
/// use berth_cli::args::{parse, Flag, Mode};
///
/// const GLOBAL: &[Flag] = &[Flag::value(&["root"], "DIR", "state directory")];
/// let argv: Vec<String> = ["-root", "/run/x", "kill", "--all", "web", "KILL"]
///     .iter().map(|s| s.to_string()).collect();
/// // Global flags stop at the command; the rest is left for the command's own flags.
/// let global = parse(GLOBAL, &argv, Mode::StopAtFirstPositional).unwrap();
/// assert_eq!(global.value("root"), Some("/run/x"));
/// assert_eq!(global.positionals, ["kill", "--all", "web", "KILL"]);
///
/// let err = parse(GLOBAL, &["--bogus".to_string()], Mode::Interspersed).unwrap_err();
/// assert_eq!(err.to_string(), "flag provided but not defined: --bogus");
/// ```
pub fn parse(flags: &[Flag], args: &[String], mode: Mode) -> Result<Parsed, CliError> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.positionals.extend(args[i..].iter().cloned());
            break;
        }
        let body = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some(body) if arg != "-" => body,
            _ => {
                out.positionals.push(arg.clone());
                if mode == Mode::StopAtFirstPositional {
                    out.positionals.extend(args[i..].iter().cloned());
                    break;
                }
                continue;
            }
        };
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(CliError::BadFlagSyntax { flag: arg.clone() });
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(spec) = flags.iter().find(|f| f.names.contains(&name)) else {
            if name == "help" || name == "h" {
                out.help = match inline {
                    None => true,
                    Some(v) => parse_bool(v).ok_or_else(|| CliError::InvalidValue {
                        flag: "help",
                        value: v.to_string(),
                        expected: "a boolean (true or false)",
                    })?,
                };
                continue;
            }
            let dashes = &arg[..arg.len() - body.len()];
            return Err(CliError::UnknownFlag {
                flag: format!("{dashes}{name}"),
            });
        };
        match spec.value {
            None => {
                let v = match inline {
                    None => true,
                    Some(v) => parse_bool(v).ok_or_else(|| CliError::InvalidValue {
                        flag: spec.name(),
                        value: v.to_string(),
                        expected: "a boolean (true or false)",
                    })?,
                };
                out.bools.push((spec.name(), v));
            }
            Some(_) => {
                let v = match inline {
                    Some(v) => v.to_string(),
                    None => {
                        let Some(next) = args.get(i) else {
                            return Err(CliError::MissingValue { flag: arg.clone() });
                        };
                        i += 1;
                        next.clone()
                    }
                };
                out.values.push((spec.name(), v));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const FLAGS: &[Flag] = &[
        Flag::value(&["bundle", "b"], "DIR", "bundle"),
        Flag::value(&["pid-file"], "FILE", "pid file"),
        Flag::boolean(&["detach", "d"], "detach"),
        Flag::boolean(&["all", "a"], "all"),
    ];

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn p(v: &[&str]) -> Result<Parsed, CliError> {
        parse(FLAGS, &argv(v), Mode::Interspersed)
    }

    #[rstest]
    #[case(&["--bundle", "/x", "id"])]
    #[case(&["-bundle", "/x", "id"])]
    #[case(&["--bundle=/x", "id"])]
    #[case(&["-bundle=/x", "id"])]
    #[case(&["-b", "/x", "id"])]
    #[case(&["--b", "/x", "id"])]
    #[case(&["-b=/x", "id"])]
    #[case(&["id", "-b", "/x"])]
    #[case(&["id", "--bundle=/x"])]
    #[case(&["--bundle", "/old", "id", "--bundle", "/x"])]
    fn value_forms(#[case] args: &[&str]) {
        let parsed = p(args).unwrap();
        assert_eq!(parsed.value("bundle"), Some("/x"));
        assert_eq!(parsed.positionals, argv(&["id"]));
        assert!(!parsed.help);
    }

    #[rstest]
    #[case(&["--detach", "id"], true)]
    #[case(&["-d", "id"], true)]
    #[case(&["-detach", "id"], true)]
    #[case(&["id", "-d"], true)]
    #[case(&["--detach=true", "id"], true)]
    #[case(&["--detach=1", "id"], true)]
    #[case(&["--detach=T", "id"], true)]
    #[case(&["--detach=false", "id"], false)]
    #[case(&["-d=0", "id"], false)]
    #[case(&["--detach", "--detach=False", "id"], false)]
    #[case(&["id"], false)]
    fn bool_forms(#[case] args: &[&str], #[case] want: bool) {
        let parsed = p(args).unwrap();
        assert_eq!(parsed.flag("detach"), want);
        assert_eq!(parsed.positionals, argv(&["id"]));
    }

    #[test]
    fn boolean_flag_does_not_consume_next_argument() {
        let parsed = p(&["--all", "id", "KILL"]).unwrap();
        assert!(parsed.flag("all"));
        assert_eq!(parsed.positionals, argv(&["id", "KILL"]));
    }

    #[test]
    fn value_flag_consumes_next_argument_even_with_dash() {
        let parsed = p(&["--pid-file", "-weird", "id"]).unwrap();
        assert_eq!(parsed.value("pid-file"), Some("-weird"));
        assert_eq!(parsed.positionals, argv(&["id"]));
    }

    #[test]
    fn repeated_values_are_all_kept() {
        let parsed = p(&["--bundle", "/a", "-b=/b", "id", "--bundle", "/c"]).unwrap();
        assert_eq!(parsed.values("bundle"), ["/a", "/b", "/c"]);
        assert_eq!(parsed.value("bundle"), Some("/c"));
        assert!(parsed.values("pid-file").is_empty());
    }

    #[test]
    fn empty_inline_value_is_kept() {
        let parsed = p(&["--bundle=", "id"]).unwrap();
        assert_eq!(parsed.value("bundle"), Some(""));
    }

    #[test]
    fn inline_value_may_contain_equals() {
        let parsed = p(&["--bundle=a=b", "id"]).unwrap();
        assert_eq!(parsed.value("bundle"), Some("a=b"));
    }

    #[test]
    fn double_dash_ends_flags() {
        let parsed = p(&["-d", "--", "id", "--bundle", "-x"]).unwrap();
        assert!(parsed.flag("detach"));
        assert_eq!(parsed.value("bundle"), None);
        assert_eq!(parsed.positionals, argv(&["id", "--bundle", "-x"]));
    }

    #[test]
    fn lone_dash_is_positional() {
        let parsed = p(&["-", "id"]).unwrap();
        assert_eq!(parsed.positionals, argv(&["-", "id"]));
    }

    #[rstest]
    #[case(&["-h"])]
    #[case(&["--help"])]
    #[case(&["id", "-help"])]
    #[case(&["--help=true"])]
    fn help_is_always_known(#[case] args: &[&str]) {
        assert!(p(args).unwrap().help);
    }

    #[test]
    fn help_false_is_not_help() {
        assert!(!p(&["--help=false"]).unwrap().help);
    }

    #[rstest]
    #[case(&["--bogus"], "flag provided but not defined: --bogus")]
    #[case(&["id", "-x=1"], "flag provided but not defined: -x")]
    #[case(&["--bundle"], "flag needs an argument: --bundle")]
    #[case(&["id", "-b"], "flag needs an argument: -b")]
    #[case(&["---bundle", "x"], "bad flag syntax: ---bundle")]
    #[case(&["-=x"], "bad flag syntax: -=x")]
    #[case(&["--=x"], "bad flag syntax: --=x")]
    #[case(
        &["--detach=maybe"],
        "invalid value \"maybe\" for flag --detach: a boolean (true or false)"
    )]
    #[case(&["--help=xx"], "invalid value \"xx\" for flag --help: a boolean (true or false)")]
    fn errors(#[case] args: &[&str], #[case] msg: &str) {
        let err = p(args).unwrap_err();
        assert!(err.is_usage(), "{err:?}");
        assert_eq!(err.to_string(), msg);
    }

    #[test]
    fn stop_mode_keeps_everything_after_the_first_positional() {
        let parsed = parse(
            FLAGS,
            &argv(&["-d", "--bundle", "/b", "create", "--bogus", "-d", "--", "x"]),
            Mode::StopAtFirstPositional,
        )
        .unwrap();
        assert!(parsed.flag("detach"));
        assert_eq!(parsed.value("bundle"), Some("/b"));
        assert_eq!(
            parsed.positionals,
            argv(&["create", "--bogus", "-d", "--", "x"])
        );
    }

    #[test]
    fn stop_mode_still_rejects_unknown_flags_before_the_command() {
        let err = parse(
            FLAGS,
            &argv(&["--nope", "list"]),
            Mode::StopAtFirstPositional,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "flag provided but not defined: --nope");
    }

    #[test]
    fn empty_args() {
        let parsed = p(&[]).unwrap();
        assert_eq!(parsed, Parsed::default());
    }

    #[test]
    fn synopsis_shows_both_names() {
        assert_eq!(FLAGS[0].synopsis(), "--bundle DIR, -b DIR");
        assert_eq!(FLAGS[2].synopsis(), "--detach, -d");
    }
}
