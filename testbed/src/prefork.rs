//! Real prefork app servers (gunicorn from PyPI, unicorn from Debian) serving an endpoint that
//! blocks until the test releases it, and clients that hold a known number of slow requests.
//!
//! `/work?ms=N` holds a worker N ms (at most a second) and answers: a request of known length
//! for load loops ([`crate::load`]).
//!
//! Ground truth: each request writes `started-TAG-PID-N` when a worker begins it (so the test
//! knows exactly which workers are busy) and waits for `release-TAG` (at most 60 s).

use crate::netns::Netns;
use crate::proc::Guard;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WSGI_APP: &str = r#"
import os, time
DIR = os.environ["HR_DIR"]
def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        tag = environ.get("QUERY_STRING", "t=x").split("=", 1)[1]
        open(os.path.join(DIR, "started-%s-%d-%d" % (tag, os.getpid(), time.monotonic_ns())), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(DIR, "release-" + tag)) and time.monotonic() < deadline:
            time.sleep(0.02)
    elif environ.get("PATH_INFO") == "/work":
        ms = int(environ.get("QUERY_STRING", "ms=20").split("=", 1)[1])
        time.sleep(min(ms, 1000) / 1000.0)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
"#;

const PHP_APP: &str = r#"<?php
$dir = getenv("HR_DIR");
if (strpos($_SERVER["REQUEST_URI"], "/slow") === 0) {
    $tag = $_GET["t"];
    touch("$dir/started-$tag-" . getmypid() . "-" . hrtime(true));
    $deadline = time() + 60;
    while (!file_exists("$dir/release-$tag") && time() < $deadline) { usleep(20000); }
}
echo "ok\n";
"#;

/// nginx (one worker) on 127.0.0.1:8080 in `ns`, with `locations` in its server block; its
/// files in `dir`.
fn nginx(ns: &Netns, dir: &Path, locations: &str) -> anyhow::Result<Guard> {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("nginx-tmp"))?;
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root root;\npid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n access_log off;\n\
         client_body_temp_path {d}/nginx-tmp;\n proxy_temp_path {d}/nginx-tmp;\n fastcgi_temp_path {d}/nginx-tmp;\n\
         uwsgi_temp_path {d}/nginx-tmp;\n scgi_temp_path {d}/nginx-tmp;\n\
         server {{ listen 127.0.0.1:8080; {locations} }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let mut cmd = ns.command("nginx");
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Guard::spawn("nginx", &mut cmd)
}

const RACK_APP: &str = r#"
dir = ENV["HR_DIR"]
run lambda { |env|
  if env["PATH_INFO"] == "/slow"
    tag = env["QUERY_STRING"].split("=", 2)[1]
    File.write(File.join(dir, "started-#{tag}-#{Process.pid}-#{Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)}"), "")
    deadline = Time.now + 60
    sleep 0.02 until File.exist?(File.join(dir, "release-#{tag}")) || Time.now > deadline
  end
  [200, {"content-type" => "text/plain"}, ["ok\n"]]
}
"#;

/// A running prefork server and its working directory.
pub struct Server {
    pub guard: Guard,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Namespace the server runs in (None: the test's own).
    pub netns: Option<String>,
    /// The app's unix socket when it listens on one (then `port` is the proxy's in front).
    pub socket: Option<PathBuf>,
    /// A proxy in front of the app (nginx), dropped after it.
    pub front: Option<Guard>,
}

/// A free TCP port on 127.0.0.1 (racy in theory; the bind that follows fails loudly if so).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// gunicorn with `workers` sync workers on 127.0.0.1:PORT with the given listen backlog.
    pub fn gunicorn(ns: Option<&Netns>, workers: u32, backlog: u32) -> anyhow::Result<Server> {
        Self::gunicorn_with(ns, workers, backlog, &["--worker-class", "sync"], false)
    }

    /// gunicorn with `workers` sync workers on a unix socket in its working directory, behind
    /// nginx (one worker, `127.0.0.1:8080` proxied to the socket; HTTP/1.1 keep-alive to its
    /// clients, as nginx does by default), both in `ns`.
    pub fn gunicorn_behind_nginx(ns: &Netns, workers: u32, backlog: u32) -> anyhow::Result<Server> {
        Self::gunicorn_with(
            Some(ns),
            workers,
            backlog,
            &["--worker-class", "sync"],
            true,
        )
    }

