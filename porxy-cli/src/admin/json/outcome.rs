//! What a carried-out admin command did, as JSON: the same typed [`Outcome`] the control
//! socket renders as a line, and the status each [`AdminError`] answers with.

use porxy_core::units::format_duration;
use porxy_core::ReloadReport;
use serde_json::{json, Value};

use crate::control::outcome::{sort, AdminError, Outcome, ServiceChange, Sort};
use crate::reload::ReloadError;

/// The body of an outcome (`None` for those the admin API has no use for).
pub fn outcome(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Reloaded(report) => reload_report(report),
        Outcome::BackendAdded { tunnel, backend } => json!({
            "tunnel": tunnel.to_string(), "backend": backend.to_string(), "added": true,
        }),
        Outcome::BackendChanged {
            tunnel,
            backend,
            change,
            open,
        } => json!({
            "tunnel": tunnel.to_string(),
            "backend": backend.to_string(),
            "state": match change {
                ServiceChange::Drain => "draining",
                ServiceChange::Enable => "enabled",
                ServiceChange::Disable => "disabled",
            },
            "open": open,
        }),
        Outcome::Removed {
            tunnel,
            backend,
            removal,
            ..
        } => json!({
            "tunnel": tunnel.to_string(),
            "backend": backend.to_string(),
            "state": "removing",
            "open": removal.open,
            // Whole milliseconds, rounded up: "at most".
            "deadline": removal.deadline.map(|left| {
                format_duration(std::time::Duration::from_millis(
                    left.as_nanos().div_ceil(1_000_000) as u64,
                ))
            }),
        }),
        Outcome::Stopping {
            open,
            drain_timeout,
        } => json!({
            "stopping": true, "open": open, "drain_timeout": format_duration(*drain_timeout),
        }),
        Outcome::Opened(opened) => json!({
            "listen": opened.local.to_string(),
            "remotes": opened.remotes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "replaced": opened.replaced,
        }),
        Outcome::Closed { local, closed, .. } => json!({
            "listen": local.to_string(), "listening_stopped": closed.listening,
        }),
        Outcome::Reopened { files } => json!({ "reopened": files }),
        Outcome::Help | Outcome::Status(_) | Outcome::StatusFull(..) | Outcome::Bye => json!({}),
    }
}

/// A reload's report: the generation new connections start under, and what changed.
pub fn reload_report(report: &ReloadReport) -> Value {
    let list = |addrs: &[std::net::SocketAddr]| -> Vec<String> {
        addrs.iter().map(ToString::to_string).collect()
    };
    json!({
        "generation": report.generation,
        "opened": list(&report.opened),
        "changed": list(&report.changed),
        "unchanged": list(&report.unchanged),
        "closed": list(&report.closed),
        "restart_only": report.restart_only,
    })
}

/// The HTTP status an admin error answers with.
pub fn status_of(error: &AdminError) -> u16 {
    match error {
        AdminError::BadRequest(_) | AdminError::Invalid(_) => 400,
        AdminError::NotFound(_) => 404,
        AdminError::Conflict(_) => 409,
        AdminError::Stopping(_) => 503,
        AdminError::Internal(_) | AdminError::ReopenFailed(_) => 500,
        AdminError::ReloadRefused(why) => match why {
            ReloadError::Core(core) => match sort(core) {
                Sort::Invalid => 400,
                Sort::NotFound => 404,
                Sort::Conflict => 409,
                Sort::Stopping => 503,
                Sort::Internal => 500,
            },
            ReloadError::NoConfigFile | ReloadError::NoListener { .. } => 409,
            ReloadError::Config(_)
            | ReloadError::NameTaken { .. }
            | ReloadError::Check(_)
            | ReloadError::AccessLog(_) => 400,
        },
    }
}
