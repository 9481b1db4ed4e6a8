//! The resolver checks' report section (`resolver_checks[]`).

use serde::Serialize;

/// One check's result (`resolver_checks` in the report).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResolverCheck {
    pub resolver: String,
    pub qname: String,
    /// NOERROR, NXDOMAIN, … as answered; TIMEOUT; or ERROR.
    pub rcode: String,
    pub elapsed_ms: f64,
    pub attempt: u32,
    /// RFC 3339, when the check started.
    pub at: String,
    /// Addresses in the answer (empty unless NOERROR with records).
    pub answers: Vec<String>,
}
