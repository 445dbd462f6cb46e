//! A section of a run: a group of setups measured under the same conditions, and its name
//! and title in the report. Which sections a run has, with which setups and phases, is
//! [`crate::plan`]'s.

use crate::peers::Setup;
use crate::setup::{CertKey, Phase};

/// Which section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SectionId {
    /// One thread each, pinned.
    Pinned,
    /// 1 and 2 threads, unpinned.
    Scaling,
    /// Busy polling, pinned.
    Busy,
    /// System calls counted, pinned.
    Syscalls,
    /// TLS terminated with a certificate of this key, pinned.
    Tls(CertKey),
    /// TLS routed by server name, not terminated, pinned.
    Sni,
}

/// A group of setups measured under the same conditions.
#[derive(Debug, Clone)]
pub struct Section {
    /// Which.
    pub id: SectionId,
    /// The setups, in the order each round runs them.
    pub setups: Vec<Setup>,
    /// The phases each setup goes through, in order.
    pub phases: Vec<Phase>,
    /// Whether the proxy gets CPU 0 and the rest CPU 1.
    pub pinned: bool,
    /// Backend threads, and load threads for the multi-connection phases.
    pub threads: usize,
    /// How many times each setup runs.
    pub rounds: u32,
}

impl SectionId {
    /// Its name in file names: `pinned`, `tls-ecdsa`.
    pub fn slug(self) -> &'static str {
        match self {
            SectionId::Pinned => "pinned",
            SectionId::Scaling => "scaling",
            SectionId::Busy => "busy",
            SectionId::Syscalls => "syscalls",
            SectionId::Tls(key) => key.file_stem(),
            SectionId::Sni => "sni",
        }
    }
}

impl Section {
    /// The title above its table.
    pub fn title(&self) -> &'static str {
        match self.id {
            SectionId::Pinned => {
                "Pinned: proxy on CPU 0, backend and load generator on CPU 1, one thread each"
            }
            SectionId::Scaling => {
                "Scaling: 1 and 2 threads (porxy reactors, HAProxy nbthread, nginx workers), unpinned"
            }
            SectionId::Busy => {
                "Busy polling: porxy --busy-poll 1ms and HAProxy busy-polling, pinned as above; \
                 ratios to HAProxy with busy-polling"
            }
            SectionId::Syscalls => {
                "System calls: the proxy's, per unit of work, counted by perf; pinned as above, \
                 one round"
            }
            SectionId::Tls(CertKey::EcdsaP256) => {
                "TLS termination, ECDSA P-256 certificate: proxy on CPU 0, backend and load \
                 generator (a rustls client) on CPU 1, one thread each; ratios to the better of \
                 haproxy-tls and nginx-tls"
            }
            SectionId::Tls(CertKey::Rsa2048) => {
                "TLS termination, RSA 2048 certificate: full handshakes, pinned as above; ratios \
                 to the better of haproxy-tls and nginx-tls"
            }
            SectionId::Sni => {
                "SNI routing without termination, in front of a TLS backend (ECDSA P-256): proxy \
                 on CPU 0, TLS backend and load generator (a rustls client) on CPU 1, one thread \
                 each; each -sni kind beside its plain self relaying the same TLS unrouted; ratios \
                 to the better of haproxy-sni and nginx-sni (of haproxy and nginx for the plain \
                 kinds)"
            }
        }
    }
}
