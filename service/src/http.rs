//! The HTTP/1.1 serve loop both binaries use: one task per connection, a 10 s header timeout
//! (and 10 s for a TLS handshake), graceful shutdown (open requests get 5 s to finish).

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::tls::{handshake, Alpn, ServerTls};

/// A bound socket and, when TLS is on, what it serves TLS with.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<Arc<ServerTls>>,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Listener {
        Listener { tcp, tls: None }
    }
}

impl Listener {
    pub fn new(tcp: TcpListener, tls: Option<Arc<ServerTls>>) -> Listener {
        Listener { tcp, tls }
    }
}

pub type Reply = Response<Full<Bytes>>;

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";

/// A complete response.
pub fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Serves `handler` on `listener` (plain TCP, or TLS when it has one) until `shutdown`
/// completes.
pub async fn serve<H, F>(
    listener: impl Into<Listener>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let Listener { tcp: listener, tls } = listener.into();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let (stream, _) = match conn {
                    Ok(c) => c,
                    Err(error) => {
                        tracing::warn!(message = "Accept failed.", %error);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let svc = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let http = {
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10));
                    b
                };
                match &tls {
                    None => {
                        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    Some(tls) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config(Alpn::Http1));
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let Some(stream) = handshake(&acceptor, stream).await else {
                                return;
                            };
                            let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), svc)).await;
                        });
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_until_shutdown() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            l,
            |req: Request<Incoming>| async move {
                reply(StatusCode::OK, TEXT, format!("path {}\n", req.uri().path()))
            },
            async {
                let _ = rx.await;
            },
        ));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
        assert!(
            got.contains("content-type: text/plain; charset=utf-8"),
            "{got}"
        );
        assert!(got.ends_with("path /x\n"), "{got}");
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(6), server)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}
