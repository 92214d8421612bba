//! Human durations as operators write them in objectives and retention: `15m`, `2h`,
//! `1h30m`, `7d`, `2w`. Deliberately small: no months or years (their length varies).

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a sum of `<number><unit>` parts, units `s`, `m`, `h`, `d`, `w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration `{input}`: {reason} (write e.g. `15m`, `2h`, `1h30m`, `7d`)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl HumanDuration {
    pub fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            input: s.to_string(),
            reason,
        };
        let text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        // In milliseconds: `ms` is a unit of its own (probe latencies and timeouts).
        let mut total: u64 = 0;
        let mut number = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit: u64 = match c {
                'm' if chars.peek() == Some(&'s') => {
                    chars.next();
                    1
                }
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 7 * 86_400_000,
                _ => return Err(err("unknown unit")),
            };
            if number.is_empty() {
                return Err(err("a unit without a number"));
            }
            let n: u64 = number.parse().map_err(|_| err("number too large"))?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("number too large"))?;
            number.clear();
        }
        if !number.is_empty() {
            return Err(err("a number without a unit"));
        }
        Ok(Self(Duration::from_millis(total)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        let millis = self.0.subsec_millis();
        if secs == 0 && millis == 0 {
            return write!(f, "0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        if millis > 0 {
            write!(f, "{millis}ms")?;
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// "3 h ago"-style rendering of an age in seconds, for tables.
pub fn format_age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sums_of_parts() {
        assert_eq!("15m".parse::<HumanDuration>().unwrap().as_secs(), 900);
        assert_eq!("1h30m".parse::<HumanDuration>().unwrap().as_secs(), 5400);
        assert_eq!("2d".parse::<HumanDuration>().unwrap().as_secs(), 172_800);
        assert_eq!("1w".parse::<HumanDuration>().unwrap().as_secs(), 604_800);
        let ms: HumanDuration = "1s250ms".parse().unwrap();
        assert_eq!(ms.as_duration(), Duration::from_millis(1250));
        assert_eq!(ms.to_string(), "1s250ms");
        assert_eq!("2m".parse::<HumanDuration>().unwrap().as_secs(), 120);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "15", "m", "3x", "1.5h", "99999999999999999999s"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn displays_round_trip() {
        for s in ["15m", "2h", "1d2h3m4s", "7d", "200ms"] {
            let d: HumanDuration = s.parse().unwrap();
            assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
        }
        assert_eq!(format_age(7200), "2 h");
    }
}
