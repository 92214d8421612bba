//! S3 Object Lock: a repository whose objects nobody can delete or overwrite before a
//! date, not even with the account's own keys (compliance mode).
//!
//! How lifeboat uses it:
//! - The bucket's *default retention* gives every object written a retention date, so no
//!   write needs headers of its own (opendal sends none). `init` refuses a bucket without
//!   Object Lock and sets the default rule; before its first write, every command checks
//!   that the rule is still there and not weaker than configured ([`Locked::writable`]).
//! - Object Lock needs versioning: deleting an object only hides it (a delete marker) and
//!   overwriting adds a version; the locked versions stay until their date.
//! - `forget --prune` leaves the snapshots, packs and side-area files still under
//!   retention in place and reports them ([`Locked::may_remove`]); a later prune removes
//!   them. Lock files, key files and index files are removed as usual: their versions stay
//!   in the bucket, under retention, anyway.
//! - restic names every file but `config` by the SHA-256 of its content, so a version that
//!   was overwritten or hidden is found again among the object's versions
//!   ([`Locked::find_version`]).
//!
//! opendal has no call for the bucket's lock configuration nor for an object's retention,
//! so those few requests are signed here (SigV4, reqsign) and sent with reqwest.

use std::{
    sync::Mutex,
    time::{Duration, SystemTime},
};

use base64::Engine as _;
use lifeboat_core::{LockMode, ObjectLock, S3Location};
use md5::Digest as _;
use sha2::Digest as _;

use crate::store::{S3Problem, StoreError};

/// A bucket's Object Lock configuration, as `GetObjectLockConfiguration` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLock {
    pub enabled: bool,
    /// The default retention: mode and period in days (`Years` counted as 365 days).
    pub default: Option<(LockMode, u32)>,
}

impl BucketLock {
    /// Whether the default rule gives every new object at least `want`'s protection.
    pub fn covers(&self, want: ObjectLock) -> bool {
        self.enabled
            && self
                .default
                .is_some_and(|(mode, days)| mode >= want.mode && days >= want.days)
    }

    fn describe(&self) -> String {
        match (self.enabled, self.default) {
            (false, _) => "Object Lock is not enabled".into(),
            (true, None) => "Object Lock is enabled with no default retention".into(),
            (true, Some((mode, days))) => format!("the default retention is {mode}, {days} days"),
        }
    }
}

/// One object's retention (`x-amz-object-lock-mode`, `-retain-until-date`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    pub until: SystemTime,
}

/// Files left in place by `forget --prune` because they are still under retention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deferred {
    /// The ids of the snapshots kept.
    pub snapshot_ids: Vec<String>,
    pub snapshots: u64,
    pub packs: u64,
    pub other: u64,
    /// When the last of them may go.
    pub until: Option<SystemTime>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.snapshots + self.packs + self.other == 0
    }
}

/// The Object Lock side of an S3 store: shared by all clones of a [`crate::store::Store`].
#[derive(Debug)]
pub struct Locked {
    pub rule: ObjectLock,
    loc: S3Location,
    http: reqwest::Client,
    /// The outcome of the last check before a write, and when (see [`Self::writable`]).
    checked: Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    deferred: Mutex<Deferred>,
    /// Objects found overwritten or deleted (not by lifeboat) and read from an earlier
    /// version: for `check` to report.
    tampered: Mutex<std::collections::BTreeSet<String>>,
}

/// How long the answer of [`Locked::writable`] holds.
const RECHECK: Duration = Duration::from_secs(600);

/// Paths (relative to the repository) removed even under retention: their versions stay
/// in the bucket, and keeping them current would hold the repository locked (`locks/`),
/// keep a revoked password working (`keys/`) or leave an index naming packs that a later
/// prune removes (`index/`).
const REMOVED_UNDER_RETENTION: [&str; 4] = ["locks/", "keys/", "index/", "lifeboat/locks/"];

