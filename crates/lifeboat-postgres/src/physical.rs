//! Physical backups and point-in-time recovery of a server we run ourselves.
//!
//! A base backup is `pg_backup_start` → the data directory copied file by file (by the
//! caller, into the repository) → `pg_backup_stop` on the same session, whose
//! `backup_label` and `tablespace_map` belong to the copy. `pg_backup_stop` waits until the
//! last segment the backup needs is archived, so a finished base backup is restorable.
//!
//! Recovery: the restored directory gets `recovery.signal` and the recovery settings in
//! `postgresql.auto.conf`; the server is started as the `postgres` user and watched until
//! it reaches the target.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio_postgres::Client;

use lifeboat_core::{Lsn, SystemId};

use crate::{PgError, PgTools, Target, cluster::server_user, wal};

/// What the docs say a base backup leaves out ("Excluded contents" of the backup chapter).
/// Directories in [`EMPTIED_DIRS`] are kept, empty.
pub const EXCLUDED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "recovery.signal",
    "standby.signal",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    // segments `lifeboat wal fetch` fetched ahead during a recovery
    "lifeboat-prefetch",
];
pub const EMPTIED_DIRS: &[&str] = &[
    "pg_wal",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];
/// File-name patterns left out anywhere.
pub const EXCLUDED_NAMES: &[&str] = &["pgsql_tmp*", "pg_internal.init"];

/// Exclude globs (for the files walker) of a data directory at `data_dir`.
pub fn excludes(data_dir: &Path) -> Vec<String> {
    let d = data_dir.display();
    let mut out: Vec<String> = EXCLUDED_FILES.iter().map(|f| format!("{d}/{f}")).collect();
    out.extend(EMPTIED_DIRS.iter().map(|dir| format!("{d}/{dir}/**")));
    out.extend(EXCLUDED_NAMES.iter().map(|n| (*n).to_string()));
    out
}

/// The session of one base backup, between `pg_backup_start` and `pg_backup_stop`.
pub struct BaseBackup {
    client: Client,
    pub system_id: SystemId,
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub start_time: String,
    pub server_version: String,
    pub server_version_num: u32,
    pub segment_size: u64,
}

/// What `pg_backup_stop` returned.
pub struct Stopped {
    pub stop_lsn: Lsn,
    pub stop_time: String,
    pub backup_label: String,
    pub tablespace_map: String,
}

/// What a base backup records about the server, read before it starts; refuses a server
/// that does not archive WAL, and a standby.
pub struct ServerFacts {
    pub system_id: SystemId,
    pub server_version: String,
    pub server_version_num: u32,
    pub segment_size: u64,
}

impl ServerFacts {
    pub async fn read(client: &Client) -> Result<Self, PgError> {
        let row = client
            .query_one(
                "SELECT current_setting('server_version'),
                        current_setting('server_version_num')::int,
                        (SELECT system_identifier::text FROM pg_control_system()),
                        pg_size_bytes(current_setting('wal_segment_size')),
                        current_setting('archive_mode'),
                        pg_is_in_recovery()",
                &[],
            )
            .await
            .map_err(PgError::query("read server settings"))?;
        let archive_mode: String = row.get(4);
        if archive_mode == "off" {
            return Err(PgError::Io(
                "the server does not archive WAL (archive_mode = off): a base backup alone \
                 cannot be recovered to a point in time"
                    .into(),
            ));
        }
        if row.get::<_, bool>(5) {
            return Err(PgError::Io(
                "the server is a standby; back up the primary".into(),
            ));
        }
        let system_id = parse_system_id(&row.get::<_, String>(2))?;
        Ok(Self {
            system_id,
            server_version: row.get(0),
            server_version_num: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
            segment_size: u64::try_from(row.get::<_, i64>(3)).unwrap_or(16 << 20),
        })
    }

    pub fn major(&self) -> u32 {
        self.server_version_num / 10_000
    }
}

