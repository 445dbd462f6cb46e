//! The routing table as JSON, both ways: what runs, shown as the config file's listener and
//! backend tables are, field for field ([`show`]); and routes read back from that shape, each
//! checked as the config file's listeners are ([`lift`]). The admin API serves and takes it;
//! the state file keeps it.

pub mod lift;
pub mod show;
