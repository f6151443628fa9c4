//! Push source: providers POST events to `/hooks/<name>` (or `path`).
//!
//! One fallback handler looks the path up in the current runtime snapshot,
//! so a reload adds or removes routes without rebuilding the server. The
//! answers are exactly SPEC §4: 200 accepted/duplicate only after commit,
//! 401, 404, 405, 413, 422, and 503 with Retry-After.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ingest::{Inbound, Ingest, Refusal, Stored, now};
use crate::server::Peer;
use crate::store::StoreError;

pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new().fallback(handle).with_state(ingest)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refused(status: StatusCode, word: &str, reason: impl std::fmt::Display) -> Response {
    answer(
        status,
        json!({ "status": word, "reason": reason.to_string() }),
    )
}

async fn handle(State(ingest): State<Arc<Ingest>>, req: Request) -> Response {
    let started = Instant::now();
    let received_at = now();
    let rt = ingest.runtime.load_full();
    let path = req.uri().path().to_string();
    let Some((idx, src)) = rt.push_source(&path) else {
        return refused(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no source listens on {path}"),
        );
    };
    if req.method() != Method::POST {
        let mut r = refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only POST is accepted",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let server = &rt.config.server;
    let too_large = || {
        ingest.metrics.rejected(&src.name, "body_too_large");
        refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over {} bytes", server.max_body),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > server.max_body as u64) {
        return too_large();
    }
    let remote = req.extensions().get::<Peer>().map(|p| p.0.to_string());
    let (parts, body) = req.into_parts();
    let budget = server.request_timeout.saturating_sub(started.elapsed());
    let (body, _memory) = match read_body(body, server.max_body, budget, &ingest.body_budget).await
    {
        Ok(b) => b,
        Err(BodyError::Busy) => {
            ingest.metrics.rejected(&src.name, "memory_budget");
            return unavailable(&StoreError::Overloaded);
        }
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::TimedOut) => {
            ingest.metrics.rejected(&src.name, "request_timeout");
            return refused(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the body did not arrive in time",
            );
        }
        Err(BodyError::Broken(e)) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("could not read the body: {e}"),
            );
        }
    };
    let inbound = Inbound {
        path,
        headers: parts.headers,
        body,
        remote,
        started,
        received_at,
    };
    match ingest.push(&rt, idx, inbound).await {
        Ok(Stored::Accepted { id }) => {
            answer(StatusCode::OK, json!({ "status": "accepted", "id": id }))
        }
        Ok(Stored::Duplicate { id }) => {
            answer(StatusCode::OK, json!({ "status": "duplicate", "id": id }))
        }
        Ok(Stored::Handshake(reply)) => answer(StatusCode::OK, reply),
        Err(Refusal::Unauthorized(r)) => refused(StatusCode::UNAUTHORIZED, "rejected", r),
        Err(Refusal::Unprocessable(e)) => {
            refused(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", e)
        }
        Err(Refusal::Unavailable(e)) => unavailable(&e),
    }
}

/// 503 with a Retry-After the provider can honour.
fn unavailable(e: &StoreError) -> Response {
    let retry = match e {
        StoreError::Overloaded => "1",
        _ => "5",
    };
    let mut r = refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the event could not be stored; retry later",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry));
    r
}

enum BodyError {
    TooLarge,
    TimedOut,
    /// The global body budget is used up: answer 503, retry later.
    Busy,
    Broken(String),
}

/// Reads the body within `max` bytes and `budget` time, reserving each
/// chunk's bytes from the shared body budget; the returned permit holds
/// them until the caller drops it (after the commit).
async fn read_body(
    body: Body,
    max: usize,
    budget: Duration,
    memory: &Arc<Semaphore>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), BodyError> {
    let read = async {
        let mut body = Limited::new(body, max);
        let mut buf = BytesMut::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| match e.downcast_ref::<LengthLimitError>() {
                Some(_) => BodyError::TooLarge,
                None => BodyError::Broken(e.to_string()),
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let n = u32::try_from(data.len()).map_err(|_| BodyError::TooLarge)?;
            let permit = memory
                .clone()
                .try_acquire_many_owned(n)
                .map_err(|_| BodyError::Busy)?;
            match held.as_mut() {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
            buf.extend_from_slice(&data);
        }
        Ok((buf.freeze(), held))
    };
    tokio::time::timeout(budget, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}
