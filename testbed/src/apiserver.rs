//! A fake Kubernetes API server that speaks the real list + watch protocol over plain HTTP/1.1
//! for pods, nodes, autoscaling/v2 HorizontalPodAutoscalers, apps/v1 Deployments and
//! StatefulSets and policy/v1 PodDisruptionBudgets (cluster-wide paths, as `Api::all` uses them, e.g.
//! `/apis/autoscaling/v2/horizontalpodautoscalers`): a list such as
//! `GET /api/v1/pods?fieldSelector=spec.nodeName%3DNODE` answers a PodList with
//! `metadata.resourceVersion`; `?watch=true&resourceVersion=RV` streams newline-delimited watch
//! events (ADDED, MODIFIED, DELETED, and BOOKMARK when `allowWatchBookmarks=true`) newer than
//! RV; after [`ApiServer::expire`] open watches and watches from an older resourceVersion get an
//! `ERROR` event carrying a Status with code 410 (Expired), as the real server sends when its
//! watch cache no longer reaches back that far, so clients must list again. One
//! resourceVersion counter serves every kind, as etcd's does.
//!
//! It answers TokenReviews (`POST /apis/authentication.k8s.io/v1/tokenreviews`, the
//! authentication.k8s.io/v1 shapes: the request's `spec` echoed back with a `status` of
//! `authenticated`, `audiences` (the token's audiences that the request asked for), `user`
//! {username, uid, groups, extra} and `error` when refused) for tokens the test registers with
//! [`ApiServer::add_token`], and single pods (`GET /api/v1/namespaces/NS/pods/NAME`, 404 with a
//! NotFound Status when absent).
//!
//! It also plays the node's kubelet for `GET /metrics/probes` (a Prometheus text exposition the
//! test sets, served only with the expected bearer token, else 401).
//!
//! The test drives it as a scenario: [`ApiServer::apply`], [`ApiServer::delete`],
//! [`ApiServer::expire`], and reads back the requests it served.

use crate::netns::Netns;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    rv: u64,
    /// (resource, namespace, name) → object, with metadata.resourceVersion set.
    objects: BTreeMap<(&'static str, String, String), Value>,
    /// (resourceVersion, type, resource, object) in order.
    events: Vec<(u64, &'static str, &'static str, Value)>,
    /// Watches from a resourceVersion below this get 410 Gone.
    oldest: u64,
    /// Bumped by `expire`: open watches end with 410.
    epoch: u64,
    requests: Vec<String>,
    /// The kubelet's `/metrics/probes` text and the token it requires.
    kubelet_metrics: String,
    kubelet_token: String,
    /// Tokens a TokenReview authenticates.
    tokens: BTreeMap<String, TokenUser>,
    /// The TokenReview request bodies received.
    reviews: Vec<Value>,
}

/// Who a registered token is, as a TokenReview reports it.
#[derive(Debug, Clone)]
pub struct TokenUser {
    /// The audiences the token was issued for.
    pub audiences: Vec<String>,
    /// `system:serviceaccount:NS:NAME`.
    pub username: String,
    /// `status.user.extra`, e.g. `authentication.kubernetes.io/pod-name`.
    pub extra: Vec<(String, String)>,
}

impl TokenUser {
    /// A projected token of ServiceAccount `ns/sa` for `audience`, bound to pod `pod` (and, as
    /// API servers from 1.30 add, naming its node when `node` is given).
    pub fn pod_bound(
        ns: &str,
        sa: &str,
        audience: &str,
        pod: &Value,
        node: Option<&str>,
    ) -> TokenUser {
        let m = &pod["metadata"];
        let mut extra = vec![
            (
                "authentication.kubernetes.io/credential-id".to_string(),
                "JTI=7ee52be0-9045-4653-aa5e-0da57b8dccdc".to_string(),
            ),
            (
                "authentication.kubernetes.io/pod-name".to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
            ),
            (
                "authentication.kubernetes.io/pod-uid".to_string(),
                m["uid"].as_str().unwrap_or_default().to_string(),
            ),
        ];
        if let Some(n) = node {
            extra.push((
                "authentication.kubernetes.io/node-name".to_string(),
                n.to_string(),
            ));
        }
        TokenUser {
            audiences: vec![audience.to_string()],
            username: format!("system:serviceaccount:{ns}:{sa}"),
            extra,
        }
    }
}

