//! `lifeboat wal push` / `lifeboat wal fetch`: PostgreSQL's `archive_command` and
//! `restore_command` for physical targets.
//!
//! push: the file is sealed (zstd + XChaCha20-Poly1305 under a key derived from the
//! repository key) and stored at `lifeboat/wal/<system-id>/<timeline>/<name>` in the side
//! area, create-only and durable (temp file, fsync, link, directory fsync) before exit 0:
//! PostgreSQL recycles a segment once the command succeeded. The same name again with the
//! same content is fine (exit 0); other content under an archived name, or a segment of
//! another cluster, is refused (exit 1) so PostgreSQL keeps it and complains.
//!
//! fetch: writes the file atomically (temp + rename) where the server asks; a missing one
//! exits 1 without noise — that is how recovery learns it reached the end of the archive.

use std::{
    io::Write,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use lifeboat_core::{Config, TargetConfig, config::PostgresMode};
use lifeboat_engine::wal::{PREFETCH_DIR, feed as wal_feed, get, object_name, push_one};
use lifeboat_postgres::wal::{self, WalKind, WalName};
use lifeboat_repo::{Repo, SideKey};

use super::Context;
use crate::{
    cli::{WalCommand, WalFetchArgs, WalPrefetchArgs, WalPushArgs},
    error::{CliError, CliResult, FsContext},
};

pub async fn run(ctx: &Context, cmd: WalCommand) -> CliResult<i32> {
    match cmd {
        WalCommand::Push(args) => push(ctx, args).await,
        WalCommand::Fetch(args) => fetch(ctx, args).await,
        WalCommand::Prefetch(args) => prefetch_command(ctx, args).await,
    }
}

/// The physical target the command is for: `--target`, or the only one configured.
pub fn physical_target<'a>(
    config: &'a Config,
    wanted: Option<&str>,
) -> CliResult<(String, &'a TargetConfig)> {
    let physical: Vec<(&String, &TargetConfig)> = config
        .targets
        .iter()
        .filter(|(_, t)| t.mode == Some(PostgresMode::Physical))
        .collect();
    match wanted {
        Some(w) => physical
            .into_iter()
            .find(|(n, _)| n.as_str() == w)
            .map(|(n, t)| (n.clone(), t))
            .ok_or_else(|| {
                CliError::usage(
                    format!("no physical target `{w}` in the config"),
                    Some(
                        "a physical target is a postgres target with `mode = \"physical\"`".into(),
                    ),
                )
            }),
        None if physical.len() == 1 => Ok((physical[0].0.clone(), physical[0].1)),
        None => Err(CliError::usage(
            format!(
                "{} physical targets configured; name one with `--target`",
                physical.len()
            ),
            Some(
                "in `archive_command` and `restore_command`: `lifeboat wal push --target NAME %p`"
                    .into(),
            ),
        )),
    }
}

async fn open(ctx: &Context, config: &Config) -> CliResult<(Arc<Repo>, SideKey)> {
    let repo = ctx.open_repo(config).await?;
    let r = repo.clone();
    let key = tokio::task::spawn_blocking(move || r.side_key()).await??;
    Ok((repo, key))
}

