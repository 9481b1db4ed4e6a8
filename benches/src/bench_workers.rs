//! `headroom-bench-workers [SERVERS] [WORKERS] [SECONDS] [tcp|unix] [THREADS]`: the worker
//! source's sampling cost at 5 Hz on a node with many prefork listeners. Starts SERVERS prefork
//! servers (a master and WORKERS workers each, all sharing one listener on 127.0.0.1, or on a
//! unix socket with `unix`; each worker accepts one connection and holds it; with THREADS > 0
//! each worker also runs THREADS threads named as Puma names its pool, `puma srv tp NNN`, so
//! the thread names are read too), holds 2 connections per server (2 busy workers each), then
//! samples for SECONDS in this process and prints CPU (user + sys of this process) and RSS.
//! Every process it starts stops when the bench ends (they die with their parent).

use headroom_agent::sources::listeners::{Workers, WorkersSpec};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A listener of either kind, shared by the forked workers.
enum Listen {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Child mode: `serve WORKERS THREADS [PATH]`: bind (TCP, or the unix socket PATH), fork
/// workers, print the port (0 for unix), then wait for stdin EOF.
fn serve(workers: u32, threads: u32, path: Option<&str>) -> ! {
    let (l, port) = match path {
        None => {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = l.local_addr().unwrap().port();
            (Listen::Tcp(l), port)
        }
        Some(p) => (Listen::Unix(UnixListener::bind(p).expect("bind unix")), 0),
    };
    for _ in 0..workers {
        // SAFETY: fork(2) in a single-threaded process; the child only spawns threads, accepts
        // and sleeps.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: prctl(2) with a signal number: the worker dies with its master.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            for t in 0..threads {
                let _ = std::thread::Builder::new()
                    .name(format!("puma srv tp {t:03}"))
                    .spawn(|| std::thread::sleep(Duration::from_secs(3600)));
            }
            let held: Box<dyn std::any::Any> = match &l {
                Listen::Tcp(l) => Box::new(l.accept()),
                Listen::Unix(l) => Box::new(l.accept()),
            };
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
        let path = args.get(4).map(String::as_str);
        serve(
            args[2].parse().expect("workers"),
            args[3].parse().expect("threads"),
            path,
        );
    }
    let n = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (servers, workers, seconds) = (n(1, 50), n(2, 4), n(3, 30));
    let unix = match args.get(4).map(String::as_str) {
        None | Some("tcp") => false,
        Some("unix") => true,
        Some(other) => {
            eprintln!("bench-workers: the 4th argument is tcp or unix, not {other:?}");
            std::process::exit(64);
        }
    };
    let threads = n(5, 0);
    if servers > 500 || workers > 16 || seconds > 300 || threads > 16 {
        eprintln!("bench-workers: at most 500 servers, 16 workers, 300 s, 16 threads");
        std::process::exit(64);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let me = std::env::current_exe().unwrap();
    let mut children: Vec<Child> = Vec::new();
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
    for i in 0..servers {
        let path = dir.path().join(format!("s{i}.sock"));
        let mut c = Command::new(&me);
        c.args(["serve", &workers.to_string(), &threads.to_string()]);
        if unix {
            c.arg(&path);
        }
        let mut c = c
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
            held.push(if unix {
                Box::new(UnixStream::connect(&path).expect("connect unix"))
            } else {
                Box::new(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            });
        }
        children.push(c);
    }
    let procs = servers * (workers + 1);
    std::thread::sleep(Duration::from_millis(500));
    let prefix = dir.path().display().to_string();
    let spec = WorkersSpec {
        proc_root: "/proc".into(),
        cgroup_root: "/sys/fs/cgroup".into(),
        own_netns_only: false,
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
        .filter(|l| {
            let here = if unix {
                l.address.starts_with(&prefix)
            } else {
                l.address == "127.0.0.1"
            };
            here && l.workers == workers as u32
        })
        .collect();
    let busy_ok = ours.iter().filter(|l| l.busy_max == 2).count();
    let threads_ok = ours
        .iter()
        .filter(|l| l.threads == threads.max(1) as u32 && l.threads_known == (threads > 0))
        .count();
    println!(
        "servers {servers} ({}), workers {workers} each, {threads} pool threads per worker: {procs} listener processes; {} processes on the node",
        if unix { "unix" } else { "tcp" },
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
        "next {seconds} s at 5 Hz: {} samples, {} fd dirs read, {} netns dumps, {} thread lists read; listeners found {} (busy 2: {busy_ok}, threads as started: {threads_ok})",
        cost.samples - cost_warm.samples,
        cost.fd_scans - cost_warm.fd_scans,
        cost.netns_dumps - cost_warm.netns_dumps,
        cost.thread_reads - cost_warm.thread_reads,
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
