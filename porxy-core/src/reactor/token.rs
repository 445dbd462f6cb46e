//! How a mio token names a socket: the connection's slab key and the socket's place in it.
//!
//! `token = key << SOCKET_BITS | socket`, one scheme for every kind of connection: socket 0 is
//! the client and `1 + i` upstream `i` (a relayed connection's one upstream is 1, a fan-out
//! connection's destination `i` is `1 + i`). A listening socket a reactor accepts from has
//! socket number [`LISTENER`] and its listen id in place of the key.
//! [`WAKER_TOKEN`](crate::mailbox::WAKER_TOKEN) is `usize::MAX`: its socket number, 0xFF, is
//! neither a connection's socket nor a listener's.

use mio::Token;

use crate::conn::machine::SocketIx;

const SOCKET_BITS: u32 = 8;
const SOCKET_MASK: usize = (1 << SOCKET_BITS) - 1;
/// The socket number of a listening socket, above every upstream's.
const LISTENER: usize = SOCKET_MASK - 1;
/// Upstreams a connection's sockets can name: 1 to 0xFD (far above
/// [`MAX_FANOUT`](crate::spec::MAX_FANOUT)).
const MAX_UPSTREAMS: usize = LISTENER - 1;

/// The token of `socket` of connection `key`.
pub(crate) fn token(key: usize, socket: SocketIx) -> Token {
    let n = match socket {
        SocketIx::Client => 0,
        SocketIx::Upstream(i) => 1 + i.min(MAX_UPSTREAMS - 1),
    };
    Token((key << SOCKET_BITS) | n)
}

/// The slab key and socket a token names, or `None` for a token no connection socket has.
pub(crate) fn parse(token: Token) -> Option<(usize, SocketIx)> {
    let socket = match token.0 & SOCKET_MASK {
        0 => SocketIx::Client,
        n if n <= MAX_UPSTREAMS => SocketIx::Upstream(n - 1),
        _ => return None,
    };
    Some((token.0 >> SOCKET_BITS, socket))
}

/// The token of listening socket `id` ([`ListenSocket::id`](crate::accept::ListenSocket::id)).
pub(crate) fn listener_token(id: usize) -> Token {
    Token((id << SOCKET_BITS) | LISTENER)
}

/// The listen id a token names, or `None` if it names no listening socket.
pub(crate) fn parse_listener(token: Token) -> Option<usize> {
    (token.0 & SOCKET_MASK == LISTENER).then_some(token.0 >> SOCKET_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::WAKER_TOKEN;

    const KEYS: [usize; 4] = [0, 1, 4095, usize::MAX >> SOCKET_BITS >> 1];

    #[test]
    fn connection_tokens_round_trip() {
        for key in KEYS {
            for socket in [
                SocketIx::Client,
                SocketIx::Upstream(0),
                SocketIx::Upstream(1),
                SocketIx::Upstream(crate::spec::MAX_FANOUT - 1),
                SocketIx::Upstream(MAX_UPSTREAMS - 1),
            ] {
                let t = token(key, socket);
                assert_eq!(parse(t), Some((key, socket)));
                assert_eq!(parse_listener(t), None, "not a listener");
                assert_ne!(t, WAKER_TOKEN);
            }
        }
    }

    #[test]
    fn listener_and_waker_tokens_name_no_connection() {
        for id in [0, 1, 4095, usize::MAX >> SOCKET_BITS] {
            let t = listener_token(id);
            assert_eq!(parse_listener(t), Some(id));
            assert_eq!(parse(t), None, "not a connection's socket");
            assert_ne!(t, WAKER_TOKEN);
        }
        assert_eq!(parse(WAKER_TOKEN), None);
        assert_eq!(parse_listener(WAKER_TOKEN), None);
    }
}