impl Locked {
    pub fn new(loc: &S3Location, rule: ObjectLock) -> Self {
        Self {
            rule,
            loc: loc.clone(),
            http: reqwest::Client::builder()
                .timeout(crate::store::s3_timeout())
                .build()
                .unwrap_or_default(),
            checked: Mutex::new(None),
            deferred: Mutex::new(Deferred::default()),
            tampered: Mutex::default(),
        }
    }

    /// The bucket's lock configuration; `enabled: false` when it has none.
    pub async fn bucket(&self) -> Result<BucketLock, StoreError> {
        let (status, body, _) = self.send("GET", "", "object-lock=", Vec::new()).await?;
        if status == 404 && body.contains("ObjectLockConfigurationNotFound") {
            return Ok(BucketLock {
                enabled: false,
                default: None,
            });
        }
        self.ok(status, &body, &format!("{}?object-lock", self.loc.url()))?;
        let days = tag(&body, "Days")
            .and_then(|d| d.parse::<u32>().ok())
            .or_else(|| {
                tag(&body, "Years")
                    .and_then(|y| y.parse::<u32>().ok())
                    .map(|y| y * 365)
            });
        let mode = tag(&body, "Mode").and_then(LockMode::from_s3);
        Ok(BucketLock {
            enabled: tag(&body, "ObjectLockEnabled") == Some("Enabled"),
            default: mode.zip(days),
        })
    }

