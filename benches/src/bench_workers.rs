//! `headroom-bench-workers [SERVERS] [WORKERS] [SECONDS]`: the worker source's sampling cost at
//! 5 Hz on a node with many prefork listeners. Starts SERVERS prefork servers (a master and
//! WORKERS workers each, all sharing one listener on 127.0.0.1; each worker accepts one
//! connection and holds it), holds 2 connections per server (2 busy workers each), then samples
//! for SECONDS in this process and prints CPU (user + sys of this process) and RSS.
//! Every process it starts stops when the bench ends (they die with their parent).

use headroom_agent::sources::listeners::{Workers, WorkersSpec};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Child mode: `serve WORKERS`: bind, fork workers, print the port, then wait for stdin EOF.
fn serve(workers: u32) -> ! {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    for _ in 0..workers {
        // SAFETY: fork(2) in a single-threaded process; the child only calls accept and sleep.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: prctl(2) with a signal number: the worker dies with its master.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let held = l.accept();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
                let _ = &held;
            }
        }
    }
    println!("{port}");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage(2) fills a zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF covers every thread of this process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(args[2].parse().expect("workers"));
    }
    let n = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (servers, workers, seconds) = (n(1, 50), n(2, 4), n(3, 30));
    assert!(
        servers <= 500 && workers <= 16 && seconds <= 300,
        "bounded sizes only"
    );
    let me = std::env::current_exe().unwrap();
    let mut children: Vec<Child> = Vec::new();
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..servers {
        let mut c = Command::new(&me)
            .args(["serve", &workers.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let mut line = String::new();
        let mut out = c.stdout.take().unwrap();
        let mut b = [0u8; 1];
        while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            line.push(b[0] as char);
        }
        let port: u16 = line.trim().parse().expect("port");
        for _ in 0..2 {
            held.push(TcpStream::connect(("127.0.0.1", port)).expect("connect"));
        }
        children.push(c);
    }
    let procs = servers * (workers + 1);
    std::thread::sleep(Duration::from_millis(500));
    let spec = WorkersSpec {
        proc_root: "/proc".into(),
        cgroup_root: "/sys/fs/cgroup".into(),
        interval: Duration::from_millis(200),
        caps: Default::default(),
    };
    let rss0 = rss_kib();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let w = Workers::start(&spec, None);
    // Warm-up: the first sample reads every process's fds.
    std::thread::sleep(Duration::from_secs(2));
    let (cpu_warm, cost_warm) = (cpu_seconds() - cpu0, w.cost());
    let cpu1 = cpu_seconds();
    let t1 = Instant::now();
    let _ = w.cut(2.0);
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = cpu_seconds() - cpu1;
    let wall = t1.elapsed().as_secs_f64();
    let cost = w.cost();
    let _ = t0;
    let ls = w.cut(wall);
    let ours: Vec<_> = ls
        .iter()
        .filter(|l| l.address == "127.0.0.1" && l.workers == workers as u32)
        .collect();
    let busy_ok = ours.iter().filter(|l| l.busy_max == 2).count();
    println!(
        "servers {servers}, workers {workers} each: {procs} listener processes; {} processes on the node",
        std::fs::read_dir("/proc")
            .unwrap()
            .filter(|e| e
                .as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok()))
            .count()
    );
    println!(
        "first 2 s (cold cache): {} samples, {} fd dirs read, CPU {cpu_warm:.3} s",
        cost_warm.samples, cost_warm.fd_scans
    );
    println!(
        "next {seconds} s at 5 Hz: {} samples, {} fd dirs read, {} netns dumps; listeners found {} (busy 2: {busy_ok})",
        cost.samples - cost_warm.samples,
        cost.fd_scans - cost_warm.fd_scans,
        cost.netns_dumps - cost_warm.netns_dumps,
        ours.len()
    );
    println!(
        "steady CPU {cpu:.3} s in {wall:.1} s = {:.2} % of one core; RSS {} KiB before, {} KiB after",
        cpu / wall * 100.0,
        rss0,
        rss_kib()
    );
    drop(w);
    drop(held);
    for mut c in children {
        drop(c.stdin.take());
        let _ = c.wait();
    }
}
