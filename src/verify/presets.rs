//! LinkUp and Linked API: fixed-parameter HMAC schemes, expressed as
//! presets of the generic template scheme so they share its parsing and
//! comparison code. Both MAC `{timestamp}.{body}` with the secret as text
//! (Linked API's 64-hex-char secret is text, never hex-decoded).

use http::HeaderName;

use super::hmac_template::{HmacScheme, Segment, Template};
use super::mac::{Algo, Encoding};

fn timestamp_dot_body() -> Template {
    Template(vec![
        Segment::Timestamp,
        Segment::Literal(b".".to_vec()),
        Segment::Body,
    ])
}

/// `X-Linkup-Signature: v1=<hex>`, `X-Linkup-Timestamp: <unix seconds>`.
pub(super) fn linkup() -> HmacScheme {
    HmacScheme {
        algo: Algo::Sha256,
        header: HeaderName::from_static("x-linkup-signature"),
        prefix: Some("v1=".to_string()),
        encoding: Encoding::Hex,
        signed: timestamp_dot_body(),
        timestamp_header: Some(HeaderName::from_static("x-linkup-timestamp")),
        id_header: None,
    }
}

/// `linked-api-signature: <64 hex>`, `linked-api-signature-timestamp`.
pub(super) fn linkedapi() -> HmacScheme {
    HmacScheme {
        algo: Algo::Sha256,
        header: HeaderName::from_static("linked-api-signature"),
        prefix: None,
        encoding: Encoding::Hex,
        signed: timestamp_dot_body(),
        timestamp_header: Some(HeaderName::from_static("linked-api-signature-timestamp")),
        id_header: None,
    }
}
