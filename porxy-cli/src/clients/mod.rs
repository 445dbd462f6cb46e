//! The clients of an admin front end, whatever protocol they speak: the listening socket and
//! its accept thread (`listener`), the register that bounds how many are served at once and
//! picks the one to evict (`register`), how long each may take (`deadlines`: a whole request
//! within the idle timeout, a whole reply within the write timeout), the streams whose reads
//! and writes those deadlines bound (`stream`), and a reader of bounded lines (`lines`).
//!
//! The front ends: the control socket (`crate::control`), the HTTP admin endpoint and the
//! JSON-RPC socket (`crate::admin`). Nothing here knows what a request or a reply says.

mod deadlines;
mod lines;
pub(crate) mod listener;
mod register;
mod stream;

pub use deadlines::{Deadlines, DEFAULT_IDLE_TIMEOUT};
pub(crate) use lines::{Line, LineReader};
pub use listener::{
    reachable_from_outside, BoundAddr, Closer, ListenAddr, ListenError, ListenSocket,
};
pub use register::{Admission, Member, Register, Standing, MAX_CLIENTS};
pub(crate) use stream::{write_all_by, ClientStream, TimedRead};