    /// Make `rule` the bucket's default retention (`PutObjectLockConfiguration`).
    pub async fn set_default(&self) -> Result<(), StoreError> {
        let body = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
             <Mode>{}</Mode><Days>{}</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
            self.rule.mode.s3_name(),
            self.rule.days
        );
        let (status, text, _) = self
            .send("PUT", "", "object-lock=", body.into_bytes())
            .await?;
        self.ok(status, &text, &format!("{}?object-lock", self.loc.url()))
    }

    /// Whether lifeboat may write: the bucket's default retention must cover the rule,
    /// or new objects would be written unprotected. Asked before the first write, then
    /// again every [`RECHECK`] (`serve` runs for months; someone may change the bucket).
    pub async fn writable(&self) -> Result<(), StoreError> {
        let last = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((at, done)) = last
            && at.elapsed() < RECHECK
        {
            return done.map_err(|m| self.refused(m));
        }
        let result = match self.bucket().await {
            Ok(b) if b.covers(self.rule) => Ok(()),
            Ok(b) => Err(format!(
                "the repository wants {} retention for {} days, but in bucket `{}` {}: \
                 objects written now would not be protected",
                self.rule.mode,
                self.rule.days,
                self.loc.bucket,
                b.describe()
            )),
            // Not remembered: a transient failure is asked again by the next write.
            Err(e) => return Err(e),
        };
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), result.clone()));
        result.map_err(|m| self.refused(m))
    }

    fn refused(&self, message: String) -> StoreError {
        StoreError::S3 {
            path: format!("{}?object-lock", self.loc.url()),
            message,
            permanent: true,
            problem: S3Problem::ObjectLock,
        }
    }

    /// The retention of the object at `key` (below the bucket), `None` if it has none or
    /// does not exist.
    pub async fn retention(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<Retention>, StoreError> {
        let query = version.map(|v| format!("versionId={}", encode_segment(v)));
        let (status, body, headers) = self
            .send("HEAD", key, query.as_deref().unwrap_or(""), Vec::new())
            .await?;
        if status == 404 {
            return Ok(None);
        }
        self.ok(status, &body, &self.display(key))?;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let mode = header("x-amz-object-lock-mode").and_then(LockMode::from_s3);
        let until = header("x-amz-object-lock-retain-until-date")
            .and_then(|d| d.parse::<jiff::Timestamp>().ok().map(SystemTime::from));
        Ok(mode
            .zip(until)
            .map(|(mode, until)| Retention { mode, until }))
    }

    /// Whether `rel` (relative to the repository) may be removed now: not while it is
    /// under retention (it is counted in [`Self::deferred`] then).
    pub async fn may_remove(&self, key: &str, rel: &str) -> Result<bool, StoreError> {
        if REMOVED_UNDER_RETENTION.iter().any(|p| rel.starts_with(p)) {
            return Ok(true);
        }
        let Some(r) = self.retention(key, None).await? else {
            return Ok(true);
        };
        if r.until <= SystemTime::now() {
            return Ok(true);
        }
        let mut d = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = rel.strip_prefix("snapshots/") {
            d.snapshots += 1;
            d.snapshot_ids.push(id.to_string());
        } else if rel.starts_with("data/") {
            d.packs += 1;
        } else {
            d.other += 1;
        }
        d.until = d.until.max(Some(r.until));
        Ok(false)
    }

    /// Note that `what` was found overwritten or deleted and read from a version.
    pub fn note_tampered(&self, what: String) {
        log::warn!("{what}");
        self.tampered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(what);
    }

    /// What [`Self::note_tampered`] noted so far, and forget it.
    pub fn take_tampered(&self) -> Vec<String> {
        std::mem::take(&mut *self.tampered.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }

    /// What was left in place so far, and forget it.
    pub fn take_deferred(&self) -> Deferred {
        std::mem::take(&mut *self.deferred.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn display(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.loc.bucket)
    }

    fn ok(&self, status: u16, body: &str, what: &str) -> Result<(), StoreError> {
        if (200..300).contains(&status) {
            return Ok(());
        }
        let code = tag(body, "Code").unwrap_or("").to_string();
        let problem = match (status, code.as_str()) {
            (403, _) => S3Problem::Denied,
            (404, "NoSuchBucket") => S3Problem::NoSuchBucket,
            _ => S3Problem::Other,
        };
        let message = tag(body, "Message").unwrap_or("").to_string();
        Err(StoreError::S3 {
            path: what.to_string(),
            message: format!("HTTP {status} {code}: {message}")
                .trim_end_matches(": ")
                .into(),
            permanent: status < 500,
            problem,
        })
    }

    /// Send one signed request for `key` (empty: the bucket) with `query`; the status,
    /// the body as text and the headers.
    async fn send(
        &self,
        method: &str,
        key: &str,
        query: &str,
        body: Vec<u8>,
    ) -> Result<(u16, String, http::HeaderMap), StoreError> {
        let url = self.url(key, query);
        let failed = |message: String| StoreError::S3 {
            path: self.display(key),
            message,
            permanent: false,
            problem: S3Problem::Other,
        };
        let uri: http::Uri = url.parse().map_err(|e| failed(format!("{url}: {e}")))?;
        let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .header(
                "x-amz-content-sha256",
                hex::encode(sha2::Sha256::digest(&body)),
            );
        if !body.is_empty() {
            let md5 = md5::Md5::digest(&body);
            builder = builder.header(
                "content-md5",
                base64::engine::general_purpose::STANDARD.encode(md5),
            );
        }
        let (mut parts, ()) = builder
            .body(())
            .map_err(|e| failed(e.to_string()))?
            .into_parts();
        if let (Some(id), Some(secret)) = (&self.loc.access_key_id, &self.loc.secret_access_key) {
            use reqsign_core::SignRequest as _;
            let cred = reqsign_aws_v4::Credential {
                access_key_id: id.expose().to_string(),
                secret_access_key: secret.expose().to_string(),
                session_token: None,
                expires_in: None,
            };
            reqsign_aws_v4::RequestSigner::new("s3", &self.loc.region)
                .sign_request(&reqsign_core::Context::new(), &mut parts, Some(&cred), None)
                .await
                .map_err(|e| failed(format!("cannot sign the request: {e}")))?;
        }
        parts.headers.remove("host");
        let mut request = self
            .http
            .request(parts.method, url.as_str())
            .headers(parts.headers);
        if !body.is_empty() {
            request = request.body(body);
        }
        let mut tries = 0;
        loop {
            let attempt = request
                .try_clone()
                .expect("a request with a byte body clones");
            match attempt.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status >= 500 && tries < crate::store::s3_retries() {
                        tries += 1;
                        tokio::time::sleep(Duration::from_secs(1 << tries.min(5))).await;
                        continue;
                    }
                    let headers = resp.headers().clone();
                    let text = resp.text().await.unwrap_or_default();
                    return Ok((status, text, headers));
                }
                Err(_) if tries < crate::store::s3_retries() => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_secs(1 << tries.min(5))).await;
                }
                Err(e) => {
                    return Err(failed(
                        crate::store::root_cause(&e).unwrap_or_else(|| e.to_string()),
                    ));
                }
            }
        }
    }

    /// The address of `key` in the bucket (path style or virtual host, as the operator).
    fn url(&self, key: &str, query: &str) -> String {
        let endpoint = self
            .loc
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.loc.region));
        let endpoint = endpoint.trim_end_matches('/');
        let key: String = key
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/");
        let base = if self.loc.path_style {
            format!("{endpoint}/{}/{key}", self.loc.bucket)
        } else {
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
            format!("{scheme}://{}.{host}/{key}", self.loc.bucket)
        };
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }
}

