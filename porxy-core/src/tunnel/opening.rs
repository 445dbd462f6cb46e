//! What a tunnel's clients go through before a backend is picked, from its options: a PROXY
//! header (outside TLS, as senders put it), then a TLS handshake if the listener terminates
//! TLS, or a peek at the ClientHello if it routes by server name.

use std::sync::Arc;
use std::time::Duration;

use crate::conn::close::CloseReason;
use crate::conn::opening::{OpeningConfig, Preamble};
use crate::conn::proxy_header::ProxyHeader;
use crate::spec::{AcceptProxy, Networks};
use crate::tls::client_hello::ClientHelloPeek;

/// What a listener does with its clients' TLS before the pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientTls {
    /// Terminates it: the handshake, within this time.
    Terminate(Duration),
    /// Routes by its server name: the ClientHello, peeked, within this time.
    Route(Duration),
}

/// The opening of a tunnel that reads `accept_proxy` headers (within their timeout) from the
/// peers in `proxy_from`, then does what `tls` says; `None` if nothing: its clients pick at
/// once.
pub(crate) fn opening(
    accept_proxy: Option<(AcceptProxy, Duration)>,
    proxy_from: Option<Networks>,
    tls: Option<ClientTls>,
) -> Option<OpeningConfig> {
    let mut preambles: Vec<Arc<dyn Preamble>> = Vec::new();
    // One after the other: the header has its time, then the TLS part its own.
    let mut timeout = Duration::ZERO;
    let mut senders = None;
    if let Some((accept, header_timeout)) = accept_proxy {
        preambles.push(Arc::new(ProxyHeader::new(accept)));
        timeout += header_timeout;
        senders = proxy_from;
    }
    let mut handshake = None;
    match tls {
        Some(ClientTls::Terminate(handshake_timeout)) => {
            handshake = Some(CloseReason::TlsHandshake);
            timeout += handshake_timeout;
        }
        Some(ClientTls::Route(hello_timeout)) => {
            preambles.push(Arc::new(ClientHelloPeek));
            timeout += hello_timeout;
        }
        None => {}
    }
    if preambles.is_empty() && handshake.is_none() {
        return None;
    }
    Some(OpeningConfig {
        preambles: preambles.into(),
        senders,
        handshake,
        timeout,
    })
}
