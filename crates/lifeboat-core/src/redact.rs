//! Keeping secrets out of output: a wrapper that never prints its content, and a URL
//! redactor that hides the password part of `scheme://user:password@host/...` and of
//! `password=` query or keyword parameters.

use std::fmt;

/// A secret value. `Debug` and `Display` print `[redacted]`; only `expose` gives it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Hide the password in a connection URL or libpq keyword string.
///
/// `postgres://app:s3cret@db/app` becomes `postgres://app:[redacted]@db/app`;
/// `host=db password=s3cret` becomes `host=db password=[redacted]`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "[redacted]");
            }
        }
    }
    redact_params(&out)
}

/// Replace the value of every `password=` parameter (query string or keyword form).
fn redact_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.to_ascii_lowercase().find("password=") {
        let value_start = pos + "password=".len();
        let boundary_ok = pos == 0 || matches!(rest.as_bytes()[pos - 1], b'?' | b'&' | b' ');
        out.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        if boundary_ok {
            let end = rest.find(['&', ' ', '#']).unwrap_or(rest.len());
            out.push_str("[redacted]");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_url_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/app"),
            "postgres://app:[redacted]@db:5432/app"
        );
        assert_eq!(
            redact_url("postgresql://app:p%40ss@db/app?sslmode=require"),
            "postgresql://app:[redacted]@db/app?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/app?user=x&password=s3cret&sslmode=disable"),
            "postgres://db/app?user=x&password=[redacted]&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db password=s3cret dbname=app"),
            "host=db password=[redacted] dbname=app"
        );
    }

    #[test]
    fn leaves_urls_without_passwords_alone() {
        for url in [
            "postgres://app@db/app",
            "/var/backups/lifeboat",
            "s3://bucket/x",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn redacted_never_prints() {
        let s = Redacted::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
