//! Moments as people and PostgreSQL write them, and as manifests store them.

use jiff::Timestamp;

/// A moment: RFC 3339 (`2026-11-22T10:01:00Z`, `…+02:00`), or PostgreSQL's `now()::text`
/// (`2026-11-22 10:01:00.123456+00`), with or without fractional seconds.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse::<jiff::Timestamp>()
        .or_else(|_| {
            jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S%.f%#z", text.trim())
                .and_then(|t| t.to_timestamp())
        })
        .map_err(|_| format!("cannot read `{text}` as a time"))
}

/// Serde for a manifest's moments (`#[serde(with = "crate::time::moment")]` on an
/// `Option<Timestamp>`): written in RFC 3339 (`2026-11-22T10:01:00Z`), read in RFC 3339 or
/// PostgreSQL's spelling (manifests before this type held the server's text); `""` is none.
pub mod moment {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.map(|t| t.to_string()).unwrap_or_default())
    }

    /// A spelling that cannot be read (an old manifest holding a server's `now()::text`
    /// under a non-ISO `DateStyle`) is none rather than an unreadable manifest: the moment
    /// is lost, the snapshot is not.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        let text = String::deserialize(d)?;
        Ok(super::parse_time(&text).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3339_and_postgres_spellings_are_one_moment() {
        let want: jiff::Timestamp = "2026-11-22T10:01:00Z".parse().unwrap();
        for text in [
            "2026-11-22T10:01:00Z",
            "2026-11-22T12:01:00+02:00",
            "2026-11-22 10:01:00+00",
            "2026-11-22 11:01:00+01",
            "2026-11-22 10:01:00.000000+00",
            "2026-11-22 10:01:00+00:00",
        ] {
            assert_eq!(parse_time(text), Ok(want), "{text}");
        }
        let frac = parse_time("2026-11-22 10:01:00.123456+00").unwrap();
        assert_eq!(frac.subsec_microsecond(), 123_456);
    }

    #[test]
    fn what_is_not_a_moment_is_named() {
        for text in [
            "",
            "yesterday",
            "2026-11-22",
            "2026-11-22 10:01:00",
            "10:01",
        ] {
            assert_eq!(
                parse_time(text),
                Err(format!("cannot read `{text}` as a time")),
                "{text}"
            );
        }
    }
}