    /// gunicorn `-k gthread --threads THREADS` with `workers` workers on 127.0.0.1:PORT; each
    /// worker accepts at most `threads` connections (`--worker-connections`), so the excess
    /// waits in the kernel's accept queue, not in a worker.
    pub fn gunicorn_gthread(workers: u32, threads: u32, backlog: u32) -> anyhow::Result<Server> {
        let t = threads.to_string();
        let args = [
            "--worker-class",
            "gthread",
            "--threads",
            &t,
            "--worker-connections",
            &t,
        ];
        Self::gunicorn_with(None, workers, backlog, &args, false)
    }

    fn gunicorn_with(
        ns: Option<&Netns>,
        workers: u32,
        backlog: u32,
        class: &[&str],
        behind_nginx: bool,
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("slowapp.py"), WSGI_APP)?;
        let port = if ns.is_some() { 8000 } else { free_port() };
        let sock = dir.path().join("gunicorn.sock");
        let bind = if behind_nginx {
            format!("unix:{}", sock.display())
        } else {
            format!("127.0.0.1:{port}")
        };
        let mut cmd = match ns {
            Some(n) => n.command("gunicorn"),
            None => Command::new("gunicorn"),
        };
        cmd.args(["--workers", &workers.to_string()])
            .args(class)
            .args(["--timeout", "120", "--graceful-timeout", "1"])
            .args(["--backlog", &backlog.to_string()])
            .args(["--bind", &bind])
            .arg("--chdir")
            .arg(dir.path())
            .arg("slowapp:app")
            .env("HR_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let guard = Guard::spawn("gunicorn", &mut cmd)?;
        let front = match ns.filter(|_| behind_nginx) {
            Some(ns) => Some(nginx(
                ns,
                dir.path(),
                &format!(
                    "location / {{ proxy_pass http://unix:{}; }}",
                    sock.display()
                ),
            )?),
            None => None,
        };
        let s = Server {
            guard,
            dir,
            port: if front.is_some() { 8080 } else { port },
            netns: ns.map(|n| n.name.clone()),
            socket: front.is_some().then_some(sock),
            front,
        };
        s.wait_ready(workers)?;
        Ok(s)
    }

