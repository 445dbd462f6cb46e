//! One access log line from a connection record: logfmt or JSON, with the same field names in
//! both (JSON: every field present, `null` where there is nothing to say).

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use porxy_core::ConnectionRecord;
use serde_json::json;

use super::setting::Format;

/// The line for `record` of the tunnel named `tunnel`, with its newline.
pub fn line(record: &ConnectionRecord, tunnel: &str, format: Format) -> String {
    match format {
        Format::Logfmt => logfmt(record, tunnel),
        Format::Json => json(record, tunnel),
    }
}

fn logfmt(r: &ConnectionRecord, tunnel: &str) -> String {
    let mut out = String::with_capacity(320);
    let mut pair = |key: &str, value: &str| {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        push_logfmt_value(&mut out, value);
    };
    pair("time", &timestamp(r.ended));
    pair("conn", &r.id.to_string());
    pair("tunnel", tunnel);
    pair("listen", &r.tunnel.to_string());
    pair("client", &r.client.to_string());
    pair("backend", &r.backend.map_or("-".into(), |b| b.to_string()));
    pair("generation", &r.generation.to_string());
    pair("start", &timestamp(r.started));
    pair(
        "connect_ms",
        &r.connect_time.map_or("-".into(), |d| millis(d).to_string()),
    );
    pair("duration_ms", &millis(r.duration()).to_string());
    pair("bytes_to_upstream", &r.bytes_to_upstream.to_string());
    pair("bytes_to_client", &r.bytes_to_client.to_string());
    pair("reason", r.reason.as_str());
    pair("fault", r.fault().as_str());
    if let Some(error) = &r.error {
        pair("error", error);
    }
    if let Some(name) = &r.server_name {
        pair("server_name", name);
    }
    if let Some(subject) = &r.tls_client_subject {
        pair("tls_client_subject", subject);
    }
    if r.imported {
        pair("imported", "true");
    }
    if !r.destinations.is_empty() {
        let mut dests = String::new();
        for (i, d) in r.destinations.iter().enumerate() {
            if i > 0 {
                dests.push(',');
            }
            let _ = write!(dests, "{}/{}/{}", d.addr, d.outcome.as_str(), d.bytes_sent);
        }
        pair("destinations", &dests);
    }
    out.push('\n');
    out
}

/// A logfmt value, quoted when it is empty or holds a space, `=`, a quote or a control
/// character (escaped as in JSON strings).
fn push_logfmt_value(out: &mut String, value: &str) {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_control() && !matches!(c, ' ' | '=' | '"' | '\\'));
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json(r: &ConnectionRecord, tunnel: &str) -> String {
    let destinations: Vec<_> = r
        .destinations
        .iter()
        .map(|d| {
            json!({
                "addr": d.addr.to_string(),
                "outcome": d.outcome.as_str(),
                "bytes_sent": d.bytes_sent,
            })
        })
        .collect();
    let value = json!({
        "time": timestamp(r.ended),
        "conn": r.id,
        "tunnel": tunnel,
        "listen": r.tunnel.to_string(),
        "client": r.client.to_string(),
        "backend": r.backend.map(|b| b.to_string()),
        "generation": r.generation,
        "start": timestamp(r.started),
        "connect_ms": r.connect_time.map(millis),
        "duration_ms": millis(r.duration()),
        "bytes_to_upstream": r.bytes_to_upstream,
        "bytes_to_client": r.bytes_to_client,
        "reason": r.reason.as_str(),
        "fault": r.fault().as_str(),
        "error": r.error,
        "server_name": r.server_name,
        "tls_client_subject": r.tls_client_subject,
        "imported": r.imported,
        "destinations": destinations,
    });
    let mut line = value.to_string();
    line.push('\n');
    line
}

/// RFC 3339 in UTC, to the millisecond.
fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// Milliseconds, to the microsecond.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_values_are_quoted_only_when_they_must_be() {
        let quoted = |v: &str| {
            let mut out = String::new();
            push_logfmt_value(&mut out, v);
            out
        };
        assert_eq!(quoted("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("CN=a b"), "\"CN=a b\"");
        assert_eq!(quoted("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
    }
}
