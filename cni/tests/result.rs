//! Parsing results of every shape the plugins print.

use std::net::IpAddr;

use berth_cni::CniResult;

fn ips(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn parses_a_0_4_0_bridge_result() {
    let r = CniResult::parse(
        br#"{"cniVersion":"0.4.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:01"},
        {"name":"veth1","mac":"aa:bb:cc:dd:ee:02"},
        {"name":"eth0","mac":"aa:bb:cc:dd:ee:03","sandbox":"/run/netns/a"}],
        "ips":[{"version":"6","interface":2,"address":"fd00::3/64","gateway":"fd00::1"},
               {"version":"4","interface":2,"address":"10.89.0.3/24","gateway":"10.89.0.1"}],
        "routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.0.0.53"]}}"#,
    )
    .unwrap();
    assert_eq!(r.cni_version, "0.4.0");
    assert_eq!(r.interfaces[2].sandbox.as_deref(), Some("/run/netns/a"));
    assert_eq!(r.interfaces[0].mac.as_deref(), Some("aa:bb:cc:dd:ee:01"));
    assert_eq!(r.ip_of("eth0"), ips(&["10.89.0.3", "fd00::3"]));
    assert!(r.ip_of("cni0").is_empty());
    assert_eq!(r.routes[0].dst, "0.0.0.0/0");
    assert_eq!(r.routes[0].gw, None);
    assert_eq!(r.dns.nameservers, ["10.0.0.53"]);
}

#[test]
fn parses_a_1_0_0_and_a_0_2_0_result() {
    let r = CniResult::parse(
        br#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
        "ips":[{"address":"10.1.0.2/16","interface":0}]}"#,
    )
    .unwrap();
    assert_eq!(r.ip_of("eth0"), ips(&["10.1.0.2"]));
    assert_eq!(r.ips[0].gateway, None);

    let r = CniResult::parse(
        br#"{"cniVersion":"0.2.0","ip4":{"ip":"10.2.0.2/24","gateway":"10.2.0.1",
        "routes":[{"dst":"0.0.0.0/0","gw":"10.2.0.1"}]},"dns":{}}"#,
    )
    .unwrap();
    assert_eq!(r.ip_of("eth0"), ips(&["10.2.0.2"]));
    assert_eq!(r.routes[0].gw.as_deref(), Some("10.2.0.1"));
}

#[test]
fn refuses_what_is_no_result() {
    for bad in [
        &b"nope"[..],
        b"[]",
        br#"{"ips":[{"address":"10.0.0.1"}]}"#,
        br#"{"ips":[{"address":"10.0.0.1/33"}]}"#,
        br#"{"ips":[{"address":"10.0.0.1/24","interface":0}]}"#,
        br#"{"interfaces":"eth0"}"#,
    ] {
        assert!(
            CniResult::parse(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}
