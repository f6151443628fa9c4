//! `[[source]]`: where events come from and how they are checked. The
//! provider's preset (from [`crate::preset`]) fills what the table leaves
//! out: the delivery modes it allows, the signature scheme, the extractors,
//! type aliases and the API base. Then secrets, extractors (and the
//! `signed:` ones a scheme must sign), registration and, for SSE and poll
//! sources, the `pull` tables.
//!
//! Owns one source's validation; the rules across sources (unique names and
//! push paths) are the validator core's. It must not look at handlers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::locate::KeyPath;
use super::pull::{self, PullConfig};
use super::validate::{VResult, Validator, at, dur, is_identifier, one_of};
use crate::extract::{ExtractSpec, Extractor};
use crate::preset::{self, Mode, ProviderKind};
use crate::secret::{Secret, SecretRef};
use crate::verify::{Key, Scheme, SignatureConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterMode {
    Manual,
    Auto,
}

#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub name: String,
    pub provider: ProviderKind,
    pub mode: Mode,
    pub path: String,
    pub events: Vec<String>,
    pub scheme: Scheme,
    /// Where each configured secret came from (for `check`), in key order.
    pub secret_refs: Vec<SecretRef>,
    pub secrets: Vec<Secret>,
    /// MAC keys derived from `secrets`, same order.
    pub keys: Vec<Key>,
    pub insecure: bool,
    /// Headers never stored because they carry the secret (the `token` scheme's).
    pub redact_headers: Vec<::http::HeaderName>,
    pub tolerance: Duration,
    pub extract: ExtractSpec,
    pub type_aliases: BTreeMap<String, String>,
    pub api_key: Option<Secret>,
    pub api_base: Option<String>,
    pub register: RegisterMode,
    pub account_id: Option<String>,
    pub payload_mode: Option<String>,
    pub takeover: bool,
    pub poll_interval: Duration,
    pub idle_timeout: Duration,
    /// Where and how an SSE or poll source reads (None for push).
    pub pull: Option<PullConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) name: String,
    pub(super) provider: String,
    pub(super) mode: Option<String>,
    pub(super) path: Option<String>,
    pub(super) events: Option<Vec<String>>,
    pub(super) secret: Option<String>,
    pub(super) secrets: Option<Vec<String>>,
    pub(super) api_key: Option<String>,
    pub(super) api_base: Option<String>,
    pub(super) register: Option<String>,
    pub(super) tolerance: Option<String>,
    pub(super) signature: Option<SignatureConfig>,
    pub(super) extract: Option<RawExtract>,
    pub(super) insecure: Option<bool>,
    pub(super) type_aliases: Option<BTreeMap<String, String>>,
    pub(super) account_id: Option<String>,
    pub(super) payload_mode: Option<String>,
    pub(super) takeover: Option<bool>,
    pub(super) poll_interval: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) webhook_id: Option<String>,
    pub(super) sse: Option<pull::RawSse>,
    pub(super) poll: Option<pull::RawPoll>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExtract {
    pub(super) id: Option<Vec<String>>,
    #[serde(rename = "type")]
    pub(super) ty: Option<Vec<String>>,
    pub(super) time: Option<Vec<String>>,
}

/// `header:webhook-id` on a Standard Webhooks source means the message id
/// whichever spelling the sender uses (`svix-id` too), and is read from the
/// verified request; the same for the timestamp.
fn signed_spelling(list: Vec<Extractor>, scheme: &Scheme) -> Vec<Extractor> {
    list.into_iter()
        .map(|e| match &e {
            Extractor::Header(h) => scheme.signed_header(h).map_or(e, Extractor::Signed),
            _ => e,
        })
        .collect()
}

