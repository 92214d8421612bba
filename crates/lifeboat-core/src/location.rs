//! Where a repository lives: a local folder or an S3-compatible bucket and prefix.
//!
//! `repository.url` is a path, or `s3://bucket/prefix`; the S3 settings (`endpoint`,
//! `region`, `path-style`, credentials) come from `[repository]` or the usual `AWS_*`
//! variables. Credentials are held in [`Redacted`]: a location prints as its URL only.

use std::{fmt, path::PathBuf};

use crate::redact::Redacted;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
}

/// A bucket and prefix on an S3-compatible server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    /// `http(s)://host:port`; `None` is AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
    pub access_key_id: Option<Redacted>,
    pub secret_access_key: Option<Redacted>,
    /// A repository in a bucket with S3 Object Lock: every object written must carry this
    /// retention (the bucket's default), and none is removed while it does.
    pub object_lock: Option<ObjectLock>,
}

/// `object-lock = { mode = "governance" | "compliance", days = 30 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ObjectLock {
    pub mode: LockMode,
    pub days: u32,
}

/// S3 Object Lock's retention modes. Governance: a user granted
/// `s3:BypassGovernanceRetention` can still shorten or remove it. Compliance: nobody can,
/// the account's root user included, until the date passes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    /// As S3 spells it (`x-amz-object-lock-mode`, the bucket's configuration).
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }

    pub fn from_s3(name: &str) -> Option<Self> {
        match name {
            "GOVERNANCE" => Some(Self::Governance),
            "COMPLIANCE" => Some(Self::Compliance),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Governance => "governance",
            Self::Compliance => "compliance",
        })
    }
}

/// The parts of an `s3://bucket/prefix` URL; `None` if `url` is not one.
pub fn parse_s3_url(url: &str) -> Option<Result<(String, String), String>> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = bucket.len() >= 3
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid {
        return Some(Err(format!(
            "`{bucket}` is not a bucket name (3 or more of a-z, 0-9, `-`, `.`)"
        )));
    }
    Some(Ok((
        bucket.to_string(),
        prefix.trim_matches('/').to_string(),
    )))
}

impl Location {
    /// The URL as the user wrote it, without secrets.
    pub fn url(&self) -> String {
        match self {
            Self::Local(p) => p.display().to_string(),
            Self::S3(s) => s.url(),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local(_))
    }
}

impl S3Location {
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The same server and credentials, another bucket and prefix (bucket targets and
    /// restores into another bucket).
    pub fn with_bucket(&self, bucket: &str, prefix: &str) -> Self {
        Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            object_lock: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://backups/team/app/").unwrap().unwrap(),
            ("backups".to_string(), "team/app".to_string())
        );
        assert_eq!(
            parse_s3_url("s3://backups").unwrap().unwrap(),
            ("backups".to_string(), String::new())
        );
        assert!(parse_s3_url("s3://B_ad/x").unwrap().is_err());
        assert!(parse_s3_url("/var/backups").is_none());
    }

    #[test]
    fn a_location_prints_no_credentials() {
        let loc = Location::S3(S3Location {
            bucket: "backups".into(),
            prefix: "app".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: Some(Redacted::new("AKIDSECRET")),
            secret_access_key: Some(Redacted::new("verysecret")),
            object_lock: None,
        });
        let shown = format!("{loc} {loc:?}");
        assert!(
            !shown.contains("AKIDSECRET") && !shown.contains("verysecret"),
            "{shown}"
        );
        assert!(shown.starts_with("s3://backups/app"));
    }
}
