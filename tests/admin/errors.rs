//! Every refusal of the admin endpoint, with its status and its JSON body naming what was
//! wrong; the token; limits on size and time; keep-alive. The proxy and its other clients go
//! on after each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use super::{with_admin, WAIT};
use crate::support::client::set_timeouts;
use crate::support::curl::{curl, parse, send_json, url};
use crate::support::process::{Porxy, TempDir};
use crate::support::Backend;

/// Sends raw `bytes` on a new connection and reads until the endpoint closes it.
fn raw(admin: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(admin).expect("connect to the admin endpoint");
    set_timeouts(&stream);
    stream.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn each_refusal_has_its_status_and_says_what_was_wrong() {
    let a = Backend::greeting_echo(b"A");
    let (porxy, admin) = with_admin(&["--tunnel", &format!("127.0.0.1:0={}", a.addr())]);
    let nope = curl(&[&url(&admin, "/nope")]);
    assert_eq!(
        (nope.status, nope.error()),
        (404, "no such path: /nope".into())
    );
    let wrong = curl(&["-X", "DELETE", &url(&admin, "/status")]);
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("Allow"), Some("GET, HEAD"));
    let typed = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: text/plain",
        "-d",
        "x",
        &url(&admin, "/routes"),
    ]);
    assert_eq!(
        (typed.status, typed.error()),
        (
            415,
            "the body must be application/json, not text/plain".into()
        )
    );
    let not_json = send_json(&admin, "PUT", "/routes", "{routes:");
    assert_eq!(not_json.status, 400);
    assert!(
        not_json.error().starts_with("not JSON: "),
        "{}",
        not_json.body
    );
    let route = |options: serde_json::Value, address: &str| {
        json!({"routes": [
            {"name": "ok", "listen": "127.0.0.1:0", "remotes": [{"address": a.addr().to_string()}]},
            {"name": "bad", "listen": "127.0.0.1:0", "remotes": [{"address": address}], "options": options},
        ]})
        .to_string()
    };
    let cases = [
        (
            route(json!({"connect_timeout": "0s"}), "127.0.0.1:7000"),
            "routes[1].options.connect_timeout: must be more than zero",
        ),
        (
            route(json!({}), "nowhere"),
            "routes[1].remotes[0].address: ",
        ),
        (
            route(json!({"strategy": "fastest"}), "127.0.0.1:7000"),
            "routes[1].options.strategy: unknown strategy `fastest`",
        ),
        (
            json!({"routes": [{"name": "x", "listen": "127.0.0.1:0", "remotes": [], "color": 1}]})
                .to_string(),
            "routes[0].color: unknown key; known: name, listen, mode, strategy, remotes, options",
        ),
    ];
    for (body, says) in cases {
        let bad = send_json(&admin, "PUT", "/routes", &body);
        assert_eq!(bad.status, 400, "{}", bad.body);
        assert!(
            bad.error().starts_with(says),
            "{} should start with {says}",
            bad.error()
        );
    }
    // A port in use: the whole table is refused, and nothing changed.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let clash = json!({"routes": [
        {"name": "cli-1", "listen": porxy.tunnel("cli-1").to_string(), "remotes": [{"address": a.addr().to_string()}]},
        {"name": "clash", "listen": taken.local_addr().unwrap().to_string(), "remotes": [{"address": a.addr().to_string()}]},
    ]});
    let in_use = send_json(&admin, "PUT", "/routes", &clash.to_string());
    assert_eq!(in_use.status, 409, "{}", in_use.body);
    assert!(in_use.error().contains("in use"), "{}", in_use.error());
    let table = curl(&[&url(&admin, "/routes")]).json();
    assert_eq!(
        table["routes"].as_array().unwrap().len(),
        1,
        "nothing changed"
    );
}