/// Every `signed:` extractor names something the source's scheme signs.
fn signed_by(spec: &ExtractSpec, scheme: &Scheme, p: &KeyPath) -> VResult<()> {
    let lists = [("id", &spec.id), ("type", &spec.ty), ("time", &spec.time)];
    for (key, list) in lists {
        for (i, e) in list.iter().enumerate() {
            if let Extractor::Signed(f) = e
                && !scheme.signs(*f)
            {
                return Err((
                    p.key(key).index(i),
                    format!(
                        "scheme {:?} signs no {}; signed:id needs standard-webhooks or hmac with id_header, \
                         signed:timestamp a scheme that signs a timestamp",
                        scheme.name(),
                        f.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Validator {
    pub(super) fn source(&mut self, r: RawSource, p: &KeyPath) -> VResult<SourceConfig> {
        if !is_identifier(&r.name) {
            return Err((
                p.key("name"),
                format!("{:?} must be 1-64 letters, digits, '_', '-' or '.'", r.name),
            ));
        }
        let provider = ProviderKind::parse(&r.provider).ok_or_else(|| {
            let names: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.name()).collect();
            (
                p.key("provider"),
                format!("{:?} is not one of: {}", r.provider, names.join(", ")),
            )
        })?;
        let preset = provider.preset();
        let mode = match r.mode.as_deref() {
            None => Mode::Push,
            Some(m) => Mode::parse(m).ok_or_else(|| {
                (
                    p.key("mode"),
                    format!("{m:?} is not one of: push, sse, poll"),
                )
            })?,
        };
        if !preset.modes.contains(&mode) {
            let names: Vec<&str> = preset.modes.iter().map(|m| m.name()).collect();
            return Err((
                p.key("mode"),
                format!(
                    "provider {} supports mode {} only",
                    provider.name(),
                    names.join(", ")
                ),
            ));
        }
        let path = r.path.unwrap_or_else(|| format!("/hooks/{}", r.name));
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err((
                p.key("path"),
                format!("{path:?} must be a URL path starting with '/'"),
            ));
        }
        let sig_cfg = match (r.signature, preset.signature) {
            (Some(s), _) => s,
            // Pulled events come over our own authenticated request and
            // carry no signature: the preset's scheme is for pushes.
            (None, Some(preset)) if mode == Mode::Push => preset,
            (None, _) if mode != Mode::Push => SignatureConfig {
                scheme: "none".into(),
                ..Default::default()
            },
            (None, _) => {
                return Err((p.key("signature"), "a generic push source needs a signature table, e.g. { scheme = \"hmac\", header = \"X-Signature\" } (or { scheme = \"none\" } with insecure = true)".into()));
            }
        };
        let scheme = Scheme::from_config(&sig_cfg)
            .map_err(|e| (p.key("signature").key(e.key), e.message))?;
        let insecure = r.insecure.unwrap_or(false);
        let redact_headers = match (sig_cfg.scheme.as_str(), &sig_cfg.header) {
            ("token", Some(h)) => ::http::HeaderName::from_bytes(h.as_bytes())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        // Pull sources are authenticated by our own API call; push needs a signature.
        if scheme.name() == "none" && mode == Mode::Push && !insecure {
            return Err((p.key("signature").key("scheme"), "scheme \"none\" accepts anyone's requests; set insecure = true on the source to allow it".into()));
        }
        let secret_list: Vec<(KeyPath, String)> = match (r.secret, r.secrets) {
            (Some(_), Some(_)) => {
                return Err((
                    p.key("secrets"),
                    "set either secret or secrets, not both".into(),
                ));
            }
            (Some(s), None) => vec![(p.key("secret"), s)],
            (None, Some(v)) => v
                .into_iter()
                .enumerate()
                .map(|(i, s)| (p.key("secrets").index(i), s))
                .collect(),
            (None, None) => Vec::new(),
        };
        let (mut secret_refs, mut secrets, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for (kp, s) in secret_list {
            let (r, v) = self.secret(&kp, &s)?;
            keys.push(at(&kp, scheme.derive_key(v.expose()))?);
            secret_refs.push(r);
            secrets.push(v);
        }
        // A provider that issues its own secret (LinkUp, Linked API) may have
        // none in the config: `hookd register` persists it in the state directory.
        let issues_secret = provider.issues_secret();
        if scheme.requires_secret() && secrets.is_empty() && mode == Mode::Push && !issues_secret {
            return Err((
                p.key("secret"),
                format!(
                    "scheme {:?} needs a secret (secret = \"env:NAME\")",
                    scheme.name()
                ),
            ));
        }
        let mut preset_extract = match provider {
            ProviderKind::Generic => preset::scheme_extract(&scheme),
            _ => preset.extract.clone(),
        };
        if provider == ProviderKind::Linkup && mode != Mode::Push {
            preset_extract.id = preset::extractors(preset::linkup_hosted::PULL_ID);
        }
        let extract = self.extract(
            r.extract,
            &p.key("extract"),
            &preset_extract,
            provider,
            &scheme,
        )?;
        let mut type_aliases: BTreeMap<String, String> = preset
            .aliases
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        type_aliases.extend(r.type_aliases.unwrap_or_default());
        let api_key = match r.api_key {
            Some(k) => Some(self.secret(&p.key("api_key"), &k)?.1),
            None => None,
        };
        if let Some(b) = &r.api_base
            && !(b.starts_with("https://") || b.starts_with("http://"))
        {
            return Err((p.key("api_base"), format!("{b:?} must be an http(s) URL")));
        }
        let events = r.events.unwrap_or_default();
        if let Some(pm) = &r.payload_mode
            && !["fat", "thin"].contains(&pm.as_str())
        {
            return Err((
                p.key("payload_mode"),
                format!("{pm:?} is not one of: fat, thin"),
            ));
        }
        let api_base = r
            .api_base
            .or(preset.api_base.map(str::to_string))
            .map(|b| b.trim_end_matches('/').to_string());
        let pull = pull::validate(
            pull::SourceSide {
                provider,
                mode,
                api_base: api_base.as_deref(),
                api_key: api_key.as_ref(),
                webhook_id: r.webhook_id,
                poll_interval: r.poll_interval.as_deref(),
                idle_timeout: r.idle_timeout.as_deref(),
            },
            r.sse,
            r.poll,
            p,
        )?;
        let register = one_of(
            &p.key("register"),
            r.register.as_deref(),
            RegisterMode::Manual,
            &[
                ("manual", RegisterMode::Manual),
                ("auto", RegisterMode::Auto),
            ],
        )?;
        if register == RegisterMode::Auto && !provider.has_management_api() {
            return Err((
                p.key("register"),
                "\"auto\" needs a provider with a management API (linkup, linq, linkedapi)".into(),
            ));
        }
        Ok(SourceConfig {
            name: r.name,
            provider,
            mode,
            path,
            events,
            scheme,
            secret_refs,
            secrets,
            keys,
            insecure,
            redact_headers,
            tolerance: dur(
                &p.key("tolerance"),
                r.tolerance.as_deref(),
                Duration::from_secs(300),
            )?,
            extract,
            type_aliases,
            api_key,
            api_base,
            register,
            account_id: r.account_id,
            payload_mode: r.payload_mode,
            takeover: r.takeover.unwrap_or(false),
            poll_interval: match pull.as_ref().and_then(|c| c.poll.as_ref()) {
                Some(poll) => poll.interval,
                None => dur(
                    &p.key("poll_interval"),
                    r.poll_interval.as_deref(),
                    Duration::from_secs(10),
                )?,
            },
            idle_timeout: match pull.as_ref().and_then(|c| c.sse.as_ref()) {
                Some(sse) => sse.idle_timeout,
                None => dur(
                    &p.key("idle_timeout"),
                    r.idle_timeout.as_deref(),
                    Duration::from_secs(75),
                )?,
            },
            pull,
        })
    }

    pub(super) fn extract(
        &mut self,
        r: Option<RawExtract>,
        p: &KeyPath,
        preset: &ExtractSpec,
        provider: ProviderKind,
        scheme: &Scheme,
    ) -> VResult<ExtractSpec> {
        let r = r.unwrap_or_default();
        let list =
            |key: &str, v: Option<Vec<String>>, default: &[Extractor]| -> VResult<Vec<Extractor>> {
                match v {
                    None => Ok(default.to_vec()),
                    Some(v) => v
                        .iter()
                        .enumerate()
                        .map(|(i, s)| at(&p.key(key).index(i), Extractor::parse(s)))
                        .collect(),
                }
            };
        let type_suffix = match r.ty {
            None => preset.type_suffix.clone(),
            Some(_) => None,
        };
        let spec = ExtractSpec {
            id: signed_spelling(list("id", r.id, &preset.id)?, scheme),
            ty: list("type", r.ty, &preset.ty)?,
            time: signed_spelling(list("time", r.time, &preset.time)?, scheme),
            type_suffix,
        };
        signed_by(&spec, scheme, p)?;
        let generic = provider == ProviderKind::Generic;
        if spec.id.is_empty() {
            return Err((
                p.key("id"),
                if generic {
                    "a generic source must say where the event id is, e.g. id = [\"json:/id\", \"hash\"]".into()
                } else {
                    "needs at least one extractor".into()
                },
            ));
        }
        if spec.ty.is_empty() {
            return Err((
                p.key("type"),
                if generic {
                    "a generic source must say where the event type is, e.g. type = [\"json:/type\"]".into()
                } else {
                    "needs at least one extractor".into()
                },
            ));
        }
        if let Some(i) = spec
            .ty
            .iter()
            .position(|e| matches!(e, Extractor::Hash | Extractor::HashOf(_) | Extractor::Now))
        {
            return Err((
                p.key("type").index(i),
                "hash and now cannot give an event type".into(),
            ));
        }
        if let Some(i) = spec.id.iter().position(|e| matches!(e, Extractor::Now)) {
            return Err((
                p.key("id").index(i),
                "now cannot give an event id; use hash".into(),
            ));
        }
        if let Some(i) = spec
            .time
            .iter()
            .position(|e| matches!(e, Extractor::Hash | Extractor::HashOf(_)))
        {
            return Err((
                p.key("time").index(i),
                "hash cannot give a time; use now".into(),
            ));
        }
        Ok(spec)
    }
}
