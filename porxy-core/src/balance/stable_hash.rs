//! The hash behind the `hash` strategy, fixed here so that client placement never changes with
//! the Rust version or the build.
//!
//! `std`'s `DefaultHasher` makes no promise of stability across releases: an upgraded binary
//! could send every client to a different backend. This one is defined byte for byte:
//!
//! 1. The key is encoded as bytes: the client IP (a tag byte `4` and its 4 octets, or `6` and
//!    its 16), then the backend's IP the same way, then the backend's port, big-endian.
//! 2. Those bytes go through 64-bit FNV-1a (offset basis `0xcbf29ce484222325`, prime
//!    `0x100000001b3`).
//! 3. The result is mixed by the SplitMix64 finaliser, so that every output bit depends on every
//!    input bit (FNV-1a alone leaves the high bits weak, and the score uses the high bits).
//!
//! Changing any of this moves clients between backends; the tests pin known values.

use std::net::{IpAddr, SocketAddr};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a, fed byte by byte.
#[derive(Debug, Clone, Copy)]
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(FNV_OFFSET)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                self.bytes(&[4]);
                self.bytes(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.bytes(&[6]);
                self.bytes(&v6.octets());
            }
        }
    }
}

/// The SplitMix64 finaliser: a bijection that spreads every input bit over the whole word.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The stable hash of a (client, backend) pair.
pub(crate) fn client_backend(client: IpAddr, backend: SocketAddr) -> u64 {
    let mut h = Fnv1a::new();
    h.ip(client);
    h.ip(backend.ip());
    h.bytes(&backend.port().to_be_bytes());
    mix(h.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published FNV-1a 64 test vectors: the hash is the standard one.
    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        for (input, want) in [
            (&b""[..], 0xcbf2_9ce4_8422_2325u64),
            (b"a", 0xaf63_dc4c_8601_ec8c),
            (b"foobar", 0x8594_4171_f739_67e8),
        ] {
            let mut h = Fnv1a::new();
            h.bytes(input);
            assert_eq!(h.0, want, "FNV-1a of {input:?}");
        }
    }

    /// Known mappings, pinned: if one changes, clients would move after an upgrade. (The
    /// values were computed by a separate implementation of the steps in the module docs.)
    #[test]
    fn known_pairs_hash_to_pinned_values() {
        let cases: [(&str, &str, u64); 4] = [
            ("10.0.0.1", "127.0.0.1:9000", 0xea16_0b2d_e475_607c),
            ("10.0.0.2", "127.0.0.1:9000", 0xf791_c1e7_f63c_6795),
            ("10.0.0.1", "127.0.0.1:9001", 0x118e_24f8_3fec_71af),
            ("2001:db8::1", "[::1]:80", 0x4b98_b1f8_65e9_492a),
        ];
        for (client, backend, want) in cases {
            let got = client_backend(client.parse().unwrap(), backend.parse().unwrap());
            assert_eq!(got, want, "hash of ({client}, {backend}): {got:#018x}");
        }
    }
}