#[test]
fn size_limits_framing_and_keep_alive() {
    let a = Backend::greeting_echo(b"A");
    let (_porxy, admin) = with_admin(&["--tunnel", &format!("127.0.0.1:0={}", a.addr())]);
    // Over the 1 MiB default: 413, the body never read.
    let big = format!("{{\"routes\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let dir = TempDir::new();
    let file = dir.write("big.json", &big);
    let too_big = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", file.display()),
        &url(&admin, "/routes"),
    ]);
    assert_eq!(too_big.status, 413, "{}", too_big.body);
    let said = too_big.error();
    assert!(said.contains("over the limit of 1048576 bytes"), "{said}");
    let head = curl(&[
        "-H",
        &format!("X-Big: {}", "y".repeat(17 * 1024)),
        &url(&admin, "/status"),
    ]);
    assert_eq!(head.status, 431);
    // A chunked body is taken; an unknown transfer coding is not; Expect: 100-continue gets
    // its go-ahead.
    let table = curl(&[&url(&admin, "/routes")]).body;
    let chunked = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &table,
        &url(&admin, "/routes"),
    ]);
    assert_eq!(chunked.status, 200, "{}", chunked.body);
    let gzip = raw(
        &admin,
        b"PUT /routes HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    );
    let gzip = parse(&gzip);
    assert_eq!(gzip.status, 501);
    assert_eq!(gzip.header("Connection"), Some("close"));
    // Two requests on one connection, pipelined: two answers, in order.
    let both = raw(
        &admin,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let (first, second) = both.split_at(both.find("HTTP/1.1 404").expect("the second answer"));
    assert_eq!(parse(first).status, 200);
    assert_eq!(parse(second).status, 404);
    // curl reuses its connection for a second URL.
    let output = std::process::Command::new("curl")
        .args(["-sS", "-v", "--max-time", "10"])
        .args([url(&admin, "/healthz"), url(&admin, "/readyz")])
        .output()
        .unwrap();
    let verbose = String::from_utf8_lossy(&output.stderr);
    assert!(
        verbose.contains("Re-using existing connection") || verbose.contains("Reusing existing"),
        "{verbose}"
    );
}

#[test]
fn a_slow_client_is_cut_off_and_a_silent_one_closed() {
    let a = Backend::greeting_echo(b"A");
    let dir = TempDir::new();
    let config = dir.write(
        "porxy.toml",
        &format!(
            "[backends.a]\naddress = \"{}\"\n[listeners.web]\nlisten = \"127.0.0.1:0\"\n\
             backends = [\"a\"]\n[admin]\nlisten = \"127.0.0.1:0\"\nrequest_timeout = \"300ms\"\n\
             idle_timeout = \"300ms\"\n",
            a.addr()
        ),
    );
    let porxy = Porxy::start(&["--config", config.to_str().unwrap()]);
    let admin = porxy.admin().unwrap().to_string();
    let mut slow = TcpStream::connect(admin.as_str()).unwrap();
    set_timeouts(&slow);
    let started = std::time::Instant::now();
    // A byte now and then does not extend the deadline.
    for byte in b"GET /status HTTP/1.1\r\n" {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut got = Vec::new();
    let _ = slow.read_to_end(&mut got);
    let answer = parse(&String::from_utf8_lossy(&got));
    assert_eq!(answer.status, 408);
    assert_eq!(
        answer.error(),
        "the request did not come whole within 300ms"
    );
    assert!(started.elapsed() < WAIT);
    // Silent between requests: closed without a word.
    let mut silent = TcpStream::connect(admin.as_str()).unwrap();
    set_timeouts(&silent);
    let mut nothing = Vec::new();
    let _ = silent.read_to_end(&mut nothing);
    assert!(nothing.is_empty(), "{nothing:?}");
    assert_eq!(
        curl(&[&url(&admin, "/healthz")]).status,
        200,
        "others go on"
    );
}

#[test]
fn with_a_token_only_its_bearer_is_served() {
    let a = Backend::greeting_echo(b"A");
    let dir = TempDir::new();
    let token = dir.write("token", "s3cret-token\n");
    let (_porxy, admin) = with_admin(&[
        "--admin-token-file",
        token.to_str().unwrap(),
        "--tunnel",
        &format!("127.0.0.1:0={}", a.addr()),
    ]);
    let missing = curl(&[&url(&admin, "/routes")]);
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("WWW-Authenticate"),
        Some("Bearer realm=\"porxy\"")
    );
    let wrong = curl(&[
        "-H",
        "Authorization: Bearer s3cret-tokeN",
        &url(&admin, "/routes"),
    ]);
    assert_eq!(
        (wrong.status, wrong.error()),
        (401, "the bearer token is not the endpoint's".into())
    );
    let right = curl(&[
        "-H",
        "Authorization: Bearer s3cret-token",
        &url(&admin, "/routes"),
    ]);
    assert_eq!(right.status, 200);
}

#[test]
fn beyond_loopback_without_a_token_is_refused_at_start() {
    let out = crate::support::process::run(
        &[
            "--admin",
            "0.0.0.0:0",
            "--tunnel",
            "127.0.0.1:0=127.0.0.1:9",
        ],
        WAIT,
    );
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(
            "--admin: the admin endpoint 0.0.0.0:0 is reachable beyond this host and has no token"
        ),
        "{}",
        out.stderr
    );
}
