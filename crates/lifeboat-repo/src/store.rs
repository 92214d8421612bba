//! Objects at a repository's location: a local folder or an S3 bucket and prefix. The
//! side area, the existence checks of `init` and `open`, bucket targets, and rustic's
//! listings (and, on S3, all of rustic's calls: `backend.rs`) go through it.
//!
//! Local writes are atomic and durable (temp file, fsync, rename or link, directory fsync).
//! On S3 a completed PUT is both; create-only writes send `If-None-Match: *`. S3 calls are
//! retried with backoff on transient errors (5xx, throttling, dropped connections) and fail
//! at once on permanent ones (403, no such bucket). rustic_core is synchronous, and so is
//! this: S3 calls run on a small runtime of this module's own, so that callers inside or
//! outside tokio can block on them.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use crate::object_lock::Locked;

use lifeboat_core::{Location, S3Location};
use opendal::{
    ErrorKind, Operator,
    layers::{RetryLayer, TimeoutLayer},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("`{path}`: {message}")]
    S3 {
        path: String,
        message: String,
        permanent: bool,
        /// What the failure was, decided once where the error arrived.
        problem: S3Problem,
    },
}

/// The kind of an S3 failure a hint can speak to, classified from opendal's error kind and
/// the error code in S3's reply (`NoSuchBucket`, `AccessDenied`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Problem {
    NoSuchBucket,
    /// The server refused the credentials or the request (403).
    Denied,
    /// No credentials could be found to sign the request with.
    NoCredentials,
    /// The bucket's Object Lock does not give new objects the configured retention.
    ObjectLock,
    /// The object does not exist (or is hidden by a delete marker).
    NotFound,
    Other,
}

impl S3Problem {
    fn of(e: &opendal::Error) -> Self {
        match (s3_code(&e.to_string()).as_deref(), e.kind()) {
            (Some("NoSuchBucket"), _) => Self::NoSuchBucket,
            (Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"), _)
            | (_, ErrorKind::PermissionDenied) => Self::Denied,
            // reqsign found nothing to sign with: opendal reports it before any request.
            _ if signing_failed(e) => Self::NoCredentials,
            (_, ErrorKind::NotFound) => Self::NotFound,
            _ => Self::Other,
        }
    }
}

/// The `code` of the S3 error reply opendal carries, if the server sent one.
fn s3_code(text: &str) -> Option<String> {
    let e = &text[text.rfind("S3Error {")?..];
    let v = &e[e.find("code: \"")? + 7..];
    Some(v.split('"').next()?.to_string())
}

/// Whether opendal failed because reqsign had no valid credential to sign with.
fn signing_failed(e: &opendal::Error) -> bool {
    lifeboat_core::cause::find_cause::<reqsign_core::Error>(e)
        .is_some_and(|r| r.kind() == reqsign_core::ErrorKind::CredentialInvalid)
}

impl StoreError {
    /// The same error, owned: one found by reference in another error's sources.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Io { path, source } => Self::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Self::S3 {
                path,
                message,
                permanent,
                problem,
            } => Self::S3 {
                path: path.clone(),
                message: message.clone(),
                permanent: *permanent,
                problem: *problem,
            },
        }
    }

    /// A hint for errors whose fix is known.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::S3 {
                problem: S3Problem::NoSuchBucket,
                ..
            } => Some("create the bucket first, or check `repository.url` and `endpoint`".into()),
            Self::S3 {
                problem: S3Problem::Denied,
                ..
            } => Some("check the S3 credentials (`access-key-id-env`, `secret-access-key-env` or `AWS_*`) and the bucket policy".into()),
            Self::S3 {
                problem: S3Problem::NoCredentials,
                ..
            } => Some(
                "no S3 credentials were found: set `access-key-id-env` and `secret-access-key-env` in the config, or `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (on EC2, an instance role)".into(),
            ),
            Self::S3 {
                problem: S3Problem::ObjectLock,
                ..
            } => Some(
                "Object Lock is enabled only when a bucket is created (`aws s3api create-bucket --object-lock-enabled-for-bucket`); an administrator sets the default retention with `lifeboat init` or `aws s3api put-object-lock-configuration` (README, \"Immutable backups\")".into(),
            ),
            Self::S3 { permanent: false, .. } => Some(
                "the S3 server kept failing after retries: check that it is reachable, then run the command again".into(),
            ),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A folder or a bucket prefix holding objects by relative name (`wal/1/00000001/...`).
