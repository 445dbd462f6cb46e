//! The zero-copy data path: splice(2) through kernel pipes, on Linux.
//!
//! A direction on this path moves its bytes socket → pipe → socket with `splice`, so they never
//! enter user space; the pipe plays the part the relay buffer plays on the copy path, and comes
//! from a per-reactor [`PipePool`]. The decisions (when to read, write, pass on a FIN) are the
//! connection logic's, shared by both paths; only where the bytes wait differs. Only bulk data
//! takes this path: small messages are cheaper to copy (see `conn::hold::Pools::bulk_read`).
//!
//! Falling back: a direction copies instead, never failing the connection for it, when the
//! reactor's pipe budget is used up (that burst), when a pipe cannot be created (`EMFILE`,
//! `ENFILE`: from then on) or when a socket refuses splices (`EINVAL`, `ENOSYS`: from then on).
//! A pipe that saw any error is closed, never reused.
//!
//! Descriptors: a pipe costs two, like a connection. Each reactor opens at most
//! [`crate::config::MAX_PIPES_PER_REACTOR`] (fewer where descriptors are scarce), and the
//! automatic connection limit keeps their descriptors back, so splicing cannot run porxy out of
//! descriptors.

mod fallback;
mod kernel;
mod pool;

pub use fallback::SpliceFallbacks;
pub(crate) use fallback::{Fallback, FallbackCounts};
pub(crate) use kernel::{block_sigpipe, is_unsupported, KernelPipe};
pub(crate) use pool::PipePool;

/// Whether this platform has splice(2).
pub(crate) const SUPPORTED: bool = cfg!(target_os = "linux");
