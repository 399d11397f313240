//! Durations and sizes as people write them in config files and options: a number in the field's
//! base unit (milliseconds, bytes), or a string with a unit (`"10s"`, `"1m 30s"`, `"150MiB"`).
//!
//! These types only *read* a value; they keep it as given, negative or huge included, so that the
//! range check stays in one place ([`millis`](super::millis) and [`MasterConfig::validate`]) and
//! its error names the field. A string that is not a duration or a size is refused while
//! deserializing, with a message that says what would be accepted.
//!
//! ```
//! use drover::MasterOptions;
//!
//! let options: MasterOptions = serde_json::from_str(
//!     r#"{"program": "sleep", "stopTimeout": "10s", "killTimeout": 2500, "maxMemoryBytes": "150MiB"}"#,
//! )?;
//! let config = options.into_config()?;
//! assert_eq!(config.timeouts.stop, std::time::Duration::from_secs(10));
//! assert_eq!(config.timeouts.kill, std::time::Duration::from_millis(2500));
//! assert_eq!(config.recycle.max_rss_bytes, Some(150 * 1024 * 1024));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`MasterConfig::validate`]: super::MasterConfig::validate

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// A duration option: milliseconds as a number (`5000`, `2.5`, even `-1`, refused later by name),
/// or a [humantime](https://docs.rs/humantime) string (`"5s"`, `"250ms"`, `"1h 30m"`).
/// Serializes as milliseconds, the unit every face documents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Millis(pub f64);

impl From<f64> for Millis {
    fn from(ms: f64) -> Millis {
        Millis(ms)
    }
}

impl From<i64> for Millis {
    fn from(ms: i64) -> Millis {
        Millis(ms as f64)
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Whole milliseconds as an integer: what a JavaScript or C reader of the options expects.
        if self.0.fract() == 0.0 && self.0.abs() < 9.0e15 {
            serializer.serialize_i64(self.0 as i64)
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
        struct MillisVisitor;
        impl Visitor<'_> for MillisVisitor {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a number of milliseconds or a duration with a unit, like "10s" or "250ms""#)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Millis, E> {
                Ok(Millis(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                Ok(Millis(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
                parse_duration(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(MillisVisitor)
    }
}

/// `"10s"` → 10,000 ms. A bare number in a string is milliseconds, as it would be unquoted.
fn parse_duration(text: &str) -> Result<Millis, String> {
    let trimmed = text.trim();
    if let Ok(ms) = trimmed.parse::<f64>() {
        return Ok(Millis(ms));
    }
    humantime::parse_duration(trimmed)
        .map(|d| Millis(d.as_secs_f64() * 1000.0))
        .map_err(|e| {
            format!(r#"{text:?} is not a duration ({e}): give milliseconds (5000) or a number with a unit: "5s", "250ms", "2m", "1h 30m""#)
        })
}

/// A size option in bytes: a number (`157286400`), or a string with a unit (`"150MB"`, `"150MiB"`,
/// `"2G"`). Units as Kubernetes writes them: `K`/`KB`, `M`/`MB`, `G`/`GB` are powers of 1000,
/// `KiB`/`Ki`, `MiB`/`Mi`, `GiB`/`Gi` powers of 1024. Serializes as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub i64);

impl From<i64> for Bytes {
    fn from(bytes: i64) -> Bytes {
        Bytes(bytes)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a whole number of bytes or a size with a unit, like "150MiB" or "2G""#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bytes, E> {
                Ok(Bytes(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Bytes, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e18 {
                    Ok(Bytes(v as i64))
                } else {
                    Err(E::custom(format!("{v} is not a whole number of bytes")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                parse_size(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(BytesVisitor)
    }
}

/// `"150MiB"` → 157,286,400. A bare whole number in a string is bytes.
fn parse_size(text: &str) -> Result<Bytes, String> {
    let trimmed = text.trim();
    if let Ok(bytes) = trimmed.parse::<i64>() {
        return Ok(Bytes(bytes));
    }
    // bytesize reads "150Mi" as an unknown unit; Kubernetes users write it.
    let spelled = match trimmed.strip_suffix('i') {
        Some(stem) if stem.ends_with(['K', 'k', 'M', 'm', 'G', 'g', 'T', 't']) => format!("{stem}iB"),
        _ => trimmed.to_owned(),
    };
    spelled
        .parse::<bytesize::ByteSize>()
        .map(|size| Bytes(i64::try_from(size.as_u64()).unwrap_or(i64::MAX)))
        .map_err(|_| {
            format!(r#"{text:?} is not a size: give bytes (157286400) or a number with a unit: "150MB", "150MiB", "2G", "512Ki""#)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(json: &str) -> Result<f64, String> {
        serde_json::from_str::<Millis>(json)
            .map(|m| m.0)
            .map_err(|e| e.to_string())
    }

    fn bytes(json: &str) -> Result<i64, String> {
        serde_json::from_str::<Bytes>(json)
            .map(|b| b.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_are_milliseconds_or_strings_with_units() {
        assert_eq!(ms("5000"), Ok(5000.0));
        assert_eq!(ms("2.5"), Ok(2.5));
        assert_eq!(ms("-5"), Ok(-5.0), "kept as given: the range check names the field");
        assert_eq!(ms(r#""10s""#), Ok(10_000.0));
        assert_eq!(ms(r#""250ms""#), Ok(250.0));
        assert_eq!(ms(r#""1m 30s""#), Ok(90_000.0));
        assert_eq!(ms(r#""1.5s""#), Ok(1_500.0));
        assert_eq!(ms(r#""750""#), Ok(750.0), "a bare number in a string is milliseconds");
        let err = ms(r#""10 parsecs""#).unwrap_err();
        assert!(err.contains(r#""10 parsecs" is not a duration"#), "{err}");
        assert!(err.contains(r#""5s""#), "says what is accepted: {err}");
        let err = ms("true").unwrap_err();
        assert!(
            err.contains("a number of milliseconds or a duration with a unit"),
            "{err}"
        );
    }

    #[test]
    fn sizes_are_bytes_or_strings_with_units() {
        assert_eq!(bytes("1024"), Ok(1024));
        assert_eq!(bytes(r#""150MB""#), Ok(150_000_000));
        assert_eq!(bytes(r#""150M""#), Ok(150_000_000));
        assert_eq!(bytes(r#""150MiB""#), Ok(150 * 1024 * 1024));
        assert_eq!(bytes(r#""150Mi""#), Ok(150 * 1024 * 1024));
        assert_eq!(bytes(r#""512Ki""#), Ok(512 * 1024));
        assert_eq!(bytes(r#""2G""#), Ok(2_000_000_000));
        assert_eq!(bytes(r#""4096""#), Ok(4096));
        assert_eq!(bytes("-1"), Ok(-1), "kept as given: the range check names the field");
        let err = bytes(r#""lots""#).unwrap_err();
        assert!(err.contains(r#""lots" is not a size"#), "{err}");
        let err = bytes("1.5").unwrap_err();
        assert!(err.contains("not a whole number of bytes"), "{err}");
    }

    #[test]
    fn both_serialize_in_the_base_unit() {
        assert_eq!(serde_json::to_string(&Millis(10_000.0)).ok().as_deref(), Some("10000"));
        assert_eq!(serde_json::to_string(&Millis(2.5)).ok().as_deref(), Some("2.5"));
        assert_eq!(serde_json::to_string(&Bytes(42)).ok().as_deref(), Some("42"));
    }
}
