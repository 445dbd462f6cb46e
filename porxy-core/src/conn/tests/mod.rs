//! Unit tests of the connection state machine, with fake streams and no sockets.
//!
//! A [`FakeStream`] plays back a script of read results and write behaviours and records what
//! was written to it. Time is passed in as `t0 + Duration`; nothing sleeps. Tests are named
//! `<phase>_<event>`.
//!
//! The relaying tests run on both data paths: written as `fn name(mode: Mode)`, they are listed
//! in [`on_both_paths!`], which makes the tests `name::copy` and `name::splice`. On the splice
//! path the fake moves its bytes through a real kernel pipe (no socket).

/// Makes `name::copy` and `name::splice` tests of each `fn name(mode: Mode)`.
macro_rules! on_both_paths {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use crate::conn::hold::Mode;

            #[test]
            fn copy() {
                super::$name(Mode::Copy)
            }

            #[test]
            fn splice() {
                super::$name(Mode::Splice)
            }
        }
    )+};
}

mod fake;
mod handover;
mod lifecycle;
mod machine;
mod model;
mod opening;
mod relaying;
mod splicing;
mod throttled;
mod transport;
