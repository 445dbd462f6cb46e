//! Where `porxy top` reads from: the control socket (`STATUS FULL`, on one connection kept
//! open) or the admin API (`GET /status`, one request per reading, with the bearer token if
//! one is given). Either is a client of what porxy serves to everyone; nothing else is read.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::snapshot::Snapshot;
use crate::clients::ListenAddr;

/// How long a reading may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The most a status reply may be.
const MAX_REPLY: u64 = 16 * 1024 * 1024;

/// A byte stream to porxy, over TCP or a Unix socket.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// An open control connection.
pub struct Connection(BufReader<Box<dyn Stream>>);

/// Where readings come from.
pub enum Source {
    /// The control socket, and the connection to it once made.
    Control {
        addr: ListenAddr,
        conn: Option<Connection>,
    },
    /// The admin API, with its token.
    Admin {
        addr: ListenAddr,
        token: Option<String>,
    },
}

impl Source {
    /// The address, for the header line.
    pub fn describe(&self) -> String {
        let show = |addr: &ListenAddr| match addr {
            ListenAddr::Tcp(endpoint) => endpoint.to_string(),
            ListenAddr::Unix(path) => format!("unix:{}", path.display()),
        };
        match self {
            Source::Control { addr, .. } => format!("control {}", show(addr)),
            Source::Admin { addr, .. } => format!("admin {}", show(addr)),
        }
    }

    /// Takes a reading.
    pub fn read(&mut self) -> io::Result<Snapshot> {
        match self {
            Source::Control { addr, conn } => {
                if conn.is_none() {
                    *conn = Some(Connection(BufReader::new(open(addr)?)));
                }
                let reading = conn
                    .as_mut()
                    .map(|c| status_full(&mut c.0))
                    .unwrap_or_else(|| Err(io::Error::other("no connection")));
                if reading.is_err() {
                    // Connect again next time (porxy may have been upgraded meanwhile).
                    *conn = None;
                }
                reading
            }
            Source::Admin { addr, token } => admin_status(addr, token.as_deref()),
        }
    }
}

fn open(addr: &ListenAddr) -> io::Result<Box<dyn Stream>> {
    match addr {
        ListenAddr::Tcp(endpoint) => {
            let target = endpoint
                .resolve()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let stream = TcpStream::connect_timeout(&target, TIMEOUT)?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            Ok(Box::new(stream))
        }
        ListenAddr::Unix(path) => {
            let stream = UnixStream::connect(path)?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            Ok(Box::new(stream))
        }
    }
}

/// `STATUS FULL` on an open control connection: its body lines, read up to `END`.
fn status_full(conn: &mut BufReader<Box<dyn Stream>>) -> io::Result<Snapshot> {
    conn.get_mut().write_all(b"STATUS FULL\n")?;
    let mut lines = Vec::new();
    let mut first = true;
    loop {
        let mut line = String::new();
        if conn.by_ref().take(64 * 1024).read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the control socket closed",
            ));
        }
        let line = line.trim_end().to_string();
        if first {
            if !line.starts_with("OK") {
                return Err(io::Error::other(format!("STATUS FULL: {line}")));
            }
            first = false;
            continue;
        }
        if line == "END" {
            break;
        }
        lines.push(line);
        if lines.len() > 1_000_000 {
            return Err(io::Error::other("STATUS FULL never ended"));
        }
    }
    Ok(Snapshot::from_status_lines(
        lines.iter().map(String::as_str),
    ))
}

/// `GET /status` on the admin API.
fn admin_status(addr: &ListenAddr, token: Option<&str>) -> io::Result<Snapshot> {
    let mut stream = open(addr)?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: porxy\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    stream.take(MAX_REPLY).read_to_end(&mut reply)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(&reply) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return Err(io::Error::other("the admin API's reply is not HTTP")),
    };
    let code = response.code.unwrap_or(0);
    let body: serde_json::Value = serde_json::from_slice(&reply[head..])
        .map_err(|e| io::Error::other(format!("GET /status: {code}, not JSON: {e}")))?;
    if code != 200 {
        let why = body["error"]["message"].as_str().unwrap_or("refused");
        return Err(io::Error::other(format!("GET /status: {code} {why}")));
    }
    Snapshot::from_json(&body).ok_or_else(|| io::Error::other("GET /status: not porxy's status"))
}
