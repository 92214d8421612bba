//! The drill of a Redis backup: the RDB restored into a temporary folder, its size and
//! SHA-256 checked against the manifest, a scratch `redis-server` started on it (which proves
//! this Redis can load it), the keys per database compared with the counts recorded around
//! the snapshot, then the target's `command` checks with the server in
//! `$LIFEBOAT_DRILL_URL`.

use std::sync::Arc;

use lifeboat_core::{config::CheckConfig, manifest::RedisManifest};
use lifeboat_redis::{Conn, Scratch};
use lifeboat_repo::Repo;

use super::{Findings, Rehearsal, run_command};
use lifeboat_engine::snapshot_io::write_file;

use crate::output;

pub(super) struct RedisRehearsal {
    pub repo: Arc<Repo>,
    pub snapshot: String,
    pub manifest: RedisManifest,
    pub rules: Vec<CheckConfig>,
    pub dir: Option<tempfile::TempDir>,
    pub server: Option<Scratch>,
    /// Size and SHA-256 of the RDB as restored.
    pub restored: Option<(u64, String)>,
}

impl Rehearsal for RedisRehearsal {
    async fn provision(&mut self) -> Result<String, String> {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-drill-redis-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let text = format!(
            "temporary folder {} for a redis-server",
            dir.path().display()
        );
        self.dir = Some(dir);
        Ok(text)
    }

    async fn restore(&mut self) -> Result<String, String> {
        let dir = self
            .dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .ok_or("no scratch folder")?;
        let restored = write_file(
            &self.repo,
            &self.snapshot,
            &self.manifest.rdb.path,
            &dir.join("dump.rdb"),
        )
        .await
        .map_err(|e| e.message)?;
        self.restored = Some(restored.clone());
        let server = tokio::task::spawn_blocking(move || Scratch::start(&dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let text = format!(
            "RDB of {} loaded by a redis-server on port {}",
            output::bytes(restored.0),
            server.port
        );
        self.server = Some(server);
        Ok(text)
    }

    async fn check(&mut self, findings: &mut Findings) {
        if let Some((bytes, sha)) = &self.restored {
            let m = &self.manifest.rdb;
            findings.add(
                "redis",
                "the RDB's size and SHA-256",
                *bytes == m.bytes && *sha == m.sha256,
                format!("{bytes} bytes restored, the manifest says {}", m.bytes),
            );
        }
        let Some(server) = &self.server else { return };
        let url = server.url();
        let counts = tokio::task::spawn_blocking(move || {
            Conn::connect(&url).and_then(|mut c| c.key_counts())
        })
        .await;
        let counts = match counts {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return findings.add("redis", "keys per database", false, e.to_string()),
            Err(e) => return findings.add("redis", "keys per database", false, e.to_string()),
        };
        for db in self.manifest.databases() {
            let found = counts.get(&db.parse().unwrap_or(0)).copied().unwrap_or(0);
            let (a, b) = (
                self.manifest.keys_before.get(&db).copied().unwrap_or(0),
                self.manifest.keys_after.get(&db).copied().unwrap_or(0),
            );
            let expected = if a == b {
                format!("{a}")
            } else {
                format!("{}–{}", a.min(b), a.max(b))
            };
            findings.add(
                "redis",
                format!("keys in db{db}"),
                self.manifest.plausible(&db, found),
                format!("{found} keys, the manifest says {expected}"),
            );
        }
        let url = format!("redis://127.0.0.1:{}", server.port);
        for rule in &self.rules {
            let result = match &rule.command {
                Some(command) => run_command(command, &[("LIFEBOAT_DRILL_URL", &url)], &[]).await,
                None => Err("an SQL check cannot run against a Redis target".into()),
            };
            findings.rule("command", rule, result);
        }
    }

    async fn teardown(&mut self) -> Result<(), String> {
        self.server.take();
        match self.dir.take() {
            Some(d) => d.close().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}
