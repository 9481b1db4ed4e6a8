use super::*;

#[test]
fn windows_land_in_order_even_when_late() {
    let mut f = Fleet::new(Limits::default());
    let t0 = 1_700_000_000;
    f.apply_metrics(&window("n1", t0 + 20, 300.0, 5.0), at(t0 + 31));
    // A window from during an outage arrives later.
    let a = f.apply_metrics(&window("n1", t0 + 10, 900.0, 2.0), at(t0 + 32));
    assert_eq!(
        a,
        Applied {
            accepted: 5,
            rejected: 0,
            over_series: 0
        }
    );
    let s = f.snapshot(at(t0 + 33));
    assert_eq!(s.nodes, 1);
    let n = &s.clusters[0].nodes[0];
    assert_eq!(s.clusters[0].name, "default");
    assert_eq!(n.name, "n1");
    assert_eq!(n.service_name.as_deref(), Some("headroom-agent"));
    // Drops are a cumulative counter without the eni attribute: it forms its own series.
    let i = n.interfaces.iter().find(|i| i.eni_id.is_some()).unwrap();
    assert_eq!(i.interface, "eth0");
    assert_eq!(i.windows.len(), 2);
    assert_eq!(i.windows[0].peak_pps, 900);
    assert_eq!(i.windows[0].seconds, 10.0);
    assert_eq!(i.latest.as_ref().unwrap().peak_pps, 300);
    assert_eq!(i.peak_pps_last_hour, 900);
    assert!((i.windows[0].utilization - 900.0 / 1024.0).abs() < 1e-9);
    let v = serde_json::to_value(&s).unwrap();
    let w = &v["clusters"][0]["nodes"][0]["interfaces"][0]["latest"];
    for k in [
        "peak_pps",
        "mean_pps",
        "utilization",
        "limit_pps",
        "kernel_drops",
    ] {
        assert!(!w[k].is_null(), "{k} in {w}");
    }
}

#[test]
fn drops_per_window_come_from_the_counter() {
    let mut f = Fleet::new(Limits::default());
    let t0 = 1_700_000_000;
    let mut req = window("n1", t0, 10.0, 2.0);
    let mut req2 = window("n1", t0 + 10, 10.0, 7.0);
    for r in [&mut req, &mut req2] {
        // Give the drops the same attributes as the gauges.
        if let Some(metric::Data::Sum(s)) =
            &mut r.resource_metrics[0].scope_metrics[0].metrics[4].data
        {
            s.data_points[0].attributes.push(kv("eni", "eni-1"));
        }
    }
    f.apply_metrics(&req, at(t0 + 11));
    f.apply_metrics(&req2, at(t0 + 21));
    let s = f.snapshot(at(t0 + 22));
    let i = &s.clusters[0].nodes[0].interfaces[0];
    assert_eq!(i.windows[0].kernel_drops, 0);
    assert_eq!(i.windows[1].kernel_drops, 5);
}

/// A sidecar agent (one pod on EKS Fargate) is a one-pod "node" flagged `sidecar`, with its
/// pod and pod IP; its ENI row is the pod's own. A node agent's node has no flag.
#[test]
fn a_sidecar_is_a_one_pod_node_flagged_sidecar() {
    let mut f = Fleet::new(Limits::default());
    let t0 = 1_700_000_000;
    let mut req = window("fargate-ip-10-0-1-5", t0, 700.0, 0.0);
    let res = req.resource_metrics[0].resource.as_mut().unwrap();
    res.attributes.extend([
        kv("headroom.agent.mode", "sidecar"),
        kv("k8s.namespace.name", "shop"),
        kv("k8s.pod.name", "web-0"),
        kv("k8s.pod.uid", "u-1"),
        kv("k8s.pod.ip", "10.0.1.5"),
    ]);
    f.apply_metrics(&req, at(t0 + 11));
    let mut node = window("ip-10-0-0-1", t0, 10.0, 0.0);
    node.resource_metrics[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("headroom.agent.mode", "node"));
    f.apply_metrics(&node, at(t0 + 11));
    let s = f.snapshot(at(t0 + 12));
    let find = |name: &str| {
        s.clusters[0]
            .nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap()
            .clone()
    };
    let side = find("fargate-ip-10-0-1-5");
    assert_eq!(
        side.sidecar,
        Some(Sidecar {
            pod: Some("shop/web-0".into()),
            pod_ip: Some("10.0.1.5".into())
        })
    );
    let eni = side.interfaces.iter().find(|i| i.eni_id.is_some()).unwrap();
    assert_eq!(eni.latest.as_ref().unwrap().peak_pps, 700);
    assert_eq!(find("ip-10-0-0-1").sidecar, None);
    let v = serde_json::to_value(&s).unwrap();
    let nodes = v["clusters"][0]["nodes"].as_array().unwrap();
    let j = nodes
        .iter()
        .find(|n| n["name"] == "fargate-ip-10-0-1-5")
        .unwrap();
    assert_eq!(j["sidecar"]["pod"], "shop/web-0");
    assert_eq!(j["sidecar"]["pod_ip"], "10.0.1.5");
}