async fn push(ctx: &Context, args: WalPushArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let (name, target) = physical_target(&config, args.target.as_deref())?;
    let file = args.path.clone();
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(wal_name) = WalName::parse(&file_name) else {
        return Err(CliError::usage(
            format!("`{}` is not a WAL file name", file.display()),
            Some("archive_command = 'lifeboat wal push %p'".into()),
        ));
    };
    let data_dir = target.data_dir.clone().unwrap_or_default();
    let cluster = wal::control_system_id(&data_dir).map_err(|e| {
        CliError::failure(
            format!(
                "cannot read the system identifier of `{name}` from `{}/global/pg_control`: {e}",
                data_dir.display()
            ),
            Some("`data-dir` must be the server's data directory, readable by this user".into()),
        )
    })?;
    let spool = Spool::new(cluster);
    let rel = object_name(cluster, &wal_name);
    let side =
        lifeboat_repo::SideArea::new(&lifeboat_repo::Store::open(&config.repository_location()?)?);
    // Pushed ahead by an earlier call and still in the archive: done, without deriving the
    // repository key again. The same file (inode, size, mtime) needs no hashing; PostgreSQL
    // never rewrites a segment once it is ready, and never reuses a name.
    let identity = std::fs::metadata(&file).ok().map(|m| Spool::identity(&m));
    if identity
        .as_deref()
        .is_some_and(|id| spool.confirms_file(&wal_name.name, id))
        && side.exists(&rel)?
    {
        log::info!("`{file_name}` was pushed ahead");
        return Ok(0);
    }
    let bytes = std::fs::read(&file)
        .map_err(|e| CliError::failure(format!("cannot read `{}`: {e}", file.display()), None))?;
    if matches!(wal_name.kind, WalKind::Segment | WalKind::Partial)
        && let Some(found) = wal::segment_system_id(&bytes)
        && found != cluster
    {
        return Err(CliError::failure(
            format!(
                "`{file_name}` belongs to cluster {found}, but target `{name}` is cluster {cluster}"
            ),
            Some("is `data-dir` the data directory of the server that archives?".into()),
        ));
    }
    if spool.confirms(&wal_name.name, &bytes) && side.exists(&rel)? {
        log::info!("`{file_name}` was pushed ahead");
        return Ok(0);
    }
    let (repo, key) = open(ctx, &config).await?;
    let (r, k, sp) = (repo.clone(), key.clone(), spool.clone());
    tokio::task::spawn_blocking(move || -> CliResult<()> {
        push_one(&r, &k, cluster, &wal_name, &bytes)?;
        sp.record(&wal_name.name, &bytes, identity.as_deref());
        // The key is derived now: push what else is ready, and what became ready meanwhile.
        let mut seen = std::collections::HashSet::from([file.clone()]);
        let started = std::time::Instant::now();
        while seen.len() <= LOOK_AHEAD && started.elapsed() < LOOK_AHEAD_TIME {
            let mut ahead = ready_besides(&file, &wal_name.name);
            ahead.retain(|f| !seen.contains(f));
            ahead.truncate(LOOK_AHEAD + 1 - seen.len());
            if ahead.is_empty() {
                break;
            }
            look_ahead(&r, &k, &sp, cluster, &ahead);
            seen.extend(ahead);
        }
        Ok(())
    })
    .await??;
    Ok(0)
}

/// How many other `.ready` files one call pushes ahead of the archiver, at most.
const LOOK_AHEAD: usize = 256;
/// After this long, a call stops looking for more `.ready` files and returns.
const LOOK_AHEAD_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The other WAL files PostgreSQL marked ready to archive, oldest first.
fn ready_besides(file: &Path, name: &str) -> Vec<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut ready: Vec<PathBuf> = std::fs::read_dir(dir.join("archive_status"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let wal = n.strip_suffix(".ready")?.to_string();
                    (wal != name && WalName::parse(&wal).is_some()).then(|| dir.join(wal))
                })
                .collect()
        })
        .unwrap_or_default();
    ready.sort();
    ready
}

/// Push `files` on two threads; a failure here only means the archiver pushes that file
/// itself later.
fn look_ahead(repo: &Repo, key: &SideKey, spool: &Spool, cluster: u64, files: &[PathBuf]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                    let Some(w) = name.as_deref().and_then(WalName::parse) else {
                        continue;
                    };
                    let identity = std::fs::metadata(path).ok().map(|m| Spool::identity(&m));
                    let Ok(bytes) = std::fs::read(path) else {
                        continue;
                    };
                    let foreign = matches!(w.kind, WalKind::Segment | WalKind::Partial)
                        && wal::segment_system_id(&bytes).is_some_and(|id| id != cluster);
                    if foreign {
                        continue;
                    }
                    match push_one(repo, key, cluster, &w, &bytes) {
                        Ok(()) => spool.record(&w.name, &bytes, identity.as_deref()),
                        Err(e) => log::debug!("look-ahead push of `{}`: {}", w.name, e.message),
                    }
                }
            });
        }
    });
}

/// A local record of WAL files pushed ahead: `<tmp>/lifeboat-wal-spool-<system-id>/<name>`
/// holds the SHA-256 of what was stored and the file's identity (inode, size, mtime) when
/// it was read. Written only after the object is durable.
#[derive(Clone)]
struct Spool(PathBuf);

impl Spool {
    fn new(cluster: u64) -> Self {
        Self(std::env::temp_dir().join(format!("lifeboat-wal-spool-{cluster}")))
    }

    fn hash(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    fn identity(m: &std::fs::Metadata) -> String {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{}:{}:{}:{}.{}",
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        )
    }

