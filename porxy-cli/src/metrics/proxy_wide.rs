//! The proxy-wide metric families: reactors, configuration generations, accept pauses,
//! resource shortages and splice fallbacks, from a status snapshot.

use porxy_core::Status;

use super::exposition::{Exposition, Kind};

/// Writes the proxy-wide families for `status`.
pub fn write(text: &mut Exposition, status: &Status) {
    let mut reactors = text.family(
        "porxy_reactor_connections_open",
        Kind::Gauge,
        "Connections each reactor holds now.",
    );
    for r in &status.reactors {
        reactors.sample(&[("reactor", &r.index.to_string())], r.open);
    }
    let current = status
        .generations
        .iter()
        .find(|g| g.current)
        .map_or(0, |g| g.id);
    text.family(
        "porxy_config_generation",
        Kind::Gauge,
        "The configuration generation new connections start under.",
    )
    .sample(&[], current);
    let mut generations = text.family(
        "porxy_generation_connections_open",
        Kind::Gauge,
        "Connections open, by the generation they started under.",
    );
    for g in &status.generations {
        generations.sample(&[("generation", &g.id.to_string())], g.open);
    }
    let pauses = status.accept_pauses;
    text.family(
        "porxy_accept_pauses_total",
        Kind::Counter,
        "Times accepting new clients paused (they wait in the listen backlog), by cause.",
    )
    .sample(&[("cause", "connection_limit")], pauses.connection_limit)
    .sample(&[("cause", "accept_rate")], pauses.accept_rate)
    .sample(&[("cause", "resource_shortage")], pauses.resource_shortage)
    .sample(&[("cause", "over_share")], pauses.over_share);
    let sum = |figure: fn(&porxy_core::ReactorStatus) -> u64| -> u64 {
        status.reactors.iter().map(figure).sum()
    };
    text.family(
        "porxy_descriptor_shortages_total",
        Kind::Counter,
        "Times descriptors (or memory) ran out, by what porxy was doing: accepting a client, \
         serving a connection (which then ended with reason local_resource), or creating a \
         pipe for splice(2) (the direction copied instead).",
    )
    .sample(&[("during", "accept")], pauses.resource_shortage)
    .sample(&[("during", "connection")], sum(|r| r.shortages))
    .sample(&[("during", "splice")], sum(|r| r.splice_fallbacks.create));
    let mut fallbacks = text.family(
        "porxy_splice_fallbacks_total",
        Kind::Counter,
        "Times a direction copied bytes instead of splicing them, by reactor and cause: \
         budget (every pipe of the reactor in use: that burst), create (a pipe could not be \
         made), unsupported (a socket refused splice(2)).",
    );
    for r in &status.reactors {
        let reactor = r.index.to_string();
        let f = r.splice_fallbacks;
        fallbacks
            .sample(&[("reactor", &reactor), ("cause", "budget")], f.budget)
            .sample(&[("reactor", &reactor), ("cause", "create")], f.create)
            .sample(
                &[("reactor", &reactor), ("cause", "unsupported")],
                f.unsupported,
            );
    }
}
