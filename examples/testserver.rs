//! A small blocking TCP server to put behind porxy by hand or from scripts.
//!
//! ```text
//! testserver echo ADDR            send back every byte received
//! testserver sink ADDR            read and count; print `conn N: M bytes` per closed connection
//! testserver source ADDR [BYTES]  send BYTES pseudo-random bytes to each client (default: forever)
//! ```
//!
//! The first stdout line is `listening on ADDR`, with the bound address, so `127.0.0.1:0` works.
//! One thread per connection; it runs until killed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;

const USAGE: &str = "usage: testserver echo ADDR
       testserver sink ADDR
       testserver source ADDR [BYTES]

ADDR is a socket address such as 127.0.0.1:7000 (port 0: any free port).";

#[derive(Clone, Copy)]
enum Mode {
    Echo,
    Sink,
    /// Bytes to send to each client; `None` sends until the client goes away.
    Source(Option<u64>),
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
    match serve(mode, addr) {
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
        ("source", [bytes]) => Mode::Source(Some(
            bytes
                .parse()
                .map_err(|_| format!("`{bytes}` is not a byte count"))?,
        )),
        ("echo" | "sink" | "source", _) => return Err("too many arguments".into()),
        (other, _) => return Err(format!("unknown mode `{other}`")),
    };
    Ok((mode, addr))
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
            let mut total = 0u64;
            while let Some(len) = read_some(&mut stream, &mut buf)? {
                total += len as u64;
            }
            println!("conn {n}: {total} bytes");
            Ok(())
        }
        Mode::Source(limit) => {
            let mut noise = 0x9e37_79b9_7f4a_7c15 ^ n;
            let mut left = limit.unwrap_or(u64::MAX);
            while left > 0 {
                for chunk in buf.chunks_mut(8) {
                    noise = xorshift(noise);
                    chunk.copy_from_slice(&noise.to_le_bytes()[..chunk.len()]);
                }
                let len = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                stream.write_all(&buf[..len])?;
                left -= len as u64;
            }
            stream.shutdown(Shutdown::Write)
        }
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
