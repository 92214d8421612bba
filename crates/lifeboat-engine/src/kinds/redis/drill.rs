//! The drill of a Redis backup: the RDB restored into a temporary folder, its size and
//! SHA-256 checked against the manifest, a scratch `redis-server` started on it (which proves
//! this Redis can load it), the keys per database compared with the counts recorded around
//! the snapshot, then the target's `command` checks with the server in
//! `$LIFEBOAT_DRILL_URL`.

use std::sync::Arc;

use lifeboat_core::{config::CheckConfig, manifest::RedisManifest};
use lifeboat_redis::{Conn, Scratch};
use lifeboat_repo::Repo;

use crate::{
    drill::{
        checks::Findings,
        checks::{command_rules, remove_scratch_dir, scratch_dir},
        rehearsal::{Chosen, Drill, Rehearsal, Stop},
    },
    format as output,
    snapshot_io::write_file,
};

/// The drill of an RDB snapshot: a [`RedisRehearsal`].
pub async fn rehearse(drill: &mut Drill, (info, manifest): &Chosen) -> Result<(), Stop> {
    let Some(rm) = manifest.redis.clone() else {
        return Err(drill.missing_section());
    };
    let mut r = RedisRehearsal {
        repo: drill.engine.repo.clone(),
        snapshot: info.id.clone(),
        manifest: rm,
        rules: drill.rules.clone(),
        dir: None,
        server: None,
        restored: None,
    };
    drill.rehearse(&mut r).await
}

struct RedisRehearsal {
    repo: Arc<Repo>,
    snapshot: lifeboat_core::SnapshotId,
    manifest: RedisManifest,
    rules: Vec<CheckConfig>,
    dir: Option<tempfile::TempDir>,
    server: Option<Scratch>,
    /// Size and SHA-256 of the RDB as restored.
    restored: Option<(u64, String)>,
}

impl Rehearsal for RedisRehearsal {
    fn env(&self) -> Vec<(&'static str, String)> {
        self.server
            .as_ref()
            .map(|s| vec![("URL", format!("redis://127.0.0.1:{}", s.port))])
            .unwrap_or_default()
    }

    fn describe(&self) -> Vec<String> {
        vec![
            "create a temporary folder".into(),
            format!(
                "restore the RDB ({}) and start a scratch redis-server on it",
                output::bytes(self.manifest.rdb.bytes)
            ),
            "check the RDB's size and SHA-256, and the keys per database against the manifest"
                .into(),
            "stop the server and remove the folder".into(),
        ]
    }

    async fn provision(&mut self) -> Result<String, String> {
        let dir = scratch_dir("redis")?;
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
        let server = lifeboat_repo::blocking(move || Scratch::start(&dir))
            .await
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
        let counts =
            lifeboat_repo::blocking(move || Conn::connect(&url).and_then(|mut c| c.key_counts()))
                .await;
        let counts = match counts {
            Ok(c) => c,
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
        let env = [("LIFEBOAT_DRILL_URL", url.as_str())];
        command_rules(&self.rules, &env, "a Redis target", findings).await;
    }

    async fn teardown(&mut self) -> Result<(), String> {
        self.server.take();
        remove_scratch_dir(self.dir.take())
    }
}
