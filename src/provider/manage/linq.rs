//! Linq partner API v2 webhook subscriptions (PROVIDERS.md §2).
//!
//! Linq delivers once per matching subscription, so a second subscription
//! to the same URL means every event twice. Registering therefore lists
//! first, matches on the URL, and updates (PUT, the full body) the one it
//! finds instead of creating another. The signing secret is ours, from the
//! config, and Linq never shows it back (`secret_configured` only); pausing
//! is `active = false` because v2 has no pause endpoint.

use http::Method;
use serde_json::{Value, json};

use super::client::{Answer, ApiClient, ApiError, Idempotence};
use super::{
    Action, CREATE_ROUNDS, Caps, ManageError, Registered, Remote, Want, fields, id_of, persist,
    same_events, strings,
};
use crate::store::Backend;
use crate::store::subscriptions::Registration;

pub const CAPS: Caps = Caps {
    pause: true,
    remote_test: false,
    recover: false,
    multiple: true,
    issues_secret: false,
};

const PATH: &str = "/api/partner/v2/webhook_subscriptions";

pub struct Linq {
    api: ApiClient,
    pub want: Want,
    url: String,
    /// Our signing secret as text (Linq takes it in the JSON body).
    secret: String,
}

impl std::fmt::Debug for Linq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linq")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Linq {
    pub fn new(api: ApiClient, want: Want) -> Result<Linq, ManageError> {
        let url = want.url.clone().ok_or_else(|| {
            ManageError::Config("Linq only delivers by push (mode = \"push\")".into())
        })?;
        if want.events.is_empty() {
            return Err(ManageError::Config(
                "events is empty; Linq needs the event types to subscribe to, e.g. [\"message.received\"]".into(),
            ));
        }
        let secret = match &want.secret {
            Some(s) => s
                .expose_str()
                .map_err(|_| {
                    ManageError::Config("the secret is not UTF-8 text, which Linq needs".into())
                })?
                .to_string(),
            None => {
                return Err(ManageError::Config(
                    "no secret is configured; Linq signs with the secret hookd gives it (secret = \"env:NAME\")".into(),
                ));
            }
        };
        Ok(Linq {
            api,
            want,
            url,
            secret,
        })
    }

    /// The full subscription body (create and update take the same one).
    fn body(&self, active: bool) -> Value {
        json!({
            "webhook_subscription": {
                "webhook_url": self.url,
                "version": 2,
                "secret": self.secret,
                "active": active,
                "events": self.want.events,
            }
        })
    }

    pub async fn register(
        &self,
        store: &Backend,
        stored: Option<&Registration>,
    ) -> Result<Registered, ManageError> {
        let stored_id = stored.and_then(|r| r.remote_id.as_deref());
        let mut round = 0;
        let a = loop {
            round += 1;
            let found = self.ours(stored_id).await?;
            if let Some(first) = found.first() {
                return self.update(store, first.clone(), &found[1..]).await;
            }
            match self
                .api
                .call(
                    Method::POST,
                    PATH,
                    Some(&self.body(true)),
                    Idempotence::Unsafe,
                )
                .await
            {
                Ok(a) => break a,
                // The create may have happened: look again before retrying.
                Err(e) if e.maybe_applied() && round < CREATE_ROUNDS => {
                    tracing::info!(source = %self.want.source, "Linq create failed ({e}); looking again");
                }
                Err(e) => return Err(e.into()),
            }
        };
        let remote = answer_subscription(&a.json)?;
        persist(store, &self.want, &remote, None).await?;
        Ok(Registered {
            remote,
            action: Action::Created,
            secret_saved: false,
            notes: Vec::new(),
        })
    }

    /// Brings an existing subscription in line (URL, events, secret, active).
    /// The secret cannot be compared, so the PUT is always sent; it is
    /// idempotent and never creates a second subscription.
    async fn update(
        &self,
        store: &Backend,
        existing: Remote,
        duplicates: &[Remote],
    ) -> Result<Registered, ManageError> {
        let a = self.put(&existing.id, true).await?;
        let remote = answer_subscription(&a.json).unwrap_or_else(|_| Remote {
            events: self.want.events.clone(),
            active: Some(true),
            ..existing.clone()
        });
        persist(store, &self.want, &remote, None).await?;
        let action = if self.drift(&existing).is_empty() {
            Action::Reused
        } else {
            Action::Updated
        };
        let mut notes = Vec::new();
        if !duplicates.is_empty() {
            let ids: Vec<&str> = duplicates.iter().map(|r| r.id.as_str()).collect();
            notes.push(format!(
                "{} more subscription(s) point at {} ({}); Linq delivers each event once per subscription, `hookd unregister {}` removes them all",
                ids.len(),
                self.url,
                ids.join(", "),
                self.want.source
            ));
        }
        Ok(Registered {
            remote,
            action,
            secret_saved: false,
            notes,
        })
    }

    /// Subscriptions that are ours: the stored id first, then every one
    /// pointing at our URL.
    async fn ours(&self, stored_id: Option<&str>) -> Result<Vec<Remote>, ManageError> {
        let mut v: Vec<Remote> = self
            .list()
            .await?
            .into_iter()
            .filter(|r| Some(r.id.as_str()) == stored_id || self.matches(r))
            .collect();
        v.sort_by_key(|r| Some(r.id.as_str()) != stored_id);
        Ok(v)
    }

    pub fn matches(&self, r: &Remote) -> bool {
        r.url.as_deref() == Some(self.url.as_str())
    }

    pub fn drift(&self, r: &Remote) -> Vec<String> {
        let mut d = Vec::new();
        if r.url.as_deref() != Some(self.url.as_str()) {
            d.push(format!("url is {}", r.url.as_deref().unwrap_or("-")));
        }
        if !same_events(&r.events, &self.want.events, &[]) {
            d.push(format!("events are [{}]", r.events.join(", ")));
        }
        if r.active == Some(false) {
            d.push("inactive".into());
        }
        if r.extra.get("secret_configured") == Some(&Value::Bool(false)) {
            d.push("no secret configured".into());
        }
        d
    }

    pub async fn unregister(&self, stored_id: Option<&str>) -> Result<Vec<String>, ManageError> {
        let mut removed = Vec::new();
        for r in self.ours(stored_id).await? {
            self.api.delete(&format!("{PATH}/{}", r.id)).await?;
            removed.push(r.id);
        }
        Ok(removed)
    }

    pub async fn list(&self) -> Result<Vec<Remote>, ManageError> {
        let a = self
            .api
            .call(Method::GET, PATH, None, Idempotence::Safe)
            .await?;
        let items = a
            .json
            .get("webhook_subscriptions")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ManageError::Unexpected("Linq's answer has no webhook_subscriptions array".into())
            })?;
        Ok(items.iter().filter_map(parse_subscription).collect())
    }

    pub async fn set_active(&self, id: &str, active: bool) -> Result<(), ManageError> {
        self.put(id, active).await?;
        Ok(())
    }

    /// Replaces subscription `id` with the full body (v2 has no partial update).
    async fn put(&self, id: &str, active: bool) -> Result<Answer, ApiError> {
        let path = format!("{PATH}/{id}");
        self.api
            .call(
                Method::PUT,
                &path,
                Some(&self.body(active)),
                Idempotence::Safe,
            )
            .await
    }
}

