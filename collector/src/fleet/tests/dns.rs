use super::*;

#[test]
fn allowance_and_dns_attach_to_the_interface_windows() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits::default());
    let cs = (t0 - 3600) * S;
    // Window w (10 s) with the allowance counters and unanswered total at its end.
    let send = |f: &mut Fleet, w: u64, allowance: &[(&str, f64)], unanswered: f64| {
        let start = t0 + 10 * w;
        let req = dns_window(start * S, (start + 10) * S, cs, allowance, unanswered);
        f.apply_metrics(&req, at(start + 10));
    };
    send(&mut f, 0, &[("linklocal", 3.0), ("pps", 7.0)], 2.0);
    let s = f.snapshot(at(t0 + 10));
    let i = &s.clusters[0].nodes[0].interfaces[0];
    assert_eq!(
        i.allowance_exceeded_latest
            .get("linklocal_allowance_exceeded"),
        Some(&0),
        "first window of a counter older than the window: rise unknown, 0"
    );
    // Second window: linklocal rises by 5, pps stays flat; 3 more unanswered.
    send(&mut f, 1, &[("linklocal", 8.0), ("pps", 7.0)], 5.0);
    let s = f.snapshot(at(t0 + 20));
    let i = &s.clusters[0].nodes[0].interfaces[0];
    assert_eq!(
        i.allowance_exceeded_latest["linklocal_allowance_exceeded"],
        5
    );
    assert_eq!(i.allowance_exceeded_latest["pps_allowance_exceeded"], 0);
    assert_eq!(
        i.windows.iter().map(|w| w.dns_peak_pps).collect::<Vec<_>>(),
        [Some(550), Some(550)]
    );
    let d = i.dns.as_ref().unwrap();
    assert_eq!(
        (d.unanswered_latest, d.unanswered_previous, d.queries_latest),
        (3, 0, 300)
    );
    assert_eq!(d.search_expansion_share, 0.8);
    assert_eq!(
        d.top_qnames[0].qname,
        "db.example.com.shop.svc.cluster.local"
    );
    assert_eq!(
        d.top_qnames.iter().map(|q| q.queries).collect::<Vec<_>>(),
        [400, 100]
    );
    let src = &d.top_sources[0];
    assert_eq!(
        (
            src.source.as_str(),
            src.pod.as_str(),
            src.workload.as_str(),
            src.queries,
            src.search_expansion_packets
        ),
        ("10.0.1.5", "web-1", "web", 500, 400)
    );
    // An older window arriving late does not replace the newer top names.
    f.apply_metrics(
        &dns_window((t0 - 10) * S, t0 * S, cs, &[], 1.0),
        at(t0 + 21),
    );
    let s = f.snapshot(at(t0 + 21));
    let i = &s.clusters[0].nodes[0].interfaces[0];
    assert_eq!(i.dns.as_ref().unwrap().top_qnames.len(), 2);
    assert_eq!(i.windows.len(), 3);
}

#[test]
fn a_future_stamped_window_is_refused_and_ena_counters_still_read_right() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits::default());
    let cs = (t0 - 3600) * S;
    let send = |f: &mut Fleet, start: u64, linklocal: f64, now: u64| {
        let req = dns_window(
            start * S,
            (start + 10) * S,
            cs,
            &[("linklocal", linklocal)],
            0.0,
        );
        f.apply_metrics(&req, at(now))
    };
    send(&mut f, t0, 3.0, t0 + 10);
    // A window a day ahead claiming no drops: it would be `latest` until then.
    let a = send(&mut f, t0 + 86_400, 3.0, t0 + 11);
    assert_eq!(a.accepted, 0, "{a:?}");
    // Just inside the five minutes of allowed skew: taken.
    assert!(send(&mut f, t0 + 280, 3.0, t0 + 11).accepted > 0);
    send(&mut f, t0 + 290, 9.0, t0 + 20);
    let s = f.snapshot(at(t0 + 20));
    let i = &s.clusters[0].nodes[0].interfaces[0];
    assert_eq!(
        i.allowance_exceeded_latest["linklocal_allowance_exceeded"],
        6
    );
    assert_eq!(
        s.ingest.bounds[Bound::PointsFuture.name()],
        a.rejected,
        "every point of the future window counted"
    );
    // A window older than the hour kept: refused and counted.
    let old = send(&mut f, t0 - 7200, 1.0, t0 + 21);
    assert_eq!(old.accepted, 0);
    let s = f.snapshot(at(t0 + 21));
    assert_eq!(s.ingest.bounds[Bound::PointsTooOld.name()], old.rejected);
}
