//! `headroom-agent watch` as a person sees it: in a real terminal (tmux, on a socket of the
//! test's own, started and killed here), under DNS load from dnsperf at two paced rates. The
//! "now" figure follows the load (within the pacing tolerance of a loaded machine) and its bar
//! is `now / 1024` of the bar's width, longer at the higher rate; after the window is resized
//! to 70 columns the view redraws at once to fit (no line wider, a 10-column bar); `q` and, in
//! a second run, Ctrl-C end it with exit 0 and the terminal restored (primary screen, cursor
//! shown, `stty` back to canonical mode with echo).
//! Needs root and tmux; skips with a reason outside CI, fails in CI.

use crate::common::{bed_needs, AGENT, NO_IMDS};
use headroom_testbed::bed::{self, Bed};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Our own tmux server (its own socket): killed on drop, whatever the test did.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A session `name` of `cols` × 40 running `watch` in the bed's node namespace, then (once
    /// it exits) its exit code and `stty -a`, kept on screen.
    fn start(&self, name: &str, cols: u16, netns: &str) {
        let script = format!(
            "ip netns exec {netns} {} watch --interface eni0 {} {}; echo EXIT=$?; stty -a | tr '\\n' ' '; echo; echo STTY-END; sleep 60",
            &*AGENT, NO_IMDS[0], NO_IMDS[1]
        );
        let c = cols.to_string();
        self.cmd(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &c,
            "-y",
            "40",
            &script,
        ]);
    }

    fn screen(&self, name: &str) -> String {
        self.cmd(&["capture-pane", "-p", "-t", name])
    }

    fn wait_screen(&self, name: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen(name);
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what} within 20 s; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The eni0 row: (now, the bar between its brackets).
fn row(screen: &str) -> Option<(u64, String)> {
    let l = screen.lines().find(|l| l.starts_with("eni0"))?;
    let now = l.split_whitespace().nth(1)?.parse().ok()?;
    let (_, rest) = l.split_once('[')?;
    let end = rest.find([']', '!'])?;
    Some((now, rest[..end].to_string()))
}

/// While dnsperf sends `rate`/s for 5 s, the row shown 3 s in.
fn under_load(bed: &mut Bed, tmux: &Tmux, rate: u64) -> (u64, String) {
    let mut perf = bed
        .dnsperf(bed::LINKLOCAL_RESOLVER, rate as u32, 5, None)
        .unwrap();
    let load = std::thread::spawn(move || bed::run_dnsperf(&mut perf));
    std::thread::sleep(Duration::from_secs(3));
    let seen = tmux.wait_screen("w", "an eni0 row", |s| row(s).is_some());
    let sent = load.join().unwrap().unwrap();
    eprintln!("at {rate}/s (dnsperf sent {}):\n{seen}", sent.sent);
    row(&seen).unwrap()
}

#[test]
fn watch_in_a_terminal_follows_load_resizes_and_quits_cleanly() {
    let mut needs = bed_needs();
    needs.push(headroom_testbed::Need::Tool("tmux"));
    headroom_testbed::require_or_return!(
        "watch_in_a_terminal_follows_load_resizes_and_quits_cleanly",
        &needs
    );
    let mut bed = Bed::new(1).unwrap();
    bed.start_unbound().unwrap();
    let tmux = Tmux {
        socket: bed.path("tmux.sock"),
    };
    let netns = bed.node.name.clone();
    tmux.start("w", 120, &netns);
    tmux.wait_screen("w", "the view", |s| s.contains("headroom watch"));

    // The bar follows the load: `now` within the pace (a loaded machine's dnsperf catches up in
    // bursts: -20 % / +25 %), the bar `now / 1024` of its 40 columns, longer at the higher rate.
    let mut fills = Vec::new();
    for rate in [250u64, 800] {
        let (now, bar) = under_load(&mut bed, &tmux, rate);
        assert_eq!(
            bar.chars().count(),
            40,
            "a 40-column bar at 120 columns: [{bar}]"
        );
        assert!(
            now as f64 >= rate as f64 * 0.8 && now as f64 <= rate as f64 * 1.25,
            "now {now} at {rate}/s"
        );
        let fill = bar.chars().filter(|c| *c == '#').count();
        let want = (now as f64 / 1024.0 * 40.0).round() as usize;
        // The peak mark `|` may stand on the fill's last cell.
        assert!(
            fill == want || fill + 1 == want,
            "bar [{bar}]: {fill} cells for {now}/s, want {want}"
        );
        fills.push(fill);
    }
    assert!(fills[1] > fills[0], "the bar grew with the load: {fills:?}");

    // Resize to 70 columns: redrawn to fit before the next second's frame would be.
    tmux.cmd(&["resize-window", "-t", "w", "-x", "70", "-y", "30"]);
    let s = tmux.wait_screen("w", "a redraw at 70 columns", |s| {
        row(s).is_some_and(|(_, bar)| bar.chars().count() == 10)
    });
    for l in s.lines() {
        assert!(
            l.chars().count() <= 70,
            "{} columns: {l}",
            l.chars().count()
        );
    }

    // `q` quits: exit 0, the primary screen back, the cursor shown, the tty canonical again.
    tmux.cmd(&["send-keys", "-t", "w", "q"]);
    let s = tmux.wait_screen("w", "watch to exit on q", |s| s.contains("STTY-END"));
    assert!(s.contains("EXIT=0"), "{s}");
    let stty = s.lines().find(|l| l.contains("speed")).unwrap_or("");
    let stty_words: String = s
        .lines()
        .skip_while(|l| !l.contains("speed"))
        .take_while(|l| !l.contains("STTY-END"))
        .collect();
    assert!(
        stty_words.contains(" icanon") && !stty_words.contains("-icanon"),
        "still raw: {stty}"
    );
    assert!(
        stty_words.contains(" echo ") && !stty_words.contains("-echo "),
        "echo off: {stty_words}"
    );
    let flags = tmux.cmd(&[
        "display-message",
        "-p",
        "-t",
        "w",
        "#{alternate_on} #{cursor_flag}",
    ]);
    assert_eq!(
        flags.trim(),
        "0 1",
        "alternate screen, cursor flag: {flags}"
    );

    // Ctrl-C in a second run: the same clean exit.
    tmux.start("c", 100, &netns);
    tmux.wait_screen("c", "the second view", |s| s.contains("headroom watch"));
    tmux.cmd(&["send-keys", "-t", "c", "C-c"]);
    let s = tmux.wait_screen("c", "watch to exit on Ctrl-C", |s| s.contains("STTY-END"));
    assert!(s.contains("EXIT=0"), "{s}");
    let flags = tmux.cmd(&[
        "display-message",
        "-p",
        "-t",
        "c",
        "#{alternate_on} #{cursor_flag}",
    ]);
    assert_eq!(
        flags.trim(),
        "0 1",
        "alternate screen, cursor flag: {flags}"
    );
}
