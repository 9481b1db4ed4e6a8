//! The parser on the kernel's documented text (statvers 1.1, NFSv3 and v4.1 op lists, RPC
//! iostats 1.0 and 1.1; fixtures written by `testdata/generate.py`), malformed and huge input.

use super::*;

const T0: &str = include_str!("testdata/mountstats-t0.txt");
const RPC10: &str = include_str!("testdata/mountstats-rpc10.txt");

fn op<'a>(m: &'a NfsMount, name: &str) -> &'a OpCounters {
    m.ops.iter().find(|o| o.op == name).unwrap()
}

#[test]
fn nfs_mounts_only_with_their_counters() {
    let p = parse(T0);
    assert_eq!(p.mounts.len(), 2, "proc, tmpfs, sysfs, rootfs are not NFS");
    assert_eq!(p.mounts_omitted, 0);
    let efs = &p.mounts[0];
    assert_eq!(
        efs.device,
        "fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com:/"
    );
    assert_eq!(efs.mount_point, "/var/lib/mysql");
    assert_eq!(
        (efs.fstype.as_str(), efs.statvers.as_str()),
        ("nfs4", "1.1")
    );
    assert_eq!(efs.version.as_deref(), Some("4.1"));
    assert_eq!(efs.age_seconds, Some(3600));
    assert_eq!(efs.rpc_iostats.as_deref(), Some("1.1"));
    assert_eq!(
        efs.server(),
        "fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com"
    );
    assert_eq!(efs.efs_filesystem_id(), Some("fs-0123456789abcdef0"));
    // The NFSv4.1 client's whole procedure list, in the kernel's order.
    assert_eq!(efs.ops.len(), 69);
    assert_eq!(efs.ops[0].op, "NULL");
    assert_eq!(efs.ops[68].op, "READ_PLUS");
    let open = op(efs, "OPEN");
    assert_eq!(
        (
            open.ops,
            open.transmissions,
            open.timeouts,
            open.bytes_sent,
            open.bytes_recv
        ),
        (10000, 10000, 0, 3_000_000, 4_000_000)
    );
    assert_eq!(
        (open.queue_ms, open.rtt_ms, open.execute_ms, open.errors),
        (40, 38000, 41000, Some(3))
    );
    assert_eq!(op(efs, "LOOKUP").errors, Some(120));

    let v3 = &p.mounts[1];
    assert_eq!(v3.device, "10.0.2.5:/export/my data", "\\040 decoded");
    assert_eq!(
        (v3.fstype.as_str(), v3.version.as_deref()),
        ("nfs", Some("3"))
    );
    assert_eq!(v3.server(), "10.0.2.5");
    assert_eq!(v3.efs_filesystem_id(), None);
    assert_eq!(v3.ops.len(), 22, "the NFSv3 procedure list");
    let w = op(v3, "WRITE");
    assert_eq!(
        (w.ops, w.transmissions, w.timeouts, w.execute_ms),
        (100, 101, 1, 2900)
    );
}

#[test]
fn rpc_iostats_1_0_has_no_error_count() {
    let p = parse(RPC10);
    let m = &p.mounts[0];
    assert_eq!(m.rpc_iostats.as_deref(), Some("1.0"));
    assert_eq!(m.version.as_deref(), Some("4.0"));
    let r = op(m, "READ");
    assert_eq!((r.ops, r.rtt_ms, r.execute_ms, r.errors), (7, 30, 31, None));
}

#[test]
fn efs_ids_from_server_names() {
    for (server, id) in [
        (
            "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com",
            Some("fs-0123456789abcdef0"),
        ),
        (
            "fs-12345678.efs.eu-west-1.amazonaws.com",
            Some("fs-12345678"),
        ),
        (
            "us-east-1a.fs-0123456789abcdef0.efs.us-east-1.amazonaws.com",
            Some("fs-0123456789abcdef0"),
        ),
        (
            "fs-0123456789abcdef0.efs.cn-north-1.amazonaws.com.cn",
            Some("fs-0123456789abcdef0"),
        ),
        ("fs-xyz.efs.us-east-1.amazonaws.com", None),
        ("fs-0123456789abcdef0.efs.example.org", None),
        ("127.0.0.1", None),
        ("efs", None),
        ("", None),
    ] {
        assert_eq!(efs_id(server), id, "{server}");
    }
}

