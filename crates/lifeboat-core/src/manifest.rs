//! `lifeboat.json`, the manifest stored inside every snapshot: what was backed up, how,
//! when, sizes, checksums and row counts. It is the source of truth about a snapshot
//! (restic tools may rewrite tags); listing, restore verification and drills read it.
//!
//! A manifest is written only after every stream of its snapshot ended well, so a snapshot
//! without one, or with `complete = false`, never counts as a backup.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Lsn, SystemId, config::TargetKind};

/// The file name of the manifest inside a snapshot (`<target>/lifeboat.json`).
pub const MANIFEST_FILE: &str = "lifeboat.json";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    pub format: u32,
    pub target: crate::TargetName,
    pub kind: TargetKind,
    /// `logical` for PostgreSQL dumps, `files` for file sets.
    pub method: String,
    pub lifeboat_version: String,
    /// When the backup started and ended (none: an incomplete backup's end).
    #[serde(with = "crate::time::moment")]
    pub started_at: Option<jiff::Timestamp>,
    #[serde(with = "crate::time::moment")]
    pub finished_at: Option<jiff::Timestamp>,
    /// True only when every stream ended well; a snapshot whose manifest says false is a
    /// failed backup that could not be deleted.
    pub complete: bool,
    /// Taken automatically before a restore overwrote the target.
    #[serde(default)]
    pub emergency: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresManifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesManifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalManifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandManifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisManifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketManifest>,
}

/// A bucket target's backup: every object with what a restore needs to write it back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct BucketManifest {
    /// `s3://bucket/prefix` (keys below are relative to the prefix).
    pub url: String,
    pub objects: Vec<ObjectRecord>,
    pub total_bytes: u64,
    /// Objects downloaded by this backup; the others were unchanged since `parent`.
    pub downloaded: u64,
    pub downloaded_bytes: u64,
    pub parent: Option<crate::SnapshotId>,
    /// Objects listed but deleted or replaced before they were read: not in this snapshot
    /// (the next backup reads what is there then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
}

/// An object a bucket backup left out, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct LeftOut {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ObjectRecord {
    pub key: String,
    /// Path inside the snapshot.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub etag: String,
    pub last_modified: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// A Redis target's backup: the RDB snapshot and the key counts around it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct RedisManifest {
    /// `host:port`.
    pub server: String,
    pub version: String,
    pub rdb: StreamRecord,
    /// Keys per database (`"0"`, `"3"`, ...) just before the snapshot was asked for and
    /// just after it arrived: the snapshot's own count lies between the two (they are
    /// equal on a quiet server).
    pub keys_before: BTreeMap<String, u64>,
    pub keys_after: BTreeMap<String, u64>,
}

impl RedisManifest {
    /// Whether `found` keys in database `db` fit the counts around the snapshot.
    pub fn plausible(&self, db: &str, found: u64) -> bool {
        let a = self.keys_before.get(db).copied().unwrap_or(0);
        let b = self.keys_after.get(db).copied().unwrap_or(0);
        (a.min(b)..=a.max(b)).contains(&found)
    }

    /// Every database named before or after.
    pub fn databases(&self) -> Vec<String> {
        let mut dbs: Vec<String> = self
            .keys_before
            .keys()
            .chain(self.keys_after.keys())
            .cloned()
            .collect();
        dbs.sort_by_key(|d| d.parse::<u32>().unwrap_or(u32::MAX));
        dbs.dedup();
        dbs
    }
}

/// A command target's backup: the command (URL passwords redacted) and its output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct CommandManifest {
    pub backup: String,
    pub output: StreamRecord,
}

/// A stream stored in a snapshot, with what lifeboat measured while storing it (the
/// repository records stream sizes as 0).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct StreamRecord {
    /// Path inside the snapshot, e.g. `app/db.dump`.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct PostgresManifest {
    pub database: String,
    /// Host, port and user; never the password.
    pub server: String,
    pub server_version: String,
    pub server_version_num: u32,
    pub pg_dump_version: String,
    pub database_size: u64,
    /// The exported snapshot both the counts and the dump saw.
    pub snapshot_lsn: String,
    /// The server's clock at the exported snapshot: the moment the dump holds.
    #[serde(with = "crate::time::moment")]
    pub snapshot_time: Option<jiff::Timestamp>,
    pub tables: Vec<TableRecord>,
    pub dump: StreamRecord,
    /// Where each data block of the dump lies, so a restore with several jobs can feed
    /// several `pg_restore` processes at once (absent: staged in a file instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<DumpLayout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<StreamRecord>,
}

