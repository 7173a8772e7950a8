//! Durations (`250ms`, `30s`, `5m`, `24h`, `30d`) and sizes (`512KiB`, `10MiB`) as they are written
//! in the configuration file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration from the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("\"{s}\" has no unit; write e.g. 250ms, 30s, 5m, 24h or 30d"))?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("\"{s}\" is not a duration; write e.g. 250ms, 30s, 5m, 24h or 30d")
        })?;
        let mult_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "\"{s}\" has an unknown unit \"{unit}\"; use ms, s, m, h or d"
                ));
            }
        };
        let ms = n
            .checked_mul(mult_ms)
            .ok_or_else(|| format!("\"{s}\" is too long"))?;
        Ok(Self(Duration::from_millis(ms)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Dur {
    /// The shortest way to write it in the file: `30s`, `1h`, `250ms`.
    pub fn to_config_string(self) -> String {
        const UNITS: [(u128, &str); 4] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        let ms = self.0.as_millis();
        for (m, u) in UNITS {
            if ms > 0 && ms.is_multiple_of(m) {
                return format!("{}{u}", ms / m);
            }
        }
        if ms == 0 {
            return "0s".to_owned();
        }
        format!("{ms}ms")
    }
}

/// What the schema says a duration looks like (as [`Dur::from_str`] reads it).
pub const DURATION_PATTERN: &str = "^\\s*[0-9]+(ms|s|m|h|d)\\s*$";
/// What the schema says a size looks like (as [`ByteSize::from_str`] reads it).
pub const SIZE_PATTERN: &str = "^\\s*[0-9]+\\s*(B|KiB|MiB|GiB|KB|kB|MB|GB)?\\s*$";

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_config_string())
    }
}

impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a whole number and a unit, ms, s, m, h or d (250ms, 30s, 5m, 24h, 30d).",
            "examples": ["30s"]
        })
    }
}

/// A size in bytes from the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("\"{s}\" is not a size; write e.g. 512KiB or 10MiB"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "\"{s}\" has an unknown unit \"{other}\"; use B, KiB, MiB or GiB"
                ));
            }
        };
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| format!("\"{s}\" is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 512KiB or 10MiB")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl ByteSize {
    /// The shortest way to write it in the file: `10MiB`, `512KiB`, `100B`.
    pub fn to_config_string(self) -> String {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (m, u) in UNITS {
            if self.0 >= m && self.0.is_multiple_of(m) {
                return format!("{}{u}", self.0 / m);
            }
        }
        format!("{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_config_string())
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": SIZE_PATTERN}
            ],
            "description": "A size in bytes: a number, or a number and a unit, B, KiB, MiB, GiB, KB, MB or GB (512KiB, 10MiB).",
            "examples": ["10MiB"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!("30s".parse::<Dur>().unwrap().0, Duration::from_secs(30));
        assert_eq!("5m".parse::<Dur>().unwrap().0, Duration::from_secs(300));
        assert_eq!("24h".parse::<Dur>().unwrap().0, Duration::from_secs(86_400));
        assert_eq!(
            "30d".parse::<Dur>().unwrap().0,
            Duration::from_secs(30 * 86_400)
        );
        assert!("30".parse::<Dur>().is_err());
        assert!("3x".parse::<Dur>().is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!("512KiB".parse::<ByteSize>().unwrap().0, 512 * 1024);
        assert_eq!("10MiB".parse::<ByteSize>().unwrap().0, 10 * 1024 * 1024);
        assert!("10XB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn written_back_shortest() {
        for (text, back) in [
            ("30s", "30s"),
            ("60s", "1m"),
            ("600s", "10m"),
            ("7d", "7d"),
            ("250ms", "250ms"),
            ("1500ms", "1500ms"),
            ("0ms", "0s"),
        ] {
            assert_eq!(text.parse::<Dur>().unwrap().to_config_string(), back);
        }
        for (text, back) in [("10MiB", "10MiB"), ("1024KiB", "1MiB"), ("100", "100B")] {
            assert_eq!(text.parse::<ByteSize>().unwrap().to_config_string(), back);
        }
    }
}
