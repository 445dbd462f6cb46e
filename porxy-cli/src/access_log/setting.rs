//! Where an access log goes and how its lines look: `access_log = "PATH" | "stderr" | "off"`
//! and `access_log_format = "logfmt" | "json"`, proxy-wide and per listener. Parsed once, where
//! the configuration or the command line gives them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    /// Nowhere (the default).
    #[default]
    Off,
    /// porxy's standard error, between its log lines.
    Stderr,
    /// A file, appended to; reopened on SIGUSR1 and `REOPEN` (for logrotate).
    File(PathBuf),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Target, String> {
        match text {
            "" => Err("expected a file path, `stderr` or `off`".into()),
            "off" => Ok(Target::Off),
            "stderr" => Ok(Target::Stderr),
            path => Ok(Target::File(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Off => f.write_str("off"),
            Target::Stderr => f.write_str("stderr"),
            Target::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How each record is written: one line either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `key=value` pairs, values with spaces or quotes quoted (the default).
    #[default]
    Logfmt,
    /// One JSON object a line, every field named.
    Json,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        match text {
            "logfmt" => Ok(Format::Logfmt),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown format {other:?}: expected `logfmt` or `json`"
            )),
        }
    }
}

/// One log's setting: where, and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Setting {
    pub target: Target,
    pub format: Format,
}

/// The whole access log configuration: the proxy-wide setting, and listeners' own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// For tunnels with no setting of their own (those opened at runtime too).
    pub default: Setting,
    /// `[listeners.NAME] access_log`, by listener name.
    pub listeners: BTreeMap<String, Setting>,
}

impl Plan {
    /// The setting for the tunnel named `name` (`None`: a tunnel with no name known).
    pub fn for_tunnel(&self, name: Option<&str>) -> &Setting {
        name.and_then(|n| self.listeners.get(n))
            .unwrap_or(&self.default)
    }

    /// Whether any tunnel's connections are recorded.
    pub fn is_on(&self) -> bool {
        self.default.target != Target::Off
            || self.listeners.values().any(|s| s.target != Target::Off)
    }

    /// Every file the plan writes to, each once.
    pub fn files(&self) -> Vec<&PathBuf> {
        let mut files: Vec<&PathBuf> = std::iter::once(&self.default)
            .chain(self.listeners.values())
            .filter_map(|s| match &s.target {
                Target::File(path) => Some(path),
                _ => None,
            })
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_formats_parse_or_say_what_was_expected() {
        assert_eq!("off".parse::<Target>(), Ok(Target::Off));
        assert_eq!("stderr".parse::<Target>(), Ok(Target::Stderr));
        assert_eq!(
            "/var/log/porxy.log".parse::<Target>(),
            Ok(Target::File("/var/log/porxy.log".into()))
        );
        assert_eq!(
            "".parse::<Target>(),
            Err("expected a file path, `stderr` or `off`".into())
        );
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert_eq!(
            "xml".parse::<Format>(),
            Err("unknown format \"xml\": expected `logfmt` or `json`".into())
        );
    }

    #[test]
    fn a_listener_setting_wins_over_the_default() {
        let mut plan = Plan::default();
        assert!(!plan.is_on());
        plan.listeners.insert(
            "web".into(),
            Setting {
                target: Target::File("/tmp/web.log".into()),
                format: Format::Json,
            },
        );
        assert!(plan.is_on());
        assert_eq!(plan.for_tunnel(Some("web")).format, Format::Json);
        assert_eq!(plan.for_tunnel(Some("db")).target, Target::Off);
        assert_eq!(plan.for_tunnel(None).target, Target::Off);
        assert_eq!(plan.files(), vec![&PathBuf::from("/tmp/web.log")]);
    }
}
