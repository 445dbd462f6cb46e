//! A client of porxy's control socket, as `nc` would be one: a line out, its reply back.
//!
//! Replies are one line, or (`HELP`, `STATUS FULL`) an `OK` line, body lines and `END`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::client::connect;
use super::process::Porxy;

/// One control connection (TCP unless built `over` another stream).
pub struct ControlClient<S: Read + Write = TcpStream> {
    reader: BufReader<S>,
}

impl ControlClient<TcpStream> {
    /// Connects to the control socket at `addr`, with the test socket timeouts.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> ControlClient {
        ControlClient::over(connect(addr))
    }
}

/// The `key=value` of a status line.
#[track_caller]
pub fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_string()
}

/// `OK opened 127.0.0.1:PORT -> ...` → the bound address.
#[track_caller]
pub fn opened_addr(reply: &str) -> SocketAddr {
    reply
        .strip_prefix("OK opened ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("not an `OK opened` reply: {reply:?}"))
}

/// The TCP control address on a porxy's READY line.
#[track_caller]
pub fn control_addr(porxy: &Porxy) -> SocketAddr {
    porxy
        .control()
        .expect("a control= word in the READY line")
        .parse()
        .expect("a TCP control address")
}

/// Starts porxy with a TCP control socket on port 0 (and `extra` arguments); returns it and
/// the control address from its READY line.
#[track_caller]
pub fn porxy_with_control(extra: &[&str]) -> (Porxy, SocketAddr) {
    let mut args = vec![
        "--control",
        "127.0.0.1:0",
        "--reactors",
        "2",
        "--log",
        "warn",
    ];
    args.extend_from_slice(extra);
    let porxy = Porxy::start(&args);
    let addr = control_addr(&porxy);
    (porxy, addr)
}

impl<S: Read + Write> ControlClient<S> {
    /// A control client over an already connected stream (a Unix socket, say).
    pub fn over(stream: S) -> ControlClient<S> {
        ControlClient {
            reader: BufReader::new(stream),
        }
    }

    /// Sends `command` and returns its one-line reply, without the newline.
    #[track_caller]
    pub fn cmd(&mut self, command: &str) -> String {
        self.send(command);
        self.line()
    }

    /// Sends `command`, whose reply is an `OK` line, body lines and `END`; returns every line
    /// but `END`.
    #[track_caller]
    pub fn block(&mut self, command: &str) -> Vec<String> {
        self.send(command);
        let mut lines = vec![self.line()];
        assert!(lines[0].starts_with("OK"), "{command}: {:?}", lines[0]);
        loop {
            let line = self.line();
            if line == "END" {
                return lines;
            }
            lines.push(line);
            assert!(lines.len() < 10_000, "{command}: no END line");
        }
    }

    #[track_caller]
    fn send(&mut self, command: &str) {
        self.send_bytes(format!("{command}\n").as_bytes());
    }

    /// Sends raw bytes, newline included or not, for malformed input.
    #[track_caller]
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream
            .write_all(bytes)
            .expect("write to the control socket");
        stream.flush().expect("flush the control socket");
    }

    /// Everything the server sends until it closes the connection.
    #[track_caller]
    pub fn rest(&mut self) -> String {
        let mut rest = String::new();
        self.reader
            .read_to_string(&mut rest)
            .expect("read to the end of the control connection");
        rest
    }

    /// The next reply line, without its newline.
    #[track_caller]
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("read a control reply");
        assert!(n > 0, "the control socket closed instead of replying");
        assert!(line.ends_with('\n'), "reply without a newline: {line:?}");
        line.pop();
        line
    }
}
