//! JSON-RPC 2.0 over the admin API: `POST /rpc` on the admin endpoint, and `--rpc ADDR`, a
//! TCP socket of newline-delimited JSON for tools that keep a connection open ([`socket`]).
//! The envelope is [`protocol`]'s, the methods [`methods`]', the error codes [`codes`]'.

pub mod codes;
pub mod methods;
pub mod protocol;
pub mod socket;
