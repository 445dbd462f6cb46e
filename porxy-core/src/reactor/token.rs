//! How a mio token names a socket: the connection's slab key and the socket's place in it.
//!
//! `token = key << SOCKET_BITS | socket`. Socket 0 is the client; 1 is the upstream (and fan-out
//! will number further upstreams after it). [`WAKER_TOKEN`](crate::mailbox::WAKER_TOKEN) is
//! `usize::MAX`, beyond any key a slab reaches.

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
}
