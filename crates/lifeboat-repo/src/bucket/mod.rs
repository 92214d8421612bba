//! A bucket (or a prefix of one) as a backup source and a restore destination.
//!
//! Source: the objects under a prefix as snapshot entries `<target>/objects/<key>`, each
//! read lazily in ranged GETs (so a large, multipart object is never held in memory). An
//! entry carries the object's size and last-modified time, and its ETag folded into the
//! node's ctime: with the previous snapshot as parent, rustic links an object whose size,
//! last-modified and ETag are unchanged without reading it — the bucket is not downloaded
//! again. Destination: objects written back in parts, with their content type and user
//! metadata, hashed on the way.

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Read, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard},
};

use opendal::Operator;

mod prefetch;

use prefetch::Fetching;
pub use prefetch::{PREFETCH_BYTES, PREFETCH_OBJECTS, Prefetched, likely_changed};

use crate::{
    source::{Content, SourceEntry},
    store::{StoreError, block, runtime},
};

/// One object as a listing shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The key below the listed prefix.
    pub key: String,
    pub size: u64,
    pub etag: String,
    /// RFC 3339.
    pub last_modified: String,
}

/// A bucket prefix on an S3 server.
#[derive(Clone)]
pub struct Bucket {
    op: Operator,
    url: String,
}

const PART: u64 = 8 << 20;

fn err(url: &str, key: &str, e: opendal::Error) -> StoreError {
    crate::store::s3_err(&format!("{url}/{key}"), e)
}

