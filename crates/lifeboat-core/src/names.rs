//! Names that were strings: a snapshot's id and a target's name. Each derefs to `str`, so
//! they read like the strings they replaced, but one cannot be passed where the other is
//! meant.

use std::{fmt, ops::Deref};

use serde::{Deserialize, Serialize};

macro_rules! name {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(text: impl Into<String>) -> Self {
                Self(text.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                Self(text)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self(text.to_string())
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

name! {
    /// A snapshot's id: restic's 64 hex digits.
    SnapshotId
}

name! {
    /// A target's name: its `[targets.NAME]` key, its snapshots' `target=` tag and the
    /// first component of their paths.
    TargetName
}

impl SnapshotId {
    /// The first 8 digits, as lists show it.
    pub fn short(&self) -> &str {
        &self.0[..8.min(self.0.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_and_serialize_like_the_strings_they_replaced() {
        let id = SnapshotId::new("0123456789abcdef");
        assert_eq!(id.short(), "01234567");
        assert_eq!(SnapshotId::new("abc").short(), "abc");
        assert!(id.starts_with("0123"));
        assert_eq!(serde_json::to_value(&id).unwrap(), "0123456789abcdef");
        let t: TargetName = serde_json::from_value(serde_json::json!("shop")).unwrap();
        assert_eq!(t, "shop");
        assert_eq!(format!("`{t}`"), "`shop`");
    }
}
