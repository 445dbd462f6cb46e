//! Embedding porxy-core in an application.
//!
//! Starts a tiny echo service, puts a proxy in front of it, sends a line through, changes the
//! tunnel at runtime, prints the status, and stops gracefully. Everything stays on loopback and
//! ends by itself:
//!
//! ```text
//! cargo run --example embed
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use porxy_core::{CloseReason, Endpoint, Proxy, StopMode, TunnelSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application's own service: echoes each connection back, in a background thread.
    let service = TcpListener::bind("127.0.0.1:0")?;
    let service_addr = service.local_addr()?;
    std::thread::spawn(move || {
        for stream in service.incoming().flatten() {
            std::thread::spawn(move || echo(stream));
        }
    });

    // A proxy in front of it: two reactors, a tunnel on a port the OS picks.
    let spec = TunnelSpec::new(
        "127.0.0.1:0".parse::<Endpoint>()?,
        [Endpoint::Addr(service_addr)],
    );
    let proxy = Proxy::builder()
        .reactors(2)
        .idle_timeout(Duration::from_secs(30))
        .tunnel(spec)
        .start()?;
    let local = proxy.bound()[0];
    println!("proxy listening on {local}, forwarding to {service_addr}");

    let reply = round_trip(local, "hello through porxy")?;
    println!("reply: {reply}");

    // Tunnels change at runtime: open a second one from the SPEC text users write.
    let handle = proxy.handle();
    let opened = handle.open(&format!("127.0.0.1:0={service_addr}[idle_timeout=10s]").parse()?)?;
    println!("opened {} -> {:?}", opened.local, opened.remotes);
    println!(
        "reply: {}",
        round_trip(opened.local, "and through a runtime tunnel")?
    );

    for tunnel in handle.status().tunnels {
        println!(
            "{}: accepted {}, {} bytes up, {} bytes down, completed {}",
            tunnel.spec,
            tunnel.accepted,
            tunnel.bytes_to_upstream,
            tunnel.bytes_to_client,
            tunnel.closes.get(CloseReason::Completed),
        );
    }

    let report = proxy.stop(StopMode::Graceful {
        timeout: Duration::from_secs(5),
    })?;
    println!("stopped; connections cut: {}", report.cut);
    Ok(())
}

/// Sends one line, half-closes, and reads the whole reply.
fn round_trip(addr: std::net::SocketAddr, line: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply.trim_end().to_string())
}

fn echo(stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        if writer.write_all(line.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
    let _ = writer.shutdown(std::net::Shutdown::Write);
}
