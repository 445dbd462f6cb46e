//! How the admin endpoint is to run, from the flags over the file's `[admin]`: its address,
//! its token (`--admin-token-file`, `[admin] token_file`, else `$PORXY_ADMIN_TOKEN`), its body
//! limit, and whether it may serve beyond loopback without a token.

use std::path::PathBuf;
use std::time::Duration;

use super::auth::Token;
use super::http::Limits;
use crate::clients::{reachable_from_outside, BoundAddr, ListenAddr};
use crate::config_file::AdminTable;
use crate::error::CliError;

/// The environment variable a token may come from.
pub(crate) const TOKEN_ENV: &str = "PORXY_ADMIN_TOKEN";
/// The largest body taken by default (`[admin] max_body`).
pub(crate) const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// The time a request has from its first byte to its last.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin endpoint's settings.
#[derive(Debug, Clone)]
pub(crate) struct AdminPlan {
    pub(crate) addr: ListenAddr,
    /// Where the address was given (`--admin`, or its place in the file).
    pub(crate) origin: String,
    pub(crate) token: Option<Token>,
    pub(crate) insecure: bool,
    pub(crate) limits: Limits,
    /// How long a connection may stay silent between requests.
    pub(crate) idle_timeout: Duration,
}

/// The flags of the admin endpoint.
pub(crate) struct AdminFlags {
    pub(crate) addr: Option<ListenAddr>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) insecure: bool,
}

/// The plan from the flags over the file's table; `None` without an address.
pub(crate) fn plan(
    flags: AdminFlags,
    file: Option<AdminTable>,
) -> Result<Option<AdminPlan>, CliError> {
    let listen = file.as_ref().and_then(|t| t.listen.clone());
    let (addr, origin) = match (flags.addr, listen) {
        (Some(addr), _) => (addr, "--admin".to_string()),
        (None, Some(listen)) => (
            listen,
            file.as_ref().map_or(String::new(), |t| t.origin.clone()),
        ),
        (None, None) => return Ok(None),
    };
    let token_file = flags
        .token_file
        .or_else(|| file.as_ref().and_then(|t| t.token_file.clone()));
    let token = match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| CliError::AdminToken {
                path: path.clone(),
                why: e.to_string(),
            })?;
            Some(Token::new(&text).ok_or_else(|| CliError::AdminToken {
                path,
                why: "its first line is empty".into(),
            })?)
        }
        None => std::env::var(TOKEN_ENV)
            .ok()
            .and_then(|text| Token::new(&text)),
    };
    Ok(Some(AdminPlan {
        addr,
        origin,
        token,
        insecure: flags.insecure || file.as_ref().is_some_and(|t| t.insecure),
        idle_timeout: file
            .as_ref()
            .and_then(|t| t.idle_timeout)
            .unwrap_or(crate::clients::DEFAULT_IDLE_TIMEOUT),
        limits: Limits {
            max_body: file
                .as_ref()
                .and_then(|t| t.max_body)
                .unwrap_or(DEFAULT_MAX_BODY),
            request_timeout: file
                .as_ref()
                .and_then(|t| t.request_timeout)
                .unwrap_or(REQUEST_TIMEOUT),
        },
    }))
}

/// The JSON-RPC socket's address, from `--rpc` over `[admin] rpc`: refused beyond loopback
/// (it has no token) unless `insecure`.
pub(crate) fn rpc_plan(
    flag: Option<ListenAddr>,
    file: Option<&AdminTable>,
    insecure: bool,
) -> Result<Option<ListenAddr>, CliError> {
    let (addr, origin) = match (flag, file.and_then(|t| t.rpc.clone())) {
        (Some(addr), _) => (addr, "--rpc"),
        (None, Some(addr)) => (addr, "admin.rpc"),
        (None, None) => return Ok(None),
    };
    let insecure = insecure || file.is_some_and(|t| t.insecure);
    if let ListenAddr::Tcp(endpoint) = &addr {
        if let Ok(resolved) = endpoint.resolve() {
            if reachable_from_outside(&BoundAddr::Tcp(resolved)) && !insecure {
                return Err(CliError::RpcExposed {
                    origin: origin.to_string(),
                    addr: resolved.to_string(),
                });
            }
        }
    }
    Ok(Some(addr))
}

impl AdminPlan {
    /// Refuses, before anything is bound, an endpoint beyond loopback with no token, unless
    /// told it may; an address that does not resolve is the bind's to report.
    pub(crate) fn check_exposure(&self) -> Result<(), CliError> {
        let ListenAddr::Tcp(endpoint) = &self.addr else {
            return Ok(()); // A Unix socket is owner-only.
        };
        let Ok(addr) = endpoint.resolve() else {
            return Ok(());
        };
        if reachable_from_outside(&BoundAddr::Tcp(addr)) && self.token.is_none() {
            if !self.insecure {
                return Err(CliError::AdminExposed {
                    origin: self.origin.clone(),
                    addr: addr.to_string(),
                });
            }
            tracing::warn!(
                admin = %addr,
                "the admin endpoint listens beyond loopback with no token: whoever reaches it controls the proxy"
            );
        }
        Ok(())
    }
}
