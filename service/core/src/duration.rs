//! Durations as people write them (`90s`, `5m`, `7d`, `1h 30m`): the one
//! parser for config files, flags and the CLI, and the serde adapters that
//! let typed config structs read them directly (no field-by-field copies
//! between a "file" struct and the real one, which is how fields get lost).

use std::time::Duration;

/// One hour, ms: the unit the decision core's settings are kept in.
pub const HOUR_MS: i64 = 3_600_000;
/// One day, ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Parses a duration like `5m`, `90s`, `7d` or `1h 30m`.
pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 90s, 5m, 7d"))
}

/// Writes a duration the way [`parse`] reads it.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde adapter: a [`Duration`] as a string like `"5m"`.
pub mod text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads `"5m"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s).map_err(serde::de::Error::custom)
    }

    /// Writes `"5m"`.
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*v))
    }
}

/// Serde adapter: an optional [`Duration`] as a string like `"5m"` (a
/// missing key is `None` with `#[serde(default)]`).
pub mod text_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Reads `"5m"` as `Some`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s).map(Some).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: milliseconds held as an integer, written as `"5m"`.
pub mod millis {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads `"5m"` as 300000.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        let v = super::parse(&s).map_err(serde::de::Error::custom)?;
        i64::try_from(v.as_millis()).map_err(|_| serde::de::Error::custom(format!("{s:?} is too long")))
    }

    /// Writes 300000 as `"5m"`.
    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(std::time::Duration::from_millis((*v).max(0) as u64)))
    }
}

/// Serde adapter: milliseconds held as a float, written as `"5s"`.
pub mod millis_f64 {
    use serde::{Deserializer, Serializer};

    /// Reads `"5s"` as 5000.0.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        super::millis::deserialize(d).map(|v| v as f64)
    }

    /// Writes 5000.0 as `"5s"`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        super::millis::serialize(&(v.max(0.0).round() as i64), s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        for s in ["90s", "5m", "7days", "1h 30m", "250ms"] {
            let d = parse(s).unwrap();
            assert_eq!(parse(&format(d)).unwrap(), d, "{s}");
        }
        assert!(parse("soon").unwrap_err().contains("not a duration"));
    }
}
