//! Reproducible pseudo-random bytes: a seeded xorshift stream.
//!
//! A sender and a checker built from the same seed see the same byte stream, so a test can
//! compare megabytes exactly without keeping them in memory.

/// An endless, seeded stream of pseudo-random bytes.
pub struct Noise {
    state: u64,
    word: [u8; 8],
    /// Bytes of `word` already handed out.
    used: usize,
}

impl Noise {
    /// A stream determined by `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Noise {
            // Xorshift must not start at zero; the odd constant also spreads small seeds apart.
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            word: [0; 8],
            used: 8,
        }
    }

    /// The next 64 random bits (independent of the byte position).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A number from `low` to `high`, both included.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut at = 0;
        while at < buf.len() {
            if self.used == 8 {
                self.word = self.next_u64().to_le_bytes();
                self.used = 0;
            }
            let n = (8 - self.used).min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&self.word[self.used..self.used + n]);
            self.used += n;
            at += n;
        }
    }
}

/// `len` bytes of the stream seeded with `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    Noise::new(seed).fill(&mut buf);
    buf
}

/// Checks a byte stream against the noise stream it should equal, chunk by chunk.
pub struct Expect {
    noise: Noise,
    scratch: Vec<u8>,
    seen: u64,
}

impl Expect {
    /// Expects the stream seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Expect {
            noise: Noise::new(seed),
            scratch: Vec::new(),
            seen: 0,
        }
    }

    /// Checks the next chunk; panics at the first differing byte, naming its offset.
    #[track_caller]
    pub fn next(&mut self, chunk: &[u8], what: &str) {
        self.scratch.resize(chunk.len(), 0);
        self.noise.fill(&mut self.scratch);
        if let Some(i) = chunk.iter().zip(&self.scratch).position(|(a, b)| a != b) {
            panic!(
                "{what}: byte {} differs: got {:#04x}, expected {:#04x}",
                self.seen + i as u64,
                chunk[i],
                self.scratch[i]
            );
        }
        self.seen += chunk.len() as u64;
    }

    /// Bytes checked so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// Panics unless `got == want`, showing lengths and the first differing offset (not megabytes).
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{what}: got {} bytes, expected {}; first difference at {}",
        got.len(),
        want.len(),
        first.map_or("the end of the shorter one".to_string(), |i| format!(
            "byte {i}"
        ))
    );
}
