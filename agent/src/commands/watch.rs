//! `watch`: a live per-interface view, refreshed every second. On a terminal it draws on the
//! alternate screen in raw mode (crossterm): `q`, Esc or Ctrl-C quit, a resize redraws at once
//! to the new width, and the terminal is restored on every way out (a panic included). Piped,
//! it prints one frame after another.

use crate::config::Settings;
use crate::pipeline::{self, Mode, Pipeline, DRAIN};
use crate::sources::linklocal::meter::InterfaceWindow;
use crate::sources::linklocal::LIMIT_PPS;
use crate::time::now_ns;
use crate::AgentError;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The bar's width on a wide terminal (and when piped).
const BAR: usize = 40;
/// Columns of a bar line besides the bar itself (name, figures, brackets, UTIL, DROPS).
const BAR_LINE_REST: usize = 60;

/// The bar width that fits `cols` columns (at least 10, at most [`BAR`]).
pub fn bar_width(cols: u16) -> usize {
    (cols as usize).saturating_sub(BAR_LINE_REST).clamp(10, BAR)
}

/// One frame of the view; `peaks` holds the highest one-second count seen per interface.
pub fn frame(
    node: &str,
    windows: &[InterfaceWindow],
    peaks: &BTreeMap<String, u64>,
    bar: usize,
) -> String {
    let mut out = format!(
        "headroom watch — node {node} — link-local packets/s per interface, limit {LIMIT_PPS} (q quits)\n"
    );
    out += &format!(
        "{:<16} {:>7} {:>7}  {:<width$}  {:>6} {:>7}\n",
        "INTERFACE",
        "NOW/S",
        "PEAK/S",
        "toward the limit (| = peak)",
        "UTIL",
        "DROPS",
        width = bar + 2
    );
    for w in windows {
        let now = w.figures.total();
        let peak = peaks.get(&w.name).copied().unwrap_or(0);
        let fill = ((now as f64 / LIMIT_PPS as f64) * bar as f64).round() as usize;
        let mark = ((peak as f64 / LIMIT_PPS as f64) * bar as f64).round() as usize;
        let bar: String = (0..bar)
            .map(|i| match i {
                _ if i + 1 == mark.min(bar) => '|',
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
    let mut screen = if std::io::stdout().is_terminal() {
        Screen::enter()
    } else {
        None
    };
    let mut peaks: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_end = now_ns();
    let mut shown = 0u64;
    let mut text = String::new();
    'frames: loop {
        // Wait out the second, answering keys and resizes meanwhile.
        let tick = Instant::now() + Duration::from_secs(1);
        while let Some(left) = tick.checked_duration_since(Instant::now()) {
            match screen.as_mut() {
                None => std::thread::sleep(left),
                Some(s) => match s.wait(left) {
                    Input::Quit => break 'frames,
                    Input::Resized => s.draw(&text),
                    Input::None => {}
                },
            }
        }
        let end = now_ns() - DRAIN.as_nanos() as u64;
        // The second just past, for "now"; the peak of windows ending since the last frame.
        let now = p.meter().peek(end - 1_000_000_000, end);
        for w in p.meter().cut(last_end, end) {
            let p = peaks.entry(w.name.clone()).or_default();
            *p = (*p).max(w.figures.peak);
        }
        last_end = end;
        let bar = screen.as_ref().map_or(BAR, |s| bar_width(s.cols));
        text = frame(&p.settings().node_name, &now, &peaks, bar);
        text += "\n";
        text += &crate::export::table::listeners::table(&p.listeners().cut(1.0));
        text += &allowance_frame(&p.interfaces(end - 1_000_000_000, end, &now));
        match screen.as_mut() {
            Some(s) => s.draw(&text),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        }
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            break;
        }
    }
    drop(screen);
    p.stop();
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// What the keyboard or the terminal said while waiting.
enum Input {
    None,
    Quit,
    Resized,
}

/// The terminal in raw mode on the alternate screen; restored on drop and, since release
/// builds abort on panic (no drop runs), from the panic hook too.
struct Screen {
    cols: u16,
    rows: u16,
}

impl Screen {
    /// None when the terminal refuses raw mode (then the view prints frames as when piped).
    fn enter() -> Option<Screen> {
        use crossterm::{cursor, execute, terminal};
        terminal::enable_raw_mode().ok()?;
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
        let _ = execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        );
        let (cols, rows) = terminal::size().unwrap_or((80, 24));
        Some(Screen { cols, rows })
    }

    /// Waits at most `left` for a key or a resize.
    fn wait(&mut self, left: Duration) -> Input {
        use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
        if !event::poll(left).unwrap_or(false) {
            return Input::None;
        }
        match event::read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Input::Quit,
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Input::Quit,
                _ => Input::None,
            },
            Ok(Event::Resize(cols, rows)) => {
                (self.cols, self.rows) = (cols, rows);
                Input::Resized
            }
            // A terminal that went away: nothing left to draw on.
            Err(_) => Input::Quit,
            Ok(_) => Input::None,
        }
    }

    /// The frame from the top left, each line cut to the width and the frame to the height
    /// (raw mode: lines end in CR LF).
    fn draw(&self, text: &str) {
        use crossterm::{cursor, queue, terminal};
        let mut out = std::io::stdout().lock();
        let _ = queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        );
        let lines: Vec<String> = text
            .lines()
            .take(self.rows as usize)
            .map(|l| l.chars().take(self.cols as usize).collect())
            .collect();
        let _ = write!(out, "{}", lines.join("\r\n"));
        let _ = out.flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor, ends raw mode.
fn restore() {
    use crossterm::{cursor, execute, terminal};
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
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
        let f = frame("n1", &[w], &peaks, BAR);
        let line = f.lines().find(|l| l.starts_with("eni0")).unwrap();
        assert!(line.contains(" 512 "), "{line}");
        assert!(line.contains("1024"), "{line}");
        assert_eq!(line.matches('#').count(), 20, "{line}");
        assert!(line.contains("|]"), "peak mark at the end: {line}");
        assert!(line.contains("100.0%"), "{line}");
    }

    #[test]
    fn the_bar_narrows_to_fit_the_terminal() {
        assert_eq!(bar_width(200), BAR);
        assert_eq!(bar_width(80), 20);
        assert_eq!(bar_width(40), 10);
        let w = InterfaceWindow::capturing("eni0", [512, 0, 0], 512, [512, 0, 0], [512, 0, 0], 3);
        let f = frame("n1", &[w], &BTreeMap::new(), bar_width(80));
        let line = f.lines().find(|l| l.starts_with("eni0")).unwrap();
        assert_eq!(line.matches('#').count(), 10, "{line}");
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}",
            line.chars().count()
        );
    }
}
