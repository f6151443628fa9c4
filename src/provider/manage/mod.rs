//! The control plane: registering hookd with a provider and keeping that
//! registration in step with the config (SPEC §2 `register`, `unregister`,
//! `subscriptions`, and `pause`/`resume`/`recover`/`send-test --remote`).
//!
//! Each provider's API has its own file; [`Manager`] is the closed set of
//! them, with [`Caps`] saying which operations a provider really has. What a
//! provider hands out once (a signing secret) and its remote id are saved in
//! the state store *before* any further call can fail, and the daemon picks
//! the secret up for verification at once (see `runtime::refresh_issued`).

pub mod auto;
pub mod client;
pub mod linkedapi;
pub mod linkup;
pub mod linq;
pub mod status;

use serde::Serialize;
use serde_json::{Map, Value, json};

use self::client::{ApiClient, ApiError, RetryPolicy};
use super::{Mode, ProviderKind};
use crate::config::{Config, SourceConfig};
use crate::secret::Secret;
use crate::store::subscriptions::Registration;
use crate::store::{Backend, RegistrationLock};
use crate::timefmt;

/// How often `register` looks and creates again when a create answered
/// 5xx or not at all (it may or may not have happened, so it is never
/// simply repeated: a second create would be a duplicate subscription).
pub const CREATE_ROUNDS: u32 = 3;

/// Which management operations a provider has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Caps {
    /// Stop and resume deliveries without deleting the subscription.
    pub pause: bool,
    /// Ask the provider to send its own test event.
    pub remote_test: bool,
    /// Ask the provider to deliver failed events again.
    pub recover: bool,
    /// Several subscriptions per API key (false: one per client).
    pub multiple: bool,
    /// The provider creates the signing secret and shows it once.
    pub issues_secret: bool,
}

/// What the config wants at the provider for one source.
#[derive(Clone, Debug)]
pub struct Want {
    pub source: String,
    pub provider: ProviderKind,
    /// Where pushes go (`public_url` + path); `None` for hosted (sse/poll).
    pub url: Option<String>,
    pub events: Vec<String>,
    /// The first configured secret (Linq is told it on register).
    pub secret: Option<Secret>,
    pub account_id: Option<String>,
    pub payload_mode: Option<String>,
    pub takeover: bool,
}

impl Want {
    pub fn from_config(cfg: &Config, src: &SourceConfig) -> Result<Want, ManageError> {
        let url = match src.mode {
            Mode::Push => {
                let base = cfg.server.public_url.as_deref().ok_or_else(|| {
                    ManageError::Config(format!(
                        "server.public_url is not set; the provider needs the public address of {}",
                        src.path
                    ))
                })?;
                Some(format!("{}{}", base.trim_end_matches('/'), src.path))
            }
            Mode::Sse | Mode::Poll => None,
        };
        Ok(Want {
            source: src.name.clone(),
            provider: src.provider,
            url,
            events: src.events.clone(),
            secret: src.secrets.first().cloned(),
            account_id: src.account_id.clone(),
            payload_mode: src.payload_mode.clone(),
            takeover: src.takeover,
        })
    }
}

/// A subscription as the provider reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Remote {
    pub id: String,
    pub url: Option<String>,
    pub events: Vec<String>,
    pub active: Option<bool>,
    /// Provider-specific fields worth showing (mode, account, payload mode…).
    pub extra: Map<String, Value>,
}

/// What `register` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Created,
    /// An existing subscription already matched; nothing needed changing.
    Reused,
    /// An existing subscription was brought in line with the config.
    Updated,
    /// The provider's single webhook pointed elsewhere and was replaced.
    Replaced {
        previous: String,
    },
}

