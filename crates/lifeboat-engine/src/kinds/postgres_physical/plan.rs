//! Planning a point-in-time recovery: which base backup to start from, and which WAL it
//! needs. Pure: the snapshots and the manifest come in, the choice goes out.

use lifeboat_core::manifest::{Manifest, PhysicalManifest};
use lifeboat_postgres::{
    physical::RecoveryTarget,
    wal::{self, WalKind},
};
use lifeboat_repo::SnapshotInfo;

use crate::{EngineError, EngineResult, time::parse_time};

/// A complete base backup's manifests, or `None` for any other snapshot.
pub fn physical_of(s: &SnapshotInfo) -> Option<(&Manifest, &PhysicalManifest)> {
    let m = s.manifest.as_ref().ok().filter(|m| m.complete)?;
    Some((m, m.physical.as_ref()?))
}

/// The base backup to recover `target` from: among the complete base backups in `snaps`
/// (oldest first) whose id starts with `wanted` (or any, for `latest`), the newest that
/// ends at or before the target.
pub fn choose_base<'a>(
    snaps: &'a [SnapshotInfo],
    wanted: &str,
    target: &RecoveryTarget,
) -> EngineResult<&'a SnapshotInfo> {
    let bases: Vec<&SnapshotInfo> = snaps
        .iter()
        .filter(|s| physical_of(s).is_some() && (wanted == "latest" || s.id.starts_with(wanted)))
        .collect();
    let Some(oldest) = bases.first() else {
        return Err(
            EngineError::failed("no complete base backup to restore from")
                .hint("take one with `lifeboat backup`"),
        );
    };
    let ends_before = |s: &&&SnapshotInfo| {
        let (_, p) = physical_of(s).expect("filtered above");
        match target {
            RecoveryTarget::Time(t) => p
                .stop_time
                .zip(parse_time(t).ok())
                .is_some_and(|(stop, t)| stop <= t),
            RecoveryTarget::Lsn(l) => p.stop_lsn <= *l,
            _ => true,
        }
    };
    bases
        .iter()
        .rev()
        .find(ends_before)
        .copied()
        .ok_or_else(|| {
            let (_, p) = physical_of(oldest).expect("filtered above");
            EngineError::failed(format!(
                "the target is before the oldest base backup, which ends at {} (LSN {})",
                p.stop_time
                    .map_or("an unknown time".into(), |t| t.to_string()),
                p.stop_lsn
            ))
            .hint("a point-in-time restore starts from a base backup taken before the target")
        })
}

/// The segments of base backup `p`'s WAL range that are not archived (among `archived`,
/// only whole segments count): a base backup with any is not recoverable.
pub fn missing_wal(p: &PhysicalManifest, archived: &[wal::WalName]) -> Result<Vec<String>, String> {
    let have: std::collections::HashSet<&str> = archived
        .iter()
        .filter(|w| w.kind == WalKind::Segment)
        .map(|w| w.name.as_str())
        .collect();
    Ok(needed_segments(p)?
        .into_iter()
        .filter(|n| !have.contains(n.as_str()))
        .collect())
}

