//! Simulated Linked API admin webhooks (PROVIDERS.md §3, seed 003).
//!
//! `POST /admin/webhook.<action>` with `linked-api-token`; one active
//! webhook per client (a second `set` is refused), no update, soft delete,
//! private-IP URLs refused. `signingEnabled` (newest SDK) makes `set` return
//! a secret; deliveries are then signed `linked-api-signature` = hex HMAC
//! of `{linked-api-signature-timestamp}.{body}`. Every delivery is recorded
//! (`webhook.deliveries`, newest first) and can be replayed with the same
//! `eventId`. This simulator makes one attempt per delivery (the real API
//! makes up to 8), so a failed delivery stays failed until replayed.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use http::HeaderMap;
use serde_json::{Value, json};

use super::{
    LINKEDAPI_TOKEN, Sim, SimState, headers, iso_now, private_ip_url, random_secret, reply,
    unix_now,
};

#[derive(Clone, Debug)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub payload_mode: String,
    pub is_active: bool,
    pub secret: Option<String>,
    pub created_at: String,
}

#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event: Value,
    pub status: String,
    pub attempts: u32,
    pub response_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

pub struct Data {
    /// Every webhook ever set (deleted ones stay, inactive).
    pub webhooks: Vec<Webhook>,
    /// Oldest first (the API lists newest first).
    pub deliveries: Vec<Delivery>,
    /// Whether `signingEnabled` is honoured (signing is SDK-only so far).
    pub signing: bool,
}

impl Default for Data {
    fn default() -> Self {
        Data {
            webhooks: Vec::new(),
            deliveries: Vec::new(),
            signing: true,
        }
    }
}

pub fn routes() -> Router<SimState> {
    Router::new().route("/admin/{action}", axum::routing::post(admin))
}

pub fn error_body(status: u16) -> Value {
    let (t, m) = match status {
        401 => ("invalidLinkedApiToken", "The linked-api-token is invalid"),
        403 => ("forbidden", "Forbidden"),
        404 => ("notFound", "Not found"),
        429 => ("tooManyRequests", "Too many requests: 100 per 60 seconds"),
        _ => ("internalError", "Internal error"),
    };
    err(t, m)
}

fn err(t: &str, m: &str) -> Value {
    json!({ "success": false, "error": { "type": t, "message": m } })
}

fn ok(result: Value) -> Response {
    reply(200, json!({ "success": true, "result": result }))
}

fn view(w: &Webhook) -> Value {
    json!({ "id": w.id, "url": w.url, "payloadMode": w.payload_mode, "isActive": w.is_active,
            "createdAt": w.created_at, "signingEnabled": w.secret.is_some() })
}

fn delivery_view(d: &Delivery) -> Value {
    json!({ "id": d.id, "eventType": d.event["type"], "eventId": d.event["id"], "status": d.status,
            "attempts": d.attempts, "responseStatusCode": d.response_status_code, "lastError": d.last_error,
            "createdAt": d.created_at, "updatedAt": d.updated_at })
}

async fn admin(
    State(sim): State<SimState>,
    h: HeaderMap,
    Path(action): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match h.get("linked-api-token").and_then(|v| v.to_str().ok()) {
        None => {
            return reply(
                401,
                err(
                    "linkedApiTokenRequired",
                    "linked-api-token header is required",
                ),
            );
        }
        Some(LINKEDAPI_TOKEN) => {}
        Some(_) => return reply(401, error_body(401)),
    }
    let b: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return reply(400, err("invalidRequest", "body is not JSON")),
        }
    };
    match action.as_str() {
        "webhook.set" => set(&sim, &b),
        "webhook.get" => {
            let g = sim.lock();
            let active: Vec<Value> = g
                .linkedapi
                .webhooks
                .iter()
                .filter(|w| w.is_active)
                .map(view)
                .collect();
            ok(json!({ "webhooks": active }))
        }
        "webhook.setPayloadMode" => {
            let mode = b["payloadMode"].as_str().unwrap_or("");
            if !["fat", "thin"].contains(&mode) {
                return reply(
                    400,
                    err("invalidRequest", "payloadMode must be fat or thin"),
                );
            }
            with_active(&sim, &b, |w| {
                w.payload_mode = mode.to_string();
                json!({ "webhook": view(w) })
            })
        }
        "webhook.delete" => with_active(&sim, &b, |w| {
            w.is_active = false;
            json!({})
        }),
        "webhook.revealSecret" => with_active(&sim, &b, |w| json!({ "secret": w.secret })),
        "webhook.deliveries" => {
            let g = sim.lock();
            let list: Vec<Value> = g
                .linkedapi
                .deliveries
                .iter()
                .rev()
                .map(delivery_view)
                .collect();
            ok(json!({ "deliveries": list }))
        }
        "webhook.replayDelivery" => {
            let id = b["deliveryId"].as_str().unwrap_or("").to_string();
            {
                let mut g = sim.lock();
                let Some(d) = g.linkedapi.deliveries.iter_mut().find(|d| d.id == id) else {
                    return reply(404, err("notFound", "delivery not found"));
                };
                if !["success", "failed"].contains(&d.status.as_str()) {
                    return reply(
                        400,
                        err("invalidRequest", "only settled deliveries can be replayed"),
                    );
                }
                d.status = "pending".into();
            }
            let s = sim.clone();
            tokio::spawn(async move { s.linkedapi_attempt(&id).await });
            ok(json!({}))
        }
        "webhook.sendTest" => {
            let Some(id) = sim.linkedapi_enqueue(
                "webhook.test",
                &format!("test-{}", random_secret(8)),
                json!({ "message": "This is a test webhook from Linked API" }),
            ) else {
                return reply(400, err("noActiveWebhook", "no active webhook"));
            };
            let s = sim.clone();
            tokio::spawn(async move { s.linkedapi_attempt(&id).await });
            ok(json!({}))
        }
        _ => reply(404, err("notFound", &format!("unknown action {action}"))),
    }
}