    /// unicorn with `workers` workers on a unix socket in its working directory (the shared
    /// emptyDir of a pod) with the given backlog, behind nginx (one worker, `127.0.0.1:8080`
    /// proxied to the socket), both in the namespace `ns`; `pids_to` is called with the unicorn
    /// master's pid before its workers fork (to move it into a cgroup).
    pub fn unicorn_behind_nginx(
        ns: &Netns,
        workers: u32,
        backlog: u32,
        pids_to: impl FnOnce(u32) -> anyhow::Result<()>,
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("config.ru"), RACK_APP)?;
        let sock = dir.path().join("unicorn.sock");
        let conf = format!(
            "worker_processes {workers}\nlisten \"{}\", backlog: {backlog}\ntimeout 120\n\
             preload_app false\nworking_directory \"{d}\"\nbefore_fork {{ |s, w| sleep 0.5 if w.nr == 0 }}\n",
            sock.display()
        );
        std::fs::write(dir.path().join("unicorn.rb"), conf)?;
        let mut cmd = ns.command("unicorn");
        cmd.arg("-c")
            .arg(dir.path().join("unicorn.rb"))
            .arg(dir.path().join("config.ru"))
            .env("HR_DIR", dir.path())
            .env("RACK_ENV", "none")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let guard = Guard::spawn("unicorn", &mut cmd)?;
        pids_to(guard.pid())?;
        let front = nginx(
            ns,
            dir.path(),
            &format!(
                "location / {{ proxy_pass http://unix:{}; proxy_read_timeout 120s; }}",
                sock.display()
            ),
        )?;
        let s = Server {
            guard,
            dir,
            port: 8080,
            netns: Some(ns.name.clone()),
            socket: Some(sock),
            front: Some(front),
        };
        s.wait_ready(workers)?;
        Ok(s)
    }

    /// unicorn (Debian's) with `workers` workers on 127.0.0.1:PORT with the given backlog.
    pub fn unicorn(workers: u32, backlog: u32) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("config.ru"), RACK_APP)?;
        let port = free_port();
        let conf = format!(
            "worker_processes {workers}\nlisten \"127.0.0.1:{port}\", backlog: {backlog}\ntimeout 120\n\
             preload_app false\nworking_directory \"{}\"\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("unicorn.rb"), conf)?;
        let mut cmd = Command::new("unicorn");
        cmd.arg("-c")
            .arg(dir.path().join("unicorn.rb"))
            .arg(dir.path().join("config.ru"))
            .env("HR_DIR", dir.path())
            .env("RACK_ENV", "none")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let guard = Guard::spawn("unicorn", &mut cmd)?;
        let s = Server {
            guard,
            dir,
            port,
            netns: None,
            socket: None,
            front: None,
        };
        s.wait_ready(workers)?;
        Ok(s)
    }

    /// php-fpm (Debian's) with a static pool `app` of `workers` on a unix socket with the given
    /// backlog, behind nginx (`127.0.0.1:8080`), both in `ns`; its status page (`pm.status_path`)
    /// on a socket of its own (`pm.status_listen`: served by a hidden pool, so it answers while
    /// every worker of `app` is busy) at `/fpm-status`. `pids_to` gets the master's pid.
    pub fn php_fpm_behind_nginx(
        ns: &Netns,
        workers: u32,
        backlog: u32,
        pids_to: impl FnOnce(u32) -> anyhow::Result<()>,
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("app.php"), PHP_APP)?;
        let sock = dir.path().join("fpm.sock");
        let conf = format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = no\n\
             [app]\nuser = root\ngroup = root\nlisten = {d}/fpm.sock\nlisten.backlog = {backlog}\n\
             pm = static\npm.max_children = {workers}\npm.status_path = /status\n\
             pm.status_listen = {d}/status.sock\nclear_env = no\n"
        );
        std::fs::write(dir.path().join("fpm.conf"), conf)?;
        let mut cmd = ns.command("php-fpm8.2");
        cmd.args(["-F", "-R", "-n", "-y"])
            .arg(dir.path().join("fpm.conf"))
            .env("HR_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let guard = Guard::spawn("php-fpm", &mut cmd)?;
        pids_to(guard.pid())?;
        let front = nginx(
            ns,
            dir.path(),
            &format!(
                "location / {{ fastcgi_pass unix:{d}/fpm.sock; include /etc/nginx/fastcgi_params; \
                 fastcgi_param SCRIPT_FILENAME {d}/app.php; fastcgi_read_timeout 120s; }}\n\
                 location = /fpm-status {{ fastcgi_pass unix:{d}/status.sock; include /etc/nginx/fastcgi_params; \
                 fastcgi_param SCRIPT_NAME /status; fastcgi_param SCRIPT_FILENAME /status; }}"
            ),
        )?;
        let s = Server {
            guard,
            dir,
            port: 8080,
            netns: Some(ns.name.clone()),
            socket: Some(sock),
            front: Some(front),
        };
        // The app pool's workers (the status pool forks its one on demand).
        s.wait_ready(workers)?;
        Ok(s)
    }

    /// Puma (Debian's) in cluster mode, `workers` × `threads` (min = max, so the pool is whole
    /// from the start) on a unix socket behind nginx in `ns`, its control app on `ctl.sock`
    /// (token `hr`).
    pub fn puma_behind_nginx(ns: &Netns, workers: u32, threads: u32) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("config.ru"), RACK_APP)?;
        let sock = dir.path().join("puma.sock");
        let mut cmd = ns.command("puma");
        cmd.args([
            "-w",
            &workers.to_string(),
            "-t",
            &format!("{threads}:{threads}"),
        ])
        .args(["-b", &format!("unix://{d}/puma.sock")])
        .args([
            "--control-url",
            &format!("unix://{d}/ctl.sock"),
            "--control-token",
            "hr",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg(dir.path().join("config.ru"))
        .env("HR_DIR", dir.path())
        .env("RACK_ENV", "none")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let guard = Guard::spawn("puma", &mut cmd)?;
        let front = nginx(
            ns,
            dir.path(),
            &format!(
                "location / {{ proxy_pass http://unix:{d}/puma.sock; proxy_read_timeout 120s; }}"
            ),
        )?;
        let s = Server {
            guard,
            dir,
            port: 8080,
            netns: Some(ns.name.clone()),
            socket: Some(sock),
            front: Some(front),
        };
        s.wait_ready(workers)?;
        Ok(s)
    }

    /// `pumactl stats` (the control app's `/stats`): per worker `(max_threads, pool_capacity,
    /// backlog)` from its last status (workers report every 5 s).
    pub fn puma_stats(&self) -> anyhow::Result<Vec<(u64, u64, u64)>> {
        let ctl = format!("unix://{}/ctl.sock", self.dir.path().display());
        let ns = self.netns.as_deref().unwrap_or_default();
        let out = Command::new("ip")
            .args([
                "netns", "exec", ns, "pumactl", "-C", &ctl, "-T", "hr", "stats",
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let json = text
            .find('{')
            .map(|i| &text[i..])
            .ok_or_else(|| anyhow::anyhow!("pumactl printed {text:?}"))?;
        let v: serde_json::Value = serde_json::from_str(json.trim())?;
        let mut out = Vec::new();
        for w in v["worker_status"].as_array().into_iter().flatten() {
            let s = &w["last_status"];
            let f = |k: &str| s[k].as_u64().ok_or_else(|| anyhow::anyhow!("no {k}: {s}"));
            out.push((f("max_threads")?, f("pool_capacity")?, f("backlog")?));
        }
        Ok(out)
    }

    /// php-fpm's status page (`/fpm-status`, plain text): `(active processes, listen queue)`.
    pub fn fpm_status(&self) -> anyhow::Result<(u64, u64)> {
        let body = self.get("/fpm-status")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no {name} in the status page: {body}"))
        };
        Ok((field("active processes:")?, field("listen queue:")?))
    }

    /// The master's children: the worker processes (ground truth).
    pub fn worker_pids(&self) -> BTreeSet<i32> {
        let master = self.master_pid();
        children(master)
    }

    /// The server's master process (through `ip netns exec`, which execs in place).
    pub fn master_pid(&self) -> i32 {
        self.guard.pid() as i32
    }

    fn wait_ready(&self, workers: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = self.worker_pids().len() as u32;
            if n == workers && self.get("/").map(|b| b.contains("ok")).unwrap_or(false) {
                // Let every worker finish booting (each reaches accept on its own).
                std::thread::sleep(Duration::from_millis(1500));
                if self.worker_pids().len() as u32 == workers {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not start {workers} workers within 30 s (has {n})",
                self.guard.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A connection to the server (inside its namespace when it has one).
    pub fn connect(&self) -> anyhow::Result<TcpStream> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        match &self.netns {
            None => Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(5))?),
            Some(ns) => in_netns(ns, move || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(Into::into)
            }),
        }
    }

    fn get(&self, path: &str) -> anyhow::Result<String> {
        let mut s = self.connect()?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    }

    /// Opens `n` connections each sending one `/slow?t=TAG` request and waits until
    /// `min(n, workers)` of them have started (the rest wait in the accept queue). Each of those
    /// is sent only after the one before it started: a Puma worker counts a connection still in
    /// its reactor as idle capacity, so a burst can land five requests on a worker of four
    /// threads, where the fifth waits while the other worker idles.
    pub fn hold(&self, tag: &str, n: usize, workers: usize) -> anyhow::Result<Held> {
        let mut conns = Vec::new();
        let want = n.min(workers);
        for i in 0..n {
            let mut s = self.connect()?;
            write!(s, "GET /slow?t={tag} HTTP/1.0\r\nHost: x\r\n\r\n")?;
            conns.push(s);
            if i < want {
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.started(tag).len() <= i {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "only {} of {want} requests started within 10 s of the last one sent",
                        self.started(tag).len()
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        Ok(Held {
            conns,
            tag: tag.to_string(),
            dir: self.dir.path().to_path_buf(),
        })
    }

    /// Pids of the workers that started a `/slow?t=TAG` request.
    pub fn started(&self, tag: &str) -> Vec<i32> {
        started(self.dir.path(), tag)
    }
}

fn started(dir: &Path, tag: &str) -> Vec<i32> {
    let prefix = format!("started-{tag}-");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(rest) = name.strip_prefix(&prefix) {
            if let Some(pid) = rest.split('-').next().and_then(|p| p.parse().ok()) {
                out.push(pid);
            }
        }
    }
    out
}

/// Slow requests in flight; released (and answered) on [`Held::release`] or drop.
pub struct Held {
    conns: Vec<TcpStream>,
    tag: String,
    dir: PathBuf,
}

impl Held {
    /// Lets every request finish and reads each answer (at most 10 s each).
    pub fn release(mut self) -> anyhow::Result<()> {
        std::fs::write(self.dir.join(format!("release-{}", self.tag)), "")?;
        for mut c in self.conns.drain(..) {
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut body = String::new();
            c.read_to_string(&mut body)?;
            anyhow::ensure!(body.contains("200"), "unexpected answer: {body}");
        }
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join(format!("release-{}", self.tag)), "");
    }
}

/// Children of a process (from /proc/PID/task/*/children).
pub fn children(pid: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// Runs `f` on a thread inside the named network namespace (sockets it opens stay there).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: setns(2) on a descriptor we own; only this short-lived thread changes namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        anyhow::ensure!(rc == 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

/// The WSGI app served by Python's own threading server: one process, a thread per request,
/// nothing on its command line or in its thread names saying how many.
const THREADING_SERVER: &str = r#"
import sys, socketserver
from wsgiref.simple_server import WSGIServer, WSGIRequestHandler, make_server
sys.path.insert(0, sys.argv[1])
from slowapp import app
class Quiet(WSGIRequestHandler):
    def log_message(self, *a): pass
class Threading(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 16
make_server("0.0.0.0", 8080, app, server_class=Threading, handler_class=Quiet).serve_forever()
"#;

impl Server {
    /// A thread-per-request server that states no thread count (Python's `ThreadingMixIn`
    /// WSGI server, comm `python3`) on 0.0.0.0:8080 in `ns`; `pids_to` gets its pid.
    pub fn python_threading(
        ns: &Netns,
        pids_to: impl FnOnce(u32) -> anyhow::Result<()>,
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("slowapp.py"), WSGI_APP)?;
        std::fs::write(dir.path().join("server.py"), THREADING_SERVER)?;
        let mut cmd = ns.command("python3");
        cmd.arg(dir.path().join("server.py"))
            .arg(dir.path())
            .env("HR_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let guard = Guard::spawn("python3 threading server", &mut cmd)?;
        pids_to(guard.pid())?;
        let s = Server {
            guard,
            dir,
            port: 8080,
            netns: Some(ns.name.clone()),
            socket: None,
            front: None,
        };
        s.wait_ready(0)?;
        Ok(s)
    }
}

/// unicorn's own gauge, raindrops (`Raindrops::Linux.tcp_listener_stats` for an `ADDR:PORT`,
/// `unix_listener_stats` for a socket path), run with Ruby inside namespace `ns` (None: here)
/// → (active, queued). Ground truth for busy workers and the accept queue.
pub fn raindrops(ns: Option<&str>, listener: &str) -> (u64, u64) {
    let call = if listener.starts_with('/') {
        "unix_listener_stats"
    } else {
        "tcp_listener_stats"
    };
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ruby"]);
            c
        }
        None => Command::new("ruby"),
    };
    let out = cmd
        .args(["-rraindrops", "-e"])
        .arg(format!(
            "s = Raindrops::Linux.{call}([{listener:?}]).values.first; puts \"#{{s.active}} #{{s.queued}}\""
        ))
        .output()
        .expect("running ruby");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(v.len(), 2, "raindrops printed {text:?}");
    (v[0], v[1])
}

/// One app group as `passenger-status` (its default text view) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassengerGroup {
    pub name: String,
    /// `Requests in queue`.
    pub queue: u64,
    /// `(PID, Sessions)` of each process.
    pub processes: Vec<(i32, u64)>,
}

