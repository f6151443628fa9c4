//! LinkUp v2 webhooks: create, list, start/stop, delete, rotate-secret
//! (PROVIDERS.md §1).
//!
//! A push source registers a *custom* webhook (`url`, signing on) and keeps
//! the secret LinkUp shows once; an sse/poll source registers a *hosted*
//! one (no `url`, unsigned). LinkUp's pages disagree on whether a new
//! webhook needs `/start`, so after creating one hookd lists it and starts
//! it only if it is not active. An adopted push webhook whose secret hookd
//! never saw gets a fresh one through `rotate-secret`.

use http::Method;
use serde_json::{Value, json};

use super::client::{ApiClient, Idempotence};
use super::{
    Action, CREATE_ROUNDS, Caps, ManageError, Registered, Remote, Want, fields, has_secret_for,
    id_of, persist, same_events, strings,
};
use crate::store::Backend;
use crate::store::subscriptions::Registration;

pub const CAPS: Caps = Caps {
    pause: true,
    remote_test: false,
    recover: false,
    multiple: true,
    issues_secret: true,
};

/// LinkUp's filter when none is given.
const DEFAULT_EVENTS: &[&str] = &["all"];

#[derive(Debug)]
pub struct Linkup {
    api: ApiClient,
    pub want: Want,
    account: String,
}

impl Linkup {
    pub fn new(api: ApiClient, want: Want) -> Result<Linkup, ManageError> {
        let account = want.account_id.clone().ok_or_else(|| {
            ManageError::Config(
                "account_id is not set (LinkUp's id of the account to monitor)".into(),
            )
        })?;
        Ok(Linkup { api, want, account })
    }

    fn push(&self) -> bool {
        self.want.url.is_some()
    }

    pub async fn register(
        &self,
        store: &Backend,
        stored: Option<&Registration>,
    ) -> Result<Registered, ManageError> {
        let stored_id = stored.and_then(|r| r.remote_id.as_deref());
        let mut round = 0;
        loop {
            round += 1;
            if let Some(r) = self.find(stored_id).await? {
                return self.adopt(store, r, stored).await;
            }
            match self.create(store).await {
                // The create may have happened: look again before retrying.
                Err(ManageError::Api(e)) if e.maybe_applied() && round < CREATE_ROUNDS => {
                    tracing::info!(source = %self.want.source, "LinkUp create failed ({e}); looking again");
                }
                other => return other,
            }
        }
    }

    /// Our webhook: the stored id, else the same account and the same URL
    /// (hosted: the same event filter, since hosted webhooks have no URL).
    async fn find(&self, stored_id: Option<&str>) -> Result<Option<Remote>, ManageError> {
        let all = self.list().await?;
        if let Some(r) = all.iter().find(|r| Some(r.id.as_str()) == stored_id) {
            return Ok(Some(r.clone()));
        }
        Ok(all.into_iter().find(|r| self.matches(r)))
    }

    pub fn matches(&self, r: &Remote) -> bool {
        match &self.want.url {
            Some(url) => r.url.as_deref() == Some(url.as_str()),
            None => r.url.is_none() && same_events(&r.events, &self.want.events, DEFAULT_EVENTS),
        }
    }

    pub fn drift(&self, r: &Remote) -> Vec<String> {
        let mut d = Vec::new();
        if r.url != self.want.url {
            d.push(format!(
                "url is {}",
                r.url.as_deref().unwrap_or("none (hosted)")
            ));
        }
        if !same_events(&r.events, &self.want.events, DEFAULT_EVENTS) {
            d.push(format!("events are [{}]", r.events.join(", ")));
        }
        if r.active == Some(false) {
            d.push("stopped".into());
        }
        if self.push() && r.extra.get("signature_enabled") == Some(&Value::Bool(false)) {
            d.push("signing is off".into());
        }
        d
    }