fn set(sim: &Sim, b: &Value) -> Response {
    let Some(url) = b["url"].as_str() else {
        return reply(400, err("invalidRequest", "url is required"));
    };
    if private_ip_url(url) {
        return reply(
            400,
            err(
                "invalidUrl",
                "the url must not be a private or internal IP address",
            ),
        );
    }
    let mode = b["payloadMode"].as_str().unwrap_or("fat");
    let mut g = sim.lock();
    if g.linkedapi.webhooks.iter().any(|w| w.is_active) {
        return reply(
            409,
            err(
                "webhookAlreadyExists",
                "A client may hold one active webhook at a time",
            ),
        );
    }
    let signing = b["signingEnabled"] == json!(true) && g.linkedapi.signing;
    let w = Webhook {
        id: format!("whs-{}", g.hex_id(12)),
        url: url.to_string(),
        payload_mode: mode.to_string(),
        is_active: true,
        secret: signing.then(|| random_secret(64)),
        created_at: iso_now(),
    };
    let mut v = view(&w);
    if let Some(s) = &w.secret {
        v["secret"] = json!(s);
    }
    g.linkedapi.webhooks.push(w);
    ok(json!({ "webhook": v }))
}

fn with_active(sim: &Sim, b: &Value, f: impl FnOnce(&mut Webhook) -> Value) -> Response {
    let id = b["id"].as_str().unwrap_or("");
    let mut g = sim.lock();
    match g
        .linkedapi
        .webhooks
        .iter_mut()
        .find(|w| w.id == id && w.is_active)
    {
        Some(w) => ok(f(w)),
        None => reply(404, err("notFound", "webhook not found")),
    }
}

impl Sim {
    /// The active webhook, if any.
    pub fn linkedapi_webhook(&self) -> Option<Webhook> {
        self.lock()
            .linkedapi
            .webhooks
            .iter()
            .find(|w| w.is_active)
            .cloned()
    }

    /// Sets a webhook directly, as another tool of the same client would.
    pub fn linkedapi_preset(&self, url: &str) -> String {
        let mut g = self.lock();
        let id = format!("whs-{}", g.hex_id(12));
        g.linkedapi.webhooks.push(Webhook {
            id: id.clone(),
            url: url.into(),
            payload_mode: "fat".into(),
            is_active: true,
            secret: None,
            created_at: iso_now(),
        });
        id
    }

    pub fn linkedapi_deliveries(&self) -> Vec<Delivery> {
        self.lock().linkedapi.deliveries.clone()
    }

    /// Records a delivery of a new event to the active webhook; returns its id.
    pub fn linkedapi_enqueue(&self, event_type: &str, entity: &str, data: Value) -> Option<String> {
        let mut g = self.lock();
        let webhook_id = g
            .linkedapi
            .webhooks
            .iter()
            .find(|w| w.is_active)?
            .id
            .clone();
        let id = format!("whd-{}", g.hex_id(12));
        g.linkedapi.deliveries.push(Delivery {
            id: id.clone(),
            webhook_id,
            event: json!({ "id": format!("{event_type}:{entity}"), "type": event_type,
                           "createdAt": iso_now(), "data": data }),
            status: "pending".into(),
            attempts: 0,
            response_status_code: None,
            last_error: None,
            created_at: iso_now(),
            updated_at: iso_now(),
        });
        Some(id)
    }

    /// A new event, delivered once now; returns the delivery id and hookd's status.
    pub async fn linkedapi_emit(
        &self,
        event_type: &str,
        entity: &str,
        data: Value,
    ) -> Option<(String, Option<u16>)> {
        let id = self.linkedapi_enqueue(event_type, entity, data)?;
        let status = self.linkedapi_attempt(&id).await;
        Some((id, status))
    }

    /// One delivery attempt to the active webhook, signed when it has a secret.
    pub async fn linkedapi_attempt(&self, delivery_id: &str) -> Option<u16> {
        let (w, event) = {
            let g = self.lock();
            let d = g
                .linkedapi
                .deliveries
                .iter()
                .find(|d| d.id == delivery_id)?;
            (
                g.linkedapi.webhooks.iter().find(|w| w.is_active)?.clone(),
                d.event.clone(),
            )
        };
        let raw = serde_json::to_vec(&event).unwrap();
        let mut h = Vec::new();
        if let Some(secret) = &w.secret {
            let ts = unix_now().to_string();
            let mut msg = format!("{ts}.").into_bytes();
            msg.extend_from_slice(&raw);
            h.push(("linked-api-signature-timestamp", ts));
            h.push((
                "linked-api-signature",
                super::hmac_hex(secret.as_bytes(), &msg),
            ));
        }
        let status = self.deliver(&w.url, headers(&h), raw).await;
        let mut g = self.lock();
        if let Some(d) = g
            .linkedapi
            .deliveries
            .iter_mut()
            .find(|d| d.id == delivery_id)
        {
            d.attempts += 1;
            d.response_status_code = status;
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            d.status = if ok { "success" } else { "failed" }.into();
            d.last_error = (!ok).then(|| format!("delivery failed: {status:?}"));
            d.updated_at = iso_now();
        }
        drop(g);
        self.changed.notify_waiters();
        status
    }
}
