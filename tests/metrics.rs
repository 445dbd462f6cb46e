//! Prometheus metrics at `GET /metrics`: after known traffic each counter is exactly what was
//! sent and closed, and `promtool check metrics` (Prometheus's own checker, fetched by
//! `tools/promtool`) finds nothing wrong with the text.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::client::connect;
use crate::support::curl::{curl, send_json, url};
use crate::support::process::Porxy;
use crate::support::{wait_until, Backend};

mod proxy_wide;

const WAIT: Duration = Duration::from_secs(10);

/// The value of the sample `line_start` (a metric name with its labels) in `text`.
#[track_caller]
fn sample(text: &str, line_start: &str) -> String {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(line_start)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no sample {line_start} in:\n{text}"))
        .to_string()
}

/// promtool's path: `tools/promtool` finds it, or fetches it.
fn promtool() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/promtool");
    let out = Command::new(script).output().expect("run tools/promtool");
    assert!(
        out.status.success(),
        "tools/promtool could not get promtool (tests/run.sh installs what the tests need): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// porxy with the tunnel `cli-1` to `spec` (`REMOTE[options]`) and an admin endpoint; its
/// admin address.
fn with_admin(spec: &str) -> (Porxy, String) {
    let porxy = Porxy::start(&[
        "--admin",
        "127.0.0.1:0",
        "--tunnel",
        &format!("127.0.0.1:0={spec}"),
    ]);
    let admin = porxy.admin().expect("admin= on the READY line").to_string();
    (porxy, admin)
}

#[test]
fn a_scrape_after_known_traffic_is_exact_and_valid() {
    let backend = Backend::echo();
    let (porxy, admin) = with_admin(&backend.addr().to_string());
    let listen = porxy.tunnel("cli-1").to_string();
    for size in [100usize, 200, 300] {
        let mut client = connect(porxy.tunnel("cli-1"));
        client.write_all(&vec![b'm'; size]).unwrap();
        let mut back = vec![0u8; size];
        client.read_exact(&mut back).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
    }
    wait_until(WAIT, "three completed closes", || {
        curl(&[&url(&admin, "/status")]).json()["tunnels"][0]["closes"]["completed"] == 3
    });
    let scrape = curl(&[&url(&admin, "/metrics")]);
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = &scrape.body;
    let tunnel = format!("{{tunnel=\"cli-1\",listen=\"{listen}\"");
    let backend_labels = format!("{{tunnel=\"cli-1\",backend=\"{}\"", backend.addr());
    let cases = [
        (
            format!("porxy_tunnel_connections_accepted_total{tunnel}}}"),
            "3",
        ),
        (format!("porxy_tunnel_connections_open{tunnel}}}"), "0"),
        (
            format!("porxy_tunnel_bytes_total{tunnel},direction=\"up\"}}"),
            "600",
        ),
        (
            format!("porxy_tunnel_bytes_total{tunnel},direction=\"down\"}}"),
            "600",
        ),
        (
            format!("porxy_tunnel_closes_total{tunnel},reason=\"completed\",fault=\"none\"}}"),
            "3",
        ),
        (
            format!("porxy_tunnel_closes_total{tunnel},reason=\"client_reset\",fault=\"client\"}}"),
            "0",
        ),
        (
            format!("porxy_tunnel_connect_failures_total{tunnel}}}"),
            "0",
        ),
        (
            format!("porxy_backend_connections_total{backend_labels}}}"),
            "3",
        ),
        (
            format!("porxy_backend_bytes_total{backend_labels},direction=\"to_backend\"}}"),
            "600",
        ),
        (
            format!("porxy_backend_bytes_total{backend_labels},direction=\"from_backend\"}}"),
            "600",
        ),
        (format!("porxy_backend_up{backend_labels}}}"), "1"),
        (
            format!("porxy_backend_state{backend_labels},state=\"up\"}}"),
            "1",
        ),
        (
            format!("porxy_backend_state{backend_labels},state=\"draining\"}}"),
            "0",
        ),
        ("porxy_config_generation".to_string(), "1"),
        // The histograms count what the counters count: three lifetimes, three connects.
        (
            format!("porxy_tunnel_connection_duration_seconds_count{tunnel}}}"),
            "3",
        ),
        (
            format!("porxy_tunnel_connection_duration_seconds_bucket{tunnel},le=\"+Inf\"}}"),
            "3",
        ),
        (
            format!("porxy_backend_connect_duration_seconds_count{backend_labels}}}"),
            "3",
        ),
        (
            format!("porxy_backend_connect_duration_seconds_bucket{backend_labels},le=\"+Inf\"}}"),
            "3",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(sample(text, &line), want, "{line}");
    }
    let open_fds: u64 = sample(text, "process_open_fds").parse().unwrap();
    assert!(open_fds > 3, "{open_fds}");

    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--metrics ADDR`: a listener that serves `/metrics` and nothing of the admin API.
#[test]
fn the_metrics_listener_serves_metrics_only() {
    let backend = Backend::echo();
    let porxy = Porxy::start(&[
        "--metrics",
        "127.0.0.1:0",
        "--tunnel",
        &format!("127.0.0.1:0={}", backend.addr()),
    ]);
    let metrics = porxy
        .ready_field("metrics")
        .expect("metrics= on the READY line")
        .to_string();
    assert!(porxy.admin().is_none());
    let scrape = curl(&[&url(&metrics, "/metrics")]);
    assert_eq!(scrape.status, 200);
    assert!(scrape
        .body
        .contains("porxy_tunnel_connections_accepted_total{tunnel=\"cli-1\""));
    let routes = curl(&[&url(&metrics, "/routes")]);
    assert_eq!(
        (routes.status, routes.error()),
        (404, "this listener serves /metrics only".into())
    );
    let stop = curl(&["-X", "POST", &url(&metrics, "/stop")]);
    assert_eq!(stop.status, 404, "no way to the admin API");
}

/// Clients that wait for a slot, and reloads by how they went, are counted.
#[test]
fn queue_waits_and_reloads_are_counted() {
    let backend = Backend::greeting_echo(b"A");
    let (porxy, admin) = with_admin(&format!("{}[max_conns=1,queue_timeout=5s]", backend.addr()));
    let tunnel = porxy.tunnel("cli-1");
    let mut first = connect(tunnel);
    let mut greeting = [0u8; 1];
    first.read_exact(&mut greeting).unwrap();
    let mut second = connect(tunnel);
    wait_until(WAIT, "the second client waiting for the slot", || {
        let scrape = curl(&[&url(&admin, "/metrics")]).body;
        sample(
            &scrape,
            &format!("porxy_tunnel_queue_waits_total{{tunnel=\"cli-1\",listen=\"{tunnel}\"}}"),
        ) == "1"
    });
    drop(first);
    second
        .read_exact(&mut greeting)
        .expect("the slot, once the first left");

    let table = curl(&[&url(&admin, "/routes")]).body;
    let put = |body: &str| send_json(&admin, "PUT", "/routes", body);
    assert_eq!(put(&table).status, 200);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let clash = table.replace(
        &tunnel.to_string(),
        &taken.local_addr().unwrap().to_string(),
    );
    assert_eq!(put(&clash).status, 409);
    let scrape = curl(&[&url(&admin, "/metrics")]).body;
    assert_eq!(sample(&scrape, "porxy_reloads_total{result=\"ok\"}"), "1");
    assert_eq!(
        sample(&scrape, "porxy_reloads_total{result=\"failed\"}"),
        "1"
    );
    let last: u64 = sample(&scrape, "porxy_last_reload_success_timestamp_seconds")
        .parse()
        .unwrap();
    assert!(last > 1_700_000_000, "{last}");
    assert_eq!(
        sample(
            &scrape,
            &format!("porxy_tunnel_queue_timeouts_total{{tunnel=\"cli-1\",listen=\"{tunnel}\"}}")
        ),
        "0"
    );
}

/// Every counter series (and every histogram's buckets, sum and count) only grows across
/// scrapes taken while clients come and go.
#[test]
fn counters_never_decrease_across_scrapes_under_load() {
    let backend = Backend::greeting_echo(b"X");
    let (porxy, admin) = with_admin(&backend.addr().to_string());
    let load = crate::support::load::Load::start(porxy.tunnel("cli-1"), 4, b'X');
    let counters = |text: &str| -> std::collections::BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| {
                let name = series.split('{').next().unwrap_or("");
                name.starts_with("porxy_")
                    && (name.ends_with("_total")
                        || name.ends_with("_bucket")
                        || name.ends_with("_sum")
                        || name.ends_with("_count"))
            })
            .map(|(series, value)| (series.to_string(), value.parse().unwrap()))
            .collect()
    };
    let mut before = counters(&curl(&[&url(&admin, "/metrics")]).body);
    for round in 0..10 {
        load.wait_completed((round + 1) * 20, WAIT);
        let now = counters(&curl(&[&url(&admin, "/metrics")]).body);
        for (series, value) in &before {
            let later = now
                .get(series)
                .copied()
                .unwrap_or_else(|| panic!("{series} gone"));
            assert!(later >= *value, "{series} went from {value} to {later}");
        }
        before = now;
    }
    let report = load.finish();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let accepted = before
        .iter()
        .find(|(s, _)| s.starts_with("porxy_tunnel_connections_accepted_total"))
        .map(|(_, v)| *v)
        .unwrap();
    assert!(accepted >= 200.0, "{accepted}");
}
