//! Linked API admin webhooks: `POST /admin/webhook.<action>` (PROVIDERS.md §3).
//!
//! A client holds one active webhook. If it already points at our URL it is
//! reused (its payload mode corrected with `setPayloadMode`); if it points
//! elsewhere hookd refuses, unless the source says `takeover = true`, since
//! replacing it drops the other endpoint's pending deliveries. There is no
//! update and no pause. `webhook.sendTest` is the remote test, and recovery
//! re-arms failed deliveries with `webhook.replayDelivery` (same `eventId`,
//! so hookd's dedup still holds). Signing is only in the newest SDK: hookd
//! asks for it (`signingEnabled`) only when the config has no secret of its
//! own, and saves any secret the API returns.

use http::Method;
use serde_json::{Value, json};

use super::client::{ApiClient, Idempotence};
use super::{
    Action, CREATE_ROUNDS, Caps, ManageError, Recovered, Registered, Remote, Want, fields,
    has_secret_for, id_of, persist, strings,
};
use crate::store::Backend;
use crate::store::subscriptions::Registration;
use crate::timefmt;

pub const CAPS: Caps = Caps {
    pause: false,
    remote_test: true,
    recover: true,
    multiple: false,
    issues_secret: true,
};

#[derive(Debug)]
pub struct LinkedApi {
    api: ApiClient,
    pub want: Want,
}

impl LinkedApi {
    pub fn new(api: ApiClient, want: Want) -> LinkedApi {
        LinkedApi { api, want }
    }

    fn url(&self) -> Result<&str, ManageError> {
        self.want.url.as_deref().ok_or_else(|| {
            ManageError::Config("Linked API only delivers by push (mode = \"push\")".into())
        })
    }

    async fn call(
        &self,
        action: &str,
        body: Value,
        idem: Idempotence,
    ) -> Result<Value, ManageError> {
        let path = format!("/admin/webhook.{action}");
        let a = self
            .api
            .call(Method::POST, &path, Some(&body), idem)
            .await?;
        Ok(a.json.get("result").cloned().unwrap_or(Value::Null))
    }

    pub async fn register(
        &self,
        store: &Backend,
        stored: Option<&Registration>,
    ) -> Result<Registered, ManageError> {
        let url = self.url()?.to_string();
        let mut round = 0;
        loop {
            round += 1;
            let result = match self.list().await?.into_iter().next() {
                Some(w) if w.url.as_deref() == Some(url.as_str()) => {
                    return self.adopt(store, w, stored).await;
                }
                Some(w) if !self.want.takeover => {
                    return Err(ManageError::Refused(format!(
                        "Linked API allows one webhook per client, and it ({}) points at {}; set takeover = true on source {} to replace it (its pending deliveries are dropped)",
                        w.id,
                        w.url.as_deref().unwrap_or("-"),
                        self.want.source
                    )));
                }
                Some(w) => {
                    self.call("delete", json!({ "id": w.id }), Idempotence::Safe)
                        .await?;
                    self.set(store).await.map(|mut r| {
                        r.action = Action::Replaced {
                            previous: w.url.unwrap_or_default(),
                        };
                        r
                    })
                }
                None => self.set(store).await,
            };
            match result {
                // `set` may have happened (a second one would be refused): look again.
                Err(ManageError::Api(e)) if e.maybe_applied() && round < CREATE_ROUNDS => {
                    tracing::info!(source = %self.want.source, "Linked API set failed ({e}); looking again");
                }
                other => return other,
            }
        }
    }

    async fn set(&self, store: &Backend) -> Result<Registered, ManageError> {
        let mut body = json!({ "url": self.url()? });
        if let Some(pm) = &self.want.payload_mode {
            body["payloadMode"] = json!(pm);
        }
        let ask_signing = self.want.secret.is_none();
        if ask_signing {
            body["signingEnabled"] = json!(true);
        }
        let result = self.call("set", body, Idempotence::Unsafe).await?;
        let webhook = result.get("webhook").unwrap_or(&result);
        let remote = parse_webhook(webhook).ok_or_else(|| {
            ManageError::Unexpected("Linked API set the webhook but its answer has no id".into())
        })?;
        let secret = secret_in(&result);
        let secret_saved = secret.is_some();
        persist(store, &self.want, &remote, secret).await?;
        let mut notes = Vec::new();
        if ask_signing && !secret_saved {
            notes.push(no_secret_note(&self.want.source));
        }
        Ok(Registered {
            remote,
            action: Action::Created,
            secret_saved,
            notes,
        })
    }