impl BaseBackup {
    /// Connect and start the backup (with an immediate checkpoint).
    pub async fn start(target: &Target, label: &str) -> Result<Self, PgError> {
        let client = target.connect().await?;
        let q = |what: &'static str| PgError::query(what);
        let facts = ServerFacts::read(&client).await?;
        let start_sql = if facts.server_version_num >= 150_000 {
            r#"SELECT pg_backup_start($1, true)::text, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#
        } else {
            r#"SELECT pg_start_backup($1, true, false)::text, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#
        };
        let started = client
            .query_one(start_sql, &[&label])
            .await
            .map_err(q("start the base backup"))?;
        let timeline: i32 = client
            .query_one("SELECT timeline_id FROM pg_control_checkpoint()", &[])
            .await
            .map_err(q("read the timeline"))?
            .get(0);
        Ok(Self {
            system_id: facts.system_id,
            timeline: u32::try_from(timeline).unwrap_or(1),
            start_lsn: server_lsn(started.get(0))?,
            start_time: started.get(1),
            server_version: facts.server_version,
            server_version_num: facts.server_version_num,
            segment_size: facts.segment_size,
            client,
        })
    }

    pub fn start_wal(&self) -> String {
        wal::segment_of(self.start_lsn, self.timeline, self.segment_size)
    }

    /// Stop the backup; waits until the WAL it needs is archived.
    pub async fn stop(self) -> Result<Stopped, PgError> {
        let sql = if self.server_version_num >= 150_000 {
            r#"SELECT lsn::text, labelfile, coalesce(spcmapfile, ''), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM pg_backup_stop(true)"#
        } else {
            r#"SELECT lsn::text, labelfile, coalesce(spcmapfile, ''), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM pg_stop_backup(false, true)"#
        };
        let row = self
            .client
            .query_one(sql, &[])
            .await
            .map_err(PgError::query("stop the base backup"))?;
        Ok(Stopped {
            stop_lsn: server_lsn(row.get(0))?,
            backup_label: row.get(1),
            tablespace_map: row.get(2),
            stop_time: row.get(3),
        })
    }
}

/// `pg_stat_archiver` of a server: how archiving goes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchiverStats {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<String>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<String>,
    /// The last attempt failed (a failure newer than the last success).
    pub failing: bool,
}

pub async fn archiver_stats(target: &Target) -> Result<ArchiverStats, PgError> {
    let client = target.connect().await?;
    let row = client
        .query_one(
            "SELECT archived_count, last_archived_wal, last_archived_time::text,
                    failed_count, last_failed_wal, last_failed_time::text,
                    coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false)
             FROM pg_stat_archiver",
            &[],
        )
        .await
        .map_err(PgError::query("read pg_stat_archiver"))?;
    Ok(ArchiverStats {
        archived_count: row.get(0),
        last_archived_wal: row.get(1),
        last_archived_time: row.get(2),
        failed_count: row.get(3),
        last_failed_wal: row.get(4),
        last_failed_time: row.get(5),
        failing: row.get(6),
    })
}

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    Time(String),
    Lsn(Lsn),
    Xid(String),
    Name(String),
    /// Replay all archived WAL.
    Latest,
}

impl RecoveryTarget {
    /// In words, for plans: "time 2026-11-22 10:01:00+00", "LSN 0/3000060".
    pub fn describe(&self) -> String {
        match self {
            Self::Time(t) => format!("time {t}"),
            Self::Lsn(l) => format!("LSN {l}"),
            Self::Xid(x) => format!("the end of transaction {x}"),
            Self::Name(n) => format!("restore point `{n}`"),
            Self::Latest => "the end of the archived WAL".into(),
        }
    }

    /// `postgresql.conf` lines for this target.
    fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Time(t) => vec![("recovery_target_time", t.clone())],
            Self::Lsn(l) => vec![("recovery_target_lsn", l.to_string())],
            Self::Xid(x) => vec![("recovery_target_xid", x.clone())],
            Self::Name(n) => vec![("recovery_target_name", n.clone())],
            Self::Latest => vec![],
        }
    }
}

fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Write `recovery.signal` and the recovery settings into a restored data directory.
/// With `archive: false` the recovered server does not archive (`archive_mode = off`) nor
/// start its subscriptions (`max_logical_replication_workers = 0`).
pub fn write_recovery(
    data_dir: &Path,
    restore_command: &str,
    target: &RecoveryTarget,
    pause: bool,
    archive: bool,
) -> std::io::Result<Vec<(String, String)>> {
    let signal = data_dir.join("recovery.signal");
    std::fs::write(&signal, "").map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot write `{}`: {e}", signal.display()),
        )
    })?;
    let mut settings: Vec<(String, String)> = vec![
        ("restore_command".into(), restore_command.to_string()),
        ("recovery_target_timeline".into(), "latest".into()),
    ];
    if !archive {
        // A copy to look at: it neither archives into the production archive nor starts
        // the subscriptions it holds (they would take the publisher's slots).
        settings.push(("archive_mode".into(), "off".into()));
        settings.push(("max_logical_replication_workers".into(), "0".into()));
    }
    for (k, v) in target.settings() {
        settings.push((k.into(), v));
    }
    if *target != RecoveryTarget::Latest {
        settings.push((
            "recovery_target_action".into(),
            if pause { "pause" } else { "promote" }.into(),
        ));
    }
    let mut text = String::from("\n# written by lifeboat restore (point-in-time recovery)\n");
    for (k, v) in &settings {
        text.push_str(&format!("{k} = {}\n", conf_quote(v)));
    }
    let auto = data_dir.join("postgresql.auto.conf");
    // Only a missing file starts empty: one that cannot be read must not be overwritten.
    // Bytes, not text: a cluster whose encoding is not UTF-8 writes its settings in it.
    let mut existing = match std::fs::read(&auto) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot read `{}`: {e}", auto.display()),
            ));
        }
    };
    existing.extend_from_slice(text.as_bytes());
    std::fs::write(&auto, existing).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot write `{}`: {e}", auto.display()))
    })?;
    Ok(settings)
}

/// The cluster's system identifier as the server reports it; a garbled one is an error,
/// never 0 (which would file its WAL under another cluster's name).
fn parse_system_id(text: &str) -> Result<SystemId, PgError> {
    text.parse()
        .map_err(|e| PgError::Io(format!("the server reported a system identifier: {e}")))
}

/// An LSN as the server answered it (`lsn::text`).
fn server_lsn(text: String) -> Result<Lsn, PgError> {
    text.parse()
        .map_err(|e| PgError::Io(format!("the server reported a WAL position: {e}")))
}

/// Give a restored data directory to the server's user (when we are root) with the modes
/// PostgreSQL insists on.
pub fn hand_over(data_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    let Some((uid, gid)) = server_user().map_err(|e| std::io::Error::other(e.to_string()))? else {
        return Ok(());
    };
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))?;
        if p.is_dir() && !p.is_symlink() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

/// A server started on a restored data directory.
pub struct Recovered {
    pub data_dir: PathBuf,
    pub port: u16,
    pub log: PathBuf,
}

