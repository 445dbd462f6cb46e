//! Which endpoint a request is for, from its method and path: every path the admin API has,
//! with the methods each takes (`HEAD` wherever `GET` is), and `/rpc`, which JSON-RPC serves.
//! An unknown path is 404; a known one asked with another method is 405 with its `Allow`.
//! Pure: no IO, no proxy.

use super::http::{HttpError, Method};

/// Who serves a request: the admin API, or JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Api(Endpoint),
    /// `POST /rpc`.
    Rpc,
}

impl Route {
    /// Whether its request carries a JSON body.
    pub fn takes_body(&self) -> bool {
        match self {
            Route::Api(endpoint) => endpoint.takes_body(),
            Route::Rpc => true,
        }
    }
}

/// An endpoint of the admin API, with what its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`: the process serves.
    Healthz,
    /// `GET /readyz`: every tunnel listens, and no stop has begun.
    Readyz,
    /// `GET /status`.
    Status,
    /// `GET /metrics`: Prometheus text.
    Metrics,
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
        )
    }
}

/// Who serves `method` on `path`.
pub fn route(method: Method, path: &str) -> Result<Route, HttpError> {
    if path.trim_end_matches('/') == "/rpc" {
        return match method {
            Method::Post => Ok(Route::Rpc),
            _ => Err(HttpError::new(405, "/rpc takes POST").with_header("Allow", "POST")),
        };
    }
    endpoint(method, path).map(Route::Api)
}

/// The admin API's endpoint for `method` on `path`.
fn endpoint(method: Method, path: &str) -> Result<Endpoint, HttpError> {
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
        ["metrics"] if get => Ok(Endpoint::Metrics),
        ["metrics"] => Err(wrong("GET, HEAD")),
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
        _ => Err(HttpError::new(404, format!("no such path: {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_takes_its_methods() {
        let api = |e| Ok(Route::Api(e));
        assert_eq!(route(Method::Get, "/routes"), api(Endpoint::ListRoutes));
        assert_eq!(route(Method::Head, "/routes/"), api(Endpoint::ListRoutes));
        assert_eq!(route(Method::Put, "/routes"), api(Endpoint::ReplaceRoutes));
        assert_eq!(
            route(Method::Delete, "/routes/web/backends/127.0.0.1:7000"),
            api(Endpoint::RemoveBackend {
                route: "web".into(),
                backend: "127.0.0.1:7000".into()
            })
        );
        assert_eq!(route(Method::Get, "/stop"), api(Endpoint::Stop));
        assert_eq!(route(Method::Post, "/rpc"), Ok(Route::Rpc));
        assert_eq!(route(Method::Get, "/rpc").unwrap_err().status, 405);
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