#[test]
fn malformed_lines_are_skipped_not_guessed() {
    let text = "\
device a:/ mounted on /a with fstype nfs4 statvers=1.1
\tage:\tnot-a-number
\tper-op statistics
\t        READ: 1 2 3 4 5 6 7
\t        OPEN: 1 2 3 4 5 6 7 8 9 10
\t       CLOSE: 1 2 3 4 5 6 7 x 9
\t     GETATTR: 1 2 3 4 5 6 7 99999999999999999999999 9
\t      LOOKUP: 5 5 0 1 1 0 10 12 0
\t: 1 2 3 4 5 6 7 8
no device mounted on /b with fstype nfs4 statvers=1.1
device c:/ mounted on /c with fstype nfs4
device d:/ mounted on
device e:/ mounted on /e with fstype nfs statvers=1.1
\t      ACCESS: 1 1 0 1 1 0 1 1 0
";
    let p = parse(text);
    assert_eq!(p.mounts.len(), 2, "{p:?}");
    assert_eq!(p.mounts[0].age_seconds, None);
    let names: Vec<&str> = p.mounts[0].ops.iter().map(|o| o.op.as_str()).collect();
    assert_eq!(
        names,
        ["LOOKUP"],
        "7 numbers, 10 numbers, a word, an overflow: skipped"
    );
    assert!(
        p.mounts[1].ops.is_empty(),
        "op lines before `per-op statistics` are not ops"
    );
}

#[test]
fn huge_input_is_bounded() {
    let mut text = String::new();
    for i in 0..(MAX_MOUNTS + 40) {
        text.push_str(&format!("device s:/{i} mounted on /m{i} with fstype nfs statvers=1.1\n\tper-op statistics\n\t        READ: 1 1 0 1 1 0 1 1 0\n"));
        // Thousands of other mounts between them.
        for j in 0..20 {
            text.push_str(&format!(
                "device tmpfs mounted on /t{i}/{j} with fstype tmpfs\n"
            ));
        }
    }
    text.push_str(
        "device s:/last mounted on /last with fstype nfs statvers=1.1\n\tper-op statistics\n",
    );
    for i in 0..1000 {
        text.push_str(&format!("\t{:>12}: 1 1 0 1 1 0 1 1 0\n", format!("OP{i}")));
    }
    text.push_str(&format!(
        "device {} mounted on /long with fstype nfs statvers=1.1\n",
        "x".repeat(100_000)
    ));
    let p = parse(&text);
    assert_eq!(p.mounts.len(), MAX_MOUNTS);
    assert_eq!(p.mounts_omitted, 42);
    let mut one = String::from(
        "device s:/x mounted on /x with fstype nfs4 statvers=1.1\n\tper-op statistics\n",
    );
    for i in 0..1000 {
        one.push_str(&format!("\t{:>12}: 1 1 0 1 1 0 1 1 0\n", format!("OP{i}")));
    }
    one.push_str(&format!(
        "device {}:/ mounted on /long with fstype nfs statvers=1.1\n",
        "x".repeat(100_000)
    ));
    let p = parse(&one);
    assert_eq!(
        (p.mounts[0].ops.len(), p.mounts[0].ops_omitted),
        (MAX_OPS, 1000 - MAX_OPS)
    );
    assert_eq!(p.mounts[1].device.len(), MAX_NAME);
}

proptest::proptest! {
    #[test]
    fn never_panics_on_any_text(s in "\\PC*") {
        let p = parse(&s);
        proptest::prop_assert!(p.mounts.len() <= MAX_MOUNTS);
    }

    #[test]
    fn never_panics_on_a_mangled_fixture(cut in 0usize..4000, junk in "[ -~\\t\\n]{0,40}") {
        let mut s = T0.as_bytes()[..cut.min(T0.len())].to_vec();
        s.extend_from_slice(junk.as_bytes());
        s.extend_from_slice(&T0.as_bytes()[cut.min(T0.len())..]);
        let p = parse(&String::from_utf8_lossy(&s));
        proptest::prop_assert!(p.mounts.len() <= 3);
    }
}
