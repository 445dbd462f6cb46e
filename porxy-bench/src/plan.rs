//! What a run measures: the sections, their setups and phases (the timing of each mode is
//! [`crate::settings`]').
//!
//! - **pinned**: each kind with one thread, the proxy on CPU 0, backend and load on CPU 1;
//!   phases: idle connections, bulk up, bulk down, request/response over 1 and 64
//!   connections, short connections.
//! - **scaling**: porxy, HAProxy and nginx with 1 and with 2 threads, nothing pinned (backend
//!   and load with 2 threads too); phases: bulk both ways, request/response over 64
//!   connections, short connections.
//! - **busy**: porxy with `--busy-poll 1ms` and HAProxy with `busy-polling`, pinned as in the
//!   pinned section, direct beside them; phases: request/response over 1 and 64 connections.
//!   Busy polling is neither proxy's default and keeps a CPU busy while traffic flows, so it is
//!   measured apart, against each other; only with HAProxy in the run, never in smoke mode.
//! - **tls**: the TLS kinds only (porxy, HAProxy and nginx terminating TLS with one
//!   certificate made for the run), pinned, one thread each, the load generator a rustls
//!   client; with an ECDSA P-256 certificate: idle TLS connections, bulk up and down, full and
//!   resumed handshakes; with an RSA 2048 one (unless `--no-rsa` or no `openssl`): full
//!   handshakes only, the one place the key's type matters (the server's signature; a resumed
//!   TLS 1.3 handshake has none, and neither the bulk cipher nor the idle state depends on
//!   it). A handshake phase is the TLS short connection; round trips are not repeated.
//! - **sni**: the `-sni` kinds (porxy, HAProxy and nginx routing TLS by server name without
//!   terminating it, see [`crate::sni`]), each right after its plain self relaying the same
//!   TLS unrouted (the difference is the peek's and the routing's cost), in front of a TLS
//!   backend ([`crate::tls_backend`]), pinned, one thread each; the TLS sections' phases (the
//!   proxy does no cryptography, so the key's type does not matter to it: ECDSA P-256 only).
//! - **syscalls**: every proxy of the pinned section, pinned the same way, one round; phases:
//!   bulk both ways, request/response over 1 and 64 connections, short connections. perf counts
//!   the proxy's system calls in each window (see [`crate::syscalls`]); counting slows every
//!   call, so this section reports the counts per unit of work and nothing else. Never in smoke
//!   mode, and only where perf can count them.
//!
//! Within a section, every round runs every setup in turn, so drift over time hits all alike.
//! The pinned section measures porxy twice: with its defaults (splice on Linux) and with
//! `splice=off` (`porxy-copy`), the copy path every byte of which passes through a buffer.
//! When asked for, it measures porxy and HAProxy with the PROXY protocol on both sides
//! (`porxy-proxy`, `haproxy-proxy`) beside themselves without, for its cost, the three
//! proxies with an access log (`porxy-log`, `haproxy-log`, `nginx-log`) beside themselves
//! without, and another porxy build (`porxy-b`) beside this one; like the copy path, those are
//! pinned-section questions (and system-call ones), not scaling's or busy polling's.

use crate::peers::{Kind, Setup};
pub use crate::section::{Section, SectionId};
pub use crate::settings::{Mode, Settings};
use crate::setup::CertKey;
pub use crate::setup::Phase;

/// Every timed phase (all but [`Phase::Idle`]), in the order a setup goes through them.
const TIMED: [Phase; 5] = [
    Phase::BulkUp,
    Phase::BulkDown,
    Phase::Rr1,
    Phase::Rr64,
    Phase::Short,
];

/// Request/response connections in [`Phase::Rr64`].
pub const RR_CONNS: usize = 64;
/// Short connections in flight in [`Phase::Short`], and TLS ones in [`Phase::Handshake`] and
/// [`Phase::Resumed`].
pub const SHORT_IN_FLIGHT: usize = 32;