impl Bucket {
    pub fn open(loc: &lifeboat_core::S3Location) -> Result<Self, StoreError> {
        Ok(Self {
            op: crate::store::s3_operator(loc)?,
            url: loc.url(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every object below the prefix, sorted by key. Folder markers (keys ending in `/`)
    /// are left out. Listed folder by folder, many at once ([`Walk`]).
    pub fn list(&self) -> Result<Vec<Listed>, StoreError> {
        self.list_walking(Walk::default())
    }

    /// [`Bucket::list`] with the walk's limits given.
    pub fn list_walking(&self, walk: Walk) -> Result<Vec<Listed>, StoreError> {
        let op = self.op.clone();
        let entries = block(walk_folders(op, walk)).map_err(|(p, e)| err(&self.url, &p, e))?;
        let out = listed(entries);
        // Listings that overlap (a server's quirk) would show an object twice.
        if let Some(w) = out.windows(2).find(|w| w[0].key == w[1].key) {
            let e = opendal::Error::new(
                opendal::ErrorKind::Unexpected,
                "listed twice when listed folder by folder (the server's listings overlap)",
            );
            return Err(err(&self.url, &w[0].key, e));
        }
        Ok(out)
    }

    /// [`Bucket::list`] in one flat listing: a page of 1,000 keys after the other.
    pub fn list_flat(&self) -> Result<Vec<Listed>, StoreError> {
        let op = self.op.clone();
        let entries = block(async move { op.list_with("").recursive(true).await })
            .map_err(|e| err(&self.url, "", e))?;
        Ok(listed(entries))
    }

    /// Content type and user metadata of `key` (a HEAD request); `None` if it does not
    /// exist (the bucket must).
    pub fn head_if_present(&self, key: &str) -> Result<Option<Head>, StoreError> {
        let (op, k) = (self.op.clone(), key.to_string());
        match block(async move { op.stat(&k).await }) {
            Ok(m) => Ok(Some(Head::of(&m))),
            Err(e) if vanished(&self.op, &e) => Ok(None),
            Err(e) => Err(err(&self.url, key, e)),
        }
    }

    /// A reader of `key` that fetches `PART`-sized ranges as it goes.
    pub fn reader(&self, key: &str, size: u64) -> ObjectReader {
        ObjectReader {
            op: self.op.clone(),
            url: self.url.clone(),
            key: key.to_string(),
            size,
            pos: 0,
            buf: Vec::new(),
            at: 0,
            ahead: None,
            seen: None,
            may_leave_out: false,
            head_seen: false,
            etag: String::new(),
            modified: None,
        }
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (op, k) = (self.op.clone(), key.to_string());
        block(async move { op.delete(&k).await }).map_err(|e| err(&self.url, key, e))
    }

    /// The keys that exist, of `keys`.
    pub fn existing(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let listed: std::collections::HashSet<String> =
            self.list()?.into_iter().map(|l| l.key).collect();
        Ok(keys
            .iter()
            .filter(|k| listed.contains(*k))
            .cloned()
            .collect())
    }

    /// A writer for `key`, uploading in parts; `finish` completes the object.
    pub fn writer(
        &self,
        key: &str,
        content_type: Option<&str>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<ObjectWriter, StoreError> {
        let (op, k) = (self.op.clone(), key.to_string());
        let ct = content_type.map(str::to_string);
        let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
        let w = block(async move {
            let mut w = op.writer_with(&k).chunk(PART as usize);
            if let Some(ct) = ct {
                w = w.content_type(&ct);
            }
            if !meta.is_empty() {
                w = w.user_metadata(meta);
            }
            w.await
        })
        .map_err(|e| err(&self.url, key, e))?;
        Ok(ObjectWriter {
            inner: Some(w),
            url: self.url.clone(),
            key: key.to_string(),
            // Grows to a part at most: most objects are small.
            buf: Vec::new(),
        })
    }
}

/// An object's content type and user metadata, as a HEAD or a GET reply shows them, and
/// the ETag and last-modified of the version the reply came from (if it showed them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub etag: Option<String>,
    pub last_modified: Option<jiff::Timestamp>,
}

impl Head {
    fn of(m: &opendal::Metadata) -> Self {
        Self {
            content_type: m.content_type().map(str::to_string),
            metadata: m
                .user_metadata()
                .map(|h: &HashMap<String, String>| {
                    h.iter().map(|(a, b)| (a.clone(), b.clone())).collect()
                })
                .unwrap_or_default(),
            etag: m.etag().map(|e| e.trim_matches('"').to_string()),
            last_modified: m.last_modified().map(jiff::Timestamp::from),
        }
    }
}

/// What reading the objects showed, by index: the [`Head`]s of the replies (a backup
/// needs no HEAD request for an object it read), and the objects left out because they
/// were deleted or replaced after the listing (their streams ended early).
#[derive(Default)]
pub struct Seen {
    heads: Mutex<HashMap<usize, Head>>,
    left_out: Mutex<BTreeMap<usize, Gone>>,
}

impl Seen {
    fn put(&self, i: usize, head: Head) {
        self.heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(i, head);
    }

    fn leave_out(&self, i: usize, reason: Gone) {
        self.left_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(i, reason);
    }

    /// What reading object `i` showed, if it was read.
    pub fn take(&self, i: usize) -> Option<Head> {
        self.heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&i)
    }

    /// The objects left out so far, and why.
    pub fn left_out(&self) -> BTreeMap<usize, Gone> {
        self.left_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One GET of `range` of `key`, with the object's [`Head`] from the reply. `Whole(most)`
/// asks for all of it without a `Range` header (a `Range` costs s3s-fs a lot of CPU) and
/// stops reading once the reply passes `most` bytes: an object replaced by a larger one
/// since it was listed is not held in memory (the caller sees the wrong length). With
/// `if_match`, every request of it (retries resume with a new one) asks for that version
/// (412 otherwise), so versions are never spliced.
async fn get(
    op: &Operator,
    key: &str,
    range: Get,
    if_match: Option<&str>,
) -> opendal::Result<(Vec<u8>, Option<Head>)> {
    let reader = match if_match {
        Some(etag) => op.reader_with(key).if_match(etag).await?,
        None => op.reader(key).await?,
    };
    let bytes = match range {
        Get::Range(r) => reader.read(r).await?.to_vec(),
        Get::Whole(most) => {
            let mut stream = reader.clone().into_stream(..).await?;
            // Sized for the object as listed (growing by doubling copied each object
            // about twice); only one that has grown, an error anyway, grows it.
            let mut out = Vec::with_capacity(usize::try_from(most).unwrap_or(0));
            while out.len() as u64 <= most
                && let Some(buf) = next(&mut stream).await
            {
                for chunk in buf? {
                    out.extend_from_slice(&chunk);
                }
            }
            out
        }
    };
    Ok((bytes, reader.metadata().map(Head::of)))
}

/// The next item of an opendal stream (a lister, a reader's stream).
async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

/// The object is not there (deleted), though the bucket is: the server said 404 for it,
/// and a listing of one key at most still works (were the bucket gone, the backup must
/// fail rather than leave its objects out). Asked only after a 404, so it costs nothing
/// in the usual case.
fn vanished(op: &Operator, e: &opendal::Error) -> bool {
    if e.kind() != opendal::ErrorKind::NotFound {
        return false;
    }
    let op = op.clone();
    // One page of one key: `list_with(..).limit(1)` would only make every page that small
    // and then list the whole bucket.
    block(async move {
        let mut lister = op.lister_with("").limit(1).await?;
        next(&mut lister).await.transpose()
    })
    .is_ok()
}

/// How [`Bucket::list`] walks a bucket. A flat listing is one request per 1,000 keys, each
/// waiting for the page before it (the next one starts after its last key). Listings of
/// different folders (`/`-delimited) do not wait for each other, so they run at once; and
/// a server that answers for a prefix without going through the rest of the bucket
/// (s3s-fs walks every file of the bucket for each page of a flat listing) answers each
/// quickly. Walking costs a request per folder, so it stops where that would cost much
/// more than a flat listing: a folder with more subfolders than `fanout` (the listing
/// stops at the first one past it) is listed flat, and so is a folder whose subfolders
/// would take the folder listings past `requests`. At most `requests` folder listings and
/// as many flat ones, besides the pages of large folders.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    /// Listings in flight at once.
    pub at_once: usize,
    /// A folder with more subfolders than this is listed flat instead.
    pub fanout: usize,
    /// Folder listings at most: a folder whose subfolders would go past them is listed
    /// flat instead.
    pub requests: usize,
}

impl Default for Walk {
    fn default() -> Self {
        Self {
            at_once: 16,
            fanout: 256,
            requests: 1000,
        }
    }
}

/// Whether a folder can be listed by its own prefix: opendal normalizes a path (an empty
/// segment `//`, a leading `/`, surrounding spaces), which would list another prefix.
fn walkable(folder: &str) -> bool {
    !folder.starts_with('/') && !folder.contains("//") && folder.trim() == folder
}

/// One folder's listing: its entries (the folder's own marker left out), or `None` if it
/// has more than `fanout` subfolders (the listing stops there).
async fn list_folder(
    op: &Operator,
    prefix: &str,
    fanout: usize,
) -> opendal::Result<Option<Vec<opendal::Entry>>> {
    let mut lister = op.lister_with(prefix).await?;
    let (mut entries, mut folders) = (Vec::new(), 0);
    while let Some(e) = next(&mut lister).await {
        let e = e?;
        // A folder marker: an object whose key ends in `/` — the folder's own (listed in it
        // under the folder's path; at the operator's root, as `/`), or a subfolder's, which
        // some servers list beside the subfolder's common prefix. A common prefix comes back
        // as a folder path too (`<root>/`, a key `<root>//x`, also as `/`): only an object
        // has a last-modified time.
        if e.path().ends_with('/') && e.metadata().last_modified().is_some() {
            continue;
        }
        if e.path().ends_with('/') {
            folders += 1;
            if folders > fanout {
                return Ok(None);
            }
        }
        entries.push(e);
    }
    Ok(Some(entries))
}

/// The entries of every object under the operator's root, as [`Walk`] says. An error names
/// the prefix whose listing failed.
async fn walk_folders(
    op: Operator,
    walk: Walk,
) -> Result<Vec<opendal::Entry>, (String, opendal::Error)> {
    // (prefix, flat): a folder to list by itself, or everything under it at once.
    let mut todo = std::collections::VecDeque::from([(String::new(), false)]);
    let mut planned = 1;
    let mut running = tokio::task::JoinSet::new();
    let mut out = Vec::new();
    loop {
        while running.len() < walk.at_once.max(1) {
            let Some((prefix, flat)) = todo.pop_front() else {
                break;
            };
            let op = op.clone();
            running.spawn(async move {
                let r = if flat {
                    op.list_with(&prefix).recursive(true).await.map(Some)
                } else {
                    list_folder(&op, &prefix, walk.fanout).await
                };
                (prefix, flat, r)
            });
        }
        let Some(done) = running.join_next().await else {
            return Ok(out);
        };
        let (prefix, flat, r) = match done {
            Ok(done) => done,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => {
                    let e = opendal::Error::new(opendal::ErrorKind::Unexpected, e.to_string());
                    return Err((String::new(), e));
                }
            },
        };
        let entries = r.map_err(|e| (prefix.clone(), e))?;
        if flat {
            out.extend(entries.unwrap_or_default());
            continue;
        }
        // Too many subfolders, a subfolder opendal cannot list by itself, or past the
        // budget: the folder again, flat (one listing for all below it).
        let Some(entries) = entries else {
            todo.push_back((prefix, true));
            continue;
        };
        let (folders, objects): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|e| e.path().ends_with('/'));
        if planned + folders.len() > walk.requests || !folders.iter().all(|f| walkable(f.path())) {
            todo.push_back((prefix, true));
            continue;
        }
        planned += folders.len();
        out.extend(objects);
        todo.extend(folders.into_iter().map(|f| (f.path().to_string(), false)));
    }
}

/// Listed objects, sorted by key, folder markers left out.
fn listed(entries: Vec<opendal::Entry>) -> Vec<Listed> {
    let mut out: Vec<Listed> = entries
        .into_iter()
        .filter(|e| !e.path().ends_with('/') && !e.path().is_empty())
        .map(|e| {
            let m = e.metadata();
            Listed {
                key: e.path().to_string(),
                size: m.content_length(),
                etag: m.etag().unwrap_or_default().trim_matches('"').to_string(),
                last_modified: m
                    .last_modified()
                    .map(|t| jiff::Timestamp::from(t).to_string())
                    .unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// What [`get`] asks for.
enum Get {
    Range(std::ops::Range<u64>),
    /// The whole object, read up to a little past this many bytes.
    Whole(u64),
}

/// Reads an object in ranges.
pub struct ObjectReader {
    op: Operator,
    url: String,
    key: String,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
    /// Where a small object may have been fetched already, and its place in the order.
    ahead: Option<(Arc<AheadHandle>, usize)>,
    /// Where to leave the object's [`Head`] once a reply showed it (or why it was left
    /// out), under this index. Without it, a vanished or replaced object is an error.
    seen: Option<(Arc<Seen>, usize)>,
    /// Whether the backup waits for this object (it changed since the parent): only then
    /// can it be left out. One the parent had, which rustic reads anyway, keeps the
    /// parent's record, so a change under it is an error.
    may_leave_out: bool,
    head_seen: bool,
    /// The version read: the ETag the listing showed, else the first reply's (s3s-fs
    /// lists none). A reply from another version is an error.
    etag: String,
    /// The last-modified the listing showed, compared (in whole seconds, as replies show
    /// it) where the listing had no ETag.
    modified: Option<jiff::Timestamp>,
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            match self.fill() {
                Ok(()) => {}
                // The object is gone, or another version than the one listed: it is left
                // out (its reason kept in `Seen`). The read fails, so the archiver keeps no
                // node for it: a restic restore of the snapshot writes no short file.
                Err(Fetch::Gone(why)) => {
                    let message = format!("`{}/{}` {why}", self.url, self.key);
                    return Err(match (&self.seen, self.may_leave_out) {
                        (Some((seen, i)), true) => {
                            seen.leave_out(*i, why);
                            io::Error::other(crate::LeftOut(message))
                        }
                        _ => io::Error::other(message),
                    });
                }
                Err(Fetch::Failed(e)) => return Err(e),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Why [`ObjectReader::fill`] has no bytes.
enum Fetch {
    Gone(Gone),
    Failed(io::Error),
}

/// How an object differs from its listing when it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    Deleted,
    /// Another version (what showed it).
    Changed(String),
}

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gone::Deleted => write!(f, "was deleted after it was listed"),
            Gone::Changed(how) => write!(f, "changed while it was read ({how})"),
        }
    }
}

/// Whether `head` shows the version known by `etag` (quotes aside) or, where either has
/// none, by `modified` (replies carry whole seconds); how they differ otherwise.
fn same_version(etag: &str, modified: Option<jiff::Timestamp>, head: &Head) -> Result<(), String> {
    let bare = |e: &str| e.trim_start_matches("W/").trim_matches('"').to_string();
    match (&head.etag, head.last_modified, modified) {
        (Some(shown), _, _) if !etag.is_empty() && bare(shown) != bare(etag) => {
            Err(format!("listed with ETag {etag}, read ETag {shown}"))
        }
        (Some(_), _, _) if !etag.is_empty() => Ok(()),
        (_, Some(shown), Some(known)) if shown.as_second() != known.as_second() => Err(format!(
            "listed with last-modified {known}, read last-modified {shown}"
        )),
        _ => Ok(()),
    }
}

impl Listed {
    /// Whether a reply (a HEAD) shows the version listed.
    pub fn shown_by(&self, head: &Head) -> bool {
        same_version(&self.etag, self.last_modified.parse().ok(), head).is_ok()
    }
}

impl ObjectReader {
    /// The next bytes into `buf` (none at the end): the read-ahead's copy, or the next
    /// part's ranged GET.
    fn fill(&mut self) -> Result<(), Fetch> {
        if let Some((ahead, i)) = self.ahead.take()
            && let Some((bytes, head)) = ahead.0.take(i)
            && bytes.len() as u64 == self.size
        {
            self.saw(head)?;
            self.pos = self.size;
            self.buf = bytes;
            self.at = 0;
            return Ok(());
        }
        if self.pos >= self.size {
            self.buf.clear();
            self.at = 0;
            return Ok(());
        }
        let end = (self.pos + PART).min(self.size);
        let (op, k, range) = (self.op.clone(), self.key.clone(), self.pos..end);
        let etag = (!self.etag.is_empty()).then(|| self.etag.clone());
        let got = block(async move { get(&op, &k, Get::Range(range), etag.as_deref()).await });
        let (got, head) = match got {
            Ok(got) => got,
            // Deleted since the listing (not the bucket: that is a failure).
            Err(e) if vanished(&self.op, &e) => {
                return Err(Fetch::Gone(Gone::Deleted));
            }
            Err(e) if e.kind() == opendal::ErrorKind::ConditionNotMatch => {
                return Err(Fetch::Gone(Gone::Changed(format!(
                    "the server has no version {} any more",
                    self.etag
                ))));
            }
            Err(e) if e.kind() == opendal::ErrorKind::RangeNotSatisfied => {
                return Err(Fetch::Gone(Gone::Changed(format!(
                    "now shorter than {} bytes",
                    self.pos + 1
                ))));
            }
            Err(e) => {
                return Err(Fetch::Failed(io::Error::other(
                    err(&self.url, &self.key, e).to_string(),
                )));
            }
        };
        self.saw(head)?;
        if got.len() as u64 != end - self.pos {
            return Err(Fetch::Gone(Gone::Changed(format!(
                "asked for {} bytes at {}, got {}",
                end - self.pos,
                self.pos,
                got.len()
            ))));
        }
        self.pos = end;
        self.buf = got;
        self.at = 0;
        Ok(())
    }

    /// What a reply showed: a version other than the one listed means the object changed
    /// (its bytes would be stored under the listed version's record, or mixed with
    /// another version's parts).
    fn saw(&mut self, head: Option<Head>) -> Result<(), Fetch> {
        let Some(head) = head else { return Ok(()) };
        same_version(&self.etag, self.modified, &head)
            .map_err(|how| Fetch::Gone(Gone::Changed(how)))?;
        if self.etag.is_empty()
            && let Some(etag) = &head.etag
        {
            self.etag = etag.clone();
        }
        if !self.head_seen
            && let Some((seen, i)) = &self.seen
        {
            seen.put(*i, head);
            self.head_seen = true;
        }
        Ok(())
    }
}

/// Writes an object in parts.
pub struct ObjectWriter {
    inner: Option<opendal::Writer>,
    url: String,
    key: String,
    buf: Vec<u8>,
}

impl ObjectWriter {
    fn flush_part(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut w = self
            .inner
            .take()
            .ok_or_else(|| io::Error::other("writer closed"))?;
        let part = std::mem::take(&mut self.buf);
        let (result, w) = block(async move {
            let r = w.write(part).await;
            (r, w)
        });
        self.inner = Some(w);
        result.map_err(|e| io::Error::other(err(&self.url, &self.key, e).to_string()))
    }

    /// Upload what is left and complete the object.
    pub fn finish(mut self) -> Result<(), StoreError> {
        self.flush_part().map_err(|e| StoreError::Io {
            path: format!("{}/{}", self.url, self.key),
            source: e,
        })?;
        let mut w = self.inner.take().expect("open writer");
        block(async move { w.close().await })
            .map(|_| ())
            .map_err(|e| err(&self.url, &self.key, e))
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() as u64 >= PART {
            self.flush_part()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The snapshot path of `key` below `root`: segments that are empty, `.` or `..` are
/// escaped (`%`, `%2E`, `%2E%2E`), and `%` itself as `%25`; the manifest keeps the key.
pub fn object_path(root: &str, key: &str) -> String {
    let segments: Vec<String> = key
        .split('/')
        .map(|s| match s {
            "" => "%".to_string(),
            "." => "%2E".to_string(),
            ".." => "%2E%2E".to_string(),
            s => s.replace('%', "%25"),
        })
        .collect();
    format!("{root}/{}", segments.join("/"))
}

/// The order of paths made by [`object_path`] as `Path` orders them (the archiver's
/// order): component by component. Below their common root they have no empty, `.` or
/// `..` component, so comparing the `/`-separated parts is the same, without parsing each
/// path at every comparison.
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// A timestamp derived from an ETag (about 61 bits of its SHA-256: seconds and
/// nanoseconds), stored as the entry's ctime so that rustic's parent match (size, mtime,
/// ctime) also requires the same ETag.
fn etag_time(etag: &str) -> jiff::Timestamp {
    use sha2::Digest;
    let h = sha2::Sha256::digest(etag.as_bytes());
    let n = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    let secs = (n >> 32) % 4_000_000_000;
    let nanos = (n & 0xffff_ffff) % 1_000_000_000;
    jiff::Timestamp::new(secs as i64, nanos as i32).unwrap_or_default()
}

/// Snapshot entries for `objects` below `root`, sorted by path (the archiver makes the
/// folders), each with the index of its object; the node of each has the object's size,
/// last-modified and ETag. The objects `read(i)` says will be read, and that fit in one
/// part, are fetched ahead of the archiver, several at a time (see [`ReadAhead`]). What
/// the replies show of each object read is left in the returned [`Seen`]. The first
/// fetches start at once.
pub fn entries(
    bucket: &Bucket,
    root: &str,
    objects: &[Listed],
    read: impl Fn(usize) -> bool,
    mut early: Prefetched,
) -> (Vec<(usize, SourceEntry)>, Arc<Seen>) {
    let mut by_path: Vec<(String, usize)> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| (object_path(root, &o.key), i))
        .collect();
    // No two keys have one path (`object_path` escapes what `Path` would merge), and the
    // listing refuses a key listed twice: each object is one entry.
    by_path.sort_unstable_by(|(a, _), (b, _)| path_order(a, b));
    let small: Vec<(usize, usize)> = by_path
        .iter()
        .enumerate()
        .filter(|&(_, &(_, i))| read(i) && objects[i].size <= PART)
        .map(|(at, &(_, i))| (at, i))
        .collect();
    let order: Vec<(String, u64, String)> = small
        .iter()
        .map(|(_, i)| {
            let o = &objects[*i];
            (o.key.clone(), o.size, o.etag.clone())
        })
        .collect();
    let ahead = Arc::new(AheadHandle(Arc::new(ReadAhead {
        op: bucket.op.clone(),
        order,
        state: Mutex::new(AheadState::default()),
        changed: Condvar::new(),
    })));
    {
        let mut s = ahead.0.lock();
        // The early fetches of objects read are the read-ahead's own from here; the others
        // stop when `early` is dropped.
        if !early.is_empty() {
            let (fetched, mut taken) = (early.len(), 0);
            for (n, (key, size, etag)) in ahead.0.order.iter().enumerate() {
                if let Some(task) = early.take(key, *size, etag) {
                    ahead.0.start(&mut s, n, Some(task));
                    taken += 1;
                }
            }
            log::info!("{taken} of the {fetched} objects fetched early are read");
        }
        // Fetching starts now, while the archiver reads the index and the parent's trees.
        ahead.0.fill(&mut s);
    }
    drop(early);
    // Where each entry's object is in the read-ahead's order, by the entry's position.
    let place: HashMap<usize, usize> = small
        .into_iter()
        .enumerate()
        .map(|(n, (at, _))| (at, n))
        .collect();
    let seen = Arc::new(Seen::default());
    let entries = by_path
        .into_iter()
        .enumerate()
        .map(|(at, (path, i))| {
            let o = &objects[i];
            let mut reader = bucket.reader(&o.key, o.size);
            reader.ahead = place.get(&at).map(|&n| (ahead.clone(), n));
            reader.seen = Some((seen.clone(), i));
            reader.may_leave_out = read(i);
            reader.etag = o.etag.clone();
            reader.modified = o.last_modified.parse().ok();
            let (mut entry, _) = SourceEntry::new(path, Content::Stream(Box::new(reader)));
            entry.meta.size = o.size;
            entry.meta.mtime = o.last_modified.parse().ok();
            entry.meta.ctime = Some(etag_time(&o.etag));
            (i, entry)
        })
        .collect();
    (entries, seen)
}

/// Small objects fetched ahead of the archiver, which reads its entries one or two at a
/// time: one GET after another spends most of its time waiting for the server (s3s-fs
/// even sends the last bytes of each reply only after the client's delayed ACK, 40 ms).
/// Up to [`AHEAD_REQUESTS`] GETs run at once, at most [`AHEAD_OBJECTS`] objects and
/// [`AHEAD_BYTES`] (fetching or fetched) ahead of the last one read; a reader whose object
/// was not fetched (or failed, or came back another size) reads it itself.
struct ReadAhead {
    op: Operator,
    /// Key, size and listed ETag of each object to fetch, in the order the archiver reads
    /// them.
    order: Vec<(String, u64, String)>,
    state: Mutex<AheadState>,
    changed: Condvar,
}

const AHEAD_REQUESTS: usize = 128;
const AHEAD_OBJECTS: usize = 1024;
const AHEAD_BYTES: u64 = 64 << 20;

#[derive(Default)]
struct AheadState {
    /// The next object to fetch.
    next: usize,
    /// The furthest object read so far.
    read: usize,
    /// The fetches running, to stop them when the readers are gone.
    fetching: HashMap<usize, tokio::task::AbortHandle>,
    ready: HashMap<usize, (Vec<u8>, Option<Head>)>,
    /// The listed sizes of the objects being fetched and fetched: what the window holds
    /// in memory (128 GETs of objects near 8 MiB would otherwise hold 1 GiB).
    bytes: u64,
    stopped: bool,
}

/// Held by the readers: when the last is gone (the backup ended, failed or was
/// cancelled), no more objects are fetched and the running fetches stop.
struct AheadHandle(Arc<ReadAhead>);

impl Drop for AheadHandle {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.stopped = true;
        s.ready.clear();
        for (_, task) in s.fetching.drain() {
            task.abort();
        }
    }
}

/// Where a fetch of the read-ahead ends, however it ends (done, failed, stopped, or its
/// task panicked): the object leaves `fetching`, its bytes are kept if they may still be
/// read, and readers waiting for it wake (one waiting forever is what this prevents).
struct Landing {
    ahead: Arc<ReadAhead>,
    i: usize,
    size: u64,
    got: Option<(Vec<u8>, Option<Head>)>,
}

impl Landing {
    /// The fetch ended with these bytes (or none).
    fn land(mut self, got: Option<(Vec<u8>, Option<Head>)>) {
        self.got = got;
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        let me = &self.ahead;
        let mut s = me.lock();
        s.fetching.remove(&self.i);
        match self.got.take() {
            // Not if the archiver went far past it (linked it from the parent).
            Some(got) if !s.stopped && self.i + AHEAD_REQUESTS >= s.read => {
                s.ready.insert(self.i, got);
            }
            _ => s.bytes -= self.size,
        }
        me.fill(&mut s);
        me.changed.notify_all();
    }
}

/// An early fetch taken over: stopped if the task awaiting it is (dropping a `JoinHandle`
/// would leave it running).
struct Adopted(Fetching);

impl Drop for Adopted {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ReadAhead {
    fn lock(&self) -> MutexGuard<'_, AheadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start the fetches the window allows.
    fn fill(self: &Arc<Self>, s: &mut AheadState) {
        while !s.stopped
            && s.next < self.order.len()
            && s.next < s.read + AHEAD_OBJECTS
            && s.fetching.len() < AHEAD_REQUESTS
            && s.bytes < AHEAD_BYTES
        {
            let i = s.next;
            s.next += 1;
            // Not one taken over from an early fetch.
            if !s.fetching.contains_key(&i) && !s.ready.contains_key(&i) {
                self.start(s, i, None);
            }
        }
    }

    /// Fetch object `i`: a GET, or the `early` fetch of it. Its listed size counts in the
    /// window until it is taken or dropped. Called with the state locked (the task's own
    /// lock waits for it).
    fn start(self: &Arc<Self>, s: &mut AheadState, i: usize, early: Option<Fetching>) {
        let (key, size, etag) = self.order[i].clone();
        s.bytes += size;
        let op = self.op.clone();
        let landing = Landing {
            ahead: self.clone(),
            i,
            size,
            got: None,
        };
        let early = early.map(Adopted);
        let task = runtime().spawn(async move {
            let got = match early {
                // One that failed is a fetch that failed: the object is fetched again
                // (by the window if it has not passed it, else by the reader, which then
                // sees why).
                Some(mut early) => (&mut early.0).await.unwrap_or_else(|e| {
                    Err(opendal::Error::new(
                        opendal::ErrorKind::Unexpected,
                        format!("the early fetch of `{key}` stopped: {e}"),
                    ))
                }),
                None => {
                    let if_match = (!etag.is_empty()).then_some(etag.as_str());
                    get(&op, &key, Get::Whole(size), if_match).await
                }
            };
            landing.land(got.ok());
        });
        s.fetching.insert(i, task.abort_handle());
    }

    /// Object `i`'s bytes and head, if fetched (waiting while its GET runs).
    fn take(self: &Arc<Self>, i: usize) -> Option<(Vec<u8>, Option<Head>)> {
        let mut s = self.lock();
        s.read = s.read.max(i);
        // Fetched but passed over (the archiver linked it from the parent after all).
        let behind: Vec<usize> = s
            .ready
            .keys()
            .copied()
            .filter(|&n| n + AHEAD_REQUESTS < s.read)
            .collect();
        for n in behind {
            s.ready.remove(&n);
            s.bytes -= self.order[n].1;
        }
        if s.next <= i {
            s.next = i + 1; // read directly; the window starts after it
        }
        self.fill(&mut s);
        loop {
            if let Some(got) = s.ready.remove(&i) {
                s.bytes -= self.order[i].1;
                self.fill(&mut s);
                return Some(got);
            }
            if !s.fetching.contains_key(&i) {
                return None;
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_safe_paths() {
        assert_eq!(object_path("m/objects", "a/b.jpg"), "m/objects/a/b.jpg");
        assert_eq!(
            object_path("m/objects", "/x//../50%.txt"),
            "m/objects/%/x/%/%2E%2E/50%25.txt"
        );
        assert_ne!(etag_time("abc"), etag_time("abd"));
    }

    #[test]
    fn object_paths_sort_as_the_archiver_sorts_them() {
        // `/` sorts below `-`, `.` and digits as a separator, above them as a byte.
        let keys = [
            "a/b", "a-b", "a.b", "a", "a/b/c", "a/b-c", "a/b.c", "ab", "a0", "A", "b/", "b//c",
            "b", "./x", "../x", "%", "%/a", "x%y", "é", "e/é", "a b", "a/ b", " a", "a\\b", "",
            "/", "//",
        ];
        let paths: Vec<String> = keys.iter().map(|k| object_path("t/bucket", k)).collect();
        let mut ours = paths.clone();
        ours.sort_unstable_by(|a, b| path_order(a, b));
        let mut std_order = paths.clone();
        std_order.sort_by(|a, b| std::path::Path::new(a).cmp(std::path::Path::new(b)));
        assert_eq!(ours, std_order);
        // The byte order of the strings differs: the check above means something.
        let mut bytes = paths;
        bytes.sort();
        assert_ne!(bytes, std_order);
    }
}