    fn record(&self, name: &str, bytes: &[u8], identity: Option<&str>) {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0);
        let text = format!("{} {}", Self::hash(bytes), identity.unwrap_or("-"));
        if let Err(e) = write_atomically(&self.0.join(name), text.as_bytes()) {
            log::debug!("spool record of `{name}`: {e}");
        }
    }

    /// Only a folder of our own that nobody else can write is trusted: a marker planted by
    /// someone else would make an unarchived segment look archived.
    fn trusted(&self) -> bool {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        std::fs::symlink_metadata(&self.0)
            .is_ok_and(|m| m.is_dir() && Some(m.uid()) == me && m.permissions().mode() & 0o077 == 0)
    }

    fn read(&self, name: &str) -> Option<(String, String)> {
        if !self.trusted() {
            return None;
        }
        let text = std::fs::read_to_string(self.0.join(name)).ok()?;
        let (hash, identity) = text.split_once(' ')?;
        Some((hash.to_string(), identity.to_string()))
    }

    /// The same file as when it was pushed.
    fn confirms_file(&self, name: &str, identity: &str) -> bool {
        self.read(name).is_some_and(|(_, id)| id == identity)
    }

    /// The same content as what was pushed.
    fn confirms(&self, name: &str, bytes: &[u8]) -> bool {
        self.read(name).is_some_and(|(h, _)| h == Self::hash(bytes))
    }
}

async fn fetch(ctx: &Context, args: WalFetchArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let (name, target) = physical_target(&config, args.target.as_deref())?;
    let Some(wal_name) = WalName::parse(&args.name) else {
        return Ok(1);
    };
    // restore_command runs in the data directory being recovered.
    let cluster = match args.system_id {
        Some(id) => id,
        None => wal::control_system_id(Path::new("."))
            .or_else(|_| {
                wal::control_system_id(target.data_dir.as_deref().unwrap_or(Path::new(".")))
            })
            .map_err(|e| {
                CliError::failure(
                    format!("cannot tell which cluster `{name}` is: {e}"),
                    Some("pass `--system-id`".into()),
                )
            })?,
    };
    // Fetched ahead by an earlier call: move it into place. Only as a restore_command,
    // which runs in the data directory being recovered.
    let recovering = Path::new("global/pg_control").is_file();
    // Served by the restoring process, which has the repository open.
    let feed = Path::new(PREFETCH_DIR).join(wal_feed::FEED_SOCKET);
    if recovering && feed.exists() {
        match wal_feed::request(&feed, &wal_name.name) {
            Ok(Some(plain)) => {
                write_atomically(&args.path, &plain).map_err(|e| {
                    CliError::failure(format!("cannot write `{}`: {e}", args.path.display()), None)
                })?;
                return Ok(0);
            }
            Ok(None) => return Ok(1),
            Err(e) => log::debug!("the WAL feed did not answer: {e}"),
        }
    }
    let prefetched = prefetch_dir(cluster);
    if recovering && wal_name.kind == WalKind::Segment && prefetched.join(&wal_name.name).is_file()
    {
        let file = prefetched.join(&wal_name.name);
        let size = segment_size_of(std::fs::metadata(&file).map_or(0, |m| m.len()));
        std::fs::rename(&file, &args.path).map_err(|e| {
            CliError::failure(format!("cannot write `{}`: {e}", args.path.display()), None)
        })?;
        forget_prefetched_before(&prefetched, &wal_name, size);
        return Ok(0);
    }
    let (repo, key) = open(ctx, &config).await?;
    let Some(plain) = get(&repo, &key, cluster, &wal_name)? else {
        log::debug!("`{}` is not archived", args.name);
        return Ok(1);
    };
    write_atomically(&args.path, &plain).map_err(|e| {
        CliError::failure(format!("cannot write `{}`: {e}", args.path.display()), None)
    })?;
    if recovering && wal_name.kind == WalKind::Segment {
        // Fetch the next segments in a process of its own while the server replays this one.
        // Best effort: without a prefetcher the server asks for each segment in turn.
        let spawned = std::env::current_exe()
            .and_then(|exe| Ok((exe, std::fs::canonicalize(&ctx.config_path)?)))
            .and_then(|(exe, config)| {
                std::process::Command::new(exe)
                    .arg("-q")
                    .arg("-c")
                    .arg(config)
                    .args(["wal", "prefetch", &wal_name.name, "--target", &name])
                    .arg(format!("--system-id={cluster}"))
                    .arg(format!(
                        "--segment-size={}",
                        segment_size_of(plain.len() as u64)
                    ))
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .process_group(0)
                    .spawn()
            });
        if let Err(e) = spawned {
            log::debug!("cannot start the prefetcher: {e}");
        }
    }
    Ok(0)
}