impl Action {
    pub fn word(&self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Reused => "reused",
            Action::Updated => "updated",
            Action::Replaced { .. } => "replaced",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Registered {
    pub remote: Remote,
    pub action: Action,
    /// A provider-issued secret was saved in the state store this time.
    pub secret_saved: bool,
    /// Things the operator should know (drift hookd cannot fix, duplicates…).
    pub notes: Vec<String>,
}

/// What `recover` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Recovered {
    /// Deliveries asked to be sent again.
    pub replayed: Vec<String>,
    /// Deliveries looked at in total.
    pub seen: usize,
}

/// Why a management operation failed; one line, for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    Config(String),
    /// The provider's rules forbid it without an explicit opt-in.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    NotRegistered(String),
    #[error("cannot save what the provider returned: {0}")]
    Store(String),
    #[error("{0}")]
    Unexpected(String),
}

/// The management API of one source's provider.
#[derive(Debug)]
pub enum Manager {
    Linkup(linkup::Linkup),
    Linq(linq::Linq),
    LinkedApi(linkedapi::LinkedApi),
}

impl Manager {
    /// The manager for `src`, or why it has none.
    pub fn for_source(cfg: &Config, src: &SourceConfig) -> Result<Manager, ManageError> {
        Self::with_policy(cfg, src, RetryPolicy::default())
    }

    pub fn with_policy(
        cfg: &Config,
        src: &SourceConfig,
        policy: RetryPolicy,
    ) -> Result<Manager, ManageError> {
        if !src.provider.has_management_api() {
            return Err(ManageError::Unsupported(format!(
                "the {} provider has no management API; set the subscription up in the sender's own settings",
                src.provider.name()
            )));
        }
        let key = src.api_key.as_ref().ok_or_else(|| {
            ManageError::Config("api_key is not set (e.g. api_key = \"env:NAME\")".into())
        })?;
        let base = src
            .api_base
            .as_deref()
            .ok_or_else(|| ManageError::Config("api_base is not set".into()))?;
        let want = Want::from_config(cfg, src)?;
        let client = |name: &'static str, header: &'static str| {
            ApiClient::new(name, base, header, key.expose(), policy.clone())
                .map_err(ManageError::Config)
        };
        Ok(match src.provider {
            ProviderKind::Linkup => {
                Manager::Linkup(linkup::Linkup::new(client("LinkUp", "x-api-key")?, want)?)
            }
            ProviderKind::Linq => Manager::Linq(linq::Linq::new(
                client("Linq", "x-linq-integration-token")?,
                want,
            )?),
            ProviderKind::LinkedApi => Manager::LinkedApi(linkedapi::LinkedApi::new(
                client("Linked API", "linked-api-token")?,
                want,
            )),
            _ => unreachable!("has_management_api is checked above"),
        })
    }

    pub fn caps(&self) -> Caps {
        match self {
            Manager::Linkup(_) => linkup::CAPS,
            Manager::Linq(_) => linq::CAPS,
            Manager::LinkedApi(_) => linkedapi::CAPS,
        }
    }

    pub fn want(&self) -> &Want {
        match self {
            Manager::Linkup(m) => &m.want,
            Manager::Linq(m) => &m.want,
            Manager::LinkedApi(m) => &m.want,
        }
    }