/// For `check`: the retention of every object in `objects` (its key, its path in the
/// repository, when it was written). A problem per object without the configured
/// protection: no retention, a weaker mode, or a date earlier than its writing plus the
/// configured days. Sixteen requests at a time.
pub fn verify(
    lock: &std::sync::Arc<Locked>,
    objects: Vec<(String, String, crate::store::ObjectStat)>,
) -> Result<Vec<String>, StoreError> {
    let lock = lock.clone();
    crate::store::block(async move {
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = tokio::task::JoinSet::new();
        for (key, rel, stat) in objects {
            let (lock, gate) = (lock.clone(), gate.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire().await;
                let found = lock.retention(&key, stat.version.as_deref()).await?;
                Ok::<_, StoreError>(lock.judge(&rel, stat.modified, found))
            });
        }
        let mut problems = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let judged = done.map_err(|e| StoreError::S3 {
                path: lock.loc.url(),
                message: e.to_string(),
                permanent: true,
                problem: S3Problem::Other,
            })??;
            problems.extend(judged);
        }
        problems.sort();
        Ok(problems)
    })
}

impl Locked {
    /// What is wrong with `found`, the retention of `rel` written at `written`.
    fn judge(
        &self,
        rel: &str,
        written: Option<SystemTime>,
        found: Option<Retention>,
    ) -> Option<String> {
        let want = self.rule;
        let Some(r) = found else {
            return Some(format!(
                "`{rel}` has no Object Lock retention: it can be deleted"
            ));
        };
        if r.mode < want.mode {
            return Some(format!(
                "`{rel}` is under {} retention, the repository asks {}",
                r.mode, want.mode
            ));
        }
        // S3 sets the date from the time of writing; an hour of slack for clocks.
        let period = Duration::from_secs(u64::from(want.days) * 86_400);
        let due = written.map(|w| w + period - Duration::from_secs(3600));
        match due {
            Some(due) if r.until < due => Some(format!(
                "`{rel}` is retained until {}, less than the {} days asked from its writing",
                jiff::Timestamp::try_from(r.until)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                want.days
            )),
            _ => None,
        }
    }
}

