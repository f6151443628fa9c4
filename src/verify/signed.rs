//! What a signature covers besides the body (a message id, a timestamp),
//! read back from a request that `Scheme::verify` accepted.
//!
//! Extraction uses these (`signed:id`, `signed:timestamp`) so that a dedup
//! key or a time comes from the very header the MAC covered: under Standard
//! Webhooks that is `webhook-id` or `svix-id`, whichever spelling the sender
//! used, and never an extra, unsigned header someone added to a replay.

use http::{HeaderMap, HeaderName};

use super::{Scheme, headers, presets, standard_webhooks, stripe};

/// A signed value other than the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signed {
    Id,
    Timestamp,
}

impl Signed {
    pub fn name(self) -> &'static str {
        match self {
            Signed::Id => "id",
            Signed::Timestamp => "timestamp",
        }
    }

    pub fn parse(s: &str) -> Option<Signed> {
        match s {
            "id" => Some(Signed::Id),
            "timestamp" => Some(Signed::Timestamp),
            _ => None,
        }
    }
}

impl Scheme {
    /// Whether this scheme's signature covers `field`.
    pub fn signs(&self, field: Signed) -> bool {
        match (self, field) {
            (Scheme::StandardWebhooks, _) => true,
            (Scheme::Hmac(h), Signed::Id) => h.id_header.is_some(),
            (Scheme::Hmac(h), Signed::Timestamp) => h.timestamp_header.is_some(),
            (Scheme::Stripe { .. } | Scheme::Linkup | Scheme::LinkedApi, Signed::Timestamp) => true,
            _ => false,
        }
    }

    /// The signed `field` of a request this scheme verified; None when the
    /// scheme does not sign it (or the request does not carry it, which
    /// verification would have refused).
    pub fn signed_value<'a>(&self, field: Signed, h: &'a HeaderMap) -> Option<&'a [u8]> {
        let one = |name: &HeaderName| headers::single(h, name).ok();
        match (self, field) {
            (Scheme::StandardWebhooks, Signed::Id) => one(&standard_webhooks::names_for(h).id),
            (Scheme::StandardWebhooks, Signed::Timestamp) => {
                one(&standard_webhooks::names_for(h).timestamp)
            }
            (Scheme::Hmac(s), Signed::Id) => one(s.id_header.as_ref()?),
            (Scheme::Hmac(s), Signed::Timestamp) => one(s.timestamp_header.as_ref()?),
            (Scheme::Linkup, Signed::Timestamp) => {
                one(presets::linkup().timestamp_header.as_ref()?)
            }
            (Scheme::LinkedApi, Signed::Timestamp) => {
                one(presets::linkedapi().timestamp_header.as_ref()?)
            }
            (Scheme::Stripe { header }, Signed::Timestamp) => stripe::signed_timestamp(header, h),
            _ => None,
        }
    }

    /// For a header this scheme verifies under two spellings (Standard
    /// Webhooks' `webhook-*` and `svix-*`), the signed value it stands for:
    /// `header:webhook-id` then means "the message id, whichever spelling".
    pub fn signed_header(&self, name: &HeaderName) -> Option<Signed> {
        match self {
            Scheme::StandardWebhooks => standard_webhooks::field_of(name),
            _ => None,
        }
    }
}
