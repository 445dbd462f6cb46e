//! `--state-file`: changes made at runtime are written as they happen and are there after a
//! restart (backends' drained state too); a state file that cannot be read is refused with
//! its place, and porxy does not start.

use serde_json::json;

use super::WAIT;
use crate::support::curl::{curl, send_json, url};
use crate::support::process::{run, Porxy, TempDir};
use crate::support::Backend;

#[test]
fn runtime_changes_survive_a_restart() {
    let (a, b) = (Backend::greeting_echo(b"A"), Backend::greeting_echo(b"B"));
    let dir = TempDir::new();
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().unwrap();
    let tunnel = format!("127.0.0.1:0={}", a.addr());
    let args = [
        "--admin",
        "127.0.0.1:0",
        "--state-file",
        state_arg,
        "--tunnel",
        &tunnel,
    ];
    let mut first = Porxy::start(&args);
    let admin = first.admin().unwrap().to_string();
    let web = json!({
        "listen": "127.0.0.1:0",
        "remotes": [{"address": a.addr().to_string()}, {"address": b.addr().to_string()}],
        "options": {"idle_timeout": "5m"},
    });
    let put = send_json(&admin, "PUT", "/routes/web", &web.to_string());
    assert_eq!(put.status, 200, "{}", put.body);
    let backend = format!("/routes/web/backends/{}", a.addr());
    let drained = send_json(&admin, "PUT", &backend, r#"{"state":"drain"}"#);
    assert_eq!(drained.status, 200, "{}", drained.body);
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("the state file")).unwrap();
    let names: Vec<&str> = kept["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"web") && names.contains(&"cli-1"), "{kept}");
    let web_listen = curl(&[&url(&admin, "/routes/web")]).json()["listen"].clone();
    assert_eq!(curl(&[&url(&admin, "/stop")]).status, 202);
    assert_eq!(first.wait_exit(WAIT).code(), Some(0));

    let second = Porxy::start(&args);
    assert!(
        second.tunnels().contains_key("web"),
        "{:?}",
        second.tunnels()
    );
    let admin = second.admin().unwrap().to_string();
    let route = curl(&[&url(&admin, "/routes/web")]).json();
    assert_eq!(route["listen"], web_listen, "the same address");
    assert_eq!(route["options"]["idle_timeout"], "5m");
    assert_eq!(route["remotes"][0]["state"], "draining", "{route}");
    assert_eq!(route["remotes"][1]["state"], "up");
}

#[test]
fn a_broken_state_file_is_refused_with_its_place() {
    let dir = TempDir::new();
    let cases = [
        ("{\n  \"routes\": [\n    {\"name\": ", ":3:"),
        (
            r#"{"routes": [{"name": "web", "listen": "127.0.0.1:0", "remotes": []}]}"#,
            ": routes[0].remotes: empty: give at least one backend",
        ),
    ];
    for (text, says) in cases {
        let state = dir.write("state.json", text);
        let out = run(
            &[
                "--state-file",
                state.to_str().unwrap(),
                "--tunnel",
                "127.0.0.1:0=127.0.0.1:9",
            ],
            WAIT,
        );
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        let head = format!("state file {}", state.display());
        assert!(
            out.stderr.contains(&head) && out.stderr.contains(says),
            "{}",
            out.stderr
        );
    }
}