#[derive(Debug, Clone)]
pub enum Store {
    Local(PathBuf),
    /// `op` is rooted at the URL's prefix; `sub` is a folder below it (`""` or ending `/`).
    S3 {
        op: Operator,
        url: String,
        sub: String,
        /// The bucket's Object Lock, if the repository asks for it.
        lock: Option<Arc<Locked>>,
    },
}

/// Metadata of one stored object.
#[derive(Debug, Clone)]
pub struct ObjectStat {
    pub size: u64,
    pub modified: Option<SystemTime>,
    /// In a bucket with Object Lock (versioned): the version listed.
    pub version: Option<String>,
    /// On S3, as listed.
    pub etag: Option<String>,
}

impl ObjectStat {
    fn of(e: &opendal::Entry) -> Self {
        let m = e.metadata();
        Self {
            size: m.content_length(),
            modified: m.last_modified().map(SystemTime::from),
            version: m.version().map(str::to_string),
            etag: m.etag().map(str::to_string),
        }
    }
}

/// The runtime every S3 request runs on: its own, not the command's. rustic's backend
/// trait and the readers handed to its archiver are synchronous, so [`block`] waits for
/// S3 from whatever thread calls it: rustic's, a blocking thread, or, should synchronous
/// code ever be reached from async code without `spawn_blocking`, a worker of the
/// command's runtime. With the requests on a runtime of their own, such a wait never holds
/// a worker that the request it waits for needs.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lifeboat-s3")
            .enable_all()
            .build()
            .expect("start the S3 runtime")
    })
}

/// Run `fut` on the module's runtime and wait for it, from any thread (also one of
/// another tokio runtime, where `block_on` would panic).
pub(crate) fn block<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("the S3 runtime dropped a task")
}

