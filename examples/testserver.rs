//! A small blocking TCP server to put behind porxy by hand or from scripts.
//!
//! ```text
//! testserver echo ADDR            send back every byte received
//! testserver sink ADDR            read and count; print `conn N: M bytes fnv1a=H` per closed
//!                                 connection
//! testserver source ADDR [BYTES]  send BYTES pseudo-random bytes to each client (default: forever)
//! testserver feed ADDR [BYTES]    connect to ADDR and send BYTES pseudo-random bytes (default:
//!                                 forever); connect again a second after the connection breaks
//! ```
//!
//! The server modes print `listening on ADDR` first, with the bound address, so `127.0.0.1:0`
//! works; one thread per connection; they run until killed. `fnv1a` is the FNV-1a 64-bit hash
//! of the bytes, so that what a `feed` sent and what each `sink` got can be compared by eye
//! (the fan-out example in the README does).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;

const USAGE: &str = "usage: testserver echo ADDR
       testserver sink ADDR
       testserver source ADDR [BYTES]
       testserver feed ADDR [BYTES]

ADDR is a socket address such as 127.0.0.1:7000 (port 0: any free port).";

#[derive(Clone, Copy)]
enum Mode {
    Echo,
    Sink,
    /// Bytes to send to each client; `None` sends until the client goes away.
    Source(Option<u64>),
    /// A client: bytes to send; `None` sends for ever.
    Feed(Option<u64>),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, addr) = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("testserver: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Feed(limit) => feed(addr, limit),
        _ => serve(mode, addr),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testserver: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: &[String]) -> Result<(Mode, SocketAddr), String> {
    let (mode, rest) = args.split_first().ok_or("missing MODE")?;
    let (addr, rest) = rest.split_first().ok_or("missing ADDR")?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not a socket address"))?;
    let mode = match (mode.as_str(), rest) {
        ("echo", []) => Mode::Echo,
        ("sink", []) => Mode::Sink,
        ("source", []) => Mode::Source(None),
        ("source", [bytes]) => Mode::Source(Some(byte_count(bytes)?)),
        ("feed", []) => Mode::Feed(None),
        ("feed", [bytes]) => Mode::Feed(Some(byte_count(bytes)?)),
        ("echo" | "sink" | "source" | "feed", _) => return Err("too many arguments".into()),
        (other, _) => return Err(format!("unknown mode `{other}`")),
    };
    Ok((mode, addr))
}

fn byte_count(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a byte count"))
}

/// Connects to `addr` and streams; connects again a second after a connection breaks.
fn feed(addr: SocketAddr, limit: Option<u64>) -> io::Result<()> {
    for n in 1u64.. {
        let mut sent = Fnv::default();
        let result = TcpStream::connect(addr).and_then(|mut stream| {
            println!("feed {n}: connected to {addr}");
            io::stdout().flush()?;
            let result = stream_noise(&mut stream, n, limit, &mut sent);
            if result.is_ok() {
                // Wait for the far end to finish, so its count is final when we print ours.
                let mut rest = [0u8; 4096];
                while read_some(&mut stream, &mut rest)?.is_some() {}
            }
            result
        });
        match result {
            Ok(()) => {
                println!("feed {n}: sent {} bytes fnv1a={:016x}", sent.len, sent.hash);
                return Ok(());
            }
            Err(e) => {
                println!(
                    "feed {n}: {e} after {} bytes; connecting again in 1s",
                    sent.len
                );
                io::stdout().flush()?;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
    Ok(())
}

/// Writes pseudo-random bytes (seeded by `n`) until `limit`, then FIN; `seen` takes every
/// byte written.
fn stream_noise(
    stream: &mut TcpStream,
    n: u64,
    limit: Option<u64>,
    seen: &mut Fnv,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut noise = 0x9e37_79b9_7f4a_7c15 ^ n;
    let mut left = limit.unwrap_or(u64::MAX);
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            noise = xorshift(noise);
            chunk.copy_from_slice(&noise.to_le_bytes()[..chunk.len()]);
        }
        let len = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        stream.write_all(&buf[..len])?;
        seen.add(&buf[..len]);
        left -= len as u64;
    }
    stream.shutdown(Shutdown::Write)
}

/// FNV-1a, 64 bits, and a byte count.
struct Fnv {
    hash: u64,
    len: u64,
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.len += bytes.len() as u64;
    }
}

fn serve(mode: Mode, addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    for (n, stream) in (1u64..).zip(listener.incoming()) {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || {
                    if let Err(e) = handle(mode, n, stream) {
                        eprintln!("conn {n}: {e}");
                    }
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}

fn handle(mode: Mode, n: u64, mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    match mode {
        Mode::Echo => {
            while let Some(len) = read_some(&mut stream, &mut buf)? {
                stream.write_all(&buf[..len])?;
            }
            stream.shutdown(Shutdown::Write)
        }
        Mode::Sink => {
            let mut seen = Fnv::default();
            let result = loop {
                match read_some(&mut stream, &mut buf) {
                    Ok(Some(len)) => seen.add(&buf[..len]),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            match &result {
                Ok(()) => println!("conn {n}: {} bytes fnv1a={:016x}", seen.len, seen.hash),
                Err(e) => println!("conn {n}: {} bytes, then {e}", seen.len),
            }
            io::stdout().flush()?;
            result
        }
        Mode::Source(limit) => stream_noise(&mut stream, n, limit, &mut Fnv::default()),
        Mode::Feed(_) => Ok(()),
    }
}

/// The next chunk, or `None` at end of stream.
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
