//! Enrichment: what the sources cannot know themselves, added to each report before it is
//! exported. Today: pod identity (which pod and workload a listener or DNS source belongs to).

pub mod own_pod;
pub mod pods;
