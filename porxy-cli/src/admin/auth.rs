//! The admin endpoint's bearer token (RFC 6750): with one set, every request must carry
//! `Authorization: Bearer TOKEN`, compared in constant time (`subtle`), so that the time an
//! answer takes says nothing of how much of a guess was right. The token is never logged.

use std::fmt;

use subtle::ConstantTimeEq;

use super::http::HttpError;

/// The token requests must carry.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from its text (a file's first line, an environment variable), trimmed; `None`
    /// if that leaves nothing.
    pub fn new(text: &str) -> Option<Token> {
        let token = text.lines().next().unwrap_or("").trim();
        (!token.is_empty()).then(|| Token(token.to_string()))
    }

    /// Whether an `Authorization` header value carries this token.
    fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, given)) = authorization.and_then(|a| a.split_once(' ')) else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && bool::from(given.trim().as_bytes().ct_eq(self.0.as_bytes()))
    }
}

/// Admits a request with `authorization` under `token` (anyone, with no token set), or says
/// 401 with the challenge RFC 6750 asks for.
pub fn check(token: Option<&Token>, authorization: Option<&str>) -> Result<(), HttpError> {
    match token {
        Some(token) if !token.accepts(authorization) => {
            let why = match authorization {
                None => "this endpoint needs `Authorization: Bearer TOKEN`",
                Some(_) => "the bearer token is not the endpoint's",
            };
            Err(HttpError::new(401, why).with_header("WWW-Authenticate", "Bearer realm=\"porxy\""))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token = Token::new("s3cret\n").unwrap();
        assert!(check(Some(&token), Some("Bearer s3cret")).is_ok());
        assert!(check(Some(&token), Some("bearer s3cret")).is_ok());
        for wrong in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
        ] {
            let error = check(Some(&token), wrong).unwrap_err();
            assert_eq!(error.status, 401);
            assert_eq!(
                error.headers,
                vec![("WWW-Authenticate", "Bearer realm=\"porxy\"".to_string())]
            );
        }
        assert!(check(None, None).is_ok(), "no token set: open");
        assert!(Token::new("  \n").is_none());
        assert_eq!(format!("{token:?}"), "Token(..)", "never shown");
    }
}
