//! DNS understanding on top of the link-local capture: who asks what, what goes unanswered, and
//! how many packets the search list (ndots) costs, and how many a node-local cache would have
//! answered. Only outgoing packets count toward the
//! limit; replies are captured to match them.

pub mod cache;
pub mod name;
pub mod parse;
pub mod pending;
pub mod search;
pub mod topk;
pub mod tracker;
