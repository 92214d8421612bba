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
//! - Removals are of two kinds. Retention's (`forget --prune` of snapshots, packs, WAL,
//!   captured changes; the job history's cap) leave an object still under retention in
//!   place and count it ([`Locked::retained_until`]); a later run removes it. Others (a
//!   failed backup's snapshot, a replaced index file, a removed key, a closed incident)
//!   must take effect: they hide the object (a delete marker; its version stays, under
//!   retention) and first write a record of it at `lifeboat/removed/<path>`.
//! - restic names every file but `config` by the SHA-256 of its content, so a file that was
//!   overwritten is found again among its versions (`backend.rs`); an object hidden while
//!   under retention without a record was hidden by someone else, and its version stands
//!   in for it ([`visible`]).
//! - Retention runs out `days` after an object's writing, but a repository keeps using old
//!   objects (its config and keys, packs that new snapshots share): `forget --prune`
//!   extends the retention of everything still in the repository ([`extend`]).
//!
//! opendal has no call for the bucket's lock configuration nor for an object's retention,
//! so those few requests are signed here (SigV4, reqsign) and sent with reqwest.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
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

/// Files left in place because they are still under retention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deferred {
    /// The ids of the snapshots kept.
    pub snapshot_ids: Vec<String>,
    pub snapshots: u64,
    pub packs: u64,
    pub other: u64,
    /// Every path kept (relative to the repository).
    pub paths: BTreeSet<String>,
    /// When the last of them may go.
    pub until: Option<SystemTime>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.snapshots + self.packs + self.other == 0
    }

    /// Add what `other` kept.
    pub fn merge(&mut self, other: Deferred) {
        self.snapshot_ids.extend(other.snapshot_ids);
        self.snapshots += other.snapshots;
        self.packs += other.packs;
        self.other += other.other;
        self.paths.extend(other.paths);
        self.until = self.until.max(other.until);
    }
}

/// What [`extend`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extended {
    /// Objects whose retention was looked at.
    pub checked: usize,
    /// Objects whose retention was extended to `days` from now.
    pub extended: usize,
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
    tampered: Mutex<BTreeSet<String>>,
    /// When objects were written, as listings showed them (key → time): an object written
    /// less than `days` ago is under retention without asking the server.
    written: Mutex<HashMap<String, SystemTime>>,
    /// Nonzero while `forget` removes snapshots: their removal is retention's.
    forgetting: AtomicUsize,
}

/// How long the answer of [`Locked::writable`] holds.
const RECHECK: Duration = Duration::from_secs(600);

/// Lock files: removed at once, never counted, never brought back, never extended. Their
/// versions stay in the bucket until their retention ends.
pub(crate) const LOCK_FILES: [&str; 2] = ["locks/", "lifeboat/locks/"];

/// Where the record of an object lifeboat hid on purpose is kept (relative to the
/// repository; the object's path follows).
pub(crate) const REMOVED: &str = "lifeboat/removed/";

pub fn is_lock_file(rel: &str) -> bool {
    LOCK_FILES.iter().any(|p| rel.starts_with(p))
}

/// The repository's folders whose files restic names by the SHA-256 of their content.
pub const NAMED_BY_CONTENT: [&str; 4] = ["keys", "index", "snapshots", "data"];

/// Bookkeeping whose retention `forget --prune` does not extend: it goes once its
/// retention ends (the job history over its cap, serve's markers, incidents' pointer,
/// the records of removals).
const BOOKKEEPING: [&str; 4] = [
    "lifeboat/jobs/",
    "lifeboat/serve/",
    "lifeboat/incidents/",
    REMOVED,
];

/// Whether `forget --prune` keeps `rel`'s retention up (see [`extend`]).
pub fn kept_up(rel: &str) -> bool {
    !is_lock_file(rel) && !BOOKKEEPING.iter().any(|p| rel.starts_with(p))
}

