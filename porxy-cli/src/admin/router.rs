//! Which endpoint a request is for, from its method and path: every path the admin API has,
//! with the methods each takes (`HEAD` wherever `GET` is). An unknown path is 404; a known one
//! asked with another method is 405 with its `Allow`. Pure: no IO, no proxy.

use super::http::{HttpError, Method};

/// An endpoint of the admin API, with what its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`: the process serves.
    Healthz,
    /// `GET /readyz`: every tunnel listens, and no stop has begun.
    Readyz,
    /// `GET /status`.
    Status,
    /// `GET /routes`.
    ListRoutes,
    /// `POST|PUT /routes`: replace the whole table.
    ReplaceRoutes,
    /// `GET /routes/{name}`.
    GetRoute(String),
    /// `PUT /routes/{name}`: open or change one tunnel.
    PutRoute(String),
    /// `DELETE /routes/{name}`: close one tunnel (its connections go on).
    DeleteRoute(String),
    /// `POST /routes/{name}/backends`: add a backend.
    AddBackend(String),
    /// `PUT /routes/{name}/backends/{addr}`: drain, disable, enable or remove a backend.
    ChangeBackend { route: String, backend: String },
    /// `DELETE /routes/{name}/backends/{addr}`: remove a backend (its connections go on).
    RemoveBackend { route: String, backend: String },
    /// `POST /reload`: as SIGHUP.
    Reload,
    /// `POST /stop` (and `GET /stop`, as the original design had it): a graceful stop.
    Stop,
    /// `POST /rpc`: JSON-RPC 2.0.
    Rpc,
}

impl Endpoint {
    /// Whether its request carries a JSON body.
    pub fn takes_body(&self) -> bool {
        matches!(
            self,
            Endpoint::ReplaceRoutes
                | Endpoint::PutRoute(_)
                | Endpoint::AddBackend(_)
                | Endpoint::ChangeBackend { .. }
                | Endpoint::RemoveBackend { .. }
                | Endpoint::Rpc
        )
    }
}

/// The endpoint for `method` on `path`.
pub fn route(method: Method, path: &str) -> Result<Endpoint, HttpError> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let get = matches!(method, Method::Get | Method::Head);
    let wrong = |allow: &str| {
        HttpError::new(405, format!("{path} takes {allow}")).with_header("Allow", allow)
    };
    let name = |s: &str| s.to_string();
    match parts.as_slice() {
        ["healthz"] if get => Ok(Endpoint::Healthz),
        ["healthz"] => Err(wrong("GET, HEAD")),
        ["readyz"] if get => Ok(Endpoint::Readyz),
        ["readyz"] => Err(wrong("GET, HEAD")),
        ["status"] if get => Ok(Endpoint::Status),
        ["status"] => Err(wrong("GET, HEAD")),
        ["routes"] => match method {
            Method::Get | Method::Head => Ok(Endpoint::ListRoutes),
            Method::Post | Method::Put => Ok(Endpoint::ReplaceRoutes),
            _ => Err(wrong("GET, HEAD, POST, PUT")),
        },
        ["routes", route] => match method {
            Method::Get | Method::Head => Ok(Endpoint::GetRoute(name(route))),
            Method::Put => Ok(Endpoint::PutRoute(name(route))),
            Method::Delete => Ok(Endpoint::DeleteRoute(name(route))),
            _ => Err(wrong("GET, HEAD, PUT, DELETE")),
        },
        ["routes", route, "backends"] => match method {
            Method::Post => Ok(Endpoint::AddBackend(name(route))),
            _ => Err(wrong("POST")),
        },
        ["routes", route, "backends", backend] => match method {
            Method::Put => Ok(Endpoint::ChangeBackend {
                route: name(route),
                backend: name(backend),
            }),
            Method::Delete => Ok(Endpoint::RemoveBackend {
                route: name(route),
                backend: name(backend),
            }),
            _ => Err(wrong("PUT, DELETE")),
        },
        ["reload"] if method == Method::Post => Ok(Endpoint::Reload),
        ["reload"] => Err(wrong("POST")),
        ["stop"] if matches!(method, Method::Post | Method::Get) => Ok(Endpoint::Stop),
        ["stop"] => Err(wrong("GET, POST")),
        ["rpc"] if method == Method::Post => Ok(Endpoint::Rpc),
        ["rpc"] => Err(wrong("POST")),
        _ => Err(HttpError::new(404, format!("no such path: {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_takes_its_methods() {
        assert_eq!(route(Method::Get, "/routes"), Ok(Endpoint::ListRoutes));
        assert_eq!(route(Method::Head, "/routes/"), Ok(Endpoint::ListRoutes));
        assert_eq!(route(Method::Put, "/routes"), Ok(Endpoint::ReplaceRoutes));
        assert_eq!(
            route(Method::Delete, "/routes/web/backends/127.0.0.1:7000"),
            Ok(Endpoint::RemoveBackend {
                route: "web".into(),
                backend: "127.0.0.1:7000".into()
            })
        );
        assert_eq!(route(Method::Get, "/stop"), Ok(Endpoint::Stop));
        let wrong = route(Method::Delete, "/status").unwrap_err();
        assert_eq!(wrong.status, 405);
        assert_eq!(wrong.headers, vec![("Allow", "GET, HEAD".to_string())]);
        assert!(
            !wrong.close,
            "the request was read whole: the connection goes on"
        );
        let unknown = route(Method::Get, "/nope").unwrap_err();
        assert_eq!(
            (unknown.status, unknown.message.as_str()),
            (404, "no such path: /nope")
        );
        assert_eq!(route(Method::Other, "/reload").unwrap_err().status, 405);
    }
}
