//! How a mio token names a socket: the connection's slab key and the socket's place in it.
//!
//! `token = key << SOCKET_BITS | socket`. For a relayed connection, socket 0 is the client and 1
//! the upstream, and the key is in the reactor's connection slab. For a fan-out connection, the
//! socket number has [`FANOUT`] set: `FANOUT | 0` is the client and `FANOUT | (i + 1)`
//! destination `i`, and the key is in the fan-out slab. A listening socket a reactor accepts
//! from has socket number [`LISTENER`] and its listen id in place of the key. Relay sockets are
//! 0 and 1, fan-out ones have the high bit set and [`LISTENER`] is 2, so no two kinds meet.
//! [`WAKER_TOKEN`](crate::mailbox::WAKER_TOKEN) is `usize::MAX`, beyond any key a slab reaches
//! (and its socket number, 0xFF, is recognised as no fan-out socket).

use mio::Token;

use crate::conn::Side;

const SOCKET_BITS: u32 = 8;
const SOCKET_MASK: usize = (1 << SOCKET_BITS) - 1;

pub(crate) fn token(key: usize, side: Side) -> Token {
    let socket = match side {
        Side::Client => 0,
        Side::Upstream => 1,
    };
    Token((key << SOCKET_BITS) | socket)
}

/// The bit that marks a fan-out connection's socket.
const FANOUT: usize = 0x80;

/// A socket of a fan-out connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FanSocket {
    Client,
    /// Destination `i` (at most 126).
    Dest(usize),
}

pub(crate) fn fan_token(key: usize, socket: FanSocket) -> Token {
    let n = match socket {
        FanSocket::Client => 0,
        FanSocket::Dest(i) => (i + 1).min(SOCKET_MASK & !FANOUT),
    };
    Token((key << SOCKET_BITS) | FANOUT | n)
}

/// The fan-out slab key and socket a token names, or `None` if it names no fan-out socket.
pub(crate) fn parse_fan(token: Token) -> Option<(usize, FanSocket)> {
    let socket = token.0 & SOCKET_MASK;
    if token.0 == usize::MAX || socket & FANOUT == 0 {
        return None;
    }
    let socket = match socket & !FANOUT {
        0 => FanSocket::Client,
        n => FanSocket::Dest(n - 1),
    };
    Some((token.0 >> SOCKET_BITS, socket))
}

/// The socket number of a listening socket (beside relay sockets 0 and 1, below [`FANOUT`]).
const LISTENER: usize = 2;

/// The token of listening socket `id` ([`ListenSocket::id`](crate::accept::ListenSocket::id)).
pub(crate) fn listener_token(id: usize) -> Token {
    Token((id << SOCKET_BITS) | LISTENER)
}

/// The listen id a token names, or `None` if it names no listening socket.
pub(crate) fn parse_listener(token: Token) -> Option<usize> {
    (token.0 & SOCKET_MASK == LISTENER).then_some(token.0 >> SOCKET_BITS)
}

/// The slab key and side a token names, or `None` for a token no connection socket has.
pub(crate) fn parse(token: Token) -> Option<(usize, Side)> {
    let side = match token.0 & SOCKET_MASK {
        0 => Side::Client,
        1 => Side::Upstream,
        _ => return None,
    };
    Some((token.0 >> SOCKET_BITS, side))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for key in [0, 1, 4095, usize::MAX >> SOCKET_BITS >> 1] {
            for side in [Side::Client, Side::Upstream] {
                assert_eq!(parse(token(key, side)), Some((key, side)));
            }
        }
        assert_eq!(parse(Token(2)), None);
    }

    #[test]
    fn fan_out_tokens_round_trip_apart_from_relay_ones() {
        for key in [0, 1, 4095, usize::MAX >> SOCKET_BITS >> 1] {
            for socket in [FanSocket::Client, FanSocket::Dest(0), FanSocket::Dest(63)] {
                let t = fan_token(key, socket);
                assert_eq!(parse_fan(t), Some((key, socket)));
                assert_eq!(parse(t), None, "not a relay socket");
            }
            assert_eq!(parse_fan(token(key, Side::Upstream)), None);
        }
        assert_eq!(parse_fan(crate::mailbox::WAKER_TOKEN), None);
    }

    #[test]
    fn listener_tokens_meet_no_other_kind() {
        for id in [0, 1, 4095, usize::MAX >> SOCKET_BITS] {
            let t = listener_token(id);
            assert_eq!(parse_listener(t), Some(id));
            assert_eq!(parse(t), None, "not a relay socket");
            assert_eq!(parse_fan(t), None, "not a fan-out socket");
            assert_ne!(t, crate::mailbox::WAKER_TOKEN);
        }
        for key in [0, 1, 4095] {
            assert_eq!(parse_listener(token(key, Side::Client)), None);
            assert_eq!(parse_listener(token(key, Side::Upstream)), None);
            assert_eq!(parse_listener(fan_token(key, FanSocket::Client)), None);
            assert_eq!(parse_listener(fan_token(key, FanSocket::Dest(1))), None);
        }
        assert_eq!(parse_listener(crate::mailbox::WAKER_TOKEN), None);
    }
}
