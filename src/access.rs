//! Who may call what (`--basic-auth`, `--api-key`, `--admin-token`): client credentials
//! on Fusion's surfaces, the admin token on the mock's own; with no flag, anyone may
//! call anything. Which surface a path is on, `routes` says.
//!
//! Secrets are compared in constant time and never logged, journaled or shown by
//! `Debug`. This module decides; the api answers the 401 and documents it (`api::auth`).

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::config::{Config, Credentials, Secret};
use crate::routes::{self, Surface};

/// Who may call what.
#[derive(Debug, Clone, Default)]
pub struct Access {
    basic: Option<Credentials>,
    api_key: Option<Secret>,
    admin_token: Option<Secret>,
}

/// Why a request may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Fusion's surface, without valid client credentials; the words say which kinds
    /// it takes.
    Client(&'static str),
    /// The mock's own, without the admin token.
    Admin,
}

impl Access {
    pub fn new(config: &Config) -> Access {
        Access {
            basic: config.basic_auth.clone(),
            api_key: config.api_key.clone(),
            admin_token: config.admin_token.clone(),
        }
    }

    /// Whether a request to `path` on `surface`, with this query and these headers,
    /// may go on.
    pub fn check(
        &self,
        surface: Surface,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), Denied> {
        if surface.takes_client_credentials()
            && self.guards_fusion()
            && !self.admits_client(headers)
        {
            return Err(Denied::Client(match (&self.basic, &self.api_key) {
                (Some(_), Some(_)) => "send HTTP basic credentials or an x-api-key",
                (Some(_), None) => "send HTTP basic credentials",
                _ => "send an x-api-key",
            }));
        }
        if surface == Surface::Mock
            && let Some(token) = &self.admin_token
            && !admits_admin(token, path, query, headers)
        {
            return Err(Denied::Admin);
        }
        Ok(())
    }

    /// Whether any route needs credentials.
    pub fn guards_anything(&self) -> bool {
        self.guards_fusion() || self.admin_token.is_some()
    }

    /// Whether Fusion's surfaces take HTTP basic credentials (`--basic-auth`).
    pub fn takes_basic(&self) -> bool {
        self.basic.is_some()
    }

    /// Whether Fusion's surfaces take an `x-api-key` (`--api-key`).
    pub fn takes_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// Whether the mock's own routes need the admin token (`--admin-token`).
    pub fn takes_admin_token(&self) -> bool {
        self.admin_token.is_some()
    }

    /// Whether the Fusion routes need credentials.
    fn guards_fusion(&self) -> bool {
        self.basic.is_some() || self.api_key.is_some()
    }

    /// A Fusion request carries valid credentials: either kind is enough.
    fn admits_client(&self, headers: &HeaderMap) -> bool {
        let by_key = self.api_key.as_ref().is_some_and(|key| {
            headers
                .get("x-api-key")
                .is_some_and(|given| same(given.as_bytes(), key.expose().as_bytes()))
        });
        let by_password = self.basic.as_ref().is_some_and(|credentials| {
            authorization(headers, "Basic")
                .and_then(|encoded| {
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .ok()
                })
                .is_some_and(|decoded| {
                    let expected =
                        format!("{}:{}", credentials.user, credentials.password.expose());
                    same(&decoded, expected.as_bytes())
                })
        });
        by_key || by_password
    }
}

/// A `/_mock` request carries the admin token: as a bearer token, or, for the dashboard
/// and the event stream (a browser's EventSource cannot send headers), as
/// `?access_token=`.
fn admits_admin(token: &Secret, path: &str, query: Option<&str>, headers: &HeaderMap) -> bool {
    let bearer = authorization(headers, "Bearer")
        .is_some_and(|given| same(given.as_bytes(), token.expose().as_bytes()));
    let in_query = (path == routes::UI || path == routes::EVENTS)
        && query.is_some_and(|query| {
            query.split('&').any(|pair| {
                pair.strip_prefix("access_token=")
                    .is_some_and(|given| same(given.as_bytes(), token.expose().as_bytes()))
            })
        });
    bearer || in_query
}

/// The credentials of an `Authorization: <scheme> <credentials>` header.
fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, credentials) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credentials.trim())
}

/// Equal, in time that does not depend on where they differ.
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn guarded() -> Access {
        Access {
            basic: None,
            api_key: Some(Secret::new("hunter2")),
            admin_token: Some(Secret::new("s3cret")),
        }
    }

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let shown = format!("{:?}", guarded());
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn each_surface_takes_its_own_credentials_and_no_other() {
        let access = guarded();
        let check = |path: &str, query, headers: &HeaderMap| {
            access.check(Surface::of(path), path, query, headers)
        };
        let none = HeaderMap::new();
        let key = headers("x-api-key", "hunter2");
        let token = headers("authorization", "Bearer s3cret");
        assert_eq!(
            check(routes::STATUS, None, &none),
            Err(Denied::Client("send an x-api-key"))
        );
        assert_eq!(check(routes::STATUS, None, &key), Ok(()));
        assert!(check("/api/spark/jobs", None, &token).is_err());
        assert_eq!(check("/_mock/runs", None, &key), Err(Denied::Admin));
        assert_eq!(check("/_mock/runs", None, &token), Ok(()));
        assert_eq!(
            check(routes::UI, Some("access_token=s3cret"), &none),
            Ok(())
        );
        assert_eq!(
            check("/_mock/runs", Some("access_token=s3cret"), &none),
            Err(Denied::Admin),
            "only the dashboard and the event stream take the token in the query"
        );
        for open in ["/metrics", "/actuator/health", "/"] {
            assert_eq!(check(open, None, &none), Ok(()), "{open}");
        }
        assert_eq!(
            Access::default().check(Surface::Mock, "/_mock/runs", None, &none),
            Ok(())
        );
    }
}
