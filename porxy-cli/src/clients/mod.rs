//! The clients of an admin front end, whatever protocol they speak: the register that bounds
//! how many are served at once and picks the one to evict (`register`), how long each may take
//! (`deadlines`: a whole request within the idle timeout, a whole reply within the write
//! timeout), and the streams whose reads and writes those deadlines bound (`stream`).
//!
//! The control socket's line protocol is one front end (`crate::control`); an HTTP or JSON-RPC
//! one would share this module. Nothing here knows what a request or a reply says.

mod deadlines;
pub(crate) mod listener;
mod register;
mod stream;

pub use deadlines::{Deadlines, DEFAULT_IDLE_TIMEOUT};
pub use listener::{
    reachable_from_outside, BoundAddr, Closer, ListenAddr, ListenError, ListenSocket,
};
pub use register::{Admission, Member, Register, Standing, MAX_CLIENTS};
pub(crate) use stream::{write_all_by, ClientStream, TimedRead};