fn answer_subscription(v: &Value) -> Result<Remote, ManageError> {
    v.get("webhook_subscription")
        .and_then(parse_subscription)
        .ok_or_else(|| {
            ManageError::Unexpected("Linq's answer has no webhook_subscription with an id".into())
        })
}

fn parse_subscription(v: &Value) -> Option<Remote> {
    let extra = fields(
        v,
        &[
            "version",
            "secret_configured",
            "last_delivered_at",
            "delivery_attempts",
        ],
    );
    Some(Remote {
        id: id_of(v, &["id"])?,
        url: v
            .get("webhook_url")
            .and_then(Value::as_str)
            .map(str::to_string),
        events: strings(v.get("events")),
        active: v.get("active").and_then(Value::as_bool),
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_answer() {
        let v = json!({ "webhook_subscription": { "id": 123, "webhook_url": "https://webhook.example.com/linq", "version": 2,
            "events": [ "message.sent", "message.received", "call.completed" ], "active": true, "secret_configured": true,
            "last_delivered_at": "2024-01-15T10:30:00Z", "delivery_attempts": 42 }});
        let r = answer_subscription(&v).unwrap();
        assert_eq!(r.id, "123");
        assert_eq!(r.url.as_deref(), Some("https://webhook.example.com/linq"));
        assert_eq!(r.events.len(), 3);
        assert_eq!(r.extra["secret_configured"], true);
    }
}