    async fn adopt(
        &self,
        store: &Backend,
        mut remote: Remote,
        stored: Option<&Registration>,
    ) -> Result<Registered, ManageError> {
        let mut action = Action::Reused;
        let mut secret = None;
        if self.want.secret.is_none() && !has_secret_for(stored, &remote.id) {
            // The SDK's revealSecret; without signing there is nothing to reveal.
            let r = self
                .call(
                    "revealSecret",
                    json!({ "id": remote.id }),
                    Idempotence::Safe,
                )
                .await;
            match r {
                Ok(v) => secret = secret_in(&v),
                Err(ManageError::Api(e)) => {
                    tracing::info!(source = %self.want.source, "Linked API revealSecret failed: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        let secret_saved = secret.is_some();
        persist(store, &self.want, &remote, secret).await?;
        let mut notes = Vec::new();
        if self.want.secret.is_none() && !secret_saved && !has_secret_for(stored, &remote.id) {
            notes.push(no_secret_note(&self.want.source));
        }
        if let Some(pm) = &self.want.payload_mode
            && remote.extra.get("payloadMode").and_then(Value::as_str) != Some(pm.as_str())
        {
            self.call(
                "setPayloadMode",
                json!({ "id": remote.id, "payloadMode": pm }),
                Idempotence::Safe,
            )
            .await?;
            remote.extra.insert("payloadMode".into(), json!(pm));
            action = Action::Updated;
        }
        Ok(Registered {
            remote,
            action,
            secret_saved,
            notes,
        })
    }

    pub fn matches(&self, r: &Remote) -> bool {
        r.url.is_some() && r.url == self.want.url
    }

    pub fn drift(&self, r: &Remote) -> Vec<String> {
        let mut d = Vec::new();
        if r.url != self.want.url {
            d.push(format!("url is {}", r.url.as_deref().unwrap_or("-")));
        }
        if let Some(pm) = &self.want.payload_mode
            && r.extra.get("payloadMode").and_then(Value::as_str) != Some(pm.as_str())
        {
            d.push(format!(
                "payload mode is {}",
                r.extra
                    .get("payloadMode")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
            ));
        }
        if r.active == Some(false) {
            d.push("inactive".into());
        }
        d
    }

    /// Deletes the webhook if it is ours; someone else's is left alone.
    pub async fn unregister(&self, stored_id: Option<&str>) -> Result<Vec<String>, ManageError> {
        let mut removed = Vec::new();
        for w in self.list().await? {
            if Some(w.id.as_str()) == stored_id || self.matches(&w) {
                self.call("delete", json!({ "id": w.id }), Idempotence::Safe)
                    .await?;
                removed.push(w.id);
            }
        }
        Ok(removed)
    }

    pub async fn list(&self) -> Result<Vec<Remote>, ManageError> {
        let r = self.call("get", json!({}), Idempotence::Safe).await?;
        let items = r.get("webhooks").and_then(Value::as_array).ok_or_else(|| {
            ManageError::Unexpected("Linked API's webhook.get has no webhooks array".into())
        })?;
        Ok(items.iter().filter_map(parse_webhook).collect())
    }

    pub async fn send_test(&self) -> Result<(), ManageError> {
        self.call("sendTest", json!({}), Idempotence::Unsafe)
            .await?;
        Ok(())
    }

    /// Replays every failed delivery (since `since`, µs, when given).
    pub async fn recover(&self, since: Option<i64>) -> Result<Recovered, ManageError> {
        let r = self
            .call("deliveries", json!({}), Idempotence::Safe)
            .await?;
        let items = r
            .get("deliveries")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ManageError::Unexpected(
                    "Linked API's webhook.deliveries has no deliveries array".into(),
                )
            })?;
        let mut out = Recovered {
            seen: items.len(),
            ..Default::default()
        };
        for d in items {
            let failed = d.get("status").and_then(Value::as_str) == Some("failed");
            let recent = match (since, d.get("createdAt").and_then(Value::as_str)) {
                (Some(s), Some(t)) => timefmt::parse_lenient(t).is_none_or(|t| t >= s),
                _ => true,
            };
            let Some(id) = id_of(d, &["id"]) else {
                continue;
            };
            if failed && recent {
                self.call(
                    "replayDelivery",
                    json!({ "deliveryId": id }),
                    Idempotence::Safe,
                )
                .await?;
                out.replayed.push(id);
            }
        }
        Ok(out)
    }
}

fn no_secret_note(source: &str) -> String {
    format!(
        "Linked API returned no signing secret (signing is new and may not be live); pushes to {source} will be refused until you set secret (or a token header) on the source"
    )
}

/// A secret in `result.secret` or `result.webhook.secret`.
fn secret_in(result: &Value) -> Option<String> {
    result
        .get("secret")
        .or_else(|| result.pointer("/webhook/secret"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn parse_webhook(v: &Value) -> Option<Remote> {
    let extra = fields(
        v,
        &["payloadMode", "signingEnabled", "createdAt", "headerNames"],
    );
    Some(Remote {
        id: id_of(v, &["id"])?,
        url: v.get("url").and_then(Value::as_str).map(str::to_string),
        events: strings(v.get("events")),
        active: v.get("isActive").and_then(Value::as_bool),
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_webhook_and_finds_secrets() {
        let r = parse_webhook(
            &json!({"id": "whs-1", "url": "https://example.com/hooks/linkedapi",
            "payloadMode": "fat", "isActive": true, "createdAt": "2026-06-25T12:00:00.000Z"}),
        )
        .unwrap();
        assert_eq!(r.id, "whs-1");
        assert_eq!(r.active, Some(true));
        assert_eq!(r.extra["payloadMode"], "fat");
        assert_eq!(
            secret_in(&json!({"webhook": {"secret": "s1"}})).as_deref(),
            Some("s1")
        );
        assert_eq!(secret_in(&json!({"secret": "s2"})).as_deref(), Some("s2"));
        assert_eq!(secret_in(&json!({"webhook": {"secret": ""}})), None);
    }
}