/// The layout of a custom-format dump: its header and table of contents end at
/// `toc-bytes`, then come the data blocks, one per entry with data, with no gap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct DumpLayout {
    pub toc_bytes: u64,
    pub blocks: Vec<DataBlock>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct DataBlock {
    /// The TOC entry's dump id.
    pub id: i64,
    pub offset: u64,
    pub bytes: u64,
    /// Offsets inside the block where a row starts (a chunk of table data; every 32 MiB or
    /// so): a large table's rows can be split there between parallel `COPY`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuts: Vec<u64>,
}

impl PostgresManifest {
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn table(&self, qualified: &str) -> Option<&TableRecord> {
        self.tables.iter().find(|t| t.matches(qualified))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct TableRecord {
    pub schema: String,
    pub name: String,
    /// Exact `count(*)` inside the exported snapshot.
    pub rows: u64,
    /// Index names, so that one table can be restored with its indexes.
    #[serde(default)]
    pub indexes: Vec<String>,
    /// Sequences owned by the table's columns.
    #[serde(default)]
    pub sequences: Vec<String>,
}

impl TableRecord {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `users` matches `public.users`; `billing.users` matches only that schema.
    pub fn matches(&self, wanted: &str) -> bool {
        match wanted.split_once('.') {
            Some((schema, name)) => self.schema == schema && self.name == name,
            None => self.name == wanted,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct FilesManifest {
    /// The configured paths, as given.
    pub roots: Vec<String>,
    pub files: Vec<FileRecord>,
    pub total_bytes: u64,
    /// Paths that were skipped (sockets, devices, excluded by a rule) are not listed;
    /// anything that could not be read fails the backup instead.
    #[serde(default)]
    pub symlinks: u64,
}

/// A base backup of a PostgreSQL cluster (method `physical`): the files under
/// `<target>/data/` in the snapshot with `backup_label` and `tablespace_map` under
/// `<target>/meta/`, or, streamed, one tar at `<target>/base.tar`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct PhysicalManifest {
    /// `pg_control_system()`: WAL of another cluster is refused.
    pub system_id: SystemId,
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    /// The WAL segment holding `start_lsn` and the one holding `stop_lsn`: recovery needs
    /// every segment from the first on, and at least up to the second.
    pub start_wal: String,
    pub stop_wal: String,
    /// From the server's clock.
    #[serde(with = "crate::time::moment")]
    pub start_time: Option<jiff::Timestamp>,
    #[serde(with = "crate::time::moment")]
    pub stop_time: Option<jiff::Timestamp>,
    pub server_version: String,
    pub server_version_num: u32,
    /// The data directory the files came from; empty for a streamed backup.
    pub data_dir: String,
    pub wal_segment_size: u64,
    /// The files, for a backup of the data directory (none for a streamed one).
    pub files: FilesManifest,
    /// A streamed backup (`pg_basebackup`, no `data-dir`): the cluster as one tar,
    /// `backup_label` inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_tar: Option<StreamRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct FileRecord {
    /// Absolute path on the source host.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    /// The manifest as JSON laid out for people (see [`Outline`]).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = outline(self);
        out.push(b'\n');
        out
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Bytes of the backed-up content as lifeboat measured it.
    pub fn logical_bytes(&self) -> u64 {
        let pg = self.postgres.as_ref().map_or(0, |p| {
            p.dump.bytes + p.globals.as_ref().map_or(0, |g| g.bytes)
        });
        pg + self.files.as_ref().map_or(0, |f| f.total_bytes)
            + self.physical.as_ref().map_or(0, |p| p.files.total_bytes)
            + self.command.as_ref().map_or(0, |c| c.output.bytes)
            + self.redis.as_ref().map_or(0, |r| r.rdb.bytes)
            + self.bucket.as_ref().map_or(0, |b| b.total_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18, point 7: moments are typed, written in RFC 3339, and the spellings older
    /// manifests hold (PostgreSQL's `now()::text`, an empty end) still read.
    #[test]
    fn moments_read_old_spellings_and_write_rfc_3339() {
        #[derive(Serialize, Deserialize)]
        struct M {
            #[serde(with = "crate::time::moment")]
            at: Option<jiff::Timestamp>,
        }
        let want: jiff::Timestamp = "2026-11-22T10:01:00.5Z".parse().unwrap();
        for old in ["2026-11-22 10:01:00.5+00", "2026-11-22T11:01:00.5+01:00"] {
            let m: M = serde_json::from_value(serde_json::json!({ "at": old })).unwrap();
            assert_eq!(m.at, Some(want), "{old}");
            assert_eq!(
                serde_json::to_value(&m).unwrap()["at"],
                "2026-11-22T10:01:00.5Z"
            );
        }
        let none: M = serde_json::from_value(serde_json::json!({ "at": "" })).unwrap();
        assert_eq!(none.at, None);
        assert_eq!(serde_json::to_value(&none).unwrap()["at"], "");
        // Unreadable (an old server's `DateStyle`): lost, but the manifest still reads.
        let odd: M =
            serde_json::from_value(serde_json::json!({ "at": "Sun Dec 06 10:01:00 2026 UTC" }))
                .unwrap();
        assert_eq!(odd.at, None);
    }

    #[test]
    fn a_manifest_is_laid_out_one_record_per_line_and_reads_back() {
        let record = |i: u32| ObjectRecord {
            key: format!("img/{i}.jpg"),
            path: format!("media/bucket/img/{i}.jpg"),
            bytes: 100,
            sha256: "ab".repeat(32),
            etag: "\"e\"".into(),
            last_modified: "2026-12-07T13:51:40.704Z".into(),
            content_type: Some("image/jpeg".into()),
            metadata: BTreeMap::from([("mtime".into(), "1".into())]),
        };
        let m = Manifest {
            format: FORMAT_VERSION,
            target: "media".into(),
            kind: TargetKind::Bucket,
            method: "objects".into(),
            lifeboat_version: "0.1.0".into(),
            started_at: "2026-11-22T02:00:00Z".parse().ok(),
            finished_at: None,
            complete: true,
            emergency: false,
            command: None,
            redis: None,
            postgres: None,
            bucket: Some(BucketManifest {
                url: "s3://media".into(),
                objects: vec![record(1), record(2)],
                total_bytes: 200,
                downloaded: 2,
                downloaded_bytes: 200,
                parent: None,
                left_out: Vec::new(),
            }),
            files: None,
            physical: None,
        };
        let json = String::from_utf8(m.to_json()).unwrap();
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
        let lines: Vec<&str> = json.lines().collect();
        // The first levels as pretty printing lays them out; each record on one line.
        assert_eq!(lines[0], "{");
        assert!(lines.contains(&"  \"target\": \"media\","), "{json}");
        assert!(lines.contains(&"  \"bucket\": {"), "{json}");
        assert!(lines.contains(&"    \"objects\": ["), "{json}");
        let one = serde_json::to_string(&record(2)).unwrap();
        assert!(lines.contains(&format!("      {one}").as_str()), "{json}");
        assert!(lines.contains(&"    ],"), "{json}");
        assert_eq!(lines.last(), Some(&"}"));
        // Smaller than pretty printing, larger than none.
        let pretty = serde_json::to_vec_pretty(&m).unwrap().len();
        let compact = serde_json::to_vec(&m).unwrap().len();
        assert!(json.len() < pretty && json.len() > compact, "{json}");
        // An empty list stays `[]`, an empty map `{}`.
        let mut empty = m.clone();
        empty.bucket.as_mut().unwrap().objects.clear();
        let json = String::from_utf8(empty.to_json()).unwrap();
        assert!(json.contains("\"objects\": [],"), "{json}");
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), empty);
    }

    #[test]
    fn objects_in_lists_at_any_depth_are_one_line_each() {
        // As a physical manifest nests its files: an object, a list in it, objects in that.
        let v = serde_json::json!({
            "physical": {"files": {"count": 2, "files": [
                {"path": "base/1", "bytes": 8, "blocks": [{"at": 0}, {"at": 1}], "tags": []},
                {"path": "base/2", "bytes": 0, "meta": {}}
            ]}},
            "names": ["a", "b"],
            "empty": {},
            "none": []
        });
        let text = String::from_utf8(outline(&v)).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        // Lines without the comma that follows a value.
        let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches(',')).collect();
        let has = |line: &str| lines.contains(&line);
        let one = |o: &serde_json::Value| serde_json::to_string(o).unwrap();
        let files = &v["physical"]["files"]["files"];
        assert!(has(&format!("        {}", one(&files[0]))), "{text}");
        assert!(has(&format!("        {}", one(&files[1]))), "{text}");
        // Lists of plain values and the objects that are not in a list: over lines.
        assert!(has("    \"a\""), "{text}");
        assert!(has("  \"physical\": {"), "{text}");
        assert!(has("      \"files\": ["), "{text}");
        assert!(has("  \"empty\": {}"), "{text}");
        assert!(has("  \"none\": []"), "{text}");
    }

    #[test]
    fn round_trips_through_json() {
        let m = Manifest {
            format: FORMAT_VERSION,
            target: "app".into(),
            kind: TargetKind::Postgres,
            method: "logical".into(),
            lifeboat_version: "0.1.0".into(),
            started_at: "2026-11-22T02:00:00Z".parse().ok(),
            finished_at: "2026-11-22T02:00:05Z".parse().ok(),
            complete: true,
            emergency: false,
            command: None,
            redis: None,
            bucket: None,
            postgres: Some(PostgresManifest {
                database: "app".into(),
                server: "db:5432".into(),
                server_version: "15.8".into(),
                server_version_num: 150008,
                pg_dump_version: "15.8".into(),
                database_size: 1 << 20,
                snapshot_lsn: "0/16B3748".into(),
                snapshot_time: "2026-11-22T02:00:00Z".parse().ok(),
                tables: vec![TableRecord {
                    schema: "public".into(),
                    name: "users".into(),
                    rows: 3,
                    indexes: vec!["users_pkey".into()],
                    sequences: vec![],
                }],
                dump: StreamRecord {
                    path: "app/db.dump".into(),
                    bytes: 10,
                    sha256: "ab".into(),
                },
                layout: None,
                globals: None,
            }),
            files: None,
            physical: None,
        };
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.logical_bytes(), 10);
        let pg = back.postgres.unwrap();
        assert!(pg.table("users").is_some());
        assert!(pg.table("public.users").is_some());
        assert!(pg.table("other.users").is_none());
    }
}

/// JSON laid out like `serde_json`'s pretty printer, but every object inside a list on one
/// line: a bucket's object, a file, a table is one line of its list. A manifest of 10,000
/// objects was 4.0 MB pretty, 2.7 MB like this; every backup of the target writes one and
/// reads the previous one.
#[derive(Default)]
struct Outline {
    /// The open containers laid out over lines: whether each is a list.
    open: Vec<bool>,
    /// Containers open inside the one-line object being written (0: none).
    inline: usize,
    /// Whether the container just closed had values (pretty printing puts its closing
    /// bracket on a line of its own then).
    has_value: bool,
}

impl Outline {
    fn new_line<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.open.len() {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn begin<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        list: bool,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        if self.inline > 0 || (!list && self.open.last() == Some(&true)) {
            self.inline += 1;
        } else {
            self.open.push(list);
        }
        self.has_value = false;
        w.write_all(bracket)
    }

    fn end<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        if self.inline > 0 {
            self.inline -= 1;
        } else {
            self.open.pop();
            if self.has_value {
                self.new_line(w)?;
            }
        }
        w.write_all(bracket)
    }

    fn item<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        if self.inline == 0 {
            self.new_line(w)?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for Outline {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, true, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, false, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(if self.inline == 0 { b": " } else { b":" })
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// `value` as JSON laid out by [`Outline`].
fn outline(value: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Outline::default());
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}
