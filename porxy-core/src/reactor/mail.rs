//! What other threads ask of a reactor, over its mailbox.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::accepted::Accepted;
use crate::accept::ListenSocket;
use crate::balance::backend::Backend;
use crate::session::Session;
use crate::tunnel::Tunnel;

/// What other threads ask of a reactor.
pub(crate) enum ReactorMsg {
    /// Take over a freshly accepted client.
    Adopt(Accepted),
    /// Accept from this listening socket too (when reactors accept).
    Listen(Arc<ListenSocket>),
    /// Stop accepting from the listening socket with this id, and let go of it.
    Unlisten(usize),
    /// Close now every connection that came in on this listen address, through whichever
    /// tunnel (listening still or closed); how many goes to `done`.
    CloseListen {
        local: SocketAddr,
        done: Sender<usize>,
    },
    /// Close every connection on this backend at this moment (now, if it has passed).
    CloseBackend { backend: Arc<Backend>, at: Instant },
    /// Finish: when every connection has ended, or at the deadline (`None`: at once).
    Stop { deadline: Option<Instant> },
    /// Hand the connections over to `to` (see `export.rs`), until `until` at the latest; a
    /// stopping reactor then holds on, even with no connection left, until `Release`.
    Export { to: Sender<Session>, until: Instant },
    /// End the export now; what has not left stays here.
    EndExport,
    /// The export's caller is done: a stopping reactor may end once it has no connection.
    Release,
    /// Say `index` on `answer`: the reactor is turning (see `handle/liveness.rs`).
    Ping { index: usize, answer: Sender<usize> },
    /// Take in a connection handed over from another process (or given back), on `tunnel`, as
    /// connection `id`.
    Import {
        session: Box<Session>,
        tunnel: Arc<Tunnel>,
        id: u64,
    },
}