    /// The provider's display name ("LinkUp", "Linq", "Linked API").
    pub fn name(&self) -> &'static str {
        match self {
            Manager::Linkup(_) => "LinkUp",
            Manager::Linq(_) => "Linq",
            Manager::LinkedApi(_) => "Linked API",
        }
    }

    /// Creates or reuses the subscription (never a duplicate) and saves
    /// what the provider returned. Holds the source's registration lock
    /// throughout, so of several hookd processes on one PostgreSQL store
    /// one registers and the others find what it saved.
    pub async fn register(&self, store: &Backend) -> Result<Registered, ManageError> {
        let lock = self.lock(store).await?;
        let out = async {
            let stored = stored(store, &self.want().source).await?;
            match self {
                Manager::Linkup(m) => m.register(store, stored.as_ref()).await,
                Manager::Linq(m) => m.register(store, stored.as_ref()).await,
                Manager::LinkedApi(m) => m.register(store, stored.as_ref()).await,
            }
        }
        .await;
        unlock(lock, out).await
    }

    /// Removes this source's subscription(s) at the provider and forgets
    /// them locally. Returns the removed ids (empty: there was none).
    pub async fn unregister(&self, store: &Backend) -> Result<Vec<String>, ManageError> {
        let lock = self.lock(store).await?;
        let out = async {
            let stored = stored(store, &self.want().source).await?;
            let stored_id = stored.as_ref().and_then(|r| r.remote_id.as_deref());
            let removed = match self {
                Manager::Linkup(m) => m.unregister(stored_id).await?,
                Manager::Linq(m) => m.unregister(stored_id).await?,
                Manager::LinkedApi(m) => m.unregister(stored_id).await?,
            };
            store
                .delete_registration(&self.want().source)
                .await
                .map_err(|e| ManageError::Store(e.to_string()))?;
            Ok(removed)
        }
        .await;
        unlock(lock, out).await
    }

    /// This source's registration lock.
    async fn lock(&self, store: &Backend) -> Result<RegistrationLock, ManageError> {
        store
            .lock_registration(&self.want().source)
            .await
            .map_err(|e| {
                ManageError::Store(format!(
                    "cannot take the registration lock of {}: {e}",
                    self.want().source
                ))
            })
    }

    /// Every subscription the provider reports for this API key (LinkUp:
    /// for the configured account).
    pub async fn list(&self) -> Result<Vec<Remote>, ManageError> {
        match self {
            Manager::Linkup(m) => m.list().await,
            Manager::Linq(m) => m.list().await,
            Manager::LinkedApi(m) => m.list().await,
        }
    }

    /// Is `r` this source's subscription?
    pub fn is_ours(&self, r: &Remote, stored_id: Option<&str>) -> bool {
        if stored_id == Some(r.id.as_str()) {
            return true;
        }
        match self {
            Manager::Linkup(m) => m.matches(r),
            Manager::Linq(m) => m.matches(r),
            Manager::LinkedApi(m) => m.matches(r),
        }
    }

    /// How `r` (ours) differs from the config; empty when it does not.
    pub fn drift(&self, r: &Remote) -> Vec<String> {
        match self {
            Manager::Linkup(m) => m.drift(r),
            Manager::Linq(m) => m.drift(r),
            Manager::LinkedApi(m) => m.drift(r),
        }
    }

    /// Pauses (`active = false`) or resumes deliveries. Returns the id.
    pub async fn set_active(&self, store: &Backend, active: bool) -> Result<String, ManageError> {
        if !self.caps().pause {
            return Err(ManageError::Unsupported(format!(
                "{} has no pause; `hookd unregister` removes the webhook (pending deliveries are dropped) and `hookd register` sets it again",
                self.name()
            )));
        }
        let r = self.find_ours(store).await?;
        match self {
            Manager::Linkup(m) => m.set_active(&r.id, active).await?,
            Manager::Linq(m) => m.set_active(&r.id, active).await?,
            Manager::LinkedApi(_) => unreachable!("no pause capability"),
        }
        Ok(r.id)
    }

    /// Asks the provider to send its own test event to our URL.
    pub async fn send_test(&self, store: &Backend) -> Result<String, ManageError> {
        match self {
            Manager::LinkedApi(m) => {
                let r = self.find_ours(store).await?;
                m.send_test().await?;
                Ok(r.id)
            }
            _ => Err(ManageError::Unsupported(format!(
                "{} has no remote test event; `hookd send-test {}` without --remote signs one locally",
                self.name(),
                self.want().source
            ))),
        }
    }

    /// Asks the provider to deliver again what failed (since `since`, µs).
    pub async fn recover(
        &self,
        store: &Backend,
        since: Option<i64>,
    ) -> Result<Recovered, ManageError> {
        match self {
            Manager::LinkedApi(m) => {
                self.find_ours(store).await?;
                m.recover(since).await
            }
            Manager::Linkup(_) => Err(ManageError::Unsupported(
                "LinkUp documents no redelivery for pushed events; hosted (sse/poll) sources backfill from its 24 h event store".into(),
            )),
            Manager::Linq(_) => Err(ManageError::Unsupported(
                "Linq v2 documents no redelivery endpoint (it retries failed deliveries by itself for about 25 minutes)".into(),
            )),
        }
    }

    /// This source's subscription at the provider, or why there is none.
    pub async fn find_ours(&self, store: &Backend) -> Result<Remote, ManageError> {
        let stored = stored(store, &self.want().source).await?;
        let stored_id = stored.as_ref().and_then(|r| r.remote_id.as_deref());
        self.list()
            .await?
            .into_iter()
            .find(|r| self.is_ours(r, stored_id))
            .ok_or_else(|| {
                ManageError::NotRegistered(format!(
                    "{} reports no subscription for this source; run `hookd register {}` first",
                    self.name(),
                    self.want().source
                ))
            })
    }
}