/// How many times a transient S3 error is retried, with exponential backoff (from 1 s,
/// doubling, at most 30 s) and jitter, before the call fails: `$LIFEBOAT_S3_RETRIES`,
/// default 6, about a minute in all, so a backup rides out a short outage.
pub fn s3_retries() -> usize {
    std::env::var("LIFEBOAT_S3_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// The size of the parts of an object written in parts ([`Store::put_parts`]).
const PART_SIZE: usize = 8 << 20;

/// The largest object written in one request: what two parts in flight at once would carry.
/// One request is no slower on a slow link (its two parts would share it, each under the
/// same time limit), and saves the three requests of a multipart upload — the last, partly
/// filled pack of a backup often is one (and a server that assembles the parts, as s3s-fs
/// does, copies the object once more).
const ONE_REQUEST_MAX: usize = 2 * PART_SIZE;

/// How long one S3 request may take, in seconds: `$LIFEBOAT_S3_TIMEOUT`, default 60; one
/// read or write of a request's body may stall half as long. Then it counts as a transient
/// error, retried like the others.
pub fn s3_timeout() -> Duration {
    let secs = std::env::var("LIFEBOAT_S3_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&s: &u64| s > 0)
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// An opendal operator for `loc`, rooted at its prefix.
pub fn s3_operator(loc: &S3Location) -> Result<Operator, StoreError> {
    let mut b = opendal::services::S3::default()
        .bucket(&loc.bucket)
        .root(&format!("/{}", loc.prefix))
        .region(&loc.region)
        .disable_config_load();
    if let Some(e) = &loc.endpoint {
        b = b.endpoint(e);
    }
    if !loc.path_style {
        b = b.enable_virtual_host_style();
    }
    if let Some(k) = &loc.access_key_id {
        b = b.access_key_id(k.expose());
    }
    if let Some(s) = &loc.secret_access_key {
        b = b.secret_access_key(s.expose());
    }
    if loc.object_lock.is_some() {
        // S3 refuses a write into a bucket with default retention without a checksum.
        b = b.checksum_algorithm("md5");
    }
    let op = Operator::new(b)
        .map_err(|e| s3_err(&loc.url(), e))?
        .layer(
            TimeoutLayer::new()
                .with_timeout(s3_timeout())
                .with_io_timeout(s3_timeout() / 2),
        )
        .layer(
            RetryLayer::new()
                .with_max_times(s3_retries())
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(30))
                .with_jitter(),
        );
    Ok(op)
}

pub(crate) fn s3_err(path: &str, e: opendal::Error) -> StoreError {
    StoreError::S3 {
        path: path.to_string(),
        permanent: e.is_permanent(),
        message: describe_s3(&e),
        problem: S3Problem::of(&e),
    }
}

/// An opendal error, shortened (see [`tidy_opendal`]).
fn describe_s3(e: &opendal::Error) -> String {
    let text = e.to_string();
    let tidy = tidy_opendal(&text);
    if text.contains("S3Error {") {
        return tidy;
    }
    // No answer from S3 at all: the innermost cause says why ("Connection refused").
    match root_cause(e) {
        Some(r) if !tidy.contains(&r) => format!("{tidy}: {r}"),
        _ => tidy,
    }
}

/// The innermost error under `e`, as text; `None` if it has no source.
pub(crate) fn root_cause(e: &dyn std::error::Error) -> Option<String> {
    let mut root = None;
    let mut source = e.source();
    while let Some(s) = source {
        root = Some(s.to_string());
        source = s.source();
    }
    root
}

/// opendal's errors carry the whole request context (URI, response headers): keep the
/// kind, the path and the S3 error code and message.
pub(crate) fn tidy_opendal(text: &str) -> String {
    let Some(ctx) = text.find(", context: {") else {
        return text.to_string();
    };
    let path = text[ctx..]
        .find("path: ")
        .map(|i| &text[ctx + i + 6..])
        .and_then(|p| p.split([',', ' ']).next())
        .unwrap_or("");
    let s3 = text
        .rfind("S3Error {")
        .map(|i| {
            let e = &text[i..];
            let field = |name: &str| {
                e.find(&format!("{name}: \""))
                    .map(|j| &e[j + name.len() + 3..])
                    .and_then(|v| v.split('"').next())
                    .unwrap_or("")
                    .to_string()
            };
            format!(" ({}: {})", field("code"), field("message"))
        })
        // A reply without a body (HEAD): its status says what the server meant.
        .or_else(|| {
            let at = text[ctx..].find("status: ")? + ctx + 8;
            let status = text[at..].split([',', ' ', '}']).next()?;
            Some(format!(" (HTTP {status})"))
        })
        .unwrap_or_default();
    format!("{} `{path}`{s3}", &text[..ctx])
}

impl Store {
    pub fn open(location: &Location) -> Result<Self, StoreError> {
        Ok(match location {
            Location::Local(p) => Self::Local(p.clone()),
            Location::S3(s) => Self::S3 {
                op: s3_operator(s)?,
                url: s.url(),
                sub: String::new(),
                lock: s.object_lock.map(|rule| Arc::new(Locked::new(s, rule))),
            },
        })
    }

    /// The same store, below `rel`.
    pub fn sub(&self, rel: &str) -> Self {
        match self {
            Self::Local(p) => Self::Local(p.join(rel)),
            Self::S3 { op, url, sub, lock } => Self::S3 {
                op: op.clone(),
                url: url.clone(),
                sub: format!("{sub}{}/", rel.trim_matches('/')),
                lock: lock.clone(),
            },
        }
    }

    /// How `rel` is shown to people (a path, or an `s3://` URL).
    pub fn display(&self, rel: &str) -> String {
        match self {
            Self::Local(p) => p.join(rel).display().to_string(),
            Self::S3 { url, sub, .. } => format!("{url}/{sub}{rel}"),
        }
    }

    /// The bucket's Object Lock, for a repository that asks for it.
    pub fn locked(&self) -> Option<&Arc<Locked>> {
        match self {
            Self::S3 { lock, .. } => lock.as_ref(),
            Self::Local(_) => None,
        }
    }

    /// Before a write: with Object Lock, whether the bucket still protects new objects.
    fn writable(&self) -> Result<(), StoreError> {
        match self.locked() {
            Some(lock) => {
                let lock = lock.clone();
                block(async move { lock.writable().await })
            }
            None => Ok(()),
        }
    }

    /// The operator's root as a key prefix: `` or `prefix/`.
    fn key_root(&self) -> String {
        match self {
            Self::S3 { op, .. } => {
                let root = op.info().root().trim_matches('/').to_string();
                if root.is_empty() {
                    root
                } else {
                    format!("{root}/")
                }
            }
            Self::Local(_) => String::new(),
        }
    }

    /// The key of `rel` in the bucket, and its path relative to the repository.
    pub(crate) fn key_of(&self, rel: &str) -> (String, String) {
        let in_repo = match self {
            Self::S3 { sub, .. } => format!("{sub}{rel}"),
            Self::Local(_) => rel.to_string(),
        };
        (format!("{}{in_repo}", self.key_root()), in_repo)
    }

    /// The versions of the object at `rel` (with Object Lock, a bucket keeps them), newest
    /// first: their ids; deleted ones (markers) left out.
    pub fn versions(&self, rel: &str) -> Result<Vec<String>, StoreError> {
        let Self::S3 { op, sub, .. } = self else {
            return Ok(Vec::new());
        };
        let (op, rel2) = (op.clone(), format!("{sub}{rel}"));
        let want = rel2.clone();
        let entries = block(async move { op.list_with(&rel2).versions(true).await })
            .map_err(|e| s3_err(&self.display(rel), e))?;
        let mut found: Vec<(Option<SystemTime>, String)> = entries
            .into_iter()
            .filter(|e| e.path() == want && !e.metadata().is_deleted())
            .filter_map(|e| {
                let m = e.metadata();
                let v = m.version()?.to_string();
                Some((m.last_modified().map(SystemTime::from), v))
            })
            .collect();
        found.sort_by_key(|b| std::cmp::Reverse(b.0));
        Ok(found.into_iter().map(|(_, v)| v).collect())
    }

    /// With Object Lock, an object hidden by a delete marker while its newest version is
    /// still under retention: lifeboat never removes such an object (see
    /// [`Locked::may_remove`]), so someone else did, and the version is read instead.
    fn hidden_version(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.hidden_entry(rel)? {
            Some((v, _)) => self.get_version(rel, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The version standing in for `rel` when someone else hid it (see
    /// [`crate::object_lock::visible`]), with its metadata.
    fn hidden_entry(&self, rel: &str) -> Result<Option<(String, ObjectStat)>, StoreError> {
        let (Some(lock), Self::S3 { op, sub, url, .. }) = (self.locked(), self) else {
            return Ok(None);
        };
        let (op2, rel2) = (op.clone(), format!("{sub}{rel}"));
        let want = rel2.clone();
        let entries = block(async move { op2.list_with(&rel2).versions(true).deleted(true).await })
            .map_err(|e| s3_err(&self.display(rel), e))?;
        let entries: Vec<_> = entries.into_iter().filter(|e| e.path() == want).collect();
        let visible =
            crate::object_lock::visible(lock, entries, &format!("{url}/"), &self.key_root())?;
        Ok(visible.first().and_then(|f| {
            let stat = ObjectStat::of(&f.entry);
            Some((stat.version.clone()?, stat))
        }))
    }

    /// `length` bytes from `offset` of one version of `rel`.
    pub fn get_version_range(
        &self,
        rel: &str,
        version: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let Self::S3 { op, sub, .. } = self else {
            return self.get_range(rel, offset, length);
        };
        let (op, rel2, v) = (op.clone(), format!("{sub}{rel}"), version.to_string());
        block(async move {
            op.read_with(&rel2)
                .version(&v)
                .range(offset..offset + length)
                .await
        })
        .map(|b| b.to_vec())
        .map_err(|e| s3_err(&self.display(rel), e))
    }

    /// The content of one version of `rel`.
    pub fn get_version(&self, rel: &str, version: &str) -> Result<Vec<u8>, StoreError> {
        let Self::S3 { op, sub, .. } = self else {
            return Err(StoreError::Io {
                path: self.display(rel),
                source: std::io::Error::other("versions exist only on S3"),
            });
        };
        let (op, rel2, v) = (op.clone(), format!("{sub}{rel}"), version.to_string());
        block(async move { op.read_with(&rel2).version(&v).await })
            .map(|b| b.to_vec())
            .map_err(|e| s3_err(&self.display(rel), e))
    }

    pub fn local_root(&self) -> Option<&Path> {
        match self {
            Self::Local(p) => Some(p),
            Self::S3 { .. } => None,
        }
    }

    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Local(root) => {
                let path = root.join(rel);
                match fs::read(&path) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err(&path)(e)),
                }
            }
            Self::S3 { op, sub, lock, .. } => {
                let (op, rel2) = (op.clone(), format!("{sub}{rel}"));
                match block(async move { op.read(&rel2).await }) {
                    Ok(buf) => Ok(Some(buf.to_vec())),
                    Err(e) if e.kind() == ErrorKind::NotFound && lock.is_some() => {
                        self.hidden_version(rel)
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(s3_err(&self.display(rel), e)),
                }
            }
        }
    }

    /// Write `bytes` at `rel`, replacing what is there; atomic and durable.
    pub fn put(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            Self::Local(root) => {
                let (path, dir, tmp) = durable_temp(root, rel, bytes)?;
                tmp.persist(&path).map_err(|e| io_err(&path)(e.error))?;
                sync_dir(&dir)
            }
            Self::S3 { op, sub, .. } => {
                self.writable()?;
                let (op, rel2, bytes) = (op.clone(), format!("{sub}{rel}"), bytes.to_vec());
                block(async move { op.write(&rel2, bytes).await })
                    .map(|_| ())
                    .map_err(|e| s3_err(&self.display(rel), e))
            }
        }
    }

    /// `length` bytes of `rel` from `offset`; fewer only where the object ends.
    pub fn get_range(&self, rel: &str, offset: u64, length: u64) -> Result<Vec<u8>, StoreError> {
        match self {
            Self::Local(root) => {
                use std::io::{Read, Seek, SeekFrom};
                let path = root.join(rel);
                let mut f = fs::File::open(&path).map_err(io_err(&path))?;
                f.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
                let mut buf = Vec::with_capacity(length as usize);
                f.take(length)
                    .read_to_end(&mut buf)
                    .map_err(io_err(&path))?;
                Ok(buf)
            }
            Self::S3 { op, sub, .. } => {
                let (op, rel2) = (op.clone(), format!("{sub}{rel}"));
                block(async move { op.read_with(&rel2).range(offset..offset + length).await })
                    .map(|b| b.to_vec())
                    .map_err(|e| s3_err(&self.display(rel), e))
            }
        }
    }

    /// Write `parts` (one object, in order) at `rel`, replacing what is there. On S3 an
    /// object above [`ONE_REQUEST_MAX`] goes up in parts of [`PART_SIZE`], two at a time,
    /// so a slow link never holds one request past the I/O timeout; a smaller one in one
    /// request. In a bucket with Object Lock every object goes up in one request: a write
    /// there needs a checksum, and S3 takes a multipart upload only with a CRC or SHA one,
    /// not the MD5 lifeboat sends (opendal refuses to start it).
    pub fn put_parts(&self, rel: &str, parts: Vec<bytes::Bytes>) -> Result<(), StoreError> {
        match self {
            Self::Local(_) => self.put(rel, &parts.concat()),
            Self::S3 { op, sub, .. } => {
                self.writable()?;
                let (op, rel2) = (op.clone(), format!("{sub}{rel}"));
                let len: usize = parts.iter().map(bytes::Bytes::len).sum();
                let one_request = len <= ONE_REQUEST_MAX || self.locked().is_some();
                let buf = opendal::Buffer::from(parts);
                block(async move {
                    if one_request {
                        op.write(&rel2, buf).await
                    } else {
                        op.write_with(&rel2, buf)
                            .chunk(PART_SIZE)
                            .concurrent(2)
                            .await
                    }
                })
                .map(|_| ())
                .map_err(|e| s3_err(&self.display(rel), e))
            }
        }
    }

    /// Write `bytes` at `rel` only if nothing is there (`Ok(false)` then): atomic and
    /// durable, and a reader never sees a partial object. Local: temp file, fsync, hard
    /// link to the name (fails if it exists), directory fsync. S3: `If-None-Match: *`.
    pub fn put_new(&self, rel: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        match self {
            Self::Local(root) => {
                let (path, dir, tmp) = durable_temp(root, rel, bytes)?;
                match tmp.persist_noclobber(&path) {
                    Ok(_) => {}
                    Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Ok(false);
                    }
                    Err(e) => return Err(io_err(&path)(e.error)),
                }
                sync_dir(&dir)?;
                Ok(true)
            }
            Self::S3 { op, sub, .. } => {
                self.writable()?;
                let (op, rel2, bytes) = (op.clone(), format!("{sub}{rel}"), bytes.to_vec());
                match block(async move { op.write_with(&rel2, bytes).if_not_exists(true).await }) {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Ok(false),
                    Err(e) => Err(s3_err(&self.display(rel), e)),
                }
            }
        }
    }

    pub fn stat(&self, rel: &str) -> Result<Option<ObjectStat>, StoreError> {
        match self {
            Self::Local(root) => {
                let path = root.join(rel);
                match fs::metadata(&path) {
                    Ok(m) => Ok(Some(ObjectStat {
                        size: m.len(),
                        modified: m.modified().ok(),
                        version: None,
                        etag: None,
                    })),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err(&path)(e)),
                }
            }
            Self::S3 { op, sub, lock, .. } => {
                let (op, rel2) = (op.clone(), format!("{sub}{rel}"));
                match block(async move { op.stat(&rel2).await }) {
                    Ok(m) => Ok(Some(ObjectStat {
                        size: m.content_length(),
                        modified: m.last_modified().map(SystemTime::from),
                        version: None,
                        etag: None,
                    })),
                    Err(e) if e.kind() == ErrorKind::NotFound && lock.is_some() => {
                        Ok(self.hidden_entry(rel)?.map(|(_, stat)| stat))
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(s3_err(&self.display(rel), e)),
                }
            }
        }
    }

    pub fn exists(&self, rel: &str) -> Result<bool, StoreError> {
        Ok(self.stat(rel)?.is_some())
    }

    /// With Object Lock, whether `rel` is still under retention (judged precisely).
    pub fn retained(&self, rel: &str) -> Result<bool, StoreError> {
        let Some(lock) = self.locked() else {
            return Ok(false);
        };
        let (key, in_repo) = self.key_of(rel);
        if crate::object_lock::is_lock_file(&in_repo) {
            return Ok(false);
        }
        let lock = lock.clone();
        Ok(block(async move { lock.retained_until(&key, true).await })?.is_some())
    }

    /// Remove `rel` as retention does: with Object Lock, an object still under retention
    /// stays (`Ok(false)`; with `counted`, it is counted for `forget`'s report). Without,
    /// or once its retention has ended, it is removed (`Ok(true)`).
    pub fn delete_unless_retained(&self, rel: &str, counted: bool) -> Result<bool, StoreError> {
        if let Some(lock) = self.locked() {
            let (key, in_repo) = self.key_of(rel);
            if !crate::object_lock::is_lock_file(&in_repo) {
                let (lock2, key2) = (lock.clone(), key);
                // What retention's report counts is judged precisely; bookkeeping (the
                // job history's cap) trusts the listing.
                if let Some(until) =
                    block(async move { lock2.retained_until(&key2, counted).await })?
                {
                    if counted {
                        lock.count_deferred(&in_repo, until);
                    }
                    return Ok(false);
                }
            }
        }
        self.remove(rel)?;
        Ok(true)
    }

    /// Remove `rel`; a missing object is fine. With Object Lock (not a lock file), a
    /// record of the removal is written first at `lifeboat/removed/<path>`: the object is
    /// only hidden (its version stays, under retention), and the record tells it from one
    /// someone else hid (which reads bring back).
    pub fn delete(&self, rel: &str) -> Result<(), StoreError> {
        if let (Some(lock), Self::S3 { op, .. }) = (self.locked(), self) {
            let (key, in_repo) = self.key_of(rel);
            if !crate::object_lock::is_lock_file(&in_repo) {
                // The record names the version hidden: a later version at the same path
                // (an incident opened again) is not covered by it.
                let lock = lock.clone();
                let Some(version) = block(async move { lock.version_of(&key).await })? else {
                    return Ok(());
                };
                self.writable()?;
                let record = format!("{}{in_repo}", crate::object_lock::REMOVED);
                let text = serde_json::json!({
                    "removed": jiff::Timestamp::now().to_string(),
                    "version": version,
                })
                .to_string();
                let op2 = op.clone();
                block(async move { op2.write(&record, text.into_bytes()).await })
                    .map_err(|e| s3_err(&self.display(rel), e))?;
            }
        }
        self.remove(rel)
    }

    fn remove(&self, rel: &str) -> Result<(), StoreError> {
        if let Some(lock) = self.locked() {
            lock.forget_written(&self.key_of(rel).0);
        }
        match self {
            Self::Local(root) => {
                let path = root.join(rel);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
                    _ => Ok(()),
                }
            }
            Self::S3 { op, sub, .. } => {
                let (op, rel2) = (op.clone(), format!("{sub}{rel}"));
                block(async move { op.delete(&rel2).await })
                    .map_err(|e| s3_err(&self.display(rel), e))
            }
        }
    }

    /// Names directly under the folder `rel` (files and folders, without a trailing `/`),
    /// sorted; none if it does not exist. Local temp files (`.tmp-*`) are left out.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, StoreError> {
        let mut names = match self {
            Self::Local(root) => {
                let path = root.join(rel);
                let rd = match fs::read_dir(&path) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(io_err(&path)(e)),
                };
                let mut names = Vec::new();
                for e in rd {
                    let e = e.map_err(io_err(&path))?;
                    names.push(e.file_name().to_string_lossy().into_owned());
                }
                names.retain(|n| !n.starts_with(".tmp-"));
                names
            }
            Self::S3 { op, sub, .. } => {
                let dir = match rel.trim_matches('/') {
                    "" => sub.clone(),
                    d => format!("{sub}{d}/"),
                };
                let (op, dir2) = (op.clone(), dir.clone());
                let entries = block(async move { op.list(&dir2).await })
                    .map_err(|e| s3_err(&self.display(rel), e))?;
                if let Some(lock) = self.locked() {
                    let root = self.key_root();
                    for e in &entries {
                        if let Some(w) = e.metadata().last_modified() {
                            lock.note_written(format!("{root}{}", e.path()), SystemTime::from(w));
                        }
                    }
                }
                entries
                    .into_iter()
                    .filter(|e| e.path() != dir && e.path() != "/" && !e.path().is_empty())
                    .map(|e| e.name().trim_end_matches('/').to_string())
                    .collect()
            }
        };
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Every file below the folder `rel`, at any depth: its name (the last part of its path)
    /// and size. Any error fails the whole listing, and on disk so does a missing folder: a
    /// listing that is silently short makes a prune delete what is still in use.
    pub fn list_files(&self, rel: &str) -> Result<Vec<(String, u64)>, StoreError> {
        if let Self::Local(root) = self {
            let dir = root.join(rel);
            fs::metadata(&dir).map_err(io_err(&dir))?;
        }
        Ok(self
            .walk(rel)?
            .into_iter()
            .map(|(path, stat)| {
                let name = path.rsplit('/').next().unwrap_or(&path).to_string();
                (name, stat.size)
            })
            .collect())
    }

    /// Every object below the folder `rel`, at any depth: its path relative to `rel`
    /// (`/`-separated) and its size and time of writing, sorted by path. A missing folder
    /// is empty. Temp files of writes under way are left out.
    pub fn walk(&self, rel: &str) -> Result<Vec<(String, ObjectStat)>, StoreError> {
        Ok(self
            .walk_versions(rel)?
            .into_iter()
            .map(|(path, stat, _)| (path, stat))
            .collect())
    }

    /// [`Self::walk`], and with Object Lock the other versions the bucket keeps of each
    /// object (delete markers left out), newest first.
    #[allow(clippy::type_complexity)]
    pub fn walk_versions(
        &self,
        rel: &str,
    ) -> Result<Vec<(String, ObjectStat, Vec<ObjectStat>)>, StoreError> {
        let mut found = Vec::new();
        match self {
            Self::Local(root) => {
                let base = root.join(rel);
                let mut dirs = vec![base.clone()];
                while let Some(dir) = dirs.pop() {
                    let rd = match fs::read_dir(&dir) {
                        Ok(rd) => rd,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io_err(&dir)(e)),
                    };
                    for e in rd {
                        let e = e.map_err(io_err(&dir))?;
                        // A file being written (ours `.tmp-*`, rustic's local backend
                        // `<id>-tmp-`, then renamed) is not part of the repository yet.
                        let name = e.file_name().to_string_lossy().into_owned();
                        if name.starts_with(".tmp-") || name.ends_with("-tmp-") {
                            continue;
                        }
                        let path = e.path();
                        let meta = match e.metadata() {
                            Ok(m) => m,
                            // Gone between the listing and the look at it (renamed into
                            // place, or removed): not there now, as on S3.
                            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(err) => return Err(io_err(&path)(err)),
                        };
                        if meta.is_dir() {
                            dirs.push(path);
                        } else if meta.is_file() {
                            let relative = path
                                .strip_prefix(&base)
                                .unwrap_or(&path)
                                .to_string_lossy()
                                .into_owned();
                            found.push((
                                relative,
                                ObjectStat {
                                    size: meta.len(),
                                    modified: meta.modified().ok(),
                                    version: None,
                                    etag: None,
                                },
                                Vec::new(),
                            ));
                        }
                    }
                }
            }
            Self::S3 { op, sub, lock, url } => {
                let dir = match rel.trim_matches('/') {
                    "" => sub.clone(),
                    d => format!("{sub}{d}/"),
                };
                let (op, dir2) = (op.clone(), dir.clone());
                let versioned = lock.is_some();
                let entries = block(async move {
                    op.list_with(&dir2)
                        .recursive(true)
                        .versions(versioned)
                        .deleted(versioned)
                        .await
                })
                .map_err(|e| s3_err(&self.display(rel), e))?;
                let entries = match lock {
                    Some(lock) => crate::object_lock::visible(
                        lock,
                        entries,
                        &format!("{url}/"),
                        &self.key_root(),
                    )?,
                    None => entries
                        .into_iter()
                        .map(|entry| crate::object_lock::Found {
                            entry,
                            others: Vec::new(),
                        })
                        .collect(),
                };
                for f in entries {
                    if !f.entry.metadata().is_file() {
                        continue;
                    }
                    let relative = f.entry.path().strip_prefix(&dir).unwrap_or(f.entry.path());
                    found.push((
                        relative.to_string(),
                        ObjectStat::of(&f.entry),
                        f.others.iter().map(ObjectStat::of).collect(),
                    ));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Create the folder `rel` (local); nothing to do on S3.
    pub fn create_dir(&self, rel: &str) -> Result<(), StoreError> {
        if let Self::Local(root) = self {
            let p = root.join(rel);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// Whether the location holds anything at all.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        match self {
            Self::Local(root) => Ok(fs::read_dir(root).map_or(true, |mut d| d.next().is_none())),
            Self::S3 { .. } => Ok(self.list("")?.is_empty()),
        }
    }
}

/// `bytes` in a synced temp file beside `root/rel`: the path, its folder and the file.
fn durable_temp(
    root: &Path,
    rel: &str,
    bytes: &[u8],
) -> Result<(PathBuf, PathBuf, tempfile::NamedTempFile), StoreError> {
    let path = root.join(rel);
    let dir = path.parent().unwrap_or(root).to_path_buf();
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&dir)
        .map_err(io_err(&dir))?;
    tmp.write_all(bytes).map_err(io_err(&path))?;
    tmp.as_file().sync_all().map_err(io_err(&path))?;
    Ok((path, dir, tmp))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::{S3Problem, s3_err};

    /// From the serve benchmark: a backup verifying its snapshot listed the index while
    /// another backup in the same process wrote one (`<id>-tmp-`, then renamed): the temp
    /// file was gone when it was looked at, and the listing failed the backup. A file being
    /// written is not listed; the others are, and a listing error still fails.
    #[test]
    fn a_local_listing_leaves_out_files_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index");
        std::fs::create_dir_all(&index).unwrap();
        std::fs::write(index.join("aa11"), b"x").unwrap();
        std::fs::write(index.join("bb22-tmp-"), b"half").unwrap();
        let store = super::Store::Local(dir.path().to_path_buf());
        let files = store.list_files("index").unwrap();
        assert_eq!(files, vec![("aa11".to_string(), 1)]);
        assert!(store.list_files("missing").is_err());
    }

    /// Issue 18, point 8: the problem is told by the errors' types and S3's reply code, not
    /// by the words of the message.
    #[test]
    fn s3_problems_are_classified_where_the_error_arrives() {
        // As opendal reports a signing failure: reqsign's typed error as the source.
        let unsigned = opendal::Error::new(opendal::ErrorKind::Unexpected, "signing http request")
            .set_source(reqsign_core::Error::credential_invalid("no credential"));
        let e = s3_err("config", unsigned);
        assert!(matches!(
            e,
            super::StoreError::S3 {
                problem: S3Problem::NoCredentials,
                ..
            }
        ));
        let hint = e.hint().unwrap();
        assert!(hint.starts_with("no S3 credentials were found"), "{hint}");

        let reply = |kind, code: &str| {
            opendal::Error::new(
                kind,
                format!(
                    r#"S3Error {{ code: "{code}", message: "x", resource: "", request_id: "" }}"#
                ),
            )
        };
        let problem = |e| match s3_err("config", e) {
            super::StoreError::S3 { problem, .. } => problem,
            other => panic!("{other:?}"),
        };
        use opendal::ErrorKind::*;
        assert_eq!(
            problem(reply(NotFound, "NoSuchBucket")),
            S3Problem::NoSuchBucket
        );
        assert_eq!(problem(reply(NotFound, "NoSuchKey")), S3Problem::NotFound);
        assert_eq!(
            problem(reply(Unexpected, "SignatureDoesNotMatch")),
            S3Problem::Denied
        );
        assert_eq!(
            problem(opendal::Error::new(PermissionDenied, "HTTP 403")),
            S3Problem::Denied
        );
        // The words alone decide nothing.
        assert_eq!(
            problem(opendal::Error::new(
                Unexpected,
                "failed to load signing credential"
            )),
            S3Problem::Other
        );
    }

    #[test]
    fn opendal_errors_are_shortened() {
        let raw = r#"Unexpected (persistent) at write, context: { uri: http://127.0.0.1:1/b/repo/data/c7/c7, response: Parts { status: 503, headers: {"connection": "close"} }, service: s3, path: data/c7/c7, written: 241447 } => S3Error { code: "InternalError", message: "injected 503", resource: "", request_id: "" }"#;
        assert_eq!(
            super::tidy_opendal(raw),
            "Unexpected (persistent) at write `data/c7/c7` (InternalError: injected 503)"
        );
        assert_eq!(super::tidy_opendal("disk full"), "disk full");
        let head = r#"PermissionDenied (persistent) at stat, context: { uri: http://127.0.0.1:1/b/repo/config, response: Parts { status: 403, version: HTTP/1.1, headers: {} }, service: s3, path: config }"#;
        assert_eq!(
            super::tidy_opendal(head),
            "PermissionDenied (persistent) at stat `config` (HTTP 403)"
        );
    }
}