impl Server {
    /// Phusion Passenger Standalone (Debian's `passenger`, builtin engine) serving the Rack app
    /// on 127.0.0.1:8080 in `ns` with exactly `processes` app processes (min = max), its instance
    /// registry in the test's directory (`PASSENGER_INSTANCE_REGISTRY_DIR`, as a pod would set
    /// it); no telemetry or update check leaves the host. With `own_pid_ns` it runs in a pid
    /// namespace of its own, as in a pod (`unshare --pid --fork --mount-proc`; the frontend
    /// gets SIGTERM when the guarded `unshare` goes). `pids_to` gets the frontend's pid before
    /// the watchdog, core and app processes start (they inherit its cgroup).
    pub fn passenger(
        ns: &Netns,
        processes: u32,
        own_pid_ns: bool,
        pids_to: impl FnOnce(u32) -> anyhow::Result<()>,
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("config.ru"), RACK_APP)?;
        std::fs::create_dir_all(dir.path().join("registry"))?;
        let n = processes.to_string();
        let mut cmd = if own_pid_ns {
            let mut c = ns.command("unshare");
            c.args([
                "--pid",
                "--fork",
                "--kill-child=TERM",
                "--mount-proc",
                "passenger",
            ]);
            c
        } else {
            ns.command("passenger")
        };
        cmd.arg("start")
            .args([
                "--engine",
                "builtin",
                "--address",
                "127.0.0.1",
                "--port",
                "8080",
            ])
            .args(["--min-instances", &n, "--max-pool-size", &n])
            .args(["--environment", "none"])
            .args([
                "--disable-anonymous-telemetry",
                "--disable-security-update-check",
            ])
            .arg("--pid-file")
            .arg(dir.path().join("passenger.pid"))
            .arg("--log-file")
            .arg(dir.path().join("passenger.log"))
            .current_dir(dir.path())
            .env(
                "PASSENGER_INSTANCE_REGISTRY_DIR",
                dir.path().join("registry"),
            )
            .env("HR_DIR", dir.path())
            // Its scratch directory too, so a frontend killed with its pid namespace leaves none.
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            // The frontend's own words (why it did not start) go into the start error below.
            .stdout(std::fs::File::create(
                dir.path().join("passenger-start.out"),
            )?)
            .stderr(std::fs::File::create(
                dir.path().join("passenger-start.err"),
            )?);
        let guard = Guard::spawn("passenger", &mut cmd)?;
        if own_pid_ns {
            // The frontend, `unshare`'s child, before it starts anything (ruby boots first).
            let deadline = Instant::now() + Duration::from_secs(5);
            let child = loop {
                if let Some(c) = children(guard.pid() as i32).first() {
                    break *c;
                }
                anyhow::ensure!(Instant::now() < deadline, "unshare started no child");
                std::thread::sleep(Duration::from_millis(2));
            };
            pids_to(child as u32)?;
        } else {
            pids_to(guard.pid())?;
        }
        let s = Server {
            guard,
            dir,
            port: 8080,
            netns: Some(ns.name.clone()),
            socket: None,
            front: None,
        };
        // Generous: a fresh machine's first Passenger start spawns Ruby under a loaded 2-core box;
        // this is a start wait, not a measurement.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = s
                .passenger_status()
                .ok()
                .is_some_and(|g| g.len() == 1 && g[0].processes.len() == processes as usize);
            if ready && s.get("/").map(|b| b.contains("ok")).unwrap_or(false) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                // The log goes with the test's directory: its end is the diagnosis.
                let tail = |name: &str| {
                    let text = std::fs::read_to_string(s.dir.path().join(name)).unwrap_or_default();
                    let t: Vec<&str> = text.lines().rev().take(30).collect();
                    t.into_iter().rev().collect::<Vec<_>>().join("\n")
                };
                anyhow::bail!(
                    "Passenger did not start {processes} app processes within 120 s; passenger-status: {:?}; end of passenger.log:\n{}\nits stdout:\n{}\nits stderr:\n{}",
                    s.passenger_status(),
                    tail("passenger.log"),
                    tail("passenger-start.out"),
                    tail("passenger-start.err")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `passenger-status` (ground truth): its app groups, parsed from the text it prints.
    pub fn passenger_status(&self) -> anyhow::Result<Vec<PassengerGroup>> {
        let out = Command::new("passenger-status")
            .env(
                "PASSENGER_INSTANCE_REGISTRY_DIR",
                self.dir.path().join("registry"),
            )
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(out.status.success(), "passenger-status: {:?}", out.status);
        parse_passenger_status(&String::from_utf8_lossy(&out.stdout))
    }
}

/// The `----------- Application groups -----------` part of `passenger-status`'s text: a line
/// `NAME:` per group, then `Requests in queue: N` and `* PID: P   Sessions: S …` per process.
pub fn parse_passenger_status(text: &str) -> anyhow::Result<Vec<PassengerGroup>> {
    let mut out: Vec<PassengerGroup> = Vec::new();
    let Some((_, groups)) = text.split_once("Application groups") else {
        anyhow::bail!("no application groups in: {text}");
    };
    for line in groups.lines().skip(1) {
        let t = line.trim();
        let field = |name: &str| -> Option<u64> {
            let rest = t.split_once(name)?.1;
            rest.split_whitespace().next()?.parse().ok()
        };
        if !line.starts_with(' ') && t.ends_with(':') {
            out.push(PassengerGroup {
                name: t.trim_end_matches(':').to_string(),
                queue: 0,
                processes: Vec::new(),
            });
        } else if let Some(g) = out.last_mut() {
            if let Some(q) = field("Requests in queue:") {
                g.queue = q;
            } else if t.starts_with("* PID:") {
                let pid = field("PID:").ok_or_else(|| anyhow::anyhow!("bad line {t:?}"))?;
                let sessions =
                    field("Sessions:").ok_or_else(|| anyhow::anyhow!("bad line {t:?}"))?;
                g.processes.push((pid as i32, sessions));
            }
        }
    }
    Ok(out)
}
