//! A small HTTP/1.1 server side, as the admin endpoint needs it: heads parsed by httparse and
//! judged once ([`head`]), chunked bodies decoded ([`chunked`]), requests read bounded in size
//! and time ([`reader`]), answers written with their length ([`response`]), and every refusal
//! an [`error::HttpError`] with its status. Not a general server: no TLS, no HTTP/2, one
//! thread per client (the register bounds them).

pub mod chunked;
pub mod error;
pub mod head;
pub mod reader;
pub mod response;

pub use error::HttpError;
pub use head::{Head, Method};
pub use reader::{Limits, Next, Reader};
pub use response::Response;
