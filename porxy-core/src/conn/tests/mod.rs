//! Unit tests of the connection state machine, with fake streams and no sockets.
//!
//! A [`FakeStream`] plays back a script of read results and write behaviours and records what
//! was written to it. Time is passed in as `t0 + Duration`; nothing sleeps. Tests are named
//! `<phase>_<event>`.

mod fake;
mod handover;
mod lifecycle;
mod relaying;
