//! The admin API's own JSON: status ([`status`]) and what commands did ([`outcome`]); the
//! routing table's is `crate::route_table`'s.

pub mod outcome;
pub mod status;
