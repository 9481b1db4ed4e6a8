//! Node or sidecar: where the agent runs decides what it can see. A DaemonSet agent sees the
//! node (the host's /proc, every ENI); a sidecar (EKS Fargate runs no DaemonSets) sees only its
//! own pod: its network namespace, its interfaces (eth0 is the pod's ENI there) and the
//! processes of its pid namespace. Same sources, same report: a mode, not a fork.

use serde::{Deserialize, Serialize};

/// `mode` in the config, `--mode` on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ModeChoice {
    /// Sidecar when there is no host /proc at `proc_root` and the agent runs in a pod
    /// (`KUBERNETES_SERVICE_HOST` is set), else node.
    #[default]
    Auto,
    Node,
    Sidecar,
}

/// The mode the agent runs in, as the report's `node.mode` says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Node,
    Sidecar,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Node => "node",
            Mode::Sidecar => "sidecar",
        }
    }
}

/// Pure: the mode for `choice`, and why (the one log line at startup).
pub fn resolve(
    choice: ModeChoice,
    proc_root: &str,
    host_proc: bool,
    in_pod: bool,
) -> (Mode, String) {
    match choice {
        ModeChoice::Node => (Mode::Node, "mode = \"node\" configured".into()),
        ModeChoice::Sidecar => (Mode::Sidecar, "mode = \"sidecar\" configured".into()),
        ModeChoice::Auto if !host_proc && in_pod => (
            Mode::Sidecar,
            format!("no host /proc at proc_root '{proc_root}' and KUBERNETES_SERVICE_HOST is set: a pod without the node's view"),
        ),
        ModeChoice::Auto if host_proc => (
            Mode::Node,
            format!("the host's /proc is at proc_root '{proc_root}'"),
        ),
        ModeChoice::Auto => (
            Mode::Node,
            format!("not in a pod (no KUBERNETES_SERVICE_HOST), though proc_root '{proc_root}' is missing"),
        ),
    }
}

/// Whether `proc_root` is a /proc of its own (a mounted host /proc or this process's): a
/// directory holding `self`.
pub fn has_proc(proc_root: &str) -> bool {
    std::path::Path::new(proc_root).join("self").exists()
}

/// The sidecar's own pod, from the downward API (`POD_NAME`, `POD_NAMESPACE`, `POD_UID`,
/// `POD_IP`); each unset is null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OwnPod {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
    pub ip: Option<String>,
}

/// Longest value taken from the environment (a Kubernetes name is at most 253 bytes).
const MAX_ENV: usize = 253;

impl OwnPod {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> OwnPod {
        let v = |k: &str| {
            get(k)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.len() <= MAX_ENV)
        };
        OwnPod {
            namespace: v("POD_NAMESPACE"),
            name: v("POD_NAME"),
            uid: v("POD_UID"),
            ip: v("POD_IP"),
        }
    }

    /// The listeners' and probes' pod reference, when the uid is known.
    pub fn pod_ref(&self) -> Option<crate::sources::listeners::PodRef> {
        Some(crate::sources::listeners::PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_sidecar_only_in_a_pod_without_a_host_proc() {
        let cases = [
            (ModeChoice::Auto, false, true, Mode::Sidecar),
            (ModeChoice::Auto, true, true, Mode::Node),
            (ModeChoice::Auto, false, false, Mode::Node),
            (ModeChoice::Auto, true, false, Mode::Node),
            (ModeChoice::Node, false, true, Mode::Node),
            (ModeChoice::Sidecar, true, false, Mode::Sidecar),
        ];
        for (choice, host_proc, in_pod, want) in cases {
            let (got, why) = resolve(choice, "/host/proc", host_proc, in_pod);
            assert_eq!(
                got, want,
                "{choice:?} host_proc={host_proc} in_pod={in_pod}: {why}"
            );
            assert!(!why.is_empty());
        }
        let (_, why) = resolve(ModeChoice::Auto, "/host/proc", false, true);
        assert!(
            why.contains("/host/proc") && why.contains("KUBERNETES_SERVICE_HOST"),
            "{why}"
        );
    }

    #[test]
    fn has_proc_needs_a_proc_with_self() {
        assert!(has_proc("/proc"));
        assert!(!has_proc("/nonexistent-host-proc"));
        let d = tempfile::tempdir().unwrap();
        assert!(!has_proc(d.path().to_str().unwrap()));
    }

    #[test]
    fn own_pod_from_the_downward_api() {
        let env = |k: &str| match k {
            "POD_NAME" => Some("web-0".to_string()),
            "POD_NAMESPACE" => Some("shop".to_string()),
            "POD_UID" => Some(" 1234-abcd ".to_string()),
            "POD_IP" => Some(String::new()),
            _ => None,
        };
        let p = OwnPod::from_env(env);
        assert_eq!(p.name.as_deref(), Some("web-0"));
        assert_eq!(p.uid.as_deref(), Some("1234-abcd"));
        assert_eq!(p.ip, None, "an empty value is unset");
        assert_eq!(p.pod_ref().unwrap().uid, "1234-abcd");
        let long = OwnPod::from_env(|_| Some("x".repeat(300)));
        assert_eq!(
            long,
            OwnPod::default(),
            "values beyond a name's length are refused"
        );
        assert!(long.pod_ref().is_none());
    }
}