/// `wal prefetch NAME`: started by `wal fetch`, fetches the segments after NAME into the
/// prefetch folder (one prefetcher at a time per data directory).
async fn prefetch_command(ctx: &Context, args: WalPrefetchArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let Some(wal_name) = WalName::parse(&args.name) else {
        return Ok(1);
    };
    let cluster = args.system_id;
    let dir = prefetch_dir(cluster);
    std::fs::create_dir_all(&dir).fs("create the prefetch folder", &dir)?;
    let running = dir.join(".running");
    let stale = std::fs::metadata(&running)
        .and_then(|m| m.modified())
        .is_ok_and(|t| {
            t.elapsed()
                .is_ok_and(|e| e > std::time::Duration::from_secs(120))
        });
    if stale {
        let _ = std::fs::remove_file(&running);
    }
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&running)
        .is_err()
    {
        return Ok(0);
    }
    let result = async {
        let (repo, key) = open(ctx, &config).await?;
        let d = dir.clone();
        let size = segment_size_of(args.segment_size);
        tokio::task::spawn_blocking(move || prefetch(&repo, &key, cluster, &wal_name, size, &d))
            .await?;
        Ok::<_, CliError>(())
    }
    .await;
    let _ = std::fs::remove_file(&running);
    result.map(|()| 0)
}

fn prefetch_dir(cluster: u64) -> PathBuf {
    Path::new(PREFETCH_DIR).join(cluster.to_string())
}
/// How many segments after the requested one are fetched ahead.
const PREFETCH: u64 = 64;
/// PostgreSQL's default WAL segment size, assumed where a file's own size cannot tell.
const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// The segment size a WAL segment of `bytes` bytes means: a power of two from 1 MiB to
/// 1 GiB (what `initdb --wal-segsize` allows), else the default.
fn segment_size_of(bytes: u64) -> u64 {
    if bytes.is_power_of_two() && ((1 << 20)..=(1 << 30)).contains(&bytes) {
        bytes
    } else {
        DEFAULT_SEGMENT_SIZE
    }
}

/// The `count` segment names after `after` on its timeline, for `segment_size` segments.
fn names_after(after: &WalName, count: u64, segment_size: u64) -> Vec<WalName> {
    let Some(first) = after.segno(segment_size) else {
        return Vec::new();
    };
    (first + 1..=first + count)
        .filter_map(|n| WalName::parse(&wal::segment_name(after.timeline, n, segment_size)))
        .collect()
}

/// Fetch the segments after `after` on its timeline into `dir` (two threads), stopping at
/// the first that is not archived. Recovery asks for them one by one; they are then a
/// rename away.
fn prefetch(
    repo: &Repo,
    key: &SideKey,
    cluster: u64,
    after: &WalName,
    segment_size: u64,
    dir: &Path,
) {
    let names = names_after(after, PREFETCH, segment_size);
    if names.is_empty() || std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let missing = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(w) = names.get(i) else { break };
                    if missing.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    if dir.join(&w.name).exists() {
                        continue;
                    }
                    match get(repo, key, cluster, w) {
                        Ok(Some(plain)) => {
                            let _ = write_atomically(&dir.join(&w.name), &plain);
                        }
                        _ => missing.store(true, std::sync::atomic::Ordering::Relaxed),
                    }
                }
            });
        }
    });
}

/// Remove prefetched segments older than `served` (recovery moved past them, e.g. onto
/// another timeline).
fn forget_prefetched_before(dir: &Path, served: &WalName, segment_size: u64) {
    let Some(n) = served.segno(segment_size) else {
        return;
    };
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if WalName::parse(&name)
            .and_then(|w| w.segno(segment_size))
            .is_some_and(|m| m < n)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Write to a temporary name beside `path`, then rename: the server never sees half a file.
/// No fsync: a restored file is the server's to make durable (it fsyncs what it keeps,
/// and a recovery that crashes fetches again), and one fsync per 16 MiB segment sits on
/// the path of every replayed segment.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".lifeboat-fetch-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(after: &str, count: u64, size: u64) -> Vec<String> {
        names_after(&WalName::parse(after).unwrap(), count, size)
            .into_iter()
            .map(|w| w.name)
            .collect()
    }

    #[test]
    fn the_next_segment_names_follow_the_segment_size() {
        // 16 MiB: 256 segments per log id.
        assert_eq!(
            names("0000000100000000000000FE", 2, 16 << 20),
            ["0000000100000000000000FF", "000000010000000100000000"]
        );
        // 64 MiB: 64 per log id, so ...3F is the last of a log.
        assert_eq!(
            names("00000002000000000000003F", 1, 64 << 20),
            ["000000020000000100000000"]
        );
        assert_eq!(segment_size_of(64 << 20), 64 << 20);
        assert_eq!(segment_size_of(12345), DEFAULT_SEGMENT_SIZE);
        assert_eq!(segment_size_of(2 << 30), DEFAULT_SEGMENT_SIZE);
    }
}
