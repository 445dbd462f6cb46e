//! Lifting `access_log` and `access_log_format` from `[proxy]` (over which `--access-log` and
//! `--access-log-format` win) and from each `[listeners.NAME]` (over `[proxy]`'s, key by key).

use std::collections::BTreeMap;

use toml::Spanned;

use super::raw::RawFile;
use super::{ConfigError, Lift, Overrides};
use crate::access_log::{Format, Plan, Setting, Target};

impl Lift<'_> {
    pub(super) fn access_log(
        &self,
        raw: &RawFile,
        overrides: &Overrides,
    ) -> Result<Plan, ConfigError> {
        let mut default = Setting::default();
        if let Some(target) = self.log_key::<Target>(&raw.proxy.access_log, "proxy.access_log")? {
            default.target = target;
        }
        let format = &raw.proxy.access_log_format;
        if let Some(format) = self.log_key::<Format>(format, "proxy.access_log_format")? {
            default.format = format;
        }
        if let Some(target) = &overrides.access_log {
            default.target = target.clone();
        }
        if let Some(format) = overrides.access_log_format {
            default.format = format;
        }
        let mut listeners = BTreeMap::new();
        for (name, listener) in &raw.listeners {
            let name = name.get_ref();
            let key = |last: &str| format!("listeners.{name}.{last}");
            let target = self.log_key::<Target>(&listener.access_log, &key("access_log"))?;
            let format =
                self.log_key::<Format>(&listener.access_log_format, &key("access_log_format"))?;
            if target.is_none() && format.is_none() {
                continue;
            }
            let setting = Setting {
                target: target.unwrap_or_else(|| default.target.clone()),
                format: format.unwrap_or(default.format),
            };
            listeners.insert(name.clone(), setting);
        }
        Ok(Plan { default, listeners })
    }

    /// The key's value at `path`, parsed as `T` (a target or a format), if it is given.
    fn log_key<T: std::str::FromStr<Err = String>>(
        &self,
        raw: &Option<Spanned<String>>,
        path: &str,
    ) -> Result<Option<T>, ConfigError> {
        raw.as_ref()
            .map(|v| {
                v.get_ref()
                    .parse()
                    .map_err(|e: String| self.error(v.span().start, path, e))
            })
            .transpose()
    }
}