/// A JWT-shaped token (`header.claims.signature`, base64url) whose claims are `claims`: what
/// a projected ServiceAccount token looks like to a reader that does not verify it.
pub fn jwt_shaped(claims: &Value) -> String {
    fn b64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
    let header = json!({"alg": "RS256", "kid": "test"});
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(b"not-a-signature")
    )
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

/// A running fake API server; stops on drop.
pub struct ApiServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn bind_in(ns: Option<&Netns>) -> anyhow::Result<TcpListener> {
    let Some(ns) = ns else {
        return Ok(TcpListener::bind("127.0.0.1:0")?);
    };
    let path = format!("/var/run/netns/{}", ns.name);
    // A thread of its own enters the namespace; the socket it binds stays there.
    std::thread::spawn(move || -> anyhow::Result<TcpListener> {
        let f = std::fs::File::open(&path)?;
        use std::os::fd::AsRawFd;
        // SAFETY: setns(2) on a descriptor we own; it changes only this thread's namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        anyhow::ensure!(rc == 0, "setns {path}: {}", std::io::Error::last_os_error());
        Ok(TcpListener::bind("127.0.0.1:0")?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("bind thread panicked"))?
}

impl ApiServer {
    /// Listens on 127.0.0.1 (an ephemeral port) in this process's namespace, or in `ns`.
    pub fn start(ns: Option<&Netns>) -> anyhow::Result<ApiServer> {
        let listener = bind_in(ns)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rv: 100,
                oldest: 0,
                ..State::default()
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || {
                            let _ = serve(stream, &s);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(ApiServer {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// Writes a kubeconfig whose cluster is this server over plain HTTP.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(path, text)?;
        Ok(())
    }

    /// Adds or replaces an object (ADDED or MODIFIED); returns its resourceVersion. Its
    /// `kind` says which collection it joins (Pod when absent); see [`KINDS`].
    pub fn apply(&self, mut obj: Value) -> u64 {
        let resource = resource_of(&obj);
        let mut st = self.shared.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let (ns, name) = key_of(&obj);
        let key = (resource, ns, name);
        let kind = if st.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.objects.insert(key, obj.clone());
        st.events.push((rv, kind, resource, obj));
        drop(st);
        self.shared.changed.notify_all();
        rv
    }

    /// Deletes a pod (DELETED); false when there was none.
    pub fn delete(&self, namespace: &str, name: &str) -> bool {
        self.delete_kind("Pod", namespace, name)
    }

    /// Deletes an object of `kind` (DELETED); false when there was none.
    pub fn delete_kind(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let Some(k) = KINDS.iter().find(|k| k.kind == kind) else {
            return false;
        };
        let mut st = self.shared.state.lock().unwrap();
        let key = (k.resource, namespace.to_string(), name.to_string());
        let Some(mut obj) = st.objects.remove(&key) else {
            return false;
        };
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.events.push((rv, "DELETED", k.resource, obj));
        drop(st);
        self.shared.changed.notify_all();
        true
    }

    /// Forgets the event history: open watches end with 410 Gone, and so does any watch from
    /// a resourceVersion older than now; clients must list again.
    pub fn expire(&self) {
        let mut st = self.shared.state.lock().unwrap();
        st.oldest = st.rv;
        st.events.clear();
        st.epoch += 1;
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Sets what `GET /metrics/probes` answers to requests bearing `token`.
    pub fn set_kubelet_metrics(&self, token: &str, text: &str) {
        let mut st = self.shared.state.lock().unwrap();
        st.kubelet_token = token.to_string();
        st.kubelet_metrics = text.to_string();
    }

    /// Makes `token` one a TokenReview authenticates as `user`.
    pub fn add_token(&self, token: &str, user: TokenUser) {
        self.shared
            .state
            .lock()
            .unwrap()
            .tokens
            .insert(token.to_string(), user);
    }

    /// Forgets `token`: reviews of it fail from now on.
    pub fn revoke_token(&self, token: &str) {
        self.shared.state.lock().unwrap().tokens.remove(token);
    }

    /// The TokenReview request bodies received so far.
    pub fn token_reviews(&self) -> Vec<Value> {
        self.shared.state.lock().unwrap().reviews.clone()
    }

    /// The request targets served so far (`/api/v1/pods?…`).
    pub fn requests(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// Pod lists served (requests without `watch=true`).
    pub fn lists(&self) -> usize {
        self.lists_of("/api/v1/pods")
    }

    /// Lists served on a collection path such as `/apis/apps/v1/deployments`.
    pub fn lists_of(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.split('?').next() == Some(path))
            .filter(|r| !r.contains("watch=true") && !r.contains("watch=1"))
            .count()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One collection the server serves.
pub struct Kind {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub resource: &'static str,
    /// The cluster-wide collection path.
    pub path: &'static str,
}

/// Every collection served.
pub const KINDS: &[Kind] = &[
    Kind {
        kind: "Pod",
        api_version: "v1",
        resource: "pods",
        path: "/api/v1/pods",
    },
    Kind {
        kind: "Node",
        api_version: "v1",
        resource: "nodes",
        path: "/api/v1/nodes",
    },
    Kind {
        kind: "HorizontalPodAutoscaler",
        api_version: "autoscaling/v2",
        resource: "horizontalpodautoscalers",
        path: "/apis/autoscaling/v2/horizontalpodautoscalers",
    },
    Kind {
        kind: "Deployment",
        api_version: "apps/v1",
        resource: "deployments",
        path: "/apis/apps/v1/deployments",
    },
    Kind {
        kind: "StatefulSet",
        api_version: "apps/v1",
        resource: "statefulsets",
        path: "/apis/apps/v1/statefulsets",
    },
    Kind {
        kind: "PodDisruptionBudget",
        api_version: "policy/v1",
        resource: "poddisruptionbudgets",
        path: "/apis/policy/v1/poddisruptionbudgets",
    },
];

fn resource_of(obj: &Value) -> &'static str {
    let kind = obj["kind"].as_str().unwrap_or("Pod");
    KINDS
        .iter()
        .find(|k| k.kind == kind)
        .map(|k| k.resource)
        .unwrap_or("pods")
}

fn key_of(pod: &Value) -> (String, String) {
    if resource_of(pod) == "nodes" {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        return (String::new(), name.to_string());
    }
    let m = &pod["metadata"];
    (
        m["namespace"].as_str().unwrap_or("default").to_string(),
        m["name"].as_str().unwrap_or_default().to_string(),
    )
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let bytes: Option<Vec<u8>> = b
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Percent-decoding of a query value (`%3D` → `=`, `+` → space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(target: &str) -> BTreeMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Whether `pod` matches a field selector such as `spec.nodeName=node1` (the only field used).
fn selects(selector: Option<&String>, pod: &Value) -> bool {
    let Some(sel) = selector else { return true };
    sel.split(',').all(|term| match term.split_once("!=") {
        Some((f, v)) => field(pod, f) != v,
        None => match term.split_once('=') {
            Some((f, v)) => field(pod, f.trim_end_matches('=')) == v,
            None => true,
        },
    })
}

fn field(pod: &Value, path: &str) -> String {
    let mut v = pod;
    for part in path.split('.') {
        v = &v[part];
    }
    v.as_str().unwrap_or_default().to_string()
}

fn respond(stream: &mut TcpStream, code: u16, reason: &str, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn chunk(stream: &mut TcpStream, line: &Value) -> std::io::Result<()> {
    let data = format!("{line}\n");
    write!(stream, "{:x}\r\n{data}\r\n", data.len())?;
    stream.flush()
}

fn status_410(rv: u64) -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": format!("too old resource version: {rv}"),
        "reason": "Expired", "code": 410}})
}

/// The TokenReview a real API server answers for `req`: its spec echoed, and a status.
fn token_review(tokens: &BTreeMap<String, TokenUser>, req: &Value) -> Value {
    let spec = &req["spec"];
    let token = spec["token"].as_str().unwrap_or_default();
    // Without spec.audiences the API server's own audience is meant.
    let asked: Vec<String> = match spec["audiences"].as_array() {
        Some(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        None => vec!["https://kubernetes.default.svc.cluster.local".into()],
    };
    let status = match tokens.get(token) {
        None => {
            json!({"user": {}, "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive]"})
        }
        Some(u) => {
            let both: Vec<&String> = u.audiences.iter().filter(|a| asked.contains(a)).collect();
            if both.is_empty() {
                json!({"user": {}, "error": format!("[invalid bearer token, token audiences {:?} is invalid for the target audiences {:?}]", u.audiences, asked)})
            } else {
                let mut extra = serde_json::Map::new();
                for (k, v) in &u.extra {
                    extra.insert(k.clone(), json!([v]));
                }
                let ns = u.username.split(':').nth(2).unwrap_or_default();
                json!({"authenticated": true, "audiences": both, "user": {
                    "username": u.username, "uid": "f8b4161b-2e2b-11e9-86b7-2afc33b31a7e",
                    "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
                    "extra": extra}})
            }
        }
    };
    json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null}, "spec": spec, "status": status})
}

fn serve(mut stream: TcpStream, s: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut authorization = String::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = v.trim().to_string();
            }
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    s.state.lock().unwrap().requests.push(target.to_string());
    let path = target.split('?').next().unwrap_or("");
    if method == "GET" && path == "/metrics/probes" {
        let st = s.state.lock().unwrap();
        let (code, reason, body) = if authorization == format!("Bearer {}", st.kubelet_token) {
            (200, "OK", st.kubelet_metrics.clone())
        } else {
            (401, "Unauthorized", "Unauthorized\n".to_string())
        };
        drop(st);
        write!(
            stream,
            "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return stream.flush();
    }
    if method == "POST" && path == "/apis/authentication.k8s.io/v1/tokenreviews" {
        use std::io::Read;
        let mut body = vec![0u8; length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut st = s.state.lock().unwrap();
        st.reviews.push(req.clone());
        let reply = token_review(&st.tokens, &req);
        drop(st);
        return respond(&mut stream, 201, "Created", &reply);
    }
    if let Some((ns, name)) = path
        .strip_prefix("/api/v1/namespaces/")
        .and_then(|r| r.split_once("/pods/"))
        .filter(|(_, n)| method == "GET" && !n.contains('/'))
    {
        let st = s.state.lock().unwrap();
        let pod = st
            .objects
            .get(&("pods", ns.to_string(), name.to_string()))
            .cloned();
        drop(st);
        return match pod {
            Some(p) => respond(&mut stream, 200, "OK", &p),
            None => {
                let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("pods \"{name}\" not found"), "reason": "NotFound",
                    "details": {"name": name, "kind": "pods"}, "code": 404});
                respond(&mut stream, 404, "Not Found", &body)
            }
        };
    }
    let Some(k) = KINDS
        .iter()
        .find(|k| k.path == path)
        .filter(|_| method == "GET")
    else {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("the fake API server serves only GET on {}, not {method} {path}",
                KINDS.iter().map(|k| k.path).collect::<Vec<_>>().join(", ")),
            "reason": "NotFound", "code": 404});
        return respond(&mut stream, 404, "Not Found", &body);
    };
    let q = query(target);
    let selector = q.get("fieldSelector");
    let watch = q.get("watch").is_some_and(|v| v == "true" || v == "1");
    if !watch {
        // Paged as the real server pages (`limit`, `continue`): items in key order after the
        // token's key, the token opaque to the client (hex of resourceVersion and key).
        let limit: usize = q
            .get("limit")
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(usize::MAX);
        let after = q.get("continue").and_then(|t| unhex(t));
        let st = s.state.lock().unwrap();
        let (rv, from) = match &after {
            Some(t) => {
                let (rv, key) = t.split_once('\n').unwrap_or((t.as_str(), ""));
                let (ns, name) = key.split_once('\n').unwrap_or(("", ""));
                (rv.to_string(), Some((ns.to_string(), name.to_string())))
            }
            None => (st.rv.to_string(), None),
        };
        let mut matching = st.objects.iter().filter(|((r, ns, name), p)| {
            *r == k.resource
                && from.as_ref().is_none_or(|f| (ns, name) > (&f.0, &f.1))
                && selects(selector, p)
        });
        let items: Vec<Value> = matching
            .by_ref()
            .take(limit)
            .map(|(_, p)| p.clone())
            .collect();
        let remaining = matching.count();
        let mut meta = json!({"resourceVersion": rv});
        if remaining > 0 {
            let last = items.last().map(key_of).unwrap_or_default();
            meta["continue"] = json!(hex(&format!("{rv}\n{}\n{}", last.0, last.1)));
            meta["remainingItemCount"] = json!(remaining);
        }
        drop(st);
        let body = json!({"kind": format!("{}List", k.kind), "apiVersion": k.api_version,
            "metadata": meta, "items": items});
        return respond(&mut stream, 200, "OK", &body);
    }
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = Duration::from_secs(
        q.get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(290),
    );
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let end = Instant::now() + timeout;
    let mut sent = from;
    let mut st = s.state.lock().unwrap();
    let epoch = st.epoch;
    let mut last_bookmark = Instant::now();
    loop {
        if s.stop.load(Ordering::SeqCst) {
            break;
        }
        if from < st.oldest || st.epoch != epoch {
            let e = status_410(from);
            drop(st);
            chunk(&mut stream, &e)?;
            break;
        }
        let new: Vec<Value> = st
            .events
            .iter()
            .filter(|(rv, _, r, p)| *rv > sent && *r == k.resource && selects(selector, p))
            .map(|(_, t, _, p)| json!({"type": t, "object": p}))
            .collect();
        let head = st.rv;
        drop(st);
        for e in &new {
            chunk(&mut stream, e)?;
        }
        sent = head;
        if bookmarks && last_bookmark.elapsed() >= Duration::from_secs(1) {
            let b = json!({"type": "BOOKMARK", "object": {"kind": k.kind, "apiVersion": k.api_version,
                "metadata": {"resourceVersion": head.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"}}}});
            chunk(&mut stream, &b)?;
            last_bookmark = Instant::now();
        }
        if Instant::now() >= end {
            break;
        }
        st = s.state.lock().unwrap();
        if st.rv == head && st.epoch == epoch && !s.stop.load(Ordering::SeqCst) {
            st = s
                .changed
                .wait_timeout(st, Duration::from_millis(250))
                .unwrap()
                .0;
        }
    }
    write!(stream, "0\r\n\r\n")?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, target: &str) -> (String, TcpStream) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        (String::new(), s)
    }

    fn pod(name: &str, node: &str) -> Value {
        json!({"metadata": {"namespace": "a", "name": name, "uid": name}, "spec": {"nodeName": node, "containers": []}})
    }

    fn post(addr: SocketAddr, target: &str, body: &Value) -> (u16, Value) {
        let mut s = TcpStream::connect(addr).unwrap();
        let b = body.to_string();
        write!(s, "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        (
            code,
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap(),
        )
    }

    #[test]
    fn token_reviews_and_single_pods_answer_as_the_api_server_does() {
        let api = ApiServer::start(None).unwrap();
        let p = pod("agent-1", "n1");
        api.apply(p.clone());
        api.add_token("t1", TokenUser::pod_bound("a", "agent", "aud", &p, None));
        let review = |token: &str, aud: &str| {
            post(
                api.addr,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": token, "audiences": [aud]}}),
            )
        };
        let (code, ok) = review("t1", "aud");
        assert_eq!(code, 201);
        assert_eq!(ok["status"]["authenticated"], true);
        assert_eq!(ok["status"]["audiences"], json!(["aud"]));
        assert_eq!(
            ok["status"]["user"]["username"],
            "system:serviceaccount:a:agent"
        );
        assert_eq!(
            ok["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"],
            json!(["agent-1"])
        );
        assert_eq!(ok["spec"]["token"], "t1");
        let (_, other) = review("t1", "elsewhere");
        assert!(other["status"]["authenticated"].is_null());
        assert!(other["status"]["error"]
            .as_str()
            .unwrap()
            .contains("audiences"));
        let (_, bad) = review("nope", "aud");
        assert!(bad["status"]["error"]
            .as_str()
            .unwrap()
            .contains("invalid bearer token"));
        assert_eq!(api.token_reviews().len(), 3);
        let (_, mut s) = get(api.addr, "/api/v1/namespaces/a/pods/agent-1");
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200") && text.contains("\"nodeName\":\"n1\""),
            "{text}"
        );
        let (_, mut s) = get(api.addr, "/api/v1/namespaces/a/pods/gone");
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404") && text.contains("NotFound"),
            "{text}"
        );
        let t = jwt_shaped(&json!({"exp": 1700000000}));
        assert_eq!(t.split('.').count(), 3);
        assert_eq!(t.split('.').nth(1).unwrap(), "eyJleHAiOjE3MDAwMDAwMDB9");
    }

