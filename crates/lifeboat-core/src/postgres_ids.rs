//! PostgreSQL's positions and names as types: a WAL position ([`Lsn`]) and a cluster's
//! system identifier ([`SystemId`]). Each is read once, where it comes in (a server's
//! answer, a manifest); a value that is not one is an error there, never a 0 or an empty
//! string that quietly skips a check later.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A WAL position, written `X/Y` (two hexadecimal halves) as PostgreSQL writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let half = |h: &str| {
            (!h.is_empty() && h.len() <= 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(h, 16).ok())
                .flatten()
        };
        s.trim()
            .split_once('/')
            .and_then(|(hi, lo)| Some(Self((half(hi)? << 32) | half(lo)?)))
            .ok_or_else(|| format!("`{s}` is not an LSN (write it like `0/3000100`)"))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A cluster's system identifier (`pg_control_system()`), written in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemId(pub u64);

impl FromStr for SystemId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.trim();
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
            .map(Self)
            .ok_or_else(|| format!("`{s}` is not a system identifier (a decimal number)"))
    }
}

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Both are strings in manifests (a system identifier does not fit a JSON number safely).
macro_rules! as_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

as_string!(Lsn);
as_string!(SystemId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lsn_reads_and_writes_as_postgresql_does() {
        for (text, value) in [
            ("0/3000100", 0x3000100),
            ("1/3F000028", 0x1_3F00_0028),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("0/0", 0),
        ] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn, Lsn(value));
            assert_eq!(lsn.to_string(), text);
        }
        assert!(Lsn(0x2_0000_0000) > "1/FFFFFFFF".parse().unwrap());
        for bad in [
            "",
            "nonsense",
            "0/",
            "/1",
            "1/2/3",
            "0/G",
            "100000000/0",
            "0x1/2",
        ] {
            let e = bad.parse::<Lsn>().unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn a_system_identifier_is_a_decimal_number() {
        let id: SystemId = "7716090735309762978".parse().unwrap();
        assert_eq!(id, SystemId(7_716_090_735_309_762_978));
        assert_eq!(id.to_string(), "7716090735309762978");
        for bad in [
            "",
            "77160907353097629x",
            "-1",
            "0x12",
            "+5",
            "99999999999999999999",
        ] {
            assert!(
                bad.parse::<SystemId>()
                    .unwrap_err()
                    .contains(&format!("`{bad}`"))
            );
        }
    }

    /// Manifests written before these types keep reading the same; a garbled value in one
    /// is an error when the manifest is read.
    #[test]
    fn in_json_both_are_strings_as_before() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct M {
            lsn: Lsn,
            id: SystemId,
        }
        let old = r#"{"lsn":"0/2000028","id":"7716090735309762978"}"#;
        let m: M = serde_json::from_str(old).unwrap();
        assert_eq!(m.lsn, Lsn(0x2000028));
        assert_eq!(serde_json::to_string(&m).unwrap(), old);
        let e = serde_json::from_str::<M>(r#"{"lsn":"","id":"1"}"#).unwrap_err();
        assert!(e.to_string().contains("is not an LSN"), "{e}");
        let e = serde_json::from_str::<M>(r#"{"lsn":"0/1","id":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("is not a system identifier"), "{e}");
    }
}