/// Ends a registration lock after `out`; the operation's own error wins
/// over one from unlocking (which only logs: the lock ends with its
/// connection anyway).
async fn unlock<T>(lock: RegistrationLock, out: Result<T, ManageError>) -> Result<T, ManageError> {
    if let Err(e) = lock.release().await {
        tracing::warn!("cannot release the registration lock: {e}");
    }
    out
}

/// The stored registration of `source`, if any.
pub async fn stored(store: &Backend, source: &str) -> Result<Option<Registration>, ManageError> {
    store
        .registration(source)
        .await
        .map_err(|e| ManageError::Store(e.to_string()))
}

/// Saves the remote id and (when given) a provider-issued secret. Called
/// right after the provider answered, before any other call can fail.
pub async fn persist(
    store: &Backend,
    want: &Want,
    remote: &Remote,
    secret: Option<String>,
) -> Result<(), ManageError> {
    let reg = Registration {
        source: want.source.clone(),
        provider: want.provider.name().to_string(),
        remote_id: Some(remote.id.clone()),
        secret: secret.map(String::into_bytes),
        info: json!({
            "url": remote.url,
            "events": remote.events,
            "active": remote.active,
            "extra": remote.extra,
        }),
        updated_at: timefmt::now_micros(),
    };
    store
        .save_registration(reg)
        .await
        .map_err(|e| ManageError::Store(e.to_string()))
}

/// Does the stored registration hold a provider-issued secret for `id`?
pub fn has_secret_for(stored: Option<&Registration>, id: &str) -> bool {
    stored.is_some_and(|r| r.remote_id.as_deref() == Some(id) && r.secret.is_some())
}

/// Event filters compared as sets, with the provider's default for "none".
pub fn same_events(have: &[String], want: &[String], default: &[&str]) -> bool {
    let norm = |v: &[String]| -> Vec<String> {
        let mut v: Vec<String> = if v.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            v.to_vec()
        };
        v.sort();
        v.dedup();
        v
    };
    norm(have) == norm(want)
}

/// Strings of a JSON array (missing or not an array: empty).
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields `keys` of an object that are present and not null, for
/// [`Remote::extra`].
pub(crate) fn fields(v: &Value, keys: &[&str]) -> Map<String, Value> {
    let mut extra = Map::new();
    for k in keys {
        if let Some(x) = v.get(*k).filter(|x| !x.is_null()) {
            extra.insert(k.to_string(), x.clone());
        }
    }
    extra
}

/// The id field of an object, whether the provider sends it as text or number.
pub(crate) fn id_of(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match v.get(*k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_compare_as_sets_with_a_default() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(same_events(&s(&["b", "a"]), &s(&["a", "b", "a"]), &[]));
        assert!(same_events(&s(&["all"]), &[], &["all"]));
        assert!(!same_events(&s(&["a"]), &s(&["b"]), &[]));
    }

    #[test]
    fn ids_may_be_numbers() {
        assert_eq!(id_of(&json!({"id": 123}), &["id"]).as_deref(), Some("123"));
        assert_eq!(
            id_of(
                &json!({"webhook_id": "w1", "id": ""}),
                &["id", "webhook_id"]
            )
            .as_deref(),
            Some("w1")
        );
        assert_eq!(id_of(&json!({}), &["id"]), None);
    }
}
