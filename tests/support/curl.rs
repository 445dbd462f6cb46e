//! curl, the HTTP client users have, run against the admin endpoint: each call one `curl`
//! process (bounded by `--max-time`), its last answer split into status, head and body.

use std::process::Command;

/// The answer curl got (the last, after any `100 Continue`).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The message of a JSON error body, checking its code is the status.
    #[track_caller]
    pub fn error(&self) -> String {
        let json = self.json();
        assert_eq!(json["error"]["code"], self.status, "{json}");
        json["error"]["message"]
            .as_str()
            .expect("an error message")
            .to_string()
    }

    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Runs `curl -sS -i --max-time 10 ARGS...` and reads its answer.
#[track_caller]
pub fn curl(args: &[&str]) -> Reply {
    let output = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl (on a fresh machine it is there)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&text)
}

/// The last answer of curl's `-i` output.
#[track_caller]
pub fn parse(text: &str) -> Reply {
    let mut rest = text;
    // Bounded: each turn drops one interim answer.
    loop {
        let (head, body) = rest
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer in {text:?}"));
        if head.starts_with("HTTP/1.1 1") {
            rest = body;
            continue;
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        return Reply {
            status,
            head: head.to_string(),
            body: body.to_string(),
        };
    }
}

/// `curl -X METHOD` to `path` of the admin endpoint at `admin`, with a JSON body.
#[track_caller]
pub fn send_json(admin: &str, method: &str, path: &str, body: &str) -> Reply {
    curl(&[
        "-X",
        method,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        &url(admin, path),
    ])
}

/// `http://ADDR/PATH` for an admin address from the READY line.
pub fn url(admin: &str, path: &str) -> String {
    format!("http://{admin}{path}")
}
