//! Simulated LinkUp v2 webhooks (PROVIDERS.md §1, seeds 000/001/004).
//!
//! `x-api-key` auth (a wrong key is `403 INVALID_API_KEY`, an unknown
//! account `404 INVALID_ACCOUNT`); create/list/delete/start/stop/
//! rotate-secret and the hosted poll endpoint. A custom webhook with
//! signing gets a secret shown once in the create answer; [`Sim::linkup_emit`]
//! pushes an event to it signed `X-Linkup-Signature: v1=<hex>` over
//! `{X-Linkup-Timestamp}.{body}`, or stores it for polling when hosted.
//! The list shape is not documented; this answers `data` as an array.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::HeaderMap;
use serde_json::{Value, json};

use super::{
    LINKUP_ACCOUNT, LINKUP_KEY, Sim, SimState, headers, iso_now, random_secret, reply, unix_now,
};

#[derive(Clone, Debug)]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    pub url: Option<String>,
    pub events: Vec<String>,
    pub is_active: bool,
    pub signature_enabled: bool,
    pub secret: Option<String>,
}

/// A stored hosted-mode event (kept for polling).
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub webhook_id: String,
    pub event_id: String,
    pub event: Value,
    pub created_at: String,
}

#[derive(Default)]
pub struct Data {
    pub webhooks: Vec<Webhook>,
    pub events: Vec<StoredEvent>,
    /// Quirk switch: new webhooks are created stopped (the "must call
    /// /start" reading of LinkUp's docs).
    pub create_stopped: bool,
}

pub fn routes() -> Router<SimState> {
    use axum::routing::{delete, get, post};
    Router::new()
        .route("/v2/webhooks", post(create).get(list))
        .route("/v2/webhooks/{id}", delete(remove))
        .route("/v2/webhooks/{id}/start", post(start))
        .route("/v2/webhooks/{id}/stop", post(stop))
        .route("/v2/webhooks/{id}/rotate-secret", post(rotate))
        .route("/v2/webhooks/{id}/events", get(poll))
}

/// LinkUp's error envelope for a status.
pub fn error_body(status: u16) -> Value {
    let (code, message) = match status {
        401 | 403 => ("INVALID_API_KEY", "Invalid API key"),
        402 => ("INSUFFICIENT_CREDITS", "Insufficient credits"),
        404 => ("INVALID_ACCOUNT", "Account not found"),
        429 => ("RATE_LIMITED", "Too many requests"),
        400 => ("INVALID_PARAMS", "Invalid parameters"),
        _ => ("INTERNAL_ERROR", "Internal server error"),
    };
    err(code, message)
}

fn err(code: &str, message: &str) -> Value {
    json!({ "success": false, "error": { "code": code, "message": message },
            "metadata": { "timestamp": "2025-01-15T10:30:00.000000" } })
}

fn ok(action: &str, data: Value) -> Response {
    reply(
        200,
        json!({ "success": true, "data": data,
                "metadata": { "action": action, "credits_consumed": 0, "timestamp": "2025-01-15T10:30:00.000000" } }),
    )
}

/// The refusal for a missing or wrong key, if it is.
fn unauthorized(h: &HeaderMap) -> Option<Response> {
    match h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        Some(LINKUP_KEY) => None,
        _ => Some(reply(403, error_body(403))),
    }
}

fn view(w: &Webhook) -> Value {
    json!({
        "webhook_id": w.id, "account_id": w.account_id, "url": w.url,
        "mode": if w.url.is_some() { "custom" } else { "hosted" },
        "stream_url": format!("/v2/webhooks/{}/stream", w.id),
        "events_url": format!("/v2/webhooks/{}/events", w.id),
        "events": w.events, "is_active": w.is_active, "signature_enabled": w.signature_enabled,
    })
}

async fn create(State(sim): State<SimState>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
        return reply(400, err("INVALID_PARAMS", "body is not JSON"));
    };
    let Some(account) = b["account_id"].as_str() else {
        return reply(400, err("INVALID_PARAMS", "account_id is required"));
    };
    if account != LINKUP_ACCOUNT {
        return reply(404, err("INVALID_ACCOUNT", "Account not found"));
    }
    let events: Vec<String> = match b.get("events") {
        None => vec!["all".into()],
        Some(v) => serde_json::from_value(v.clone()).unwrap_or_default(),
    };
    if events.is_empty()
        || events
            .iter()
            .any(|e| !["message_received", "accepted_invitation", "all"].contains(&e.as_str()))
    {
        return reply(
            400,
            err(
                "INVALID_PARAMS",
                "events must be message_received, accepted_invitation or all",
            ),
        );
    }
    let url = b["url"].as_str().map(str::to_string);
    let signing = url.is_some() && b["enable_signature"] == json!(true);
    let mut g = sim.lock();
    let w = Webhook {
        id: g.hex_id(24),
        account_id: account.into(),
        url,
        events,
        is_active: !g.linkup.create_stopped,
        signature_enabled: signing,
        secret: signing.then(|| random_secret(64)),
    };
    let mut data = view(&w);
    if let Some(s) = &w.secret {
        data["secret"] = json!(s);
    }
    g.linkup.webhooks.push(w);
    drop(g);
    sim.changed.notify_waiters();
    ok("create_webhook", data)
}

