//! Lifting `[admin]`: the HTTP admin endpoint's address, token file, body limit and whether it
//! may serve beyond loopback without a token. The flags (`--admin`, `--admin-token-file`,
//! `--admin-insecure`) override it, in `crate::admin::plan`.

use std::path::PathBuf;

use super::raw::RawAdmin;
use super::{ConfigError, Lift};
use crate::clients::ListenAddr;

/// `[admin]`, lifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminTable {
    pub(crate) listen: Option<ListenAddr>,
    /// Where `listen` was written.
    pub(crate) origin: String,
    /// The JSON-RPC socket.
    pub(crate) rpc: Option<ListenAddr>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) max_body: Option<usize>,
    pub(crate) insecure: bool,
    pub(crate) request_timeout: Option<std::time::Duration>,
    pub(crate) idle_timeout: Option<std::time::Duration>,
}

impl Lift<'_> {
    pub(super) fn admin(&self, raw: &RawAdmin) -> Result<AdminTable, ConfigError> {
        let address = |raw: &Option<toml::Spanned<super::raw::RawAddress>>, path: &str| {
            raw.as_ref()
                .map(|raw| {
                    raw.get_ref()
                        .0
                        .parse::<ListenAddr>()
                        .map_err(|message| self.error(raw.span().start, path, message))
                })
                .transpose()
        };
        let listen = address(&raw.listen, "admin.listen")?;
        let rpc = address(&raw.rpc, "admin.rpc")?;
        let max_body = match &raw.max_body {
            Some(size) => {
                let bytes = self.size(size, "admin.max_body")?;
                if bytes == 0 {
                    return Err(self.error(
                        size.span().start,
                        "admin.max_body",
                        "must be more than zero",
                    ));
                }
                Some(bytes)
            }
            None => None,
        };
        let positive = |raw: &Option<_>, path: &str| match raw {
            Some(raw) => {
                let duration = self.duration(raw, path)?;
                if duration.is_zero() {
                    return Err(self.error(raw.span().start, path, "must be more than zero"));
                }
                Ok(Some(duration))
            }
            None => Ok(None),
        };
        let origin = match &raw.listen {
            Some(listen) => self.at(listen.span().start, "admin.listen").to_string(),
            None => "[admin]".to_string(),
        };
        Ok(AdminTable {
            rpc,
            request_timeout: positive(&raw.request_timeout, "admin.request_timeout")?,
            idle_timeout: positive(&raw.idle_timeout, "admin.idle_timeout")?,
            listen,
            origin,
            token_file: raw.token_file.as_ref().map(|p| PathBuf::from(p.get_ref())),
            max_body,
            insecure: raw.insecure.as_ref().is_some_and(|on| *on.get_ref()),
        })
    }
}
