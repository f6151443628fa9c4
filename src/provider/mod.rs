//! Providers: the control plane and the samples of each webhook sender.
//!
//! [`manage`] registers, lists and removes subscriptions at providers that
//! have a management API; [`sample`] builds provider-shaped test events for
//! `hookd send-test`. Both read the validated [`crate::config::Config`].
//!
//! What a provider's events look like (its preset: scheme, extractors,
//! modes) is data in [`crate::preset`], which config validation uses; the
//! names are re-exported here. Direction: `provider` → `config` → `preset`;
//! nothing under `config` or `preset` may import this module.

pub mod manage;
pub mod sample;

pub use crate::preset::{Mode, Preset, ProviderKind, scheme_extract};
