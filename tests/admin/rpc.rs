//! JSON-RPC 2.0: every method over `POST /rpc`, the camelCase aliases, batches mixing good and
//! bad calls, notifications, the standard error codes and porxy's own; and the `--rpc` socket
//! with several requests on one connection.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use serde_json::{json, Value};

use super::with_admin;
use crate::support::client::set_timeouts;
use crate::support::curl::{curl, send_json, url, Reply};
use crate::support::Backend;

/// POSTs `body` to `/rpc`.
fn rpc(admin: &str, body: &Value) -> Reply {
    send_json(admin, "POST", "/rpc", &body.to_string())
}

/// One call; its `result`, or its `error`.
fn call(admin: &str, method: &str, params: Value) -> Value {
    let reply = rpc(
        admin,
        &json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["id"], 1);
    match answer.get("result") {
        Some(result) => result.clone(),
        None => answer["error"].clone(),
    }
}

#[test]
fn every_method_over_http() {
    let (a, b) = (Backend::greeting_echo(b"A"), Backend::greeting_echo(b"B"));
    let (mut porxy, admin) = with_admin(&["--tunnel", &format!("127.0.0.1:0={}", a.addr())]);
    let (a_addr, b_addr) = (a.addr().to_string(), b.addr().to_string());
    assert_eq!(
        call(&admin, "status", json!([]))["tunnels"][0]["name"],
        "cli-1"
    );
    let listed = call(&admin, "routes.list", json!({}));
    assert_eq!(listed["routes"][0]["remotes"][0]["address"], a_addr);
    let route = json!({"name": "web", "listen": "127.0.0.1:0", "remotes": [{"address": a_addr}]});
    let opened = call(&admin, "tunnel.open", json!({ "route": route }));
    assert_eq!(opened["opened"].as_array().unwrap().len(), 1, "{opened}");
    assert_eq!(call(&admin, "routes.get", json!(["web"]))["name"], "web");
    assert_eq!(
        call(&admin, "backend.add", json!(["web", b_addr]))["added"],
        true
    );
    assert_eq!(
        call(
            &admin,
            "backend.drain",
            json!({"route": "web", "backend": a_addr})
        )["state"],
        "draining"
    );
    assert_eq!(
        call(&admin, "backend.disable", json!(["web", a_addr]))["state"],
        "disabled"
    );
    assert_eq!(
        call(&admin, "backend.enable", json!(["web", a_addr]))["state"],
        "enabled"
    );
    let removed = call(&admin, "backend.remove", json!(["web", a_addr, "30s"]));
    assert_eq!(
        (removed["state"].clone(), removed["deadline"].clone()),
        (json!("removing"), json!("30s"))
    );
    let table = call(&admin, "routes.list", json!([]))["routes"].clone();
    let replaced = call(&admin, "routes.replace", json!([table]));
    assert!(replaced["generation"].as_u64().unwrap() >= 2, "{replaced}");
    assert_eq!(
        call(&admin, "tunnel.close", json!(["web"]))["closed"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let refused = call(&admin, "reload", json!([]));
    assert_eq!(refused["code"], 1012, "{refused}");
    let stopping = call(&admin, "stop", json!([]));
    assert_eq!(stopping["stopping"], true);
    assert_eq!(porxy.wait_exit(super::WAIT).code(), Some(0));
}

#[test]
fn the_older_designs_names_do_the_same() {
    let a = Backend::greeting_echo(b"A");
    let (_porxy, admin) = with_admin(&["--tunnel", &format!("127.0.0.1:0={}", a.addr())]);
    assert_eq!(call(&admin, "numberOfTunnels", json!([])), 1);
    let opened = call(
        &admin,
        "openTunnel",
        json!(["127.0.0.1:0", [a.addr().to_string()], {"idle_timeout": "5m"}]),
    );
    let listen = opened["opened"][0].as_str().unwrap().to_string();
    assert_eq!(call(&admin, "numberOfTunnels", json!([])), 2);
    let info = call(&admin, "tunnelInfo", json!({"tunnel": listen}));
    assert_eq!(info["options"]["idle_timeout"], "5m");
    let other = Backend::greeting_echo(b"B");
    assert_eq!(
        call(
            &admin,
            "addRemote",
            json!([listen, other.addr().to_string()])
        )["added"],
        true
    );
    assert_eq!(
        call(
            &admin,
            "removeRemote",
            json!([listen, other.addr().to_string()])
        )["state"],
        "removing"
    );
    let listed = call(&admin, "listTunnels", json!([]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(
        call(&admin, "closeTunnel", json!([listen]))["closed"],
        json!([listen])
    );
}

#[test]
fn batches_notifications_and_every_error_code() {
    let a = Backend::greeting_echo(b"A");
    let (_porxy, admin) = with_admin(&["--tunnel", &format!("127.0.0.1:0={}", a.addr())]);
    let batch = rpc(
        &admin,
        &json!([
            {"jsonrpc": "2.0", "method": "numberOfTunnels", "id": "n"},
            {"jsonrpc": "2.0", "method": "routes.get", "params": ["nope"], "id": 2},
            {"jsonrpc": "2.0", "method": "frobnicate", "id": null},
            {"jsonrpc": "2.0", "method": "routes.get", "params": {"nam": "x"}, "id": 4},
            {"jsonrpc": "2.0", "method": "status"},
            {"jsonrpc": "1.0", "method": "status", "id": 6},
            {"jsonrpc": "2.0", "method": "backend.add", "params": ["cli-1", a.addr().to_string()], "id": 7},
        ]),
    )
    .json();
    let batch = batch.as_array().expect("a batch answer");
    assert_eq!(batch.len(), 6, "the notification has no answer: {batch:?}");
    let codes: Vec<(Value, Value)> = batch
        .iter()
        .map(|a| {
            (
                a["id"].clone(),
                a.get("result")
                    .map_or(a["error"]["code"].clone(), |_| json!("ok")),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (json!("n"), json!("ok")),
            (json!(2), json!(1001)),
            (Value::Null, json!(-32601)),
            (json!(4), json!(-32602)),
            (json!(6), json!(-32600)),
            (json!(7), json!(1005)),
        ]
    );
    assert_eq!(
        batch[3]["error"]["message"],
        "unknown param `nam`; the method takes name"
    );
    let parse = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        "{oops",
        &url(&admin, "/rpc"),
    ]);
    assert_eq!(parse.json()["error"]["code"], -32700);
    let empty = rpc(&admin, &json!([]));
    assert_eq!(empty.json()["error"]["code"], -32600);
    let notified = rpc(&admin, &json!({"jsonrpc": "2.0", "method": "status"}));
    assert_eq!(notified.status, 204);
    assert!(notified.body.is_empty());
    let bad_field = call(
        &admin,
        "tunnel.open",
        json!([{"name": "x", "listen": "127.0.0.1:0", "remotes": [{"address": "nowhere"}]}]),
    );
    assert_eq!(bad_field["code"], -32602);
    assert!(
        bad_field["message"]
            .as_str()
            .unwrap()
            .starts_with("route.remotes[0].address: "),
        "{bad_field}"
    );
}

#[test]
fn the_rpc_socket_answers_a_line_per_request_on_one_connection() {
    let a = Backend::greeting_echo(b"A");
    let (porxy, _admin) = with_admin(&[
        "--rpc",
        "127.0.0.1:0",
        "--tunnel",
        &format!("127.0.0.1:0={}", a.addr()),
    ]);
    let stream = TcpStream::connect(porxy.ready_field("rpc").expect("rpc= in READY")).unwrap();
    set_timeouts(&stream);
    let mut writer = stream.try_clone().unwrap();
    writer
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"numberOfTunnels\",\"id\":1}\n\
              \n\
              {\"jsonrpc\":\"2.0\",\"method\":\"status\"}\n\
              [{\"jsonrpc\":\"2.0\",\"method\":\"routes.get\",\"params\":[\"cli-1\"],\"id\":2},\
               {\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":3}]\n\
              {not json\n",
        )
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut next = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    assert_eq!(next(), json!({"jsonrpc": "2.0", "result": 1, "id": 1}));
    let batch = next();
    assert_eq!(
        batch[0]["result"]["name"], "cli-1",
        "the notification had no line: {batch}"
    );
    assert_eq!(batch[1]["error"]["code"], -32601);
    assert_eq!(next()["error"]["code"], -32700);
}
