//! SIGTERM (Kubernetes) and SIGINT (a terminal) as a future, for servers that take
//! `shutdown: impl Future` (tests pass `std::future::pending()`).

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(message = "Cannot listen for SIGTERM; Ctrl-C only.", %error);
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down."),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down."),
    }
}