    async fn create(&self, store: &Backend) -> Result<Registered, ManageError> {
        let mut body = json!({
            "account_id": self.account,
            "events": if self.want.events.is_empty() { json!(DEFAULT_EVENTS) } else { json!(self.want.events) },
        });
        if let Some(url) = &self.want.url {
            body["url"] = json!(url);
            body["enable_signature"] = json!(true);
        }
        let a = self
            .api
            .call(
                Method::POST,
                "/v2/webhooks",
                Some(&body),
                Idempotence::Unsafe,
            )
            .await?;
        let data = a.json.get("data").cloned().unwrap_or(Value::Null);
        let remote = parse_webhook(&data).ok_or_else(|| {
            ManageError::Unexpected(
                "LinkUp created a webhook but its answer has no webhook_id".into(),
            )
        })?;
        let secret = data
            .get("secret")
            .and_then(Value::as_str)
            .map(str::to_string);
        let secret_saved = secret.is_some();
        // First thing: the secret is shown only once.
        persist(store, &self.want, &remote, secret).await?;
        let mut notes = Vec::new();
        if self.push() && !secret_saved && self.want.secret.is_none() {
            notes.push(format!(
                "LinkUp returned no signing secret; run `hookd register {}` again to ask for one",
                self.want.source
            ));
        }
        let remote = self.ensure_active(remote, &mut notes).await?;
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
        if self.push() && self.want.secret.is_none() && !has_secret_for(stored, &remote.id) {
            // Created elsewhere, or its secret was lost: LinkUp never shows it
            // again, so ask for a new one (the old one stops working at once).
            let path = format!("/v2/webhooks/{}/rotate-secret", remote.id);
            let a = self
                .api
                .call(Method::POST, &path, None, Idempotence::Unsafe)
                .await?;
            secret = a
                .json
                .pointer("/data/secret")
                .and_then(Value::as_str)
                .map(str::to_string);
            if secret.is_none() {
                return Err(ManageError::Unexpected(
                    "LinkUp rotated the webhook's secret but its answer has no data.secret".into(),
                ));
            }
            remote.extra.insert("signature_enabled".into(), json!(true));
            action = Action::Updated;
        }
        let secret_saved = secret.is_some();
        persist(store, &self.want, &remote, secret).await?;
        let mut notes = Vec::new();
        if !same_events(&remote.events, &self.want.events, DEFAULT_EVENTS) {
            notes.push(format!(
                "webhook {} listens to [{}], the config wants [{}]; LinkUp's update call is unconfirmed, so `hookd unregister` then `register` to change it",
                remote.id,
                remote.events.join(", "),
                self.want.events.join(", ")
            ));
        }
        if remote.active == Some(false) {
            self.set_active(&remote.id, true).await?;
            remote.active = Some(true);
            action = Action::Updated;
        }
        Ok(Registered {
            remote,
            action,
            secret_saved,
            notes,
        })
    }

    /// Starts the webhook only if LinkUp lists it as not active.
    async fn ensure_active(
        &self,
        mut remote: Remote,
        notes: &mut Vec<String>,
    ) -> Result<Remote, ManageError> {
        let listed = self.list().await?.into_iter().find(|r| r.id == remote.id);
        match listed.as_ref().and_then(|r| r.active).or(remote.active) {
            Some(true) => {}
            _ => {
                self.set_active(&remote.id, true).await?;
                notes.push("LinkUp listed the new webhook as stopped; started it".into());
            }
        }
        remote.active = Some(true);
        Ok(remote)
    }

    pub async fn unregister(&self, stored_id: Option<&str>) -> Result<Vec<String>, ManageError> {
        let ours: Vec<Remote> = self
            .list()
            .await?
            .into_iter()
            .filter(|r| Some(r.id.as_str()) == stored_id || self.matches(r))
            .collect();
        let mut removed = Vec::new();
        for r in ours {
            self.api.delete(&format!("/v2/webhooks/{}", r.id)).await?;
            removed.push(r.id);
        }
        Ok(removed)
    }

    pub async fn list(&self) -> Result<Vec<Remote>, ManageError> {
        let a = self
            .api
            .call(Method::GET, "/v2/webhooks", None, Idempotence::Safe)
            .await?;
        // The list shape is not documented (PROVIDERS.md §1 [?]): accept
        // `data` as the array, or an object holding `webhooks`/`items`.
        let data = a.json.get("data").unwrap_or(&a.json);
        let items = data
            .as_array()
            .or_else(|| data.get("webhooks").and_then(Value::as_array))
            .or_else(|| data.get("items").and_then(Value::as_array))
            .ok_or_else(|| {
                ManageError::Unexpected("LinkUp's webhook list has no array of webhooks".into())
            })?;
        Ok(items
            .iter()
            .filter_map(parse_webhook)
            .filter(|r| {
                r.extra
                    .get("account_id")
                    .and_then(Value::as_str)
                    .is_none_or(|a| a == self.account)
            })
            .collect())
    }

    pub async fn set_active(&self, id: &str, active: bool) -> Result<(), ManageError> {
        let verb = if active { "start" } else { "stop" };
        let path = format!("/v2/webhooks/{id}/{verb}");
        self.api
            .call(Method::POST, &path, None, Idempotence::Safe)
            .await?;
        Ok(())
    }
}

/// A webhook object from create or list.
fn parse_webhook(v: &Value) -> Option<Remote> {
    let id = id_of(v, &["webhook_id", "id", "_id"])?;
    let url = v
        .get("url")
        .or_else(|| v.get("webhook_url"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let extra = fields(
        v,
        &[
            "account_id",
            "mode",
            "signature_enabled",
            "stream_url",
            "events_url",
        ],
    );
    Some(Remote {
        id,
        url,
        events: strings(v.get("events")),
        active: v.get("is_active").and_then(Value::as_bool),
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_create_answer() {
        let data = json!({
            "webhook_id": "6789abcdef0123456789abcd",
            "account_id": "69c127c37cae0494dd827286",
            "mode": "hosted",
            "stream_url": "/v2/webhooks/6789abcdef0123456789abcd/stream",
            "events_url": "/v2/webhooks/6789abcdef0123456789abcd/events",
            "events": ["accepted_invitation", "message_received"],
            "is_active": true
        });
        let r = parse_webhook(&data).unwrap();
        assert_eq!(r.id, "6789abcdef0123456789abcd");
        assert_eq!(r.url, None);
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.active, Some(true));
        assert_eq!(r.extra["mode"], "hosted");
    }
}
