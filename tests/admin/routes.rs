//! The routing table over HTTP: read, replaced whole or one route at a time, read back; new
//! connections follow the new table while established ones keep their backend; backends
//! drained, removed and added; status, health and readiness; reload and stop.

use std::io::{Read, Write};

use serde_json::json;

use super::{with_admin, WAIT};
use crate::support::client::connect;
use crate::support::curl::{curl, send_json, url};
use crate::support::{wait_until, Backend};

/// A client of `addr` that has read its backend's one-byte greeting.
fn greeted(addr: std::net::SocketAddr) -> (std::net::TcpStream, u8) {
    let mut client = connect(addr);
    let mut greeting = [0u8; 1];
    client.read_exact(&mut greeting).expect("a greeting");
    (client, greeting[0])
}

#[test]
fn curl_reads_replaces_and_reads_back_the_routes_and_new_connections_follow() {
    let (a, b) = (Backend::greeting_echo(b"A"), Backend::greeting_echo(b"B"));
    let spec = format!("127.0.0.1:0={}[connect_timeout=2s]", a.addr());
    let (porxy, admin) = with_admin(&["--tunnel", &spec]);
    let tunnel = porxy.tunnel("cli-1");
    let (mut established, greeting) = greeted(tunnel);
    assert_eq!(greeting, b'A');

    let read = curl(&[&url(&admin, "/routes")]);
    assert_eq!(read.status, 200);
    assert_eq!(read.header("Content-Type"), Some("application/json"));
    let mut table = read.json();
    let route = &table["routes"][0];
    assert_eq!(route["name"], "cli-1");
    assert_eq!(route["listen"], tunnel.to_string());
    assert_eq!(route["strategy"], "round_robin");
    assert_eq!(route["options"], json!({"connect_timeout": "2s"}));
    assert_eq!(route["remotes"][0]["address"], a.addr().to_string());
    assert_eq!(route["remotes"][0]["state"], "up");

    // What GET gave, with B in place of A, goes back as the whole table.
    table["routes"][0]["remotes"] = json!([{"address": b.addr().to_string(), "weight": 2}]);
    let body = table.to_string();
    let replaced = send_json(&admin, "PUT", "/routes", &body);
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let report = replaced.json();
    assert_eq!(report["changed"], json!([tunnel.to_string()]));
    assert_eq!(report["generation"], 2);

    let again = curl(&[&url(&admin, "/routes/cli-1")]).json();
    assert_eq!(again["remotes"][0]["address"], b.addr().to_string());
    assert_eq!(again["remotes"][0]["weight"], 2);
    assert_eq!(
        greeted(tunnel).1,
        b'B',
        "a new connection follows the new table"
    );
    established.write_all(b"still A").unwrap();
    let mut back = [0u8; 7];
    established.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still A", "the established one keeps its backend");
}

#[test]
fn one_route_and_its_backends_change_on_their_own() {
    let (a, b) = (Backend::greeting_echo(b"A"), Backend::greeting_echo(b"B"));
    let (porxy, admin) = with_admin(&["--tunnel", &format!("127.0.0.1:0={}", a.addr())]);
    let put =
        |path: &str, body: &serde_json::Value| send_json(&admin, "PUT", path, &body.to_string());
    // A route of its own, on a new port.
    let web = json!({
        "listen": "127.0.0.1:0",
        "remotes": [{"address": a.addr().to_string()}],
        "options": {"strategy": "first", "allow": ["127.0.0.0/8"]},
    });
    let opened = put("/routes/web", &web);
    assert_eq!(opened.status, 200, "{}", opened.body);
    let listen: std::net::SocketAddr = opened.json()["opened"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(greeted(listen).1, b'A');
    let shown = curl(&[&url(&admin, "/routes/web")]).json();
    assert_eq!(shown["options"]["allow"], "127.0.0.0/8");
    assert_eq!(shown["strategy"], "first");

    // B joins; A drains: new clients go to B.
    let backend = json!({"address": b.addr().to_string()}).to_string();
    let added = send_json(&admin, "POST", "/routes/web/backends", &backend);
    assert_eq!(added.status, 200, "{}", added.body);
    let drained = put(
        &format!("/routes/web/backends/{}", a.addr()),
        &json!({"state": "drain"}),
    );
    assert_eq!(drained.json()["state"], "draining");
    assert_eq!(greeted(listen).1, b'B');
    let status = curl(&[&url(&admin, "/status")]).json();
    let web_status = status["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "web")
        .expect("web in status")
        .clone();
    assert_eq!(web_status["backends"][0]["state"], "draining");
    assert!(web_status["accepted"].as_u64().unwrap() >= 2);
    assert!(web_status["closes"].get("completed").is_some());

    let removed = curl(&[
        "-X",
        "DELETE",
        &url(&admin, &format!("/routes/web/backends/{}", a.addr())),
    ]);
    assert_eq!(removed.json()["state"], "removing", "{}", removed.body);
    let closed = curl(&["-X", "DELETE", &url(&admin, "/routes/web")]);
    assert_eq!(closed.json()["closed"], json!([listen.to_string()]));
    let gone = curl(&[&url(&admin, "/routes/web")]);
    assert_eq!(
        (gone.status, gone.error()),
        (404, "no route named `web`".into())
    );
    assert_eq!(porxy.tunnels().len(), 1);
}

#[test]
fn health_readiness_reload_and_stop() {
    let a = Backend::greeting_echo(b"A");
    let (mut porxy, admin) = with_admin(&["--tunnel", &format!("127.0.0.1:0={}", a.addr())]);
    assert_eq!(curl(&[&url(&admin, "/healthz")]).status, 200);
    let ready = curl(&[&url(&admin, "/readyz")]);
    assert_eq!(
        (ready.status, ready.json()["ready"].clone()),
        (200, json!(true))
    );
    let head = curl(&["-I", &url(&admin, "/status")]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    assert!(
        head.header("Content-Length")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    let reload = curl(&["-X", "POST", &url(&admin, "/reload")]);
    assert_eq!(reload.status, 409, "{}", reload.body);
    assert!(reload.error().contains("started without --config"));

    let (held, _) = greeted(porxy.tunnel("cli-1"));
    // A probe's connection, open before the stop: it is served through the drain.
    let mut probe = std::net::TcpStream::connect(admin.as_str()).unwrap();
    crate::support::client::set_timeouts(&probe);
    // The original design's `curl 127.0.0.1:8001/stop`.
    let stop = curl(&[&url(&admin, "/stop")]);
    assert_eq!(stop.status, 202, "{}", stop.body);
    assert_eq!(stop.json()["stopping"], true);
    assert_eq!(stop.json()["open"], 1);
    wait_until(WAIT, "the endpoint closed by the stop", || {
        std::net::TcpStream::connect(admin.as_str()).is_err()
    });
    probe
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    probe.read_to_string(&mut answer).unwrap();
    let draining = crate::support::curl::parse(&answer);
    assert_eq!(draining.status, 503, "not ready while draining");
    assert_eq!(draining.json()["why"], "stopping");
    drop(held);
    assert_eq!(porxy.wait_exit(WAIT).code(), Some(0), "{}", porxy.stderr());
}
