//! What every sender of the collector shares (traces onward, Alertmanager, the webhook): one
//! plain-HTTP client set-up and one retry pause (the shared jittered backoff, cut short by
//! shutdown).

use headroom_service::backoff::Backoff;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1.1 client (no Nagle delay, idle connections closed after 30 s).
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// A sender's backoff: from `first`, doubling up to `cap`, each delay jittered in its upper
/// half.
pub struct Retry {
    backoff: Backoff,
}

impl Retry {
    pub fn new(first: Duration, cap: Duration) -> Retry {
        Retry {
            backoff: Backoff::new(first, cap),
        }
    }

    /// Waits the next delay; false when `stop` came first (the sender should end).
    pub async fn pause(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.backoff.next_delay()) => true,
            _ = stop.cancelled() => false,
        }
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_waits_at_least_half_its_delay_and_stop_ends_it() {
        let mut r = Retry::new(Duration::from_millis(40), Duration::from_secs(30));
        let stop = CancellationToken::new();
        let t0 = std::time::Instant::now();
        assert!(r.pause(&stop).await);
        assert!(t0.elapsed() >= Duration::from_millis(20));
        stop.cancel();
        assert!(!r.pause(&stop).await);
    }
}
