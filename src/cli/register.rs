//! `hookd register [SOURCE…]`: create or reuse the subscription at each
//! source's provider (never a duplicate) and save what the provider
//! returns once. With no SOURCE: every source with a management API.

use std::process::ExitCode;

use clap::Args;

use super::manage::{each_with_store, pick};
use crate::config::Config;
use crate::provider::manage::Registered;
use crate::store::Backend;

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Sources to register (default: every linkup, linq and linkedapi source)
    pub sources: Vec<String>,
}

pub fn register(cfg: &Config, a: RegisterArgs) -> anyhow::Result<ExitCode> {
    let sources = pick(cfg, &a.sources, |_| true)?;
    each_with_store(cfg, &sources, |m, store| async move {
        let r = m.register(&store).await?;
        let kept_in = match store {
            Backend::Sqlite(_) => "the state directory",
            Backend::Postgres(_) => "the PostgreSQL store",
        };
        Ok(describe(m.name(), &r, kept_in))
    })
}

/// `created LinkUp subscription 6789… for https://…/hooks/lu (events: all)`.
/// `kept_in` says where a saved secret went.
fn describe(provider: &str, r: &Registered, kept_in: &str) -> Vec<String> {
    let target = r
        .remote
        .url
        .as_deref()
        .unwrap_or("hosted delivery (sse/poll)");
    let events = if r.remote.events.is_empty() {
        String::new()
    } else {
        format!(" (events: {})", r.remote.events.join(", "))
    };
    let mut line = format!(
        "{} {provider} subscription {} for {target}{events}",
        r.action.word(),
        r.remote.id
    );
    if let crate::provider::manage::Action::Replaced { previous } = &r.action {
        line += &format!("; it pointed at {previous} before");
    }
    if r.secret_saved {
        line += &format!("; signing secret saved in {kept_in}");
    }
    let mut out = vec![line];
    out.extend(r.notes.iter().map(|n| format!("note: {n}")));
    out
}
