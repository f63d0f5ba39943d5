//! The shim's command line as containerd writes it: Go `flag` style (one dash or two, long
//! names, `-flag value` or `-flag=value`, booleans without a value), all flags before the
//! action word (`start`, `delete`, or none for the daemon).

use crate::error::Error;

/// What containerd asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or find) the daemon, print its address.
    Start,
    /// Clean up after a dead daemon, print a DeleteResponse.
    Delete,
    /// Be the daemon (the listener is fd 3).
    Serve,
    /// `-v`: print the version.
    Version,
}

/// The parsed flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// `-namespace`.
    pub namespace: String,
    /// `-id`.
    pub id: String,
    /// `-address`: containerd's gRPC socket.
    pub address: String,
    /// `-publish-binary`.
    pub publish_binary: String,
    /// `-bundle` (delete; else the working directory).
    pub bundle: String,
    /// `-socket` (unused by containerd 1.6).
    pub socket: String,
    /// `-debug`.
    pub debug: bool,
}

fn bool_value(name: &str, v: Option<&str>) -> Result<bool, Error> {
    match v {
        None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") => Ok(true),
        Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") => Ok(false),
        Some(other) => Err(Error::Usage(format!(
            "invalid boolean {other:?} for -{name}"
        ))),
    }
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<(Args, Action), Error> {
    let mut a = Args::default();
    let mut version = false;
    let mut it = args.into_iter().peekable();
    let mut action = None;
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            action = Some(arg);
            break;
        };
        if flag.is_empty() {
            action = it.next();
            break;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        match name {
            "debug" => a.debug = bool_value(name, inline)?,
            "v" => version = bool_value(name, inline)?,
            "namespace" | "id" | "address" | "publish-binary" | "bundle" | "socket" => {
                let v = match inline {
                    Some(v) => v.to_owned(),
                    None => it
                        .next()
                        .ok_or_else(|| Error::Usage(format!("flag needs an argument: -{name}")))?,
                };
                match name {
                    "namespace" => a.namespace = v,
                    "id" => a.id = v,
                    "address" => a.address = v,
                    "publish-binary" => a.publish_binary = v,
                    "bundle" => a.bundle = v,
                    _ => a.socket = v,
                }
            }
            other => {
                return Err(Error::Usage(format!(
                    "flag provided but not defined: -{other}"
                )));
            }
        }
    }
    if version {
        return Ok((a, Action::Version));
    }
    let action = match action.as_deref() {
        None => Action::Serve,
        Some("start") => Action::Start,
        Some("delete") => Action::Delete,
        Some(other) => return Err(Error::Usage(format!("unknown action {other:?}"))),
    };
    if action != Action::Version && a.namespace.is_empty() {
        return Err(Error::Usage("-namespace is required".into()));
    }
    if a.id.is_empty() {
        return Err(Error::Usage("-id is required".into()));
    }
    Ok((a, action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<(Args, Action), Error> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn containerd_start_line() {
        let (a, act) = p("-namespace k8s.io -address /run/c.sock -publish-binary /usr/bin/containerd -id abc -debug start").unwrap();
        assert_eq!(act, Action::Start);
        assert_eq!(
            (a.namespace.as_str(), a.id.as_str(), a.address.as_str()),
            ("k8s.io", "abc", "/run/c.sock")
        );
        assert!(a.debug);
    }

    #[test]
    fn equals_and_double_dash_and_delete() {
        let (a, act) = p("--namespace=default -id=x -bundle /b -debug=false delete").unwrap();
        assert_eq!(act, Action::Delete);
        assert_eq!(a.bundle, "/b");
        assert!(!a.debug);
    }

    #[test]
    fn no_action_is_the_daemon() {
        assert_eq!(
            p("-namespace n -id x -address /a").unwrap().1,
            Action::Serve
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(p("-namespace n -id x frobnicate").is_err());
        assert!(p("-namespace n -bogus 1 -id x start").is_err());
        assert!(p("-namespace n -id").is_err());
        assert!(p("-id x start").is_err());
    }
}