/// From a listing with versions and delete markers (paths relative to the operator's
/// root, which is the repository's): what the repository holds. That is each current
/// object, and each object hidden by a delete marker while its newest version is still
/// under retention: lifeboat never removes one of those (see [`Locked::may_remove`]), so
/// someone else did, and the version stands in for it (with a warning). `shown` prefixes
/// paths in the warning; `key_root` (the operator's root, `` or `prefix/`) makes keys.
/// Only a version written less than the configured days ago can still be retained; the
/// server is asked about those (governance retention may have been shortened).
pub fn visible(
    lock: &std::sync::Arc<Locked>,
    entries: Vec<opendal::Entry>,
    shown: &str,
    key_root: &str,
) -> Result<Vec<opendal::Entry>, StoreError> {
    use std::collections::BTreeMap;
    let period = Duration::from_secs(u64::from(lock.rule.days) * 86_400);
    let now = SystemTime::now();
    let mut by_path: BTreeMap<String, Vec<opendal::Entry>> = BTreeMap::new();
    for e in entries {
        by_path.entry(e.path().to_string()).or_default().push(e);
    }
    let mut out = Vec::new();
    for (path, mut versions) in by_path {
        let written = |e: &opendal::Entry| e.metadata().last_modified().map(SystemTime::from);
        versions.sort_by_key(|e| std::cmp::Reverse(written(e)));
        let current = versions
            .iter()
            .position(|e| e.metadata().is_current() == Some(true))
            .unwrap_or(0);
        let newest = versions.remove(current);
        if !newest.metadata().is_deleted() {
            out.push(newest);
            continue;
        }
        if REMOVED_UNDER_RETENTION.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        let Some(kept) = versions.into_iter().find(|e| !e.metadata().is_deleted()) else {
            continue;
        };
        if written(&kept).is_none_or(|w| w + period <= now) {
            continue;
        }
        let (lock2, key) = (lock.clone(), format!("{key_root}{path}"));
        let version = kept.metadata().version().map(str::to_string);
        let retained =
            crate::store::block(async move { lock2.retention(&key, version.as_deref()).await })?;
        if retained.is_some_and(|r| r.until > now) {
            lock.note_tampered(format!(
                "`{shown}{path}` was deleted while under Object Lock retention, not by lifeboat: its version `{}` is read instead (remove the delete marker to put it back)",
                kept.metadata().version().unwrap_or("?")
            ));
            out.push(kept);
        }
    }
    Ok(out)
}

/// For `init`: refuse a bucket without Object Lock; make the configured retention its
/// default, unless the bucket's default already gives as much.
pub fn prepare(lock: &std::sync::Arc<Locked>) -> Result<(), StoreError> {
    let lock = lock.clone();
    crate::store::block(async move {
        let bucket = lock.bucket().await?;
        if !bucket.enabled {
            return Err(lock.refused(format!(
                "bucket `{}` does not have Object Lock enabled, which `object-lock` needs",
                lock.loc.bucket
            )));
        }
        if !bucket.covers(lock.rule) {
            lock.set_default().await?;
        }
        Ok(())
    })
}

/// A path segment as SigV4 and S3 want it: unreserved characters as they are.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of the first `<name>…</name>` in a small XML reply.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_rule_covers_what_is_asked_or_more() {
        let want = ObjectLock {
            mode: LockMode::Governance,
            days: 30,
        };
        let rule = |mode, days| BucketLock {
            enabled: true,
            default: Some((mode, days)),
        };
        assert!(rule(LockMode::Governance, 30).covers(want));
        assert!(rule(LockMode::Compliance, 40).covers(want));
        assert!(!rule(LockMode::Governance, 29).covers(want));
        let compliance = ObjectLock {
            mode: LockMode::Compliance,
            days: 30,
        };
        assert!(!rule(LockMode::Governance, 365).covers(compliance));
        assert!(
            !BucketLock {
                enabled: true,
                default: None
            }
            .covers(want)
        );
    }

    #[test]
    fn xml_tags_and_key_segments() {
        let xml = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>\
                   <Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Years>1</Years>\
                   </DefaultRetention></Rule></ObjectLockConfiguration>";
        assert_eq!(tag(xml, "Mode"), Some("COMPLIANCE"));
        assert_eq!(tag(xml, "Days"), None);
        assert_eq!(encode_segment("a b+c"), "a%20b%2Bc");
    }
}
