//! Kubernetes access as kube-rs infers it: KUBECONFIG or ~/.kube/config, else in-cluster.

/// A client, or None with one info line naming what runs without it (`without`, e.g.
/// "running without pods and probes").
pub async fn client(without: &str) -> Option<::kube::Client> {
    match ::kube::Config::infer().await {
        Ok(cfg) => match ::kube::Client::try_from(cfg) {
            Ok(c) => Some(c),
            Err(error) => {
                tracing::info!(message = "No Kubernetes client.", without, %error);
                None
            }
        },
        Err(error) => {
            tracing::info!(
                message = "No Kubernetes access (neither in-cluster nor KUBECONFIG).",
                without,
                %error
            );
            None
        }
    }
}
