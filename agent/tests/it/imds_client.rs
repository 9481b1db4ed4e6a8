//! The agent's IMDSv2 client against the fake IMDS on 127.0.0.1 (no root needed): token
//! first, token refreshed before it expires, 401 → one retry with a new token, 403/404 and
//! malformed payloads → errors, never panics.

use headroom_agent::sources::eni::imds::{ImdsClient, ImdsError};
use headroom_testbed::imds::{two_eni_instance, FakeImds};
use std::time::Duration;

const MAC0: &str = "02:00:00:00:00:01";
const MAC1: &str = "02:00:00:00:00:02";

fn fake() -> FakeImds {
    let inst = two_eni_instance(&[MAC0.into(), MAC1.into()]);
    FakeImds::new(&inst, "127.0.0.1:0".parse().unwrap(), None).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn identity_maps_every_mac_to_its_eni_and_finds_the_resolver() {
    let f = fake();
    let mut c = ImdsClient::new(&f.endpoint());
    let id = rt().block_on(c.identity()).unwrap();
    assert_eq!(id.instance_id, "i-0123456789abcdef0");
    assert_eq!(id.instance_type, "m5.large");
    assert_eq!(id.availability_zone, "us-east-1a");
    assert_eq!(id.enis.len(), 2);
    assert_eq!(id.enis[MAC0].interface_id, "eni-0000aaaabbbbcccc0");
    assert_eq!(id.enis[MAC1].interface_id, "eni-0111aaaabbbbcccc1");
    assert_eq!(id.enis[MAC1].device_number, 1);
    assert_eq!(id.enis[MAC0].vpc_cidrs.len(), 2);
    // /16 primary: 10.0.0.2; the secondary 100.64.0.0/16 gives none.
    assert_eq!(id.vpc_resolver().unwrap().to_string(), "10.0.0.2");
    // One token, then GETs only: 3 instance fields + listing + 6 per ENI = 16.
    let n = f.counts();
    assert_eq!((n.token_puts, n.gets, n.unauthorized), (1, 16, 0), "{n:?}");
    assert_eq!(c.requests, 17);
    assert_eq!(n.connections, 1, "one keep-alive connection");
}

#[test]
fn token_is_refreshed_before_it_expires() {
    let f = fake();
    let mut c = ImdsClient::new(&f.endpoint());
    c.token_ttl = Duration::from_secs(2);
    let rt = rt();
    rt.block_on(c.get("instance-id")).unwrap();
    // 2 s TTL, refreshed in its last quarter: at 1.6 s a new token is asked for, no 401 seen.
    std::thread::sleep(Duration::from_millis(1600));
    rt.block_on(c.get("instance-id")).unwrap();
    let n = f.counts();
    assert_eq!((n.token_puts, n.unauthorized), (2, 0), "{n:?}");
}

#[test]
fn revoked_token_gets_one_retry() {
    let f = fake();
    let mut c = ImdsClient::new(&f.endpoint());
    let rt = rt();
    rt.block_on(c.get("instance-id")).unwrap();
    f.expire_tokens();
    assert_eq!(rt.block_on(c.get("instance-type")).unwrap(), "m5.large");
    let n = f.counts();
    assert_eq!((n.token_puts, n.unauthorized), (2, 1), "{n:?}");
}

#[test]
fn refusals_and_malformed_payloads_are_errors_not_panics() {
    let f = fake();
    let rt = rt();
    // 403 on the token (IMDS disabled for this caller).
    f.set_status("/latest/api/token", Some(403));
    let mut c = ImdsClient::new(&f.endpoint());
    let e = rt.block_on(c.identity()).unwrap_err();
    assert!(matches!(e, ImdsError::Status { status: 403, .. }), "{e}");
    f.set_status("/latest/api/token", None);
    // 404 on a field.
    f.set_status("/latest/meta-data/instance-type", Some(404));
    let e = rt.block_on(c.identity()).unwrap_err();
    assert!(matches!(e, ImdsError::Status { status: 404, .. }), "{e}");
    f.set_status("/latest/meta-data/instance-type", None);
    // JSON where a MAC listing should be.
    f.set_path(
        "network/interfaces/macs/",
        "{\"macs\": [\"02:00:00:00:00:01\"]}",
    );
    let e = rt.block_on(c.identity()).unwrap_err();
    assert!(matches!(e, ImdsError::Invalid { .. }), "{e}");
    f.set_path("network/interfaces/macs/", &format!("{MAC0}/\n{MAC1}/"));
    // A malformed ENI is left out; the other stays.
    f.set_path(
        &format!("network/interfaces/macs/{MAC1}/device-number"),
        "{\"device\": 1}",
    );
    f.set_path(
        &format!("network/interfaces/macs/{MAC0}/vpc-ipv4-cidr-blocks"),
        "10.0.0.0/16\n\u{0}\u{1}garbage",
    );
    let id = rt.block_on(c.identity()).unwrap();
    assert!(id.enis.is_empty(), "{id:?}");
    f.set_path(
        &format!("network/interfaces/macs/{MAC0}/vpc-ipv4-cidr-blocks"),
        "10.0.0.0/16",
    );
    let id = rt.block_on(c.identity()).unwrap();
    assert_eq!(id.enis.keys().collect::<Vec<_>>(), [MAC0]);
    // Multi-line instance-id.
    f.set_path("instance-id", "i-1\ni-2");
    assert!(matches!(
        rt.block_on(c.identity()).unwrap_err(),
        ImdsError::Invalid { .. }
    ));
}

#[test]
fn nothing_listening_is_unreachable_and_quick() {
    let mut f = fake();
    let endpoint = f.endpoint();
    f.stop();
    let mut c = ImdsClient::new(&endpoint);
    let t = std::time::Instant::now();
    let e = rt().block_on(c.identity()).unwrap_err();
    assert!(e.unreachable(), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // And back up: the same client recovers.
    f.start().unwrap();
    assert!(rt().block_on(c.identity()).is_ok());
}

#[test]
fn ipv6_endpoint() {
    let inst = two_eni_instance(&[MAC0.into()]);
    let Ok(f) = FakeImds::new(&inst, "[::1]:0".parse().unwrap(), None) else {
        // As every other skip: a reason here, a failure in CI.
        assert!(
            !headroom_testbed::in_ci(),
            "CI=true but this test cannot run: ipv6_endpoint: needs an IPv6 loopback (::1)"
        );
        eprintln!("SKIP ipv6_endpoint: no IPv6 loopback here");
        return;
    };
    let endpoint = format!("http://[::1]:{}", f.addr.port());
    let endpoint = headroom_agent::sources::eni::imds::validate_endpoint(&endpoint).unwrap();
    let mut c = ImdsClient::new(&endpoint);
    let id = rt().block_on(c.identity()).unwrap();
    assert_eq!(id.enis[MAC0].interface_id, "eni-0000aaaabbbbcccc0");
}