/// Every WAL segment base backup `p` needs, from the one holding its start to the one
/// holding its stop. A range that cannot be read is an error: the coverage check must run.
pub fn needed_segments(p: &PhysicalManifest) -> Result<Vec<String>, String> {
    let size = p.wal_segment_size;
    let segno = |name: &str| {
        wal::WalName::parse(name)
            .filter(|w| w.kind == WalKind::Segment)
            .and_then(|w| Some((w.segno(size)?, w.timeline)))
    };
    match (segno(&p.start_wal), segno(&p.stop_wal)) {
        (Some((a, timeline)), Some((b, _))) if a <= b => Ok((a..=b)
            .map(|n| wal::segment_name(timeline, n, size))
            .collect()),
        _ => Err(format!(
            "its manifest records no usable WAL range (start `{}`, stop `{}`, segments of {size} bytes): cannot check that its WAL is archived",
            p.start_wal, p.stop_wal
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn physical(start: &str, stop: &str) -> PhysicalManifest {
        base_backup("x", "2026-12-06 10:00:00+00", "0/3000100", start, stop)
            .manifest
            .unwrap()
            .physical
            .unwrap()
    }

    /// A complete base backup `id` that stopped at `stop_time` and `stop_lsn`.
    fn base_backup(
        id: &str,
        stop_time: &str,
        stop_lsn: &str,
        start_wal: &str,
        stop_wal: &str,
    ) -> SnapshotInfo {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format": 1, "target": "db", "kind": "postgres", "method": "physical",
            "lifeboat-version": "0", "started-at": "", "finished-at": "", "complete": true,
            "physical": {
                "system-id": "7400000000000000001", "timeline": 1,
                "start-lsn": "0/2000028", "stop-lsn": stop_lsn,
                "start-wal": start_wal, "stop-wal": stop_wal,
                "start-time": "", "stop-time": stop_time,
                "server-version": "16.4", "server-version-num": 160_004,
                "data-dir": "", "wal-segment-size": 16 << 20,
                "files": { "roots": [], "files": [], "total-bytes": 0 }
            }
        }))
        .unwrap();
        SnapshotInfo {
            id: id.into(),
            time: "2026-12-06T10:00:00+00:00[UTC]".parse().unwrap(),
            target: "db".into(),
            kind: "physical".into(),
            emergency: false,
            summary: None,
            manifest: Ok(manifest),
        }
    }

    fn three_bases() -> Vec<SnapshotInfo> {
        let seg = "000000010000000000000002";
        vec![
            base_backup("aaaa1111", "2026-12-06 01:00:00+00", "0/3000100", seg, seg),
            base_backup("bbbb2222", "2026-12-06 02:00:00+00", "0/5000100", seg, seg),
            base_backup("cccc3333", "2026-12-06 03:00:00+00", "0/7000100", seg, seg),
        ]
    }

    #[test]
    fn the_newest_base_backup_that_ends_before_the_target_is_chosen() {
        let snaps = three_bases();
        let chosen = |wanted: &str, target: RecoveryTarget| {
            choose_base(&snaps, wanted, &target).map(|s| s.id.as_str())
        };
        assert_eq!(
            chosen("latest", RecoveryTarget::Latest).unwrap(),
            "cccc3333"
        );
        let at = |t: &str| RecoveryTarget::Time(t.into());
        assert_eq!(
            chosen("latest", at("2026-12-06 02:30:00+00")).unwrap(),
            "bbbb2222"
        );
        // Ending exactly at the target is early enough; RFC 3339 reads the same.
        assert_eq!(
            chosen("latest", at("2026-12-06T02:00:00Z")).unwrap(),
            "bbbb2222"
        );
        let lsn = |l: &str| RecoveryTarget::Lsn(l.parse().unwrap());
        assert_eq!(chosen("latest", lsn("0/6000000")).unwrap(), "bbbb2222");
        assert_eq!(chosen("latest", lsn("1/0")).unwrap(), "cccc3333");
        // `--snapshot`: that base backup only.
        assert_eq!(chosen("aaaa", RecoveryTarget::Latest).unwrap(), "aaaa1111");
        let e = chosen("aaaa", lsn("0/2000000")).unwrap_err();
        assert!(
            e.message.contains(
                "before the oldest base backup, which ends at 2026-12-06T01:00:00Z (LSN 0/3000100)"
            ),
            "{e}"
        );
    }

    #[test]
    fn without_a_complete_base_backup_there_is_nothing_to_choose() {
        let mut snaps = three_bases();
        for s in &mut snaps {
            s.manifest.as_mut().unwrap().complete = false;
        }
        let e = choose_base(&snaps, "latest", &RecoveryTarget::Latest).unwrap_err();
        assert_eq!(e.message, "no complete base backup to restore from");
        assert!(e.hint.unwrap().contains("lifeboat backup"));
        let e = choose_base(&three_bases(), "dddd", &RecoveryTarget::Latest).unwrap_err();
        assert_eq!(e.message, "no complete base backup to restore from");
    }

    #[test]
    fn the_wal_a_base_backup_needs_runs_from_its_start_to_its_stop_segment() {
        let needed = needed_segments(&physical(
            "0000000100000000000000FE",
            "000000010000000100000001",
        ))
        .unwrap();
        assert_eq!(
            needed,
            [
                "0000000100000000000000FE",
                "0000000100000000000000FF",
                "000000010000000100000000",
                "000000010000000100000001"
            ]
        );
    }

    /// Regression (issue 17, point 7): an empty or garbled `stop-wal` used to skip the
    /// check that the base backup's WAL is archived.
    #[test]
    fn a_base_backup_without_a_usable_wal_range_is_an_error_not_a_skipped_check() {
        for (start, stop) in [
            ("000000010000000000000002", ""),
            ("", "000000010000000000000002"),
            ("000000010000000000000002", "not a segment"),
            ("000000010000000000000003", "000000010000000000000002"),
            ("000000010000000000000002", "00000001.history"),
        ] {
            let e = needed_segments(&physical(start, stop)).unwrap_err();
            assert!(e.contains("no usable WAL range"), "{start}..{stop}: {e}");
        }
    }

    #[test]
    fn coverage_names_every_needed_segment_not_archived_whole() {
        let p = physical("000000010000000000000002", "000000010000000000000005");
        let archived: Vec<wal::WalName> = [
            "000000010000000000000002",
            // Only a partial copy of 3: it does not count.
            "000000010000000000000003.partial",
            "000000010000000000000004.00000028.backup",
            "000000010000000000000004",
            // Another timeline's 5 is not this one's.
            "000000020000000000000005",
        ]
        .iter()
        .map(|n| wal::WalName::parse(n).unwrap())
        .collect();
        assert_eq!(
            missing_wal(&p, &archived).unwrap(),
            ["000000010000000000000003", "000000010000000000000005"]
        );
        let all: Vec<wal::WalName> = needed_segments(&p)
            .unwrap()
            .iter()
            .map(|n| wal::WalName::parse(n).unwrap())
            .collect();
        assert!(missing_wal(&p, &all).unwrap().is_empty());
    }
}