    #[test]
    fn list_filters_by_node_and_watch_streams_then_expires() {
        let api = ApiServer::start(None).unwrap();
        api.apply(pod("p1", "n1"));
        api.apply(pod("p2", "n2"));
        let (_, mut s) = get(
            api.addr,
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=500",
        );
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["items"].as_array().unwrap().len(), 1);
        assert_eq!(body["items"][0]["metadata"]["name"], "p1");
        let rv = body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, s) = get(
            api.addr,
            &format!("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=5"),
        );
        api.apply(pod("p3", "n1"));
        api.apply(pod("p4", "n2"));
        api.delete("a", "p1");
        let mut r = BufReader::new(s);
        let mut types = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            // Chunk-size lines of the chunked encoding are skipped (not objects with a type).
            let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
                continue;
            };
            if let Some(t) = v["type"].as_str() {
                types.push(t.to_string());
                if types.len() == 2 {
                    api.expire();
                }
                if v["type"] == "ERROR" {
                    assert_eq!(v["object"]["code"], 410);
                    break;
                }
            }
        }
        assert_eq!(types[..2], ["ADDED", "DELETED"], "{types:?}");
        assert_eq!(types.last().unwrap(), "ERROR", "{types:?}");
        assert_eq!(api.lists(), 1);
    }

    #[test]
    fn serves_each_kind_on_its_own_path() {
        let api = ApiServer::start(None).unwrap();
        api.apply(pod("p1", "n1"));
        api.apply(
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 10}}),
        );
        api.apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"namespace": "shop", "name": "web"}, "spec": {"replicas": 3}}));
        let list = |path: &str| -> Value {
            let (_, mut s) = get(api.addr, path);
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
        };
        let h = list("/apis/autoscaling/v2/horizontalpodautoscalers");
        assert_eq!(h["kind"], "HorizontalPodAutoscalerList");
        assert_eq!(h["apiVersion"], "autoscaling/v2");
        assert_eq!(h["items"].as_array().unwrap().len(), 1);
        assert_eq!(h["items"][0]["metadata"]["name"], "web");
        let d = list("/apis/apps/v1/deployments");
        assert_eq!(d["items"][0]["spec"]["replicas"], 3);
        assert_eq!(list("/api/v1/pods")["items"].as_array().unwrap().len(), 1);
        assert_eq!(
            list("/apis/apps/v1/statefulsets")["items"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
        // policy/v1 PodDisruptionBudgets, and lists paged by limit and continue.
        api.apply(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"namespace": "shop", "name": "web"}, "spec": {"maxUnavailable": 1}}),
        );
        let b = list("/apis/policy/v1/poddisruptionbudgets");
        assert_eq!(
            (b["kind"].as_str(), b["apiVersion"].as_str()),
            (Some("PodDisruptionBudgetList"), Some("policy/v1"))
        );
        api.apply(pod("p2", "n1"));
        api.apply(pod("p3", "n2"));
        let mut names = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let l = list(&format!("/api/v1/pods?limit=2{token}"));
            pages += 1;
            names.extend(
                l["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["metadata"]["name"].as_str().unwrap().to_string()),
            );
            match l["metadata"]["continue"].as_str() {
                Some(c) => {
                    assert_eq!(l["metadata"]["remainingItemCount"], 1);
                    token = format!("&continue={c}");
                }
                None => break,
            }
        }
        assert_eq!(
            (names, pages),
            (vec!["p1".to_string(), "p2".into(), "p3".into()], 2)
        );
        assert!(api.delete_kind("Deployment", "shop", "web"));
        assert!(list("/apis/apps/v1/deployments")["items"]
            .as_array()
            .unwrap()
            .is_empty());
        assert_eq!(api.lists_of("/apis/apps/v1/deployments"), 2);
        // A watch on deployments sees only deployments.
        let (_, s) = get(
            api.addr,
            &format!(
                "/apis/apps/v1/deployments?watch=true&resourceVersion={}&timeoutSeconds=2",
                100
            ),
        );
        let mut r = BufReader::new(s);
        let mut seen = Vec::new();
        let mut line = String::new();
        while r.read_line(&mut line).unwrap() > 0 {
            // Chunk-size lines may parse as numbers: only objects with a type count.
            if let Some(v) = serde_json::from_str::<Value>(line.trim())
                .ok()
                .filter(|v| v["type"].is_string())
            {
                seen.push((
                    v["type"].as_str().unwrap().to_string(),
                    v["object"]["kind"].as_str().unwrap().to_string(),
                ));
            }
            line.clear();
        }
        assert_eq!(
            seen,
            [
                ("ADDED".to_string(), "Deployment".to_string()),
                ("DELETED".to_string(), "Deployment".to_string())
            ]
        );
    }

    #[test]
    fn decodes_queries() {
        let q = query("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&watch=true");
        assert_eq!(q["fieldSelector"], "spec.nodeName=node-1");
        assert_eq!(decode("a%2"), "a%2");
    }
}