async fn list(State(sim): State<SimState>, h: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let items: Vec<Value> = sim.lock().linkup.webhooks.iter().map(view).collect();
    ok("list_webhooks", json!(items))
}

fn with_webhook(sim: &Sim, id: &str, f: impl FnOnce(&mut Webhook) -> Value) -> Response {
    let mut g = sim.lock();
    match g.linkup.webhooks.iter_mut().find(|w| w.id == id) {
        Some(w) => ok("webhook", f(w)),
        None => reply(404, err("NOT_FOUND", "Webhook not found")),
    }
}

async fn remove(State(sim): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let mut g = sim.lock();
    let before = g.linkup.webhooks.len();
    g.linkup.webhooks.retain(|w| w.id != id);
    if g.linkup.webhooks.len() == before {
        return reply(404, err("NOT_FOUND", "Webhook not found"));
    }
    ok(
        "delete_webhook",
        json!({ "webhook_id": id, "deleted": true }),
    )
}

async fn start(State(sim): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    with_webhook(&sim, &id, |w| {
        w.is_active = true;
        view(w)
    })
}

async fn stop(State(sim): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    with_webhook(&sim, &id, |w| {
        w.is_active = false;
        view(w)
    })
}

async fn rotate(State(sim): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    with_webhook(&sim, &id, |w| {
        let s = random_secret(64);
        w.secret = Some(s.clone());
        w.signature_enabled = true;
        json!({ "webhook_id": w.id, "secret": s })
    })
}

#[derive(serde::Deserialize)]
struct PollQuery {
    since: Option<String>,
    limit: Option<usize>,
}

/// `GET /v2/webhooks/{id}/events?since=&limit=` (hosted webhooks only;
/// `since` is exclusive).
async fn poll(
    State(sim): State<SimState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PollQuery>,
) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let g = sim.lock();
    match g.linkup.webhooks.iter().find(|w| w.id == id) {
        None => return reply(404, err("NOT_FOUND", "Webhook not found")),
        Some(w) if w.url.is_some() => {
            return reply(
                400,
                err("INVALID_PARAMS", "polling is for hosted webhooks only"),
            );
        }
        Some(_) => {}
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let items: Vec<Value> = g
        .linkup
        .events
        .iter()
        .filter(|e| e.webhook_id == id)
        .filter(|e| q.since.as_deref().is_none_or(|s| e.created_at.as_str() > s))
        .take(limit)
        .map(|e| json!({ "event_id": e.event_id, "event": e.event, "created_at": e.created_at }))
        .collect();
    ok("poll_webhook_events", json!({ "items": items }))
}

impl Sim {
    /// The webhook with this id, as the simulator holds it.
    pub fn linkup_webhook(&self, id: &str) -> Option<Webhook> {
        self.lock()
            .linkup
            .webhooks
            .iter()
            .find(|w| w.id == id)
            .cloned()
    }

    pub fn linkup_webhooks(&self) -> Vec<Webhook> {
        self.lock().linkup.webhooks.clone()
    }

    /// The body LinkUp sends for `inner` (`{type, …}`): `{account_id,
    /// account_name, event, timestamp}` (the push shape is undocumented;
    /// this is the SSE/poll shape, as PROVIDERS.md recommends).
    pub fn linkup_body(inner: Value) -> Value {
        json!({
            "account_id": LINKUP_ACCOUNT,
            "account_name": "My Account",
            "event": inner,
            "timestamp": iso_now().trim_end_matches('Z'),
        })
    }

    /// An event on webhook `id`: a custom webhook gets it pushed (signed
    /// with its secret, or `secret` instead when given); a hosted one keeps
    /// it for polling. Returns hookd's status for a push.
    pub async fn linkup_emit(&self, id: &str, inner: Value, secret: Option<&str>) -> Option<u16> {
        let w = self.linkup_webhook(id)?;
        let body = Self::linkup_body(inner);
        let Some(url) = &w.url else {
            let mut g = self.lock();
            let event_id = g.hex_id(24);
            g.linkup.events.push(StoredEvent {
                webhook_id: w.id.clone(),
                event_id,
                event: body,
                created_at: iso_now(),
            });
            drop(g);
            self.changed.notify_waiters();
            return None;
        };
        let raw = serde_json::to_vec(&body).unwrap();
        let mut h = Vec::new();
        if let Some(key) = secret.map(str::to_string).or(w.secret.clone()) {
            let ts = unix_now().to_string();
            let mut msg = format!("{ts}.").into_bytes();
            msg.extend_from_slice(&raw);
            h.push(("x-linkup-timestamp", ts));
            h.push((
                "x-linkup-signature",
                format!("v1={}", super::hmac_hex(key.as_bytes(), &msg)),
            ));
        }
        self.deliver(url, headers(&h), raw).await
    }
}
