use super::*;

#[test]
fn probe_attempts_are_counter_rises_over_the_history() {
    let t0 = 1_700_000_000;
    struct Case {
        name: &'static str,
        counter_start: u64,
        history: u64,
        /// ok, slow, timeout, error expected
        want: [u64; 4],
        removals: u64,
    }
    let cases = [
        // A fresh agent (counters began 1 s before the first window): all attempts count.
        Case {
            name: "fresh",
            counter_start: t0 - 1,
            history: 900,
            want: [30, 2, 1, 0],
            removals: 1,
        },
        // The collector joined an agent running for an hour: the first window is the base.
        Case {
            name: "joined late",
            counter_start: t0 - 3600,
            history: 900,
            want: [20, 2, 1, 0],
            removals: 1,
        },
        // A 15 s history holds the last two windows, their rises measured from the first
        // (kept as the base).
        Case {
            name: "short history",
            counter_start: t0 - 1,
            history: 15,
            want: [20, 2, 1, 0],
            removals: 1,
        },
    ];
    for c in cases {
        let limits = Limits {
            workload_history: Duration::from_secs(c.history),
            ..Limits::default()
        };
        let mut f = Fleet::new(limits);
        let windows = [
            (
                [
                    ("ok", 10.0),
                    ("slow", 0.0),
                    ("timeout", 0.0),
                    ("error", 0.0),
                ],
                0.0,
                Some(0.2),
            ),
            (
                [
                    ("ok", 20.0),
                    ("slow", 0.0),
                    ("timeout", 1.0),
                    ("error", 0.0),
                ],
                0.0,
                Some(1.0),
            ),
            (
                [
                    ("ok", 30.0),
                    ("slow", 2.0),
                    ("timeout", 1.0),
                    ("error", 0.0),
                ],
                1.0,
                Some(0.25),
            ),
        ];
        for (w, (counts, removals, p99)) in windows.into_iter().enumerate() {
            let start = (t0 + 10 * w as u64) * S;
            // Each window arrives as it ends; expiry runs meanwhile.
            let now = at(t0 + 10 * (w as u64 + 1));
            f.apply_metrics(
                &probe_window(
                    start,
                    start + 10 * S,
                    c.counter_start * S,
                    counts,
                    removals,
                    p99,
                ),
                now,
            );
            f.expire(now);
        }
        let s = f.snapshot(at(t0 + 30));
        let p = &s.clusters[0].nodes[0].probes[0];
        let got: Vec<u64> = ["ok", "slow", "timeout", "error"]
            .iter()
            .map(|r| p.attempts[*r])
            .collect();
        assert_eq!(got, c.want, "{}", c.name);
        assert_eq!(p.predicted_removals, c.removals, "{}", c.name);
        assert_eq!(p.latency_p99_seconds, Some(0.25));
        assert_eq!(p.latency_max_seconds, Some(0.5));
        assert_eq!(p.headroom, Some(4.0));
        assert_eq!(p.timeout_seconds, 1.0);
        assert_eq!(&*p.target, "http://10.0.1.5:8000/healthz");
        assert_eq!((&*p.probe, &*p.workload), ("readiness", "web"));
    }
    // A window without attempts has no p99: no headroom.
    let mut f = Fleet::new(Limits::default());
    f.apply_metrics(
        &probe_window(
            t0 * S,
            (t0 + 10) * S,
            t0 * S,
            [("ok", 0.0), ("slow", 0.0), ("timeout", 0.0), ("error", 0.0)],
            0.0,
            None,
        ),
        at(t0 + 10),
    );
    let s = f.snapshot(at(t0 + 10));
    assert_eq!(s.clusters[0].nodes[0].probes[0].headroom, None);
}
