//! Simulated Linq partner API v2 webhook subscriptions (PROVIDERS.md §2,
//! seed 002).
//!
//! `X-LINQ-INTEGRATION-TOKEN` auth; create (duplicates allowed, as the real
//! API does — each then gets every event), list, full-body PUT, DELETE 204.
//! The secret is the caller's and is never shown back (`secret_configured`).
//! [`Sim::linq_emit`] delivers one event to every active matching
//! subscription with the legacy headers of the current docs:
//! `X-Webhook-Signature` = hex HMAC of `{X-Webhook-Timestamp}.{body}`.
//! Linq's error body is not documented; this answers `{"error": "…"}`.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use super::{LINQ_TOKEN, Sim, SimState, headers, iso_now, reply, unix_now};

const PATH: &str = "/api/partner/v2/webhook_subscriptions";

#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: u64,
    pub webhook_url: String,
    pub version: u64,
    pub events: Vec<String>,
    pub active: bool,
    pub secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Default)]
pub struct Data {
    pub subscriptions: Vec<Subscription>,
    /// Linq's ids are integers counting from 1.
    pub last_id: u64,
}

pub fn routes() -> Router<SimState> {
    use axum::routing::{post, put};
    Router::new()
        .route(PATH, post(create).get(list))
        .route(&format!("{PATH}/{{id}}"), put(update).delete(remove))
}

pub fn error_body(status: u16) -> Value {
    let m = match status {
        401 => "Invalid or missing integration token",
        403 => "Forbidden",
        404 => "Not found",
        422 => "Unprocessable entity",
        429 => "Rate limit exceeded",
        _ => "Internal server error",
    };
    json!({ "error": m })
}

/// The refusal for a missing or wrong key, if it is.
fn unauthorized(h: &HeaderMap) -> Option<Response> {
    match h
        .get("x-linq-integration-token")
        .and_then(|v| v.to_str().ok())
    {
        Some(LINQ_TOKEN) => None,
        _ => Some(reply(401, error_body(401))),
    }
}

fn view(s: &Subscription) -> Value {
    json!({
        "id": s.id, "webhook_url": s.webhook_url, "version": s.version, "events": s.events,
        "active": s.active, "secret_configured": s.secret.is_some(), "last_delivered_at": null,
        "delivery_attempts": 0, "created_at": s.created_at, "updated_at": s.updated_at,
    })
}

/// The fields of `{webhook_subscription:{…}}` (create and PUT take the same).
struct Fields {
    url: String,
    version: u64,
    events: Vec<String>,
    active: bool,
    secret: Option<String>,
}

/// Parses the body; `Err` is the 422 message for a missing required field.
fn parse(body: &[u8]) -> Result<Fields, &'static str> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "body is not JSON")?;
    let s = v
        .get("webhook_subscription")
        .ok_or("webhook_subscription is required")?;
    let url = s["webhook_url"].as_str().ok_or("webhook_url is required")?;
    let version = s["version"].as_u64().ok_or("version is required")?;
    let events: Vec<String> = serde_json::from_value(s["events"].clone())
        .ok()
        .filter(|e: &Vec<String>| !e.is_empty())
        .ok_or("events is required")?;
    Ok(Fields {
        url: url.to_string(),
        version,
        events,
        active: s["active"].as_bool().unwrap_or(true),
        secret: s["secret"].as_str().map(str::to_string),
    })
}

async fn create(State(sim): State<SimState>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let f = match parse(&body) {
        Ok(f) => f,
        Err(m) => return reply(422, json!({ "error": m })),
    };
    let mut g = sim.lock();
    g.linq.last_id += 1;
    let s = Subscription {
        id: g.linq.last_id,
        webhook_url: f.url,
        version: f.version,
        events: f.events,
        active: f.active,
        secret: f.secret,
        created_at: iso_now(),
        updated_at: iso_now(),
    };
    let v = view(&s);
    g.linq.subscriptions.push(s);
    reply(201, json!({ "webhook_subscription": v }))
}

async fn list(State(sim): State<SimState>, h: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let items: Vec<Value> = sim.lock().linq.subscriptions.iter().map(view).collect();
    reply(200, json!({ "webhook_subscriptions": items }))
}

async fn update(
    State(sim): State<SimState>,
    h: HeaderMap,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let f = match parse(&body) {
        Ok(f) => f,
        Err(m) => return reply(422, json!({ "error": m })),
    };
    let mut g = sim.lock();
    let Some(s) = g.linq.subscriptions.iter_mut().find(|s| s.id == id) else {
        return reply(404, error_body(404));
    };
    s.webhook_url = f.url;
    s.version = f.version;
    s.events = f.events;
    s.active = f.active;
    if f.secret.is_some() {
        s.secret = f.secret;
    }
    s.updated_at = iso_now();
    reply(200, json!({ "webhook_subscription": view(s) }))
}

async fn remove(State(sim): State<SimState>, h: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Some(r) = unauthorized(&h) {
        return r;
    }
    let mut g = sim.lock();
    let before = g.linq.subscriptions.len();
    g.linq.subscriptions.retain(|s| s.id != id);
    if g.linq.subscriptions.len() == before {
        return reply(404, error_body(404));
    }
    http::StatusCode::NO_CONTENT.into_response()
}

impl Sim {
    pub fn linq_subscriptions(&self) -> Vec<Subscription> {
        self.lock().linq.subscriptions.clone()
    }

    /// The v2 envelope for an event.
    pub fn linq_body(event_type: &str, data: Value) -> Value {
        json!({
            "api_version": "v2",
            "created_at": iso_now(),
            "data": data,
            "event_id": format!("wh_evt_{}", super::random_secret(16)),
            "event_type": event_type,
        })
    }

    /// Delivers one event (the same `event_id`) to every active subscription
    /// listening to its type; returns hookd's statuses, one per delivery.
    pub async fn linq_emit(&self, event_type: &str, data: Value) -> Vec<Option<u16>> {
        let body = Self::linq_body(event_type, data);
        let raw = serde_json::to_vec(&body).unwrap();
        let subs: Vec<Subscription> = self
            .linq_subscriptions()
            .into_iter()
            .filter(|s| s.active && s.events.iter().any(|e| e == event_type))
            .collect();
        let mut out = Vec::new();
        for s in subs {
            let ts = unix_now().to_string();
            let mut h = vec![
                ("x-webhook-event", event_type.to_string()),
                ("x-webhook-subscription-id", s.id.to_string()),
                ("x-webhook-timestamp", ts.clone()),
            ];
            if let Some(secret) = &s.secret {
                let mut msg = format!("{ts}.").into_bytes();
                msg.extend_from_slice(&raw);
                h.push((
                    "x-webhook-signature",
                    super::hmac_hex(secret.as_bytes(), &msg),
                ));
            }
            out.push(self.deliver(&s.webhook_url, headers(&h), raw.clone()).await);
        }
        out
    }
}
