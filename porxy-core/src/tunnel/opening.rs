//! What a tunnel's clients go through before a backend is picked, from its options: a PROXY
//! header, a TLS handshake, or both (the header first, outside TLS, as senders put it).

use std::time::Duration;

use crate::conn::close::CloseReason;
use crate::conn::opening::{OpeningConfig, OpeningError};
use crate::conn::proxy_header;
use crate::spec::{AcceptProxy, Networks};

/// The opening of a tunnel that reads `accept_proxy` headers (within their timeout) from the
/// peers in `proxy_from`, then a TLS handshake within `tls` (if it terminates TLS); `None` if
/// neither: its clients pick at once.
pub(crate) fn opening(
    accept_proxy: Option<(AcceptProxy, Duration)>,
    proxy_from: Option<Networks>,
    tls: Option<Duration>,
) -> Option<OpeningConfig> {
    let mut config = match accept_proxy {
        Some((accept, timeout)) => proxy_header::opening(accept, timeout, proxy_from),
        None if tls.is_some() => OpeningConfig {
            preamble: None,
            senders: None,
            handshake: false,
            timeout: Duration::ZERO,
            failure_reason,
        },
        None => return None,
    };
    if let Some(handshake_timeout) = tls {
        config.handshake = true;
        // One after the other: the header has its time, then the handshake its own.
        config.timeout += handshake_timeout;
        config.failure_reason = failure_reason;
    }
    Some(config)
}

/// A TLS listener's failed opening: the handshake's own reason, or the header's.
fn failure_reason(error: &OpeningError) -> CloseReason {
    match error {
        OpeningError::Handshake(_) | OpeningError::HandshakeTimeout => CloseReason::TlsHandshake,
        _ => CloseReason::ProxyHeader,
    }
}
