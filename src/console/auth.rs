//! Who may see the console and act through it.
//!
//! With `[admin] token` set, every console page needs it: as
//! `Authorization: Bearer <token>`, or through the login form, which sets a
//! cookie holding a per-process session value (never the token itself).
//! Both compare in constant time. Actions also need the per-process CSRF
//! token that the pages put in their forms. Both random values come from
//! the kernel's generator and change at every start.
//!
//! On a loopback listener the `Host` header must name a loopback address
//! or `localhost`: a web page whose DNS name was rebound to 127.0.0.1 can
//! neither read the console nor take its CSRF token. A `POST` whose
//! `Origin` names another host is refused as well.

use axum::Form;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{Console, views};
use crate::secret::Secret;

/// The login cookie's name.
pub const COOKIE: &str = "hookd_console";

/// The console's credentials for this process.
pub struct Auth {
    token: Option<Secret>,
    session: String,
    csrf: String,
}

impl Auth {
    /// Fresh session and CSRF values; `token` from `[admin] token`.
    pub fn new(token: Option<Secret>) -> std::io::Result<Auth> {
        Ok(Auth {
            token,
            session: random_hex()?,
            csrf: random_hex()?,
        })
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether a request may see the console: no token is configured, or it
    /// carries the token as a bearer, or the login cookie.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = header_str(headers, header::AUTHORIZATION)
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| same(t.trim().as_bytes(), token.expose()));
        bearer
            || cookie(headers, COOKIE).is_some_and(|c| same(c.as_bytes(), self.session.as_bytes()))
    }

    /// Whether `given` is this process's CSRF token.
    pub fn csrf_ok(&self, given: &str) -> bool {
        same(given.as_bytes(), self.csrf.as_bytes())
    }

    fn token_ok(&self, given: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| same(given.as_bytes(), t.expose()))
    }
}

/// Constant-time equality (the length is not secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// 32 random bytes from the kernel, as hex.
fn random_hex() -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Middleware on every console route (login included): the `Host` and
/// `Origin` checks of the module comment.
pub async fn same_site(State(c): State<Console>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let host = header_str(h, header::HOST).unwrap_or("");
    if c.loopback_only && !is_loopback_host(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to a loopback Host (127.0.0.1, [::1], localhost)\n",
        )
            .into_response();
    }
    let foreign_origin = header_str(h, header::ORIGIN)
        .is_some_and(|o| o.split_once("://").map(|(_, rest)| rest) != Some(host));
    if req.method() == http::Method::POST && foreign_origin {
        return (
            StatusCode::FORBIDDEN,
            "the form was sent from another site\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// Whether a `Host` value names a loopback address or `localhost`.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Middleware on every console page and action: 401 with the login form
/// unless [`Auth::allows`] the request.
pub async fn require(State(c): State<Console>, req: Request, next: Next) -> Response {
    if c.auth.allows(req.headers()) {
        return next.run(req).await;
    }
    (StatusCode::UNAUTHORIZED, views::login(None)).into_response()
}

pub async fn login_form(State(c): State<Console>) -> Response {
    if c.auth.token.is_none() {
        return Redirect::to("/").into_response();
    }
    views::login(None).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// Checks the token and sets the session cookie.
pub async fn login(State(c): State<Console>, Form(f): Form<LoginForm>) -> Response {
    if !c.auth.token_ok(f.token.trim()) {
        return (
            StatusCode::UNAUTHORIZED,
            views::login(Some("That is not the console token.")),
        )
            .into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        c.auth.session
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn token_as_bearer_or_session_cookie() {
        let a = Auth::new(Some(Secret::new(b"s3cret".to_vec()))).unwrap();
        assert!(!a.allows(&HeaderMap::new()));
        assert!(a.allows(&headers(&[(header::AUTHORIZATION, "Bearer s3cret")])));
        assert!(!a.allows(&headers(&[(header::AUTHORIZATION, "Bearer s3cre")])));
        let good = format!("x=1; {COOKIE}={}", a.session);
        assert!(a.allows(&headers(&[(header::COOKIE, &good)])));
        // The token itself is not a session.
        let token_cookie = format!("{COOKIE}=s3cret");
        assert!(!a.allows(&headers(&[(header::COOKIE, &token_cookie)])));
        assert!(Auth::new(None).unwrap().allows(&HeaderMap::new()));
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1:8788",
            "localhost:8788",
            "LOCALHOST",
            "[::1]:8788",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8788",
            "10.0.0.1:8788",
            "[::2]:1",
            "",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn csrf_is_per_process() {
        let (a, b) = (Auth::new(None).unwrap(), Auth::new(None).unwrap());
        assert!(a.csrf_ok(a.csrf()));
        assert!(!a.csrf_ok(b.csrf()));
        assert!(!a.csrf_ok(""));
        assert_eq!(a.csrf().len(), 64);
    }
}
