//! A client of porxy's control socket, as `nc` would be one: a line out, its reply back.
//!
//! Replies are one line, or (`HELP`, `STATUS FULL`) an `OK` line, body lines and `END`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use super::client::connect;

/// One control connection over TCP, with the test socket timeouts.
pub struct ControlClient {
    reader: BufReader<TcpStream>,
}

impl ControlClient {
    /// Connects to the control socket at `addr`.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> ControlClient {
        ControlClient {
            reader: BufReader::new(connect(addr)),
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
        let stream = self.reader.get_mut();
        stream
            .write_all(format!("{command}\n").as_bytes())
            .expect("write to the control socket");
        stream.flush().expect("flush the control socket");
    }

    #[track_caller]
    fn line(&mut self) -> String {
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
