//! Small helpers of the local runner: ids, timestamps, and JSON numbers as the KFP backend writes them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Number, Value};

/// A random UUID (version 4), from the standard library's randomly seeded hasher.
pub(crate) fn uuid4() -> String {
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// `time` as RFC 3339 in UTC with millisecond precision, e.g. `2026-11-28T15:04:05.123Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// `now` as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Largest integer a double represents exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// JSON as the KFP backend serialises `google.protobuf.Value`s (Go protojson):
/// numbers that are whole are written as integers (`2`, not `2.0`), at any depth.
pub(crate) fn protojson(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::Number(whole_as_int(n)),
        Value::Array(items) => Value::Array(items.iter().map(protojson).collect()),
        Value::Object(map) => Value::Object(protojson_map(map)),
        other => other.clone(),
    }
}

/// [`protojson`] for every value of a map.
pub(crate) fn protojson_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter().map(|(k, v)| (k.clone(), protojson(v))).collect()
}

fn whole_as_int(n: &Number) -> Number {
    if n.is_i64() || n.is_u64() {
        return n.clone();
    }
    match n.as_f64() {
        // The range check makes the conversion exact.
        #[allow(clippy::cast_possible_truncation)]
        Some(f) if f.fract() == 0.0 && f.abs() <= MAX_EXACT => Number::from(f as i64),
        _ => n.clone(),
    }
}

/// The last `n` lines of a text.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_uuid4_and_distinct() {
        let a = uuid4();
        let b = uuid4();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + std::time::Duration::from_millis(1_795_878_245_123)),
            "2026-11-28T15:04:05.123Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn whole_numbers_become_integers_at_any_depth() {
        let v = json!({"a": 2.0, "b": [1.0, 2.5, {"c": 3.0}], "d": "4.0", "e": 1e300});
        assert_eq!(protojson(&v), json!({"a": 2, "b": [1, 2.5, {"c": 3}], "d": "4.0", "e": 1e300}));
    }
}