/// While alive, snapshot removals are retention's (see [`Locked::forgetting`]).
pub struct Forgetting(Arc<Locked>);

impl Drop for Forgetting {
    fn drop(&mut self) {
        self.0.forgetting.fetch_sub(1, Ordering::SeqCst);
    }
}

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
            written: Mutex::default(),
            forgetting: AtomicUsize::new(0),
        }
    }

    fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.rule.days) * 86_400)
    }

    /// Snapshots removed while the guard lives are forgotten by retention: one still under
    /// retention stays (see `Backend::remove`).
    pub fn forgetting(self: &Arc<Self>) -> Forgetting {
        self.forgetting.fetch_add(1, Ordering::SeqCst);
        Forgetting(self.clone())
    }

    pub fn is_forgetting(&self) -> bool {
        self.forgetting.load(Ordering::SeqCst) > 0
    }

    /// Remember when the object at `key` was written (from a listing).
    pub fn note_written(&self, key: String, at: SystemTime) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, at);
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

    /// Make `mode` and `days` the bucket's default retention (`PutObjectLockConfiguration`).
    async fn set_default(&self, mode: LockMode, days: u32) -> Result<(), StoreError> {
        let body = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
             <Mode>{}</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
            mode.s3_name(),
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

    /// The version id of the current object at `key`, `None` if there is none.
    pub async fn version_of(&self, key: &str) -> Result<Option<String>, StoreError> {
        let (status, body, headers) = self.send("HEAD", key, "", Vec::new()).await?;
        if status == 404 {
            return Ok(None);
        }
        self.ok(status, &body, &self.display(key))?;
        Ok(headers
            .get("x-amz-version-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// The version a record at `key` (see [`REMOVED`]) says lifeboat hid.
    async fn recorded_version(&self, key: &str) -> Result<Option<String>, StoreError> {
        let (status, body, _) = self.send("GET", key, "", Vec::new()).await?;
        if status == 404 {
            return Ok(None);
        }
        self.ok(status, &body, &self.display(key))?;
        Ok(serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_string)))
    }

    /// Forget when `key` was written (it was removed).
    pub fn forget_written(&self, key: &str) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// HEAD of the object at `key` (below the bucket), of one `version` or the current
    /// one: `None` if it does not exist (or is hidden); else its retention (`None` when the
    /// reply has none: the object has none, or the credentials lack
    /// `s3:GetObjectRetention`) and when it was written.
    #[allow(clippy::type_complexity)]
    async fn head(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<(Option<Retention>, Option<SystemTime>)>, StoreError> {
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
        let written = header("last-modified")
            .and_then(|d| jiff::fmt::rfc2822::parse(d).ok())
            .map(|z| SystemTime::from(z.timestamp()));
        Ok(Some((
            mode.zip(until)
                .map(|(mode, until)| Retention { mode, until }),
            written,
        )))
    }

    /// The retention of the object at `key` (one `version`, or the current one).
    pub async fn retention(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<Retention>, StoreError> {
        Ok(self.head(key, version).await?.and_then(|(r, _)| r))
    }

    /// Until when the current object at `key` stays under retention, `None` if it is not
    /// (or no longer) under retention. Written less than `days` ago (as a listing showed):
    /// retained, without a request (writes are refused unless the bucket's default covers
    /// the rule) — certainly in compliance mode; in governance mode someone may have
    /// shortened it, so with `precise` the server is asked then too. Otherwise the server
    /// is asked; a reply without retention counts the time of writing plus `days`.
    pub async fn retained_until(
        &self,
        key: &str,
        precise: bool,
    ) -> Result<Option<SystemTime>, StoreError> {
        let now = SystemTime::now();
        let listed = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied();
        if let Some(w) = listed
            && w + self.period() > now
            && (!precise || self.rule.mode == LockMode::Compliance)
        {
            return Ok(Some(w + self.period()));
        }
        let Some((retention, written)) = self.head(key, None).await? else {
            return Ok(None);
        };
        let until = retention
            .map(|r| r.until)
            .or_else(|| written.map(|w| w + self.period()));
        Ok(until.filter(|u| *u > now))
    }

    /// Count `rel`, kept until `until`, in [`Self::take_deferred`].
    pub fn count_deferred(&self, rel: &str, until: SystemTime) {
        let mut d = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = rel.strip_prefix("snapshots/") {
            d.snapshots += 1;
            d.snapshot_ids.push(id.to_string());
        } else if rel.starts_with("data/") {
            d.packs += 1;
        } else {
            d.other += 1;
        }
        d.paths.insert(rel.to_string());
        d.until = d.until.max(Some(until));
    }

    /// Set the retention of `key` (one `version`) to `until`, in `mode`.
    async fn put_retention(
        &self,
        key: &str,
        version: Option<&str>,
        mode: LockMode,
        until: SystemTime,
    ) -> Result<(), StoreError> {
        let date = jiff::Timestamp::try_from(until)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.000Z").to_string())
            .unwrap_or_default();
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{date}</RetainUntilDate></Retention>",
            mode.s3_name()
        );
        let query = match version {
            Some(v) => format!("retention=&versionId={}", encode_segment(v)),
            None => "retention=".into(),
        };
        let (status, text, _) = self.send("PUT", key, &query, body.into_bytes()).await?;
        self.ok(status, &text, &format!("{}?retention", self.display(key)))
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
            (_, "SignatureDoesNotMatch" | "RequestTimeTooSkewed" | "InvalidAccessKeyId") => {
                S3Problem::Other
            }
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
    /// the body as text and the headers. Static keys only (`access-key-id-env` or
    /// `AWS_*`): these few requests are signed here, without opendal's credential chain.
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
        let (Some(id), Some(secret)) = (&self.loc.access_key_id, &self.loc.secret_access_key)
        else {
            return Err(StoreError::S3 {
                path: self.display(key),
                message: "`object-lock` needs S3 keys (`access-key-id-env` and \
                          `secret-access-key-env`, or `AWS_ACCESS_KEY_ID` and \
                          `AWS_SECRET_ACCESS_KEY`); instance roles are not supported for it"
                    .into(),
                permanent: true,
                problem: S3Problem::NoCredentials,
            });
        };
        let uri: http::Uri = url.parse().map_err(|e| failed(format!("{url}: {e}")))?;
        // Signed as reqwest will send it: lower case, no default port.
        let host = match (uri.host(), uri.port_u16(), uri.scheme_str()) {
            (Some(h), Some(443), Some("https")) | (Some(h), Some(80), Some("http")) => {
                h.to_ascii_lowercase()
            }
            (Some(h), Some(p), _) => format!("{}:{p}", h.to_ascii_lowercase()),
            (Some(h), None, _) => h.to_ascii_lowercase(),
            (None, ..) => String::new(),
        };
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
        {
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

    /// What is wrong with `found`, the retention of `rel` written at `written`, for an
    /// object the repository still uses.
    fn judge(
        &self,
        rel: &str,
        written: Option<SystemTime>,
        found: Option<Retention>,
    ) -> Option<String> {
        let want = self.rule;
        let Some(r) = found else {
            return Some(format!(
                "`{rel}` has no Object Lock retention (or the credentials lack \
                 `s3:GetObjectRetention`): it can be deleted"
            ));
        };
        if r.mode < want.mode {
            return Some(format!(
                "`{rel}` is under {} retention, the repository asks {}",
                r.mode, want.mode
            ));
        }
        let shown = |t: SystemTime| {
            jiff::Timestamp::try_from(t)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        // S3 sets the date from the time of writing; an hour of slack for clocks.
        let due = written.map(|w| w + self.period() - Duration::from_secs(3600));
        match due {
            Some(due) if r.until < due => Some(format!(
                "`{rel}` is retained until {}, less than the {} days asked from its writing",
                shown(r.until),
                want.days
            )),
            _ if r.until <= SystemTime::now() => Some(format!(
                "`{rel}` is still in use but its retention ended at {}: it can be deleted \
                 (`forget --prune` with an administrator's keys extends the retention of \
                 what is in use)",
                shown(r.until)
            )),
            _ => None,
        }
    }
}

/// Run `each` on every object of `objects`, sixteen at a time, on the S3 runtime.
fn in_parallel<T: Send + 'static>(
    lock: &Arc<Locked>,
    objects: Vec<(String, String, crate::store::ObjectStat)>,
    each: impl Fn(
        Arc<Locked>,
        String,
        String,
        crate::store::ObjectStat,
    )
        -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send>>
    + Send
    + Sync
    + 'static,
) -> Result<Vec<T>, StoreError> {
    let lock = lock.clone();
    let each = Arc::new(each);
    crate::store::block(async move {
        let gate = Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = tokio::task::JoinSet::new();
        for (key, rel, stat) in objects {
            let (lock, gate, each) = (lock.clone(), gate.clone(), each.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire().await;
                each(lock, key, rel, stat).await
            });
        }
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            out.push(done.map_err(|e| StoreError::S3 {
                path: lock.loc.url(),
                message: e.to_string(),
                permanent: true,
                problem: S3Problem::Other,
            })??);
        }
        Ok(out)
    })
}

/// For `check`: the retention of every object in `objects` (its key, its path in the
/// repository, its listing). A problem per object without the configured protection: no
/// retention, a weaker mode, a date earlier than its writing plus the configured days, or
/// a date already past.
pub fn verify(
    lock: &Arc<Locked>,
    objects: Vec<(String, String, crate::store::ObjectStat)>,
) -> Result<Vec<String>, StoreError> {
    let mut problems: Vec<String> = in_parallel(lock, objects, |lock, key, rel, stat| {
        Box::pin(async move {
            let found = lock.retention(&key, stat.version.as_deref()).await?;
            Ok(lock.judge(&rel, stat.modified, found))
        })
    })?
    .into_iter()
    .flatten()
    .collect();
    problems.sort();
    Ok(problems)
}

/// For `forget --prune`: extend the retention of `objects` (everything the repository
/// still holds) to `days` from now wherever less than half of `days` is left. Every object
/// is asked about (a HEAD each, sixteen at a time: about a minute for 10,000 packs), not
/// only old ones: governance retention may have been shortened.
pub fn extend(
    lock: &Arc<Locked>,
    objects: Vec<(String, String, crate::store::ObjectStat)>,
) -> Result<Extended, StoreError> {
    let now = SystemTime::now();
    let half = lock.period() / 2;
    let checked = objects.len();
    let done = in_parallel(lock, objects, move |lock, key, _rel, stat| {
        Box::pin(async move {
            let version = stat.version.as_deref();
            let found = lock.retention(&key, version).await?;
            if found.is_some_and(|r| r.until > now + half) {
                return Ok(false);
            }
            let mode = found.map_or(lock.rule.mode, |r| r.mode.max(lock.rule.mode));
            lock.put_retention(&key, version, mode, now + lock.period())
                .await?;
            Ok(true)
        })
    })?;
    Ok(Extended {
        checked,
        extended: done.into_iter().filter(|e| *e).count(),
    })
}

/// A path's visible version in a versioned listing, and the other versions of it the
/// bucket keeps (delete markers left out), newest first.
pub struct Found {
    pub entry: opendal::Entry,
    pub others: Vec<opendal::Entry>,
}

/// From a listing with versions and delete markers (paths relative to the operator's
/// root, which is the repository's): what the repository holds. That is each current
/// object, and each object hidden by a delete marker whose newest version is still under
/// retention and not named by a record of lifeboat hiding it ([`REMOVED`]): someone else
/// hid it, and the version stands in for it (with a warning). The hidden candidates are
/// asked about (their record, their version's retention) sixteen at a time. `shown`
/// prefixes paths in the warning; `key_root` (the operator's root, `` or `prefix/`) makes
/// keys.
pub fn visible(
    lock: &Arc<Locked>,
    entries: Vec<opendal::Entry>,
    shown: &str,
    key_root: &str,
) -> Result<Vec<Found>, StoreError> {
    use std::collections::BTreeMap;
    let now = SystemTime::now();
    let mut by_path: BTreeMap<String, Vec<opendal::Entry>> = BTreeMap::new();
    for e in entries {
        by_path.entry(e.path().to_string()).or_default().push(e);
    }
    let written = |e: &opendal::Entry| e.metadata().last_modified().map(SystemTime::from);
    let mut out = Vec::new();
    let mut hidden: BTreeMap<String, Found> = BTreeMap::new();
    for (path, mut versions) in by_path {
        versions.sort_by_key(|e| std::cmp::Reverse(written(e)));
        let current = versions
            .iter()
            .position(|e| e.metadata().is_current() == Some(true))
            .unwrap_or(0);
        let newest = versions.remove(current);
        let mut others: Vec<_> = versions
            .into_iter()
            .filter(|e| !e.metadata().is_deleted())
            .collect();
        if !newest.metadata().is_deleted() {
            if let Some(w) = written(&newest) {
                lock.note_written(format!("{key_root}{path}"), w);
            }
            out.push(Found {
                entry: newest,
                others,
            });
            continue;
        }
        if is_lock_file(&path) || path.starts_with(REMOVED) || others.is_empty() {
            continue;
        }
        let kept = others.remove(0);
        hidden.insert(
            path,
            Found {
                entry: kept,
                others,
            },
        );
    }
    if hidden.is_empty() {
        return Ok(out);
    }
    let asks: Vec<_> = hidden
        .iter()
        .map(|(path, f)| {
            let m = f.entry.metadata();
            let stat = crate::store::ObjectStat {
                size: m.content_length(),
                modified: written(&f.entry),
                version: m.version().map(str::to_string),
                etag: None,
            };
            (format!("{key_root}{path}"), path.clone(), stat)
        })
        .collect();
    let record_root = format!("{key_root}{REMOVED}");
    let answers = in_parallel(lock, asks, move |lock, key, path, stat| {
        let record = format!("{record_root}{path}");
        Box::pin(async move {
            let version = stat.version.clone().unwrap_or_default();
            if lock.recorded_version(&record).await?.as_deref() == Some(version.as_str()) {
                return Ok((path, false));
            }
            let retained = lock.retention(&key, Some(&version)).await?;
            Ok((path, retained.is_some_and(|r| r.until > now)))
        })
    })?;
    for (path, back) in answers {
        if !back {
            continue;
        }
        let Some(found) = hidden.remove(&path) else {
            continue;
        };
        lock.note_tampered(format!(
            "`{shown}{path}` was deleted while under Object Lock retention, not by lifeboat: its version `{}` is read instead (remove the delete marker to put it back)",
            found.entry.metadata().version().unwrap_or("?")
        ));
        if let Some(w) = written(&found.entry) {
            lock.note_written(format!("{key_root}{path}"), w);
        }
        out.push(found);
    }
    Ok(out)
}

/// For `init`: refuse a bucket without Object Lock; make the configured retention its
/// default, unless the bucket's default already gives as much. A default that gives more
/// in one respect (a longer period, or compliance) keeps it: the default becomes the
/// stronger of both, never weaker than it was.
pub fn prepare(lock: &Arc<Locked>) -> Result<(), StoreError> {
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
            let (mode, days) = match bucket.default {
                Some((m, d)) => (m.max(lock.rule.mode), d.max(lock.rule.days)),
                None => (lock.rule.mode, lock.rule.days),
            };
            lock.set_default(mode, days).await?;
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
