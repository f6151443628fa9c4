//! `hookd subscriptions`: what the provider reports, next to what the
//! config wants. Each reported subscription is `ours` (matches the config),
//! `drift` (ours, but different: the detail says how), or `other` (not this
//! source's); when none is ours a `missing` row shows what `register` would
//! create.

use serde::Serialize;

use super::{ManageError, Manager};
use crate::store::Backend;

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub source: String,
    pub provider: String,
    /// The provider's subscription id (`None` on a `missing` row).
    pub id: Option<String>,
    pub url: Option<String>,
    pub events: Vec<String>,
    pub active: Option<bool>,
    /// ours | drift | other | missing
    pub status: &'static str,
    pub detail: String,
    /// The id hookd saved when it registered, if any.
    pub registered_id: Option<String>,
    pub wanted: Wanted,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Wanted {
    pub url: Option<String>,
    pub events: Vec<String>,
}

/// The rows for one source. `store` is optional: without a state directory
/// nothing was registered from here yet.
pub async fn rows(m: &Manager, store: Option<&Backend>) -> Result<Vec<Row>, ManageError> {
    let stored = match store {
        Some(s) => super::stored(s, &m.want().source).await?,
        None => None,
    };
    let registered_id = stored.and_then(|r| r.remote_id);
    let want = m.want();
    let wanted = Wanted {
        url: want.url.clone(),
        events: want.events.clone(),
    };
    let mut rows: Vec<Row> = m
        .list()
        .await?
        .into_iter()
        .map(|r| {
            let (status, detail) = if m.is_ours(&r, registered_id.as_deref()) {
                let d = m.drift(&r);
                if d.is_empty() {
                    ("ours", String::new())
                } else {
                    ("drift", d.join("; "))
                }
            } else {
                ("other", String::new())
            };
            Row {
                source: want.source.clone(),
                provider: want.provider.name().to_string(),
                id: Some(r.id),
                url: r.url,
                events: r.events,
                active: r.active,
                status,
                detail,
                registered_id: registered_id.clone(),
                wanted: wanted.clone(),
                extra: r.extra,
            }
        })
        .collect();
    if !rows.iter().any(|r| r.status != "other") {
        rows.push(Row {
            source: want.source.clone(),
            provider: want.provider.name().to_string(),
            id: None,
            url: want.url.clone(),
            events: want.events.clone(),
            active: None,
            status: "missing",
            detail: format!(
                "not registered; `hookd register {}` creates it",
                want.source
            ),
            registered_id,
            wanted,
            extra: Default::default(),
        });
    }
    Ok(rows)
}
