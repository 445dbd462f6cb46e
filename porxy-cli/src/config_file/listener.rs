//! Lifting one `[listeners.NAME]` table into a [`NamedTunnel`]: its address, the backends it
//! names, its timeouts, and its balancing, fan-out and health keys, checked as a SPEC's options
//! are.

use std::collections::BTreeMap;

use porxy_core::{TunnelOptions, TunnelSpec};
use toml::Spanned;

use super::locate::{is_bare_key, key_path};
use super::raw::{RawDuration, RawListener, RawSize};
use super::{Backend, ConfigError, Lift};
use crate::NamedTunnel;

impl Lift<'_> {
    pub(super) fn listener(
        &self,
        name: &Spanned<String>,
        raw: &RawListener,
        backends: &BTreeMap<String, Backend>,
    ) -> Result<NamedTunnel, ConfigError> {
        // `last` is a key of the listener's table, or a dotted path of bare keys below it
        // (`check.interval`): named as the user wrote it, never as one quoted key.
        let key = |last: &str| {
            let mut keys = vec!["listeners", name.get_ref()];
            keys.extend(last.split('.'));
            key_path(&keys)
        };
        let here = key_path(&["listeners", name.get_ref()]);
        if !is_bare_key(name.get_ref()) {
            return Err(self.error(
                name.span().start,
                here,
                "a listener name may use only letters, digits, `_` and `-` (it names the \
                 tunnel in the READY line)",
            ));
        }
        let (local, local_at) = self.endpoint(&raw.listen, key("listen"))?;
        let defined = || {
            if backends.is_empty() {
                "no [backends.NAME] table is defined".to_string()
            } else {
                let names: Vec<&str> = backends.keys().map(String::as_str).collect();
                format!("defined backends: {}", names.join(", "))
            }
        };
        let Some(list) = &raw.backends else {
            return Err(self.error(
                name.span().start,
                here,
                format!(
                    "no backend: expected `backends = [\"NAME\", ...]` naming [backends.NAME] \
                     tables; {}",
                    defined()
                ),
            ));
        };
        if list.get_ref().is_empty() {
            return Err(self.error(
                list.span().start,
                key("backends"),
                format!("empty list: name at least one backend; {}", defined()),
            ));
        }
        let mut remotes = Vec::with_capacity(list.get_ref().len());
        let mut remote_origins = Vec::with_capacity(list.get_ref().len());
        for (index, entry) in list.get_ref().iter().enumerate() {
            let Some(backend) = backends.get(entry.get_ref()) else {
                return Err(self.error(
                    entry.span().start,
                    key("backends"),
                    format!("unknown backend {:?}; {}", entry.get_ref(), defined()),
                ));
            };
            // porxy-core refuses a tunnel with one remote twice; said here, it is located.
            let before = &list.get_ref()[..index];
            if before.iter().any(|b| b.get_ref() == entry.get_ref()) {
                return Err(self.error(
                    entry.span().start,
                    key("backends"),
                    format!(
                        "backend {:?} is listed twice; list it once, and give [{}] a `weight` \
                         to send it more",
                        entry.get_ref(),
                        key_path(&["backends", entry.get_ref()])
                    ),
                ));
            }
            remotes.push(backend.remote.clone());
            remote_origins.push(backend.at.to_string());
        }
        let mut options = TunnelOptions::default();
        for (slot, value, last) in [
            (
                &mut options.connect_timeout,
                &raw.connect_timeout,
                "connect_timeout",
            ),
            (&mut options.idle_timeout, &raw.idle_timeout, "idle_timeout"),
            (
                &mut options.half_closed_timeout,
                &raw.half_closed_timeout,
                "half_closed_timeout",
            ),
            (
                &mut options.client_fin_timeout,
                &raw.client_fin_timeout,
                "client_fin_timeout",
            ),
            (
                &mut options.server_fin_timeout,
                &raw.server_fin_timeout,
                "server_fin_timeout",
            ),
        ] {
            if let Some(value) = value {
                let duration = self.duration(value, &key(last))?;
                if duration.is_zero() {
                    return Err(self.error(
                        value.span().start,
                        key(last),
                        "must be more than zero",
                    ));
                }
                *slot = Some(duration);
            }
        }
        self.balancing(raw, &mut options, &key)?;
        options.splice = raw.splice.as_ref().map(|on| *on.get_ref());
        options
            .check(remotes.len())
            .map_err(|message| self.error(name.span().start, here.clone(), message))?;
        Ok(NamedTunnel {
            name: name.get_ref().clone(),
            spec: TunnelSpec::new(local, remotes).with_options(options),
            local_origin: local_at.to_string(),
            remote_origins,
        })
    }

    /// The listener's balancing and health keys, checked as a SPEC's options are.
    fn balancing(
        &self,
        raw: &RawListener,
        options: &mut TunnelOptions,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        let text = |v: &Spanned<RawDuration>| (v.span(), v.get_ref().0.clone());
        let number = |v: &Spanned<i64>| (v.span(), v.get_ref().to_string());
        let string = |v: &Spanned<String>| (v.span(), v.get_ref().clone());
        let size = |v: &Spanned<RawSize>| {
            let text = match v.get_ref() {
                RawSize::Bytes(n) => n.to_string(),
                RawSize::Text(t) => t.clone(),
            };
            (v.span(), text)
        };
        let check = raw.check.as_ref();
        let values = [
            ("mode", "mode", raw.mode.as_ref().map(string)),
            ("reply", "reply", raw.reply.as_ref().map(string)),
            ("max_lag", "max_lag", raw.max_lag.as_ref().map(size)),
            ("min_live", "min_live", raw.min_live.as_ref().map(number)),
            ("strategy", "strategy", raw.strategy.as_ref().map(string)),
            ("attempts", "attempts", raw.attempts.as_ref().map(number)),
            ("max_conns", "max_conns", raw.max_conns.as_ref().map(number)),
            (
                "queue_timeout",
                "queue_timeout",
                raw.queue_timeout.as_ref().map(text),
            ),
            ("max_fails", "max_fails", raw.max_fails.as_ref().map(number)),
            (
                "fail_timeout",
                "fail_timeout",
                raw.fail_timeout.as_ref().map(text),
            ),
            (
                "check_interval",
                "check.interval",
                check.and_then(|c| c.interval.as_ref()).map(text),
            ),
            (
                "check_timeout",
                "check.timeout",
                check.and_then(|c| c.timeout.as_ref()).map(text),
            ),
            (
                "rise",
                "check.rise",
                check.and_then(|c| c.rise.as_ref()).map(number),
            ),
            (
                "fall",
                "check.fall",
                check.and_then(|c| c.fall.as_ref()).map(number),
            ),
        ];
        for (option, path, value) in values {
            if let Some((span, value)) = value {
                options.set(option, &value).map_err(|message| {
                    // The option's own name leads its message; the key path says it already.
                    let message = message
                        .strip_prefix(&format!("{option}: "))
                        .unwrap_or(&message)
                        .to_string();
                    self.error(span.start, key(path), message)
                })?;
            }
        }
        if let Some(check) = check {
            options.check = Some(true);
            // TOML has its own escapes: the strings are taken as they are.
            options.check_send = check.send.as_ref().map(|s| s.get_ref().clone());
            options.check_expect = check.expect.as_ref().map(|s| s.get_ref().clone());
        }
        Ok(())
    }
}
