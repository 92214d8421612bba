//! The drill of a bucket backup into a scratch bucket (`[drill] scratch-bucket`): every
//! object written to a prefix of its own there (with content type and metadata), then
//! listed and read back — the object count, and every object's size and SHA-256 against
//! the manifest — and the prefix emptied at teardown. Without a scratch bucket, bucket
//! drills restore into a folder (`files.rs`).

use std::sync::Arc;

use lifeboat_core::{S3Location, manifest::BucketManifest};
use lifeboat_repo::{Repo, bucket::Bucket};
use sha2::Digest;

use super::{as_files, parallel, write_objects};
use crate::{
    drill::{
        checks::Findings,
        rehearsal::{Chosen, Drill, Rehearsal, Stop},
    },
    kinds::files::drill::FilesRehearsal,
};

/// The drill of a bucket snapshot: into a prefix of its own in `[drill] scratch-bucket`
/// ([`BucketRehearsal`]), or without one into a temporary folder (the files kind's).
pub async fn rehearse(drill: &mut Drill, (info, manifest): &Chosen) -> Result<(), Stop> {
    let Some(bm) = manifest.bucket.clone() else {
        return Err(drill.missing_section());
    };
    let Some(scratch) = drill.scratch_bucket.clone() else {
        let mut r = FilesRehearsal {
            repo: drill.engine.repo.clone(),
            snapshot: info.id.clone(),
            target: drill.name.clone(),
            manifest: as_files(&drill.name, &bm),
            stream: None,
            source: format!("{}/bucket", drill.name),
            rules: drill.rules.clone(),
            dir: None,
        };
        return drill.rehearse(&mut r).await;
    };
    let base = drill
        .cfg
        .bucket_location(&drill.name)
        .map_err(|e| Stop::Error(e.to_string()))?;
    let (bucket, prefix) = lifeboat_core::location::parse_s3_url(&scratch)
        .unwrap_or_else(|| Err("not an `s3://` URL".into()))
        .map_err(|e| Stop::Error(format!("`drill.scratch-bucket`: {e}")))?;
    let sub = format!(
        "{}/lifeboat-drill-{}",
        prefix,
        drill.started_at.strftime("%Y%m%dT%H%M%S%.3fZ")
    );
    let mut r = BucketRehearsal {
        repo: drill.engine.repo.clone(),
        snapshot: info.id.clone(),
        manifest: bm,
        location: base.with_bucket(&bucket, &sub),
        bucket: None,
    };
    drill.rehearse(&mut r).await
}

struct BucketRehearsal {
    repo: Arc<Repo>,
    snapshot: lifeboat_core::SnapshotId,
    manifest: BucketManifest,
    /// The scratch prefix, `lifeboat-drill-<time>` below the configured one.
    location: S3Location,
    bucket: Option<Bucket>,
}

impl Rehearsal for BucketRehearsal {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("URL", self.location.url())]
    }

    fn describe(&self) -> Vec<String> {
        vec![
            format!(
                "use the empty scratch prefix {} (`[drill] scratch-bucket`)",
                self.location.url()
            ),
            format!(
                "write {} object(s), {} bytes",
                self.manifest.objects.len(),
                self.manifest.total_bytes
            ),
            "list and read back every object: count, size and SHA-256 against the manifest".into(),
            "empty the scratch prefix".into(),
        ]
    }

    async fn provision(&mut self) -> Result<String, String> {
        let b = Bucket::open(&self.location).map_err(|e| e.to_string())?;
        let probe = b.clone();
        let there = lifeboat_repo::blocking(move || probe.list())
            .await
            .map_err(|e| e.to_string())?;
        if !there.is_empty() {
            return Err(format!("the scratch prefix `{}` is not empty", b.url()));
        }
        self.bucket = Some(b);
        Ok(format!("scratch bucket prefix {}", self.location.url()))
    }

    async fn restore(&mut self) -> Result<String, String> {
        let b = self.bucket.clone().ok_or("no scratch bucket")?;
        let results = write_objects(
            &self.repo,
            &self.snapshot,
            b,
            self.manifest.objects.clone(),
            None,
        )
        .await
        .map_err(|e| e.message)?;
        let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if let Some(first) = failed.first() {
            return Err(format!(
                "{} object(s) could not be written: {first}",
                failed.len()
            ));
        }
        Ok(format!(
            "{} object(s), {} bytes",
            self.manifest.objects.len(),
            self.manifest.total_bytes
        ))
    }

    async fn check(&mut self, findings: &mut Findings) {
        let Some(b) = self.bucket.clone() else { return };
        let objects = self.manifest.objects.clone();
        let checked = lifeboat_repo::blocking(move || -> Result<_, String> {
            let listed = b.list().map_err(|e| e.to_string())?;
            let sizes: std::collections::HashMap<String, u64> =
                listed.iter().map(|l| (l.key.clone(), l.size)).collect();
            let bad = parallel(&objects, |o| -> Option<String> {
                match sizes.get(&o.key) {
                    None => return Some(format!("`{}` is missing", o.key)),
                    Some(&n) if n != o.bytes => {
                        return Some(format!("`{}`: {n} bytes, expected {}", o.key, o.bytes));
                    }
                    _ => {}
                }
                let mut h = sha2::Sha256::new();
                let mut r = b.reader(&o.key, o.bytes);
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match std::io::Read::read(&mut r, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => h.update(&buf[..n]),
                        Err(e) => return Some(format!("`{}`: {e}", o.key)),
                    }
                }
                (hex::encode(h.finalize()) != o.sha256)
                    .then(|| format!("`{}`: SHA-256 differs", o.key))
            });
            Ok((listed.len(), bad.into_iter().flatten().collect::<Vec<_>>()))
        })
        .await;
        let (count, bad) = match checked {
            Ok(c) => c,
            Err(e) => return findings.add("bucket", "objects in the scratch bucket", false, e),
        };
        let want = self.manifest.objects.len();
        findings.add(
            "bucket",
            "object count",
            count == want,
            format!("{count} objects in the scratch bucket, the manifest says {want}"),
        );
        findings.add(
            "bucket",
            "every object's size and SHA-256",
            bad.is_empty(),
            match bad.first() {
                None => format!("{want} of {want} objects read back match the manifest"),
                Some(first) => format!("{} object(s) differ; first: {first}", bad.len()),
            },
        );
    }

    async fn teardown(&mut self) -> Result<(), String> {
        let Some(b) = self.bucket.take() else {
            return Ok(());
        };
        lifeboat_repo::blocking(move || -> Result<(), String> {
            let keys: Vec<String> = b
                .list()
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|l| l.key)
                .collect();
            let failed = parallel(&keys, |k| b.delete(k).err());
            match failed.into_iter().flatten().next() {
                Some(e) => Err(format!("cannot empty the scratch prefix: {e}")),
                None => Ok(()),
            }
        })
        .await
    }
}
