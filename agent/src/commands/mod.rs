//! The agent's commands: `once`, `watch`, `run`; each runs the one pipeline and chooses what
//! to do with its reports.

pub mod once;
pub mod run;
pub mod watch;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Node;
    use crate::report::Report;
    use crate::sources::ena::{allowances, Tracker};
    use crate::sources::eni::{annotate, EniInfo, Identity};
    use crate::sources::linklocal::meter::InterfaceWindow;
    use std::collections::BTreeMap;

    fn ena(linklocal: u64) -> Vec<(String, u64)> {
        [
            ("tx_timeout", 0),
            ("bw_in_allowance_exceeded", 0),
            ("bw_out_allowance_exceeded", 0),
            ("pps_allowance_exceeded", 0),
            ("conntrack_allowance_exceeded", 0),
            ("linklocal_allowance_exceeded", linklocal),
            ("conntrack_allowance_available", 9000),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A rise of `linklocal_allowance_exceeded` shows the same in `once` (JSON and table),
    /// `watch` and `/metrics`, with the ENI id from IMDS.
    #[test]
    fn allowance_rise_is_visible_in_every_exporter() {
        let w = InterfaceWindow {
            mac: Some("02:AA:00:00:00:01".into()),
            ..InterfaceWindow::capturing("ens5", [1100, 0, 0], 1100, [1100, 0, 0], [1100, 0, 0], 0)
        };
        let id = Identity {
            instance_id: "i-0abc".into(),
            instance_type: "c6i.large".into(),
            availability_zone: "eu-west-1b".into(),
            enis: BTreeMap::from([(
                "02:aa:00:00:00:01".into(),
                EniInfo::parse(
                    "eni-0f00",
                    "0",
                    "10.0.0.0/24",
                    "10.0.0.0/16",
                    "10.0.0.0/16",
                    "10.0.0.5",
                )
                .unwrap(),
            )]),
        };
        let mut t = Tracker::default();
        t.update("ens5", allowances(&ena(100)));
        let mut r = Report::new(Node::default(), 0, 1_000_000_000, &[w]);
        annotate(&mut r, &id);
        crate::sources::ena::apply(
            &mut r.interfaces[0],
            t.update("ens5", allowances(&ena(176))),
        );

        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["node"]["instance_id"], "i-0abc");
        assert_eq!(v["node"]["availability_zone"], "eu-west-1b");
        let i = &v["interfaces"][0];
        assert_eq!(i["eni_id"], "eni-0f00");
        assert_eq!(i["device_number"], 0);
        assert_eq!(i["allowance"]["linklocal_allowance_exceeded"], 76);
        assert_eq!(i["allowance"]["pps_allowance_exceeded"], 0);
        assert_eq!(i["conntrack_allowance_available"], 9000);

        let table = r.table();
        let row = table.lines().rfind(|l| l.starts_with("ens5")).unwrap();
        assert!(row.contains("eni-0f00") && row.contains("+76"), "{table}");

        let frame = watch::allowance_frame(&r);
        assert!(frame.contains("linklocal +76/76 DROPPING"), "{frame}");
        assert!(frame.contains("eni-0f00"), "{frame}");

        let m = crate::export::prometheus::Metrics::new();
        m.update(&r);
        let text = m.encode();
        assert!(
            text.contains(r#"headroom_ena_allowance_exceeded_total{interface="ens5",eni="eni-0f00",allowance="linklocal"} 76"#),
            "{text}"
        );
        assert!(
            text.contains(r#"headroom_linklocal_pps_peak{interface="ens5",eni="eni-0f00"} 1100"#)
        );
        assert!(text.contains(
            r#"headroom_ena_conntrack_allowance_available{interface="ens5",eni="eni-0f00"} 9000"#
        ));
    }
}
