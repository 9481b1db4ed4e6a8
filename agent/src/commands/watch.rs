//! `watch`: a live per-interface view, refreshed every second.

use crate::config::Settings;
use crate::pipeline::{self, Mode, Pipeline, DRAIN};
use crate::sources::linklocal::meter::InterfaceWindow;
use crate::sources::linklocal::LIMIT_PPS;
use crate::time::now_ns;
use crate::AgentError;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

const BAR: usize = 40;

/// One frame of the view; `peaks` holds the highest one-second count seen per interface.
pub fn frame(node: &str, windows: &[InterfaceWindow], peaks: &BTreeMap<String, u64>) -> String {
    let mut out = format!(
        "headroom watch — node {node} — link-local packets/s per interface, limit {LIMIT_PPS} (Ctrl-C quits)\n"
    );
    out += &format!(
        "{:<16} {:>7} {:>7}  {:<width$}  {:>6} {:>7}\n",
        "INTERFACE",
        "NOW/S",
        "PEAK/S",
        "toward the limit (| = peak)",
        "UTIL",
        "DROPS",
        width = BAR + 2
    );
    for w in windows {
        let now = w.figures.total();
        let peak = peaks.get(&w.name).copied().unwrap_or(0);
        let fill = ((now as f64 / LIMIT_PPS as f64) * BAR as f64).round() as usize;
        let mark = ((peak as f64 / LIMIT_PPS as f64) * BAR as f64).round() as usize;
        let bar: String = (0..BAR)
            .map(|i| match i {
                _ if i + 1 == mark.min(BAR) => '|',
                _ if i < fill => '#',
                _ => ' ',
            })
            .collect();
        let over = if now > LIMIT_PPS as u64 { "!" } else { "]" };
        out += &format!(
            "{:<16} {:>7} {:>7}  [{bar}{over}  {:>5.1}% {:>7}{}\n",
            w.name,
            now,
            peak,
            peak as f64 / LIMIT_PPS as f64 * 100.0,
            w.drops_total,
            if w.capturing { "" } else { "  (gone)" }
        );
    }
    if windows.is_empty() {
        out += "(no interface measured yet)\n";
    }
    out
}

pub fn watch(settings: &Settings, count: Option<u64>) -> Result<(), AgentError> {
    let rt = pipeline::runtime()?;
    let mode = Mode {
        strict: false,
        keep_seconds: 5,
    };
    let mut p = Pipeline::start(settings, mode, rt.handle().clone())?;
    let tty = std::io::stdout().is_terminal();
    let mut peaks: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_end = now_ns();
    let mut shown = 0u64;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let end = now_ns() - DRAIN.as_nanos() as u64;
        // The second just past, for "now"; the peak of windows ending since the last frame.
        let now = p.meter().peek(end - 1_000_000_000, end);
        for w in p.meter().cut(last_end, end) {
            let p = peaks.entry(w.name.clone()).or_default();
            *p = (*p).max(w.figures.peak);
        }
        last_end = end;
        let mut text = frame(&p.settings().node_name, &now, &peaks);
        text += "\n";
        text += &crate::export::table::listeners::table(&p.listeners().cut(1.0));
        text += &allowance_frame(&p.interfaces(end - 1_000_000_000, end, &now));
        let mut out = std::io::stdout().lock();
        let _ = if tty {
            write!(out, "\x1b[H\x1b[2J{text}")
        } else {
            writeln!(out, "{text}")
        };
        let _ = out.flush();
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            break;
        }
    }
    p.stop();
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Below the bars: each interface's ENI and ENA allowance counters (rise in the last second,
/// and since the view started). A rise means EC2 is dropping packets now.
pub fn allowance_frame(report: &crate::report::Report) -> String {
    let mut out = String::from("ENA allowance exceeded (rise in the last second / since start):\n");
    for i in &report.interfaces {
        let eni = i.eni_id.as_deref().unwrap_or("eni unknown");
        let figures = match &i.allowance {
            None => "no ENA allowance counters".to_string(),
            Some(d) => d
                .iter()
                .map(|(k, v)| {
                    let total = i.allowance_totals.get(k).copied().unwrap_or(0);
                    let mark = if *v > 0 { " DROPPING" } else { "" };
                    format!(
                        "{} +{v}/{total}{mark}",
                        k.trim_end_matches("_allowance_exceeded")
                    )
                })
                .collect::<Vec<_>>()
                .join("  "),
        };
        out += &format!("  {:<16} {:<22} {figures}\n", i.name, eni);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_shows_rate_peak_and_bar() {
        let w = InterfaceWindow::capturing("eni0", [512, 0, 0], 512, [512, 0, 0], [512, 0, 0], 3);
        let peaks = BTreeMap::from([("eni0".to_string(), 1024u64)]);
        let f = frame("n1", &[w], &peaks);
        let line = f.lines().find(|l| l.starts_with("eni0")).unwrap();
        assert!(line.contains(" 512 "), "{line}");
        assert!(line.contains("1024"), "{line}");
        assert_eq!(line.matches('#').count(), 20, "{line}");
        assert!(line.contains("|]"), "peak mark at the end: {line}");
        assert!(line.contains("100.0%"), "{line}");
    }
}
