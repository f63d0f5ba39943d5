//! Finding a container, pod or image from what a person types: a full id, a name, or a
//! unique id prefix, in that order (as docker resolves them).

use crate::error::CtlError;

/// What kind of object an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A container.
    Container,
    /// A pod sandbox.
    Pod,
}

/// One object that a query may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its kind.
    pub kind: Kind,
    /// Its full id.
    pub id: String,
    /// Its metadata name.
    pub name: String,
    /// For a container: its pod's id.
    pub pod: Option<String>,
}

/// Which object wins when a name is both a container's and the pod that holds it (as
/// `berthctl run --name N` makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefer {
    /// The pod (stop, rm: the pod takes its containers with it).
    Pod,
    /// The container (inspect).
    Container,
}

/// The candidate `query` names. Exact ids first, then names, then id prefixes; more than
/// one match at a step is [`CtlError::Ambiguous`], none at all [`CtlError::NotFound`].
pub fn resolve<'a>(
    query: &str,
    candidates: &'a [Candidate],
    prefer: Prefer,
    kinds: &'static str,
) -> Result<&'a Candidate, CtlError> {
    if query.is_empty() {
        return Err(CtlError::Usage(format!("an empty {kinds} id")));
    }
    // A name may be a container's and its pod's both; an id prefix must be unique.
    let pick =
        |matches: Vec<&'a Candidate>, names: bool| -> Result<Option<&'a Candidate>, CtlError> {
            match matches.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(*one)),
                [a, b] if names && a.kind != b.kind => {
                    let (c, p) = if a.kind == Kind::Container {
                        (a, b)
                    } else {
                        (b, a)
                    };
                    if c.pod.as_deref() == Some(p.id.as_str()) {
                        Ok(Some(if prefer == Prefer::Pod { *p } else { *c }))
                    } else {
                        Err(ambiguous(query, &matches))
                    }
                }
                _ => Err(ambiguous(query, &matches)),
            }
        };
    for step in [Step::Id, Step::Name, Step::Prefix] {
        let names = step == Step::Name;
        let step = |c: &Candidate| match step {
            Step::Id => c.id == query,
            Step::Name => c.name == query,
            Step::Prefix => c.id.starts_with(query),
        };
        if let Some(found) = pick(candidates.iter().filter(|c| step(c)).collect(), names)? {
            return Ok(found);
        }
    }
    Err(CtlError::NotFound {
        kinds,
        query: query.to_string(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Id,
    Name,
    Prefix,
}

fn ambiguous(query: &str, matches: &[&Candidate]) -> CtlError {
    let matches = matches
        .iter()
        .map(|c| {
            let kind = match c.kind {
                Kind::Container => "container",
                Kind::Pod => "pod",
            };
            format!("{kind} {} ({})", crate::table::short_id(&c.id), c.name)
        })
        .collect::<Vec<_>>()
        .join(", ");
    CtlError::Ambiguous {
        query: query.to_string(),
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(kind: Kind, id: &str, name: &str, pod: Option<&str>) -> Candidate {
        Candidate {
            kind,
            id: id.into(),
            name: name.into(),
            pod: pod.map(String::from),
        }
    }

    fn set() -> Vec<Candidate> {
        vec![
            c(Kind::Pod, "aaa111", "web", None),
            c(Kind::Container, "aab222", "web", Some("aaa111")),
            c(Kind::Container, "bbb333", "db", Some("ccc444")),
            c(Kind::Pod, "ccc444", "other", None),
            c(Kind::Container, "ddd555", "aab", Some("aaa111")),
        ]
    }

    fn id(q: &str, p: Prefer) -> Result<String, String> {
        let s = set();
        resolve(q, &s, p, "container or pod")
            .map(|c| c.id.clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn exact_id_then_name_then_prefix() {
        assert_eq!(id("bbb333", Prefer::Pod).unwrap(), "bbb333");
        assert_eq!(id("db", Prefer::Pod).unwrap(), "bbb333");
        assert_eq!(id("cc", Prefer::Pod).unwrap(), "ccc444");
        // A name beats an id prefix.
        assert_eq!(id("aab", Prefer::Pod).unwrap(), "ddd555");
    }

    #[test]
    fn a_container_and_its_pod_of_one_name() {
        assert_eq!(id("web", Prefer::Pod).unwrap(), "aaa111");
        assert_eq!(id("web", Prefer::Container).unwrap(), "aab222");
    }

    #[test]
    fn ambiguous_prefix_and_unknown() {
        let e = id("a", Prefer::Pod).unwrap_err();
        assert!(e.starts_with("\"a\" is ambiguous: it matches"), "{e}");
        assert!(
            e.contains("pod aaa111 (web)") && e.contains("container aab222 (web)"),
            "{e}"
        );
        assert_eq!(
            id("zzz", Prefer::Pod).unwrap_err(),
            "no container or pod matches \"zzz\""
        );
        assert!(id("", Prefer::Pod).is_err());
    }

    #[test]
    fn same_name_in_two_pods_is_ambiguous() {
        let s = vec![
            c(Kind::Container, "x1", "app", Some("p1")),
            c(Kind::Container, "x2", "app", Some("p2")),
        ];
        assert!(resolve("app", &s, Prefer::Pod, "container").is_err());
        let s = vec![
            c(Kind::Container, "x1", "app", Some("p1")),
            c(Kind::Pod, "p2", "app", None),
        ];
        assert!(resolve("app", &s, Prefer::Pod, "container").is_err());
    }
}
