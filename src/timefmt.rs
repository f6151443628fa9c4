//! Time as hookd stores and shows it.
//!
//! Stored times are unix microseconds (`i64`); shown times are RFC 3339 in
//! UTC. Providers write times in many shapes (RFC 3339, `2025-05-21 15:30:00
//! -0600`, zone-less ISO, unix seconds or milliseconds), so parsing is
//! lenient; CLI filters accept RFC 3339 or a duration meaning "that long ago".

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Now, as unix microseconds.
pub fn now_micros() -> i64 {
    micros_of(OffsetDateTime::now_utc())
}

/// Whole microseconds, rounded down (also before 1970).
pub fn micros_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos().div_euclid(1_000) as i64
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-23T10:00:00.123456Z`.
pub fn format_micros(us: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    t.format(&fmt).unwrap_or_else(|_| us.to_string())
}

/// Short form for tables: `2026-11-23 10:00:00`.
pub fn format_short(us: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.format(&fmt).unwrap_or_else(|_| us.to_string())
}

/// Parses a provider timestamp: RFC 3339, `YYYY-MM-DD HH:MM:SS ±HHMM`, zone-less
/// ISO (read as UTC), or unix seconds / milliseconds as digits. Only years
/// 0000–9999 (UTC) count: what hookd stores it must be able to show and
/// read back.
pub fn parse_lenient(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return parse_unix(s.parse::<i64>().ok()?);
    }
    shown_year(parse_date(s)?)
}

fn parse_date(s: &str) -> Option<i64> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(micros_of(t));
    }
    let with_offset = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    if let Ok(t) = OffsetDateTime::parse(s, &with_offset) {
        return Some(micros_of(t));
    }
    let naive = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    ];
    naive
        .iter()
        .find_map(|f| PrimitiveDateTime::parse(s, f).ok())
        .map(|t| micros_of(t.assume_offset(UtcOffset::UTC)))
}

/// Unix seconds, or milliseconds when the number is too large to be seconds
/// of any plausible date (after year 5138); `None` outside years 0000–9999.
pub fn parse_unix(n: i64) -> Option<i64> {
    let us = if n.unsigned_abs() >= 100_000_000_000 {
        n.checked_mul(1_000)
    } else {
        n.checked_mul(1_000_000)
    }?;
    shown_year(us)
}

/// `us` if its UTC year is 0000–9999, the years `format_micros` writes as
/// RFC 3339 (a signed or five-digit year would not parse back).
fn shown_year(us: i64) -> Option<i64> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()?;
    (0..=9999).contains(&t.year()).then_some(us)
}

/// A CLI time bound: RFC 3339, or a duration such as `2h` meaning "2h ago".
pub fn parse_bound(s: &str, now_us: i64) -> Result<i64, String> {
    if let Ok(t) = OffsetDateTime::parse(s.trim(), &Rfc3339) {
        return Ok(micros_of(t));
    }
    let d = humantime::parse_duration(s.trim())
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a duration such as \"2h\""))?;
    Ok(now_us - d.as_micros().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_747_863_000_000_000; // 2025-05-21T21:30:00Z

    #[test]
    fn lenient_forms() {
        assert_eq!(parse_lenient("2025-05-21T21:30:00Z"), Some(T));
        assert_eq!(parse_lenient("2025-05-21T23:30:00+02:00"), Some(T));
        assert_eq!(parse_lenient("2025-05-21 15:30:00 -0600"), Some(T));
        assert_eq!(parse_lenient("2025-05-21T21:30:00.000000"), Some(T));
        assert_eq!(parse_lenient("2025-05-21 21:30:00"), Some(T));
        assert_eq!(parse_lenient("1747863000"), Some(T));
        assert_eq!(parse_lenient("1747863000000"), Some(T));
        assert_eq!(parse_lenient("yesterday"), None);
        assert_eq!(parse_lenient("99999999999999999999999"), None);
    }

    #[test]
    fn only_years_0000_to_9999_are_times() {
        // Found by fuzzing (timefmt): milliseconds in year 31852 were
        // accepted, stored, and shown as 1970-01-01; a signed year such as
        // -2025 parsed, but was shown in a form nothing reads back.
        assert_eq!(parse_lenient("943000930009800"), None);
        assert_eq!(parse_unix(i64::MAX / 1_000), None);
        assert_eq!(parse_unix(-99_999_999_999), None);
        assert_eq!(parse_lenient("-2025-05-21T23:30:00.725194204"), None);
        assert_eq!(parse_lenient("0000-01-01T00:00:00+01:00"), None);
        for edge in ["0000-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z"] {
            let us = parse_lenient(edge).expect(edge);
            assert_eq!(format_micros(us), edge);
        }
        let last = parse_lenient("253402300799999").expect("9999-12-31T23:59:59.999Z in ms");
        assert_eq!(format_micros(last), "9999-12-31T23:59:59.999000Z");
    }

    #[test]
    fn sub_microseconds_round_down_before_1970_too() {
        assert_eq!(parse_lenient("1969-12-31T23:59:59.9999995Z"), Some(-1));
        assert_eq!(parse_lenient("1970-01-01T00:00:00.0000005Z"), Some(0));
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_micros(T + 5), "2025-05-21T21:30:00.000005Z");
        assert_eq!(parse_lenient(&format_micros(T + 5)), Some(T + 5));
    }

    #[test]
    fn bounds() {
        assert_eq!(parse_bound("2h", T).unwrap(), T - 7_200_000_000);
        assert_eq!(parse_bound("2025-05-21T21:30:00Z", 0).unwrap(), T);
        assert!(parse_bound("later", T).is_err());
    }
}