/// The phases of the TLS and SNI sections: idle first, as in the pinned section, on a
/// freshly started proxy.
const TLS_PHASES: [Phase; 5] = [
    Phase::Idle,
    Phase::BulkUp,
    Phase::BulkDown,
    Phase::Handshake,
    Phase::Resumed,
];

/// The sections of a run: the pinned one with the plain kinds, the TLS ones with the TLS
/// kinds, the SNI one with the SNI kinds (and their plain selves), the scaling one, the
/// busy-polling one and the system-call one when asked for.
pub fn sections(settings: &Settings) -> Vec<Section> {
    let plain: Vec<Kind> = settings
        .kinds
        .iter()
        .copied()
        .filter(|kind| !kind.tls() && !kind.sni())
        .collect();
    let tls: Vec<Setup> = settings
        .kinds
        .iter()
        .filter(|kind| kind.tls())
        .map(|&kind| Setup::new(kind, 1))
        .collect();
    let mut sections = Vec::new();
    if !plain.is_empty() {
        sections.push(Section {
            id: SectionId::Pinned,
            setups: plain.iter().map(|&kind| Setup::new(kind, 1)).collect(),
            phases: [&[Phase::Idle][..], &TIMED].concat(),
            pinned: true,
            threads: 1,
            rounds: settings.rounds,
        });
    }
    if !tls.is_empty() {
        sections.push(Section {
            id: SectionId::Tls(CertKey::EcdsaP256),
            setups: tls.clone(),
            phases: TLS_PHASES.to_vec(),
            pinned: true,
            threads: 1,
            rounds: settings.rounds,
        });
        if settings.rsa {
            sections.push(Section {
                id: SectionId::Tls(CertKey::Rsa2048),
                setups: tls,
                phases: vec![Phase::Handshake],
                pinned: true,
                threads: 1,
                rounds: settings.rounds,
            });
        }
    }
    let sni: Vec<Setup> = settings
        .kinds
        .iter()
        .filter(|kind| kind.sni())
        .flat_map(|&kind| [kind.without_sni(), kind])
        .map(|kind| Setup::new(kind, 1))
        .collect();
    if !sni.is_empty() {
        sections.push(Section {
            id: SectionId::Sni,
            setups: sni,
            phases: TLS_PHASES.to_vec(),
            pinned: true,
            threads: 1,
            rounds: settings.rounds,
        });
    }
    if settings.scaling {
        let mut setups = Vec::new();
        for &kind in &plain {
            match kind {
                Kind::Direct if settings.mode != Mode::Smoke => setups.push(Setup::new(kind, 1)),
                // The copy path's, the PROXY protocol's, the access log's and the other build's
                // figures are in the pinned section; scaling shows the default.
                Kind::Direct
                | Kind::PorxyCopy
                | Kind::PorxyProxy
                | Kind::HaproxyProxy
                | Kind::PorxyLog
                | Kind::HaproxyLog
                | Kind::NginxLog
                | Kind::PorxyB => {}
                _ => {
                    setups.push(Setup::new(kind, 1));
                    setups.push(Setup::new(kind, 2));
                }
            }
        }
        if !setups.is_empty() {
            sections.push(Section {
                id: SectionId::Scaling,
                setups,
                phases: vec![Phase::BulkUp, Phase::BulkDown, Phase::Rr64, Phase::Short],
                pinned: false,
                threads: 2,
                rounds: settings.rounds,
            });
        }
    }
    // HAProxy is left out of `kinds` when it is not installed: then there is nothing to
    // compare porxy's busy polling with.
    if settings.busy && settings.mode != Mode::Smoke && settings.kinds.contains(&Kind::Haproxy) {
        let setups = plain
            .iter()
            .filter_map(|&kind| match kind {
                Kind::Direct => Some(Setup::new(kind, 1)),
                Kind::Porxy | Kind::Haproxy => Some(Setup::busy(kind)),
                // Busy polling is measured on porxy's default data path, without the PROXY
                // protocol or TLS; nginx has none.
                _ => None,
            })
            .collect();
        sections.push(Section {
            id: SectionId::Busy,
            setups,
            phases: vec![Phase::Rr1, Phase::Rr64],
            pinned: true,
            threads: 1,
            rounds: settings.rounds,
        });
    }
    if settings.syscalls && settings.mode != Mode::Smoke {
        let setups: Vec<Setup> = plain
            .iter()
            .filter(|&&kind| kind != Kind::Direct)
            .map(|&kind| Setup::new(kind, 1))
            .collect();
        if !setups.is_empty() {
            sections.push(Section {
                id: SectionId::Syscalls,
                setups,
                phases: TIMED.to_vec(),
                pinned: true,
                threads: 1,
                // Counts per unit of work barely move from one round to the next.
                rounds: 1,
            });
        }
    }
    if let Some(only) = &settings.only {
        for section in &mut sections {
            section.phases.retain(|phase| only.contains(phase));
        }
        sections.retain(|section| !section.phases.is_empty());
    }
    sections
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn settings(kinds: &[Kind], only: Option<Vec<Phase>>) -> Settings {
        Settings {
            mode: Mode::Full,
            window: Duration::from_secs(1),
            warmup: Duration::ZERO,
            rounds: 1,
            idle: 10,
            kinds: kinds.to_vec(),
            scaling: true,
            busy: true,
            syscalls: false,
            rsa: true,
            porxy: PathBuf::from("porxy"),
            porxy_b: None,
            only,
        }
    }

    fn setups(section: &Section) -> Vec<String> {
        section.setups.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_copy_path_is_measured_pinned_but_not_scaled() {
        let all = [Kind::Direct, Kind::Porxy, Kind::PorxyCopy, Kind::Haproxy];
        let sections = sections(&settings(&all, None));
        assert_eq!(sections.len(), 3);
        assert_eq!(
            setups(&sections[0]),
            ["direct", "porxy×1", "porxy-copy×1", "haproxy×1"]
        );
        assert_eq!(
            setups(&sections[1]),
            ["direct", "porxy×1", "porxy×2", "haproxy×1", "haproxy×2"]
        );
    }

    #[test]
    fn only_keeps_the_phases_asked_for_and_drops_emptied_sections() {
        let kinds = [Kind::Porxy];
        let two = sections(&settings(&kinds, Some(vec![Phase::Rr1, Phase::BulkUp])));
        // Order stays the plan's, not the argument's; Rr1 is not in the scaling section.
        assert_eq!(two[0].phases, [Phase::BulkUp, Phase::Rr1]);
        assert_eq!(two[1].phases, [Phase::BulkUp]);
        let idle = sections(&settings(&kinds, Some(vec![Phase::Idle])));
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].id, SectionId::Pinned);
    }

    #[test]
    fn the_busy_section_pins_porxy_and_haproxy_busy_polling_beside_direct() {
        let all = [
            Kind::Direct,
            Kind::Porxy,
            Kind::PorxyCopy,
            Kind::Haproxy,
            Kind::Nginx,
        ];
        let sections = sections(&settings(&all, None));
        let ids: Vec<SectionId> = sections.iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [SectionId::Pinned, SectionId::Scaling, SectionId::Busy]
        );
        let busy = &sections[2];
        assert_eq!(
            setups(busy),
            [
                "direct",
                "porxy×1 --busy-poll 1ms",
                "haproxy×1 busy-polling"
            ]
        );
        assert_eq!(
            busy.setups.iter().map(|s| s.busy).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert_eq!(busy.phases, [Phase::Rr1, Phase::Rr64]);
        assert!(busy.pinned, "pinned like the pinned section");
        assert_eq!(busy.threads, sections[0].threads);
        // Nothing else busy-polls.
        assert!(sections[..2]
            .iter()
            .all(|s| s.setups.iter().all(|x| !x.busy)));
    }

    #[test]
    fn the_busy_section_needs_haproxy_a_real_run_and_no_opt_out() {
        let has_busy = |s: &Settings| sections(s).iter().any(|x| x.id == SectionId::Busy);
        let with_haproxy = settings(&[Kind::Porxy, Kind::Haproxy], None);
        assert!(has_busy(&with_haproxy));
        assert!(!has_busy(&settings(&[Kind::Direct, Kind::Porxy], None)));
        assert!(!has_busy(&Settings {
            mode: Mode::Smoke,
            ..with_haproxy.clone()
        }));
        assert!(has_busy(&Settings {
            mode: Mode::Quick,
            ..with_haproxy.clone()
        }));
        assert!(!has_busy(&Settings {
            busy: false,
            ..with_haproxy
        }));
    }

    #[test]
    fn only_applies_to_the_busy_section_too() {
        let kinds = [Kind::Porxy, Kind::Haproxy];
        let rr1 = sections(&settings(&kinds, Some(vec![Phase::Rr1])));
        let busy = rr1.iter().find(|s| s.id == SectionId::Busy).unwrap();
        assert_eq!(busy.phases, [Phase::Rr1]);
        let bulk = sections(&settings(&kinds, Some(vec![Phase::BulkUp])));
        assert!(bulk.iter().all(|s| s.id != SectionId::Busy), "{bulk:?}");
    }

    #[test]
    fn the_proxy_protocol_kinds_are_pinned_and_counted_but_not_scaled_or_busy() {
        let kinds = [
            Kind::Porxy,
            Kind::PorxyProxy,
            Kind::Haproxy,
            Kind::HaproxyProxy,
        ];
        let sections = sections(&Settings {
            syscalls: true,
            ..settings(&kinds, None)
        });
        let ids: Vec<SectionId> = sections.iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [
                SectionId::Pinned,
                SectionId::Scaling,
                SectionId::Busy,
                SectionId::Syscalls
            ]
        );
        let pinned = ["porxy×1", "porxy-proxy×1", "haproxy×1", "haproxy-proxy×1"];
        assert_eq!(setups(&sections[0]), pinned);
        assert_eq!(
            setups(&sections[1]),
            ["porxy×1", "porxy×2", "haproxy×1", "haproxy×2"]
        );
        assert_eq!(
            setups(&sections[2]),
            ["porxy×1 --busy-poll 1ms", "haproxy×1 busy-polling"]
        );
        assert_eq!(setups(&sections[3]), pinned);
    }

    #[test]
    fn the_log_kinds_and_the_other_build_are_pinned_and_counted_but_not_scaled() {
        use Kind::{Haproxy, HaproxyLog, NginxLog, Porxy, PorxyB, PorxyLog};
        let kinds = [Porxy, PorxyB, PorxyLog, Haproxy, HaproxyLog, NginxLog];
        let all = sections(&Settings {
            syscalls: true,
            busy: false,
            ..settings(&kinds, None)
        });
        let pinned: Vec<String> = kinds
            .iter()
            .map(|&k| Setup::new(k, 1).to_string())
            .collect();
        assert_eq!(setups(&all[0]), pinned);
        let scaled = ["porxy×1", "porxy×2", "haproxy×1", "haproxy×2"];
        assert_eq!(setups(&all[1]), scaled);
        assert_eq!((all[2].id, setups(&all[2])), (SectionId::Syscalls, pinned));
    }

    #[test]
    fn the_syscall_section_counts_every_proxy_once_but_never_in_smoke_mode() {
        let all = [Kind::Direct, Kind::Porxy, Kind::PorxyCopy, Kind::Nginx];
        let counted = Settings {
            syscalls: true,
            rounds: 5,
            ..settings(&all, None)
        };
        let sections = sections(&counted);
        let last = sections.last().unwrap();
        assert_eq!(last.id, SectionId::Syscalls);
        assert_eq!(setups(last), ["porxy×1", "porxy-copy×1", "nginx×1"]);
        assert_eq!(last.rounds, 1);
        assert!(last.pinned);
        assert!(!last.phases.contains(&Phase::Idle));
        assert_eq!(sections[0].rounds, 5, "the others keep their rounds");
        let has = |s: &Settings| {
            super::sections(s)
                .iter()
                .any(|x| x.id == SectionId::Syscalls)
        };
        assert!(!has(&Settings {
            mode: Mode::Smoke,
            ..counted.clone()
        }));
        assert!(!has(&Settings {
            syscalls: false,
            ..counted.clone()
        }));
        assert!(!has(&Settings {
            kinds: vec![Kind::Direct],
            ..counted
        }));
    }

    #[test]
    fn the_tls_kinds_have_sections_of_their_own_and_nothing_else() {
        use Kind::{Haproxy, HaproxyTls, NginxTls, Porxy, PorxyTls};
        let kinds = [Porxy, PorxyTls, Haproxy, HaproxyTls, NginxTls];
        let all = sections(&Settings {
            syscalls: true,
            ..settings(&kinds, None)
        });
        let ids: Vec<SectionId> = all.iter().map(|s| s.id).collect();
        let (ecdsa, rsa) = (CertKey::EcdsaP256, CertKey::Rsa2048);
        use SectionId::{Busy, Pinned, Scaling, Syscalls, Tls};
        assert_eq!(ids, [Pinned, Tls(ecdsa), Tls(rsa), Scaling, Busy, Syscalls]);
        let tls = ["porxy-tls×1", "haproxy-tls×1", "nginx-tls×1"];
        assert_eq!(setups(&all[0]), ["porxy×1", "haproxy×1"]);
        assert!(setups(&all[1]) == tls && setups(&all[2]) == tls);
        assert_eq!(all[1].phases[0], Phase::Idle, "idle on a fresh proxy");
        assert!(all[1].phases.contains(&Phase::Resumed));
        assert_eq!(all[2].phases, [Phase::Handshake]);
        assert!(all[1..3].iter().all(|s| s.pinned && s.threads == 1));
        assert!(all[3..]
            .iter()
            .all(|s| s.setups.iter().all(|x| !x.kind.tls())));
        // Alone, without RSA, or with --phases.
        let alone = [PorxyTls, HaproxyTls, NginxTls];
        let no_rsa = sections(&Settings {
            rsa: false,
            ..settings(&alone, None)
        });
        assert_eq!(
            no_rsa.iter().map(|s| s.id).collect::<Vec<_>>(),
            [Tls(ecdsa)]
        );
        let only = sections(&settings(
            &alone,
            Some(vec![Phase::Handshake, Phase::Short]),
        ));
        assert!(only.len() == 2 && only.iter().all(|s| s.phases == [Phase::Handshake]));
        assert!(sections(&settings(&alone, Some(vec![Phase::Short]))).is_empty());
    }

    #[test]
    fn the_sni_kinds_run_beside_their_plain_selves_in_a_section_of_their_own() {
        use Kind::{Haproxy, HaproxySni, NginxSni, Porxy, PorxySni};
        let all = sections(&settings(&[Porxy, PorxySni, HaproxySni, NginxSni], None));
        let ids: Vec<SectionId> = all.iter().map(|s| s.id).collect();
        assert_eq!(ids, [SectionId::Pinned, SectionId::Sni, SectionId::Scaling]);
        assert_eq!(setups(&all[0]), ["porxy×1"]);
        assert_eq!(
            setups(&all[1]),
            [
                "porxy×1",
                "porxy-sni×1",
                "haproxy×1",
                "haproxy-sni×1",
                "nginx×1",
                "nginx-sni×1"
            ]
        );
        assert!(all[1].pinned && all[1].threads == 1 && all[1].phases == TLS_PHASES);
        assert!(all[2].setups.iter().all(|x| !x.kind.sni()), "not scaled");
        let alone = sections(&settings(
            &[PorxySni, HaproxySni],
            Some(vec![Phase::Handshake]),
        ));
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].phases, [Phase::Handshake]);
        assert_eq!(
            setups(&alone[0]),
            ["porxy×1", "porxy-sni×1", "haproxy×1", "haproxy-sni×1"]
        );
        assert_eq!(Haproxy, HaproxySni.without_sni());
    }
}