/// Start the server on `data_dir` at `port` (as the server's user when root).
pub fn start_server(tools: &PgTools, data_dir: &Path, port: u16) -> Result<Recovered, PgError> {
    let log = data_dir.join("lifeboat-recovery.log");
    let mut cmd = crate::cluster::server_tool(tools, "pg_ctl")?;
    cmd.arg("-D")
        .arg(data_dir)
        .arg("-l")
        .arg(&log)
        .args([
            "-o",
            &format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"),
        ])
        .args(["-w", "-t", "300", "start"]);
    let out = cmd
        .output()
        .map_err(|e| PgError::Io(format!("cannot run pg_ctl: {e}")))?;
    if !out.status.success() {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let last: Vec<&str> = tail.lines().rev().take(5).collect();
        return Err(PgError::Io(format!(
            "the server did not start: {}; log: {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            last.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )));
    }
    Ok(Recovered {
        data_dir: data_dir.to_path_buf(),
        port,
        log,
    })
}

/// Where recovery ended.
#[derive(Debug, Clone)]
pub struct RecoveredPoint {
    /// `promoted` or `paused`.
    pub state: String,
    pub last_commit_time: Option<String>,
    pub replay_lsn: Option<String>,
    pub timeline: u32,
}

/// Wait until the server left recovery (promoted) or paused at the target; fails with the
/// end of the server's log if it stops instead (e.g. the target is past the archived WAL).
pub async fn wait_recovered(
    server: &Recovered,
    target: &Target,
    timeout: Duration,
) -> Result<RecoveredPoint, PgError> {
    let deadline = Instant::now() + timeout;
    let mut watching = None;
    loop {
        if !server.data_dir.join("postmaster.pid").exists() {
            let log = std::fs::read_to_string(&server.log).unwrap_or_default();
            let fatal: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("FATAL") || l.contains("PANIC"))
                .collect();
            let why = fatal.first().map_or("(no FATAL line in its log)", |l| l);
            return Err(PgError::Io(format!(
                "the server stopped during recovery: {}; log: {}",
                why.split_once(":  ").map_or(why, |(_, m)| m),
                server.log.display()
            )));
        }
        if watching.is_none() {
            watching = match target.connect().await {
                Ok(client) => Some(client),
                // Up, but it will never let us in: say so now, not when the timeout ends.
                Err(e) if e.is_login_refused() => {
                    return Err(PgError::Io(format!(
                        "the restored server is up on port {}, but lifeboat cannot log in to watch its recovery: {e}; a restored cluster keeps the users and passwords it had when it was backed up, so the target's URL must name one of those",
                        server.port
                    )));
                }
                Err(_) => None,
            };
        }
        let polled = match &watching {
            Some(client) => client
                .query_one(
                    "SELECT pg_is_in_recovery(),
                            CASE WHEN pg_is_in_recovery()
                                 THEN pg_get_wal_replay_pause_state() ELSE '' END,
                            pg_last_xact_replay_timestamp()::text,
                            pg_last_wal_replay_lsn()::text,
                            (SELECT timeline_id FROM pg_control_checkpoint())",
                    &[],
                )
                .await
                .ok(),
            None => None,
        };
        if polled.is_none() {
            watching = None; // (re)connect on the next round
        }
        if let Some(row) = polled {
            let in_recovery: bool = row.get(0);
            let pause: String = row.get(1);
            if !in_recovery || pause == "paused" {
                return Ok(RecoveredPoint {
                    state: if in_recovery { "paused" } else { "promoted" }.into(),
                    last_commit_time: row.get(2),
                    replay_lsn: row.get(3),
                    timeline: u32::try_from(row.get::<_, i32>(4)).unwrap_or(0),
                });
            }
        }
        if Instant::now() > deadline {
            return Err(PgError::Io(format!(
                "recovery did not reach its target within {} s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_keep_the_directories() {
        let ex = excludes(Path::new("/var/lib/pg/data"));
        assert!(ex.contains(&"/var/lib/pg/data/pg_wal/**".to_string()));
        assert!(ex.contains(&"/var/lib/pg/data/postmaster.pid".to_string()));
        assert!(ex.contains(&"pgsql_tmp*".to_string()));
    }

    /// Regression (issue 17, point 7): a garbled system identifier used to become 0.
    #[test]
    fn a_garbled_system_identifier_from_the_server_is_an_error() {
        assert_eq!(
            parse_system_id("7441234567890123456").unwrap(),
            SystemId(7_441_234_567_890_123_456)
        );
        for bad in ["", "74412345678901x", "-1"] {
            let e = parse_system_id(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    /// Regression (issue 17, point 7): a `postgresql.auto.conf` that could not be read as
    /// text was taken for empty and overwritten, losing the server's own settings. Settings
    /// in another encoding are kept byte for byte, the recovery settings after them.
    #[test]
    fn settings_that_are_not_utf8_are_kept_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let auto = dir.path().join("postgresql.auto.conf");
        let settings = b"shared_buffers = '1GB'\ncluster_name = 'caf\xe9'\n".to_vec();
        std::fs::write(&auto, &settings).unwrap();
        write_recovery(
            dir.path(),
            "lifeboat wal fetch %f %p",
            &RecoveryTarget::Latest,
            false,
            false,
        )
        .unwrap();
        let written = std::fs::read(&auto).unwrap();
        assert!(written.starts_with(&settings));
        assert!(
            String::from_utf8_lossy(&written)
                .contains("restore_command = 'lifeboat wal fetch %f %p'")
        );
    }

    /// Something that cannot be read at all is an error, and stays as it was.
    #[test]
    fn an_unreadable_auto_conf_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("postgresql.auto.conf")).unwrap();
        let e = write_recovery(
            dir.path(),
            "lifeboat wal fetch %f %p",
            &RecoveryTarget::Latest,
            false,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        assert!(dir.path().join("postgresql.auto.conf").is_dir());
    }

    #[test]
    fn recovery_settings_are_quoted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("postgresql.auto.conf"), "# auto\n").unwrap();
        write_recovery(
            dir.path(),
            "lifeboat wal fetch %f %p",
            &RecoveryTarget::Name("it's here".into()),
            false,
            false,
        )
        .unwrap();
        let conf = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert!(
            conf.contains("recovery_target_name = 'it''s here'"),
            "{conf}"
        );
        assert!(conf.contains("recovery_target_action = 'promote'"));
        assert!(conf.contains("archive_mode = 'off'"));
        assert!(dir.path().join("recovery.signal").exists());
    }
}
