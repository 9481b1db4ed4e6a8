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
        &*d.top_qnames[0].qname,
        "db.example.com.shop.svc.cluster.local"
    );
    assert_eq!(
        d.top_qnames.iter().map(|q| q.queries).collect::<Vec<_>>(),
        [400, 100]
    );
    let src = &d.top_sources[0];
    assert_eq!(
        (
            &*src.source,
            &*src.pod,
            &*src.workload,
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

/// A window whose top names are `names` (none: a quiet window, only the share and the peak).
fn names_window(
    start: u64,
    names: &[(&str, f64)],
    sources: &[(&str, f64)],
) -> ExportMetricsServiceRequest {
    let (start, end) = (start * S, (start + 10) * S);
    let a = || vec![kv("interface", "eth0"), kv("eni", "eni-1")];
    let with = |k: &str, v: &str| {
        let mut x = a();
        x.push(kv(k, v));
        x
    };
    request(
        "n1",
        vec![
            gauge(
                names::LINKLOCAL_PPS_PEAK.otlp,
                vec![point(a(), start, end, 10.0)],
            ),
            gauge(
                names::DNS_SEARCH_EXPANSION_SHARE.otlp,
                vec![point(a(), start, end, 0.0)],
            ),
            gauge(
                names::DNS_TOP_QNAME_QUERIES.otlp,
                names
                    .iter()
                    .map(|(q, v)| point(with("qname", q), start, end, *v))
                    .collect(),
            ),
            gauge(
                names::DNS_TOP_SOURCE_QUERIES.otlp,
                sources
                    .iter()
                    .map(|(q, v)| point(with("source", q), start, end, *v))
                    .collect(),
            ),
        ],
    )
}

#[test]
fn the_hours_top_talkers_outlive_the_burst_at_their_busiest_window() {
    let t0 = 1_700_000_000;
    let mut f = Fleet::new(Limits::default());
    let send = |f: &mut Fleet, w: u64, names: &[(&str, f64)], sources: &[(&str, f64)]| {
        f.apply_metrics(
            &names_window(t0 + 10 * w, names, sources),
            at(t0 + 10 * w + 10),
        );
    };
    let hour = |f: &Fleet, now: u64| {
        let s = f.snapshot(at(now));
        let d = s.clusters[0].nodes[0].interfaces[0].dns.clone().unwrap();
        let names: Vec<(String, u64, String, u32)> = d
            .top_qnames_hour
            .iter()
            .map(|q| {
                (
                    q.qname.to_string(),
                    q.peak.peak_queries,
                    q.peak.peak_window_end.clone(),
                    q.peak.windows,
                )
            })
            .collect();
        (d, names)
    };
    let end = |w: u64| crate::time::rfc3339((t0 + 10 * w + 10) * S);
    // A burst in window 0 and a smaller rise in window 2; windows 1 and 3 are quiet.
    send(
        &mut f,
        0,
        &[("db.example.com", 1613.0), ("api.example.com", 20.0)],
        &[("10.0.1.5", 1633.0)],
    );
    send(&mut f, 1, &[], &[]);
    let (d, names) = hour(&f, t0 + 20);
    assert!(d.top_qnames.is_empty(), "the latest window has no names");
    assert_eq!(
        names,
        [
            ("db.example.com".to_string(), 1613, end(0), 1),
            ("api.example.com".to_string(), 20, end(0), 1)
        ]
    );
    assert_eq!(
        (
            &*d.top_sources_hour[0].source,
            d.top_sources_hour[0].peak.peak_queries
        ),
        ("10.0.1.5", 1633)
    );
    send(&mut f, 2, &[("db.example.com", 300.0)], &[]);
    send(&mut f, 3, &[], &[]);
    let (_, names) = hour(&f, t0 + 40);
    assert_eq!(names[0], ("db.example.com".to_string(), 1613, end(0), 2));
    // An hour after window 0 ended, its peak has left: the busiest window after it stands;
    // api.example.com (only in window 0) is gone.
    send(&mut f, 355, &[], &[]);
    f.expire(at(t0 + 10 + 3600 + 1));
    let (_, names) = hour(&f, t0 + 3611);
    assert_eq!(names, [("db.example.com".to_string(), 300, end(2), 2)]);
    // The snapshot carries the hour's busiest HOUR_SHOWN names, busiest first.
    let many: Vec<(String, f64)> = (0..30)
        .map(|i| (format!("n{i}.example"), 1000.0 + i as f64))
        .collect();
    let many: Vec<(&str, f64)> = many.iter().map(|(q, v)| (q.as_str(), *v)).collect();
    send(&mut f, 400, &many, &[]);
    let (d, _) = hour(&f, t0 + 4010);
    assert_eq!(d.top_qnames_hour.len(), crate::fleet::dns::HOUR_SHOWN);
    assert_eq!(&*d.top_qnames_hour[0].qname, "n29.example");
}
