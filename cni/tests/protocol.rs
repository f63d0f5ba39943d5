//! The protocol seen from a plugin: fake plugins (shell scripts) record what they get and
//! answer what the test wants. No root needed.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use berth_cni::{Cni, CniError};
use common::Scratch;
use serde_json::{Value, json};

/// A plugin that records its stdin (`log/<CMD>-<name>.json`), its CNI_ environment
/// (`log/<CMD>-<name>.env`) and the call (`log/calls`), and answers ADD with a result of
/// address `10.1.2.<n>/24` on `$CNI_IFNAME` (`n` is the plugin's number).
fn recorder(s: &Scratch, name: &str, n: u8) {
    let log = s.log();
    s.fake_plugin(
        name,
        &format!(
            r#"log={log}
cat > "$log/$CNI_COMMAND-{name}.json"
env | grep ^CNI_ | sort > "$log/$CNI_COMMAND-{name}.env"
echo "$CNI_COMMAND {name}" >> "$log/calls"
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{{"cniVersion":"1.0.0","interfaces":[{{"name":"%s","sandbox":"%s"}}],"ips":[{{"address":"10.1.2.{n}/24","interface":0}}]}}' "$CNI_IFNAME" "$CNI_NETNS"
fi"#,
            log = log.display()
        ),
    );
}

fn stdin_of(s: &Scratch, cmd: &str, name: &str) -> Value {
    serde_json::from_slice(&fs::read(s.log().join(format!("{cmd}-{name}.json"))).unwrap()).unwrap()
}

fn env_of(s: &Scratch, cmd: &str, name: &str) -> String {
    fs::read_to_string(s.log().join(format!("{cmd}-{name}.env"))).unwrap()
}

