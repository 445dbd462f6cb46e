//! Name resolution of an [`Endpoint`]: the one step of the grammar that does I/O, so it lives
//! with the runtime and speaks its [`Error`].

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::Error;
use crate::spec::Endpoint;

impl Endpoint {
    /// Resolves the endpoint to one socket address.
    ///
    /// A name with several addresses resolves to its first IPv4 address if it has one, else to
    /// its first address: `localhost` then means `127.0.0.1`, where most local services listen.
    pub fn resolve(&self) -> Result<SocketAddr, Error> {
        match self {
            Endpoint::Addr(addr) => Ok(*addr),
            Endpoint::Host { host, port } => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|source| Error::Resolve {
                        endpoint: self.to_string(),
                        source,
                    })?
                    .collect();
                addrs
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or_else(|| addrs.first())
                    .copied()
                    .ok_or_else(|| Error::NoAddress {
                        endpoint: self.to_string(),
                    })
            }
        }
    }
}