fn calls(s: &Scratch) -> Vec<String> {
    fs::read_to_string(s.log().join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn cni(s: &Scratch) -> Cni {
    Cni::new(
        s.conf(),
        vec![s.root.join("nothing-here"), s.bin()],
        s.cache(),
    )
}

fn two_plugin_list(s: &Scratch) {
    s.write_conf(
        "50-net.conflist",
        r#"{"cniVersion":"1.0.0","name":"net1","plugins":[
            {"type":"first","extra":1,"runtimeConfig":{"ignored":true}},
            {"type":"second","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
    );
}

#[test]
fn add_passes_config_env_prev_result_and_capabilities() {
    let s = Scratch::new();
    recorder(&s, "first", 1);
    recorder(&s, "second", 2);
    two_plugin_list(&s);
    let cni = cni(&s);
    cni.status().unwrap();
    let netns = s.root.clone(); // any existing path: the fakes never enter it
    let args = vec![
        ("IgnoreUnknown".to_owned(), "1".to_owned()),
        ("K8S_POD_NAME".to_owned(), "web".to_owned()),
    ];
    let rc = json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],
                    "bandwidth":{"ingressRate":1}});
    let r = cni.setup("c1", &netns, "eth0", &args, rc.clone()).unwrap();
    assert_eq!(
        r.ip_of("eth0"),
        ["10.1.2.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(calls(&s), ["ADD first", "ADD second"]);

    let first = stdin_of(&s, "ADD", "first");
    assert_eq!(first["name"], "net1");
    assert_eq!(first["cniVersion"], "1.0.0");
    assert_eq!(first["extra"], 1);
    assert!(first.get("prevResult").is_none(), "{first}");
    // No capabilities declared: its own runtimeConfig is left as written.
    assert_eq!(first["runtimeConfig"], json!({"ignored": true}));
    let second = stdin_of(&s, "ADD", "second");
    assert_eq!(second["prevResult"]["ips"][0]["address"], "10.1.2.1/24");
    assert_eq!(
        second["runtimeConfig"],
        json!({"portMappings": rc["portMappings"]})
    );

    let env = env_of(&s, "ADD", "first");
    assert!(env.contains("CNI_COMMAND=ADD\n"), "{env}");
    assert!(env.contains("CNI_CONTAINERID=c1\n"), "{env}");
    assert!(
        env.contains(&format!("CNI_NETNS={}\n", netns.display())),
        "{env}"
    );
    assert!(env.contains("CNI_IFNAME=eth0\n"), "{env}");
    assert!(
        env.contains("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web\n"),
        "{env}"
    );
    let path = format!(
        "CNI_PATH={}:{}\n",
        s.root.join("nothing-here").display(),
        s.bin().display()
    );
    assert!(env.contains(&path), "{env}");

    // The cache holds the result; a changed config does not change what DEL gets.
    assert_eq!(s.cache_files(), [s.cache().join("net1").join("c1-eth0")]);
    cni.check("c1", &netns, "eth0").unwrap();
    let check = stdin_of(&s, "CHECK", "first");
    assert_eq!(check["prevResult"]["ips"][0]["address"], "10.1.2.2/24");
    fs::remove_file(s.conf().join("50-net.conflist")).unwrap();
    cni.teardown("c1", Some(&netns), "eth0").unwrap();
    assert_eq!(
        calls(&s),
        [
            "ADD first",
            "ADD second",
            "CHECK first",
            "CHECK second",
            "DEL second",
            "DEL first"
        ]
    );
    let del = stdin_of(&s, "DEL", "first");
    assert_eq!(del["prevResult"]["ips"][0]["address"], "10.1.2.2/24");
    let env = env_of(&s, "DEL", "second");
    assert!(
        env.contains("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web\n"),
        "{env}"
    );
    assert_eq!(
        stdin_of(&s, "DEL", "second")["runtimeConfig"],
        json!({"portMappings": rc["portMappings"]})
    );
    assert!(s.cache_files().is_empty());

    // Idempotent: nothing cached, no netns.
    cni.teardown("c1", None, "eth0").unwrap();
    assert_eq!(calls(&s).len(), 6);
    let e = cni.check("c1", &netns, "eth0").unwrap_err();
    assert!(matches!(e, CniError::NotSetUp { .. }), "{e:?}");
}

#[test]
fn missing_netns_runs_del_with_empty_cni_netns() {
    let s = Scratch::new();
    recorder(&s, "first", 1);
    recorder(&s, "second", 2);
    two_plugin_list(&s);
    let cni = cni(&s);
    let ns = s.root.join("ns");
    fs::write(&ns, "").unwrap();
    cni.setup("c2", &ns, "eth1", &[], Value::Null).unwrap();
    fs::remove_file(&ns).unwrap();
    cni.teardown("c2", Some(&ns), "eth1").unwrap();
    let env = env_of(&s, "DEL", "first");
    assert!(env.contains("CNI_NETNS=\n"), "{env}");
    assert!(s.cache_files().is_empty());
}

#[test]
fn missing_plugin_binary_is_a_clear_error() {
    let s = Scratch::new();
    recorder(&s, "first", 1);
    two_plugin_list(&s); // "second" is missing
    let cni = cni(&s);
    let e = cni.status().unwrap_err();
    assert!(
        matches!(&e, CniError::PluginNotFound { plugin, .. } if plugin == "second"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("\"second\""), "{msg}");
    assert!(msg.contains(&s.bin().display().to_string()), "{msg}");
    let e = cni
        .setup("c3", &s.root, "eth0", &[], Value::Null)
        .unwrap_err();
    assert!(matches!(e, CniError::PluginNotFound { .. }), "{e:?}");
    assert!(
        calls(&s).is_empty(),
        "nothing runs when a plugin is missing"
    );
    assert!(s.cache_files().is_empty());
}

#[test]
fn plugin_error_json_is_surfaced_and_what_was_added_is_deleted() {
    let s = Scratch::new();
    recorder(&s, "first", 1);
    s.fake_plugin(
        "second",
        &format!(
            r#"echo "$CNI_COMMAND second" >> {}/calls
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","code":11,"msg":"no more addresses","details":"range 10.9.0.0/30 is full"}}'
  exit 1
fi"#,
            s.log().display()
        ),
    );
    two_plugin_list(&s);
    let cni = cni(&s);
    let e = cni
        .setup("c4", &s.root, "eth0", &[], Value::Null)
        .unwrap_err();
    match &e {
        CniError::Plugin {
            plugin,
            command,
            code,
            msg,
            details,
            ..
        } => {
            assert_eq!(plugin, "second");
            assert_eq!(*command, "ADD");
            assert_eq!(*code, Some(11));
            assert_eq!(msg, "no more addresses");
            assert_eq!(details, "range 10.9.0.0/30 is full");
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("no more addresses") && text.contains("code 11"),
        "{text}"
    );
    assert_eq!(
        calls(&s),
        ["ADD first", "ADD second", "DEL second", "DEL first"]
    );
    // The rollback's DEL carries what had been added.
    assert_eq!(
        stdin_of(&s, "DEL", "first")["prevResult"]["ips"][0]["address"],
        "10.1.2.1/24"
    );
    assert!(s.cache_files().is_empty());
}

#[test]
fn plugin_failing_without_json_reports_status_and_stderr() {
    let s = Scratch::new();
    s.fake_plugin("first", "echo 'kaboom' >&2; exit 3");
    s.write_conf(
        "a.conf",
        r#"{"cniVersion":"0.4.0","name":"single","type":"first"}"#,
    );
    let e = cni(&s)
        .setup("c5", &s.root, "eth0", &[], Value::Null)
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("kaboom") && text.contains("exit status: 3"),
        "{text}"
    );
}

#[test]
fn a_plugin_that_hangs_is_killed_at_the_timeout() {
    let s = Scratch::new();
    s.fake_plugin("first", "if [ \"$CNI_COMMAND\" = ADD ]; then sleep 30; fi");
    s.write_conf(
        "a.conf",
        r#"{"cniVersion":"1.0.0","name":"slow","type":"first"}"#,
    );
    let cni = cni(&s).with_timeout(Duration::from_millis(300));
    let t = Instant::now();
    let e = cni
        .setup("c6", &s.root, "eth0", &[], Value::Null)
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(matches!(e, CniError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[test]
fn an_invalid_result_is_refused_and_rolled_back() {
    let s = Scratch::new();
    s.fake_plugin(
        "first",
        &format!(
            "echo \"$CNI_COMMAND\" >> {}/calls; [ \"$CNI_COMMAND\" = ADD ] && echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"300.1.1.1/24\"}}]}}'; exit 0",
            s.log().display()
        ),
    );
    s.write_conf(
        "a.conf",
        r#"{"cniVersion":"1.0.0","name":"bad","type":"first"}"#,
    );
    let e = cni(&s)
        .setup("c7", &s.root, "eth0", &[], Value::Null)
        .unwrap_err();
    assert!(e.to_string().contains("300.1.1.1/24"), "{e}");
    assert_eq!(calls(&s), ["ADD", "DEL"]);
    assert!(s.cache_files().is_empty());
}

#[test]
fn config_files_first_by_name_and_single_plugin_configs_wrapped() {
    let s = Scratch::new();
    let cni = cni(&s);
    assert!(cni.network().unwrap().is_none());
    let e = cni.status().unwrap_err();
    assert!(matches!(e, CniError::NoNetwork { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&s.conf().display().to_string()),
        "{e}"
    );

    s.write_conf("README", "not a config");
    s.write_conf(
        "20-b.conflist",
        r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"x"}]}"#,
    );
    s.write_conf(
        "10-a.conf",
        r#"{"cniVersion":"0.4.0","name":"a","type":"bridge","bridge":"br9"}"#,
    );
    let list = cni.network().unwrap().unwrap();
    assert_eq!(list.name(), "a");
    assert_eq!(list.cni_version(), "0.4.0");
    assert_eq!(list.plugins().len(), 1);
    assert_eq!(list.plugins()[0].plugin_type(), "bridge");
    assert_eq!(list.plugins()[0].raw()["bridge"], "br9");
    assert_eq!(list.source(), s.conf().join("10-a.conf"));
}

#[test]
fn malformed_configs_are_errors_naming_the_file_and_field() {
    let cases = [
        ("{not json", "not valid JSON"),
        (
            r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
            "name is missing",
        ),
        (
            r#"{"name":"n","plugins":[{"type":"x"}]}"#,
            "cniVersion is missing",
        ),
        (
            r#"{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"x"}]}"#,
            "cniVersion \"9.9.9\"",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
            "plugins is empty",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x"},{}]}"#,
            "plugins[1].type is missing",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}"#,
            "plugins[0].type",
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"a/b","plugins":[{"type":"x"}]}"#,
            "name \"a/b\"",
        ),
    ];
    for (text, want) in cases {
        let s = Scratch::new();
        let file = s.write_conf("00-bad.conflist", text);
        let e = cni(&s).network().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains(want), "{text}: {msg}");
        assert!(cni(&s).status().is_err());
    }
}

#[test]
fn bad_arguments_are_refused_before_any_plugin_runs() {
    let s = Scratch::new();
    recorder(&s, "first", 1);
    recorder(&s, "second", 2);
    two_plugin_list(&s);
    let cni = cni(&s);
    let kv = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    type Case<'a> = (&'a str, &'a str, Vec<(String, String)>, Value);
    let bad: [Case; 6] = [
        ("../x", "eth0", vec![], Value::Null),
        ("c", "", vec![], Value::Null),
        ("c", "a/b", vec![], Value::Null),
        ("c", "eth0", kv("A=B", "1"), Value::Null),
        ("c", "eth0", kv("A", "1;B=2"), Value::Null),
        ("c", "eth0", vec![], json!([1])),
    ];
    for (id, ifname, args, rc) in bad {
        let e = cni.setup(id, &s.root, ifname, &args, rc).unwrap_err();
        assert!(matches!(e, CniError::InvalidArgument { .. }), "{e:?}");
    }
    assert!(calls(&s).is_empty());
}
