//! The command line. The doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// lifeboat — disaster recovery that proves itself.
///
/// Backs up PostgreSQL (logical, or physical with WAL archiving), files, command output,
/// Redis and S3 buckets into one encrypted, deduplicated, restic-format repository and
/// restores them with one command.
///
/// Exit codes: 0 success, 1 failure, 2 usage or config error, 3 verification failed or
/// objective missed, 130 interrupted (Ctrl-C or SIGTERM).
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Config file [default: $LIFEBOAT_CONFIG, else ./lifeboat.toml]
    #[arg(short, long, global = true, env = "LIFEBOAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Run against the copy `[copies.NAME]` instead of `[repository]`: snapshots, check,
    /// restore (PITR fetches WAL from the copy), drill, drills, status, jobs, forget, key,
    /// init (creates the copy)
    #[arg(long, global = true, value_name = "NAME")]
    pub repo: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository (refuses an existing one)
    Init,
    /// Validate the config and show it resolved, secrets redacted
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Back up targets (default: all)
    Backup(BackupArgs),
    /// List snapshots: id, target, kind, time, size, stored size
    Snapshots(SnapshotsArgs),
    /// Restore a target from a snapshot
    Restore(RestoreArgs),
    /// Apply the retention rules; with --prune, free the space
    Forget(ForgetArgs),
    /// Verify the repository's integrity
    Check(CheckArgs),
    /// Remove repository locks left by processes that are gone
    Unlock,
    /// PostgreSQL's archive_command and restore_command for physical targets
    #[command(subcommand)]
    Wal(WalCommand),
    /// Restore into a throwaway environment, verify, measure RTO and RPO, write a report
    Drill(DrillArgs),
    /// Drill history: time, target, verdict, RTO, RPO
    Drills(DrillsArgs),
    /// Per target: last backup and its age vs the RPO, last drill and its RTO; exit 3 if
    /// an objective is missed
    Status,
    /// Job history: every backup run by hand or by `serve`, with its outcome
    Jobs(JobsArgs),
    /// Continuous capture for `mode = "cdc"` targets (managed PostgreSQL): preflight and run
    #[command(subcommand)]
    Cdc(CdcCommand),
    /// Copy every snapshot a copy (`[copies.NAME]`, default: all) lacks, verified there,
    /// then the WAL archive, change segments, drill reports, jobs and incidents
    Copy(CopyArgs),
    /// The repository's keys: several passwords for one repository, and rotation
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run the health probes (`[[probes]]`) once and show what each found; exit 3 if one
    /// failed. `serve` runs them on their intervals
    Probe(ProbeArgs),
    /// Run the schedules in the foreground until SIGTERM/SIGINT, with an HTTP endpoint
    /// (/healthz, /metrics, /api/jobs)
    Serve(ServeArgs),
    /// Alert channels (`[[notify]]`)
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Run a recovery plan (`[plans.NAME]`): every step in order, restores with emergency
    /// backups and checks; asks once unless --yes
    Recover(RecoverArgs),
    /// Incidents: a timeline every action joins while one is open, and the post-mortem
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// A self-contained tour on a throwaway PostgreSQL: backup, disaster, restore, drill
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The plan (`[plans.NAME]`)
    pub plan: String,
    /// Bring every target to its state at this moment: the newest backup at or before it
    /// (RFC 3339 or "2026-11-22 10:01:00+00")
    #[arg(long)]
    pub time: Option<String>,
    /// Print the plan (snapshots, restored points, data lost) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before starting
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Continue the newest failed or interrupted run, without redoing its done steps
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Open an incident: from now on every lifeboat action joins its timeline
    Open(IncidentOpenArgs),
    /// Add a note to the open incident's timeline
    Note(IncidentNoteArgs),
    /// Close the open incident
    Close(IncidentCloseArgs),
    /// Every incident: id, opened, closed, severity, title
    List,
    /// An incident and its timeline (`open`: the open one)
    Show(IncidentIdArgs),
    /// The post-mortem: summary, timeline, time to recover, data lost per target
    Report(IncidentReportArgs),
}

#[derive(Debug, Args)]
pub struct IncidentOpenArgs {
    /// What happened, in a few words
    pub title: String,
    /// 1 (everything down) to 4 (minor)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub severity: u8,
}

#[derive(Debug, Args)]
pub struct IncidentNoteArgs {
    pub text: String,
}

#[derive(Debug, Args)]
pub struct IncidentCloseArgs {
    /// What happened and what was done, for the report
    #[arg(long)]
    pub summary: Option<String>,
}

#[derive(Debug, Args)]
pub struct IncidentIdArgs {
    /// The incident's id (or a unique prefix), or `open`
    #[arg(default_value = "open")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct IncidentReportArgs {
    /// The incident's id (or a unique prefix), or `open`
    #[arg(default_value = "open")]
    pub id: String,
    /// md, html or json
    #[arg(long, default_value = "md", value_parser = ["md", "html", "json"])]
    pub format: String,
    /// Write it to this file instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CdcCommand {
    /// Check that the server allows capture (wal_level, privileges, slots, replica
    /// identity, DDL capture), naming each problem with its fix; exit 3 if capture cannot run
    Check(CdcCheckArgs),
    /// Stream the target's committed transactions into the repository until SIGTERM or
    /// Ctrl-C (taking a baseline first if there is none)
    Run(CdcRunArgs),
}

#[derive(Debug, Args)]
pub struct CdcCheckArgs {
    pub target: String,
    /// Set `REPLICA IDENTITY FULL` on the tables without a primary key or replica identity,
    /// and install the event trigger that captures DDL (your consent to change the server)
    #[arg(long)]
    pub fix: bool,
}

#[derive(Debug, Args)]
pub struct CdcRunArgs {
    pub target: String,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// The keys: id, host, user, created; the one in use marked
    List,
    /// Add a key for a new password (an offline recovery key, a second administrator)
    Add(NewPasswordArgs),
    /// Remove a key by its id (or a unique prefix); never the key in use nor the last one
    Remove(KeyRemoveArgs),
    /// Change the password: add a key for the new one, then remove the key in use
    Passwd(NewPasswordArgs),
}

#[derive(Debug, Args)]
pub struct NewPasswordArgs {
    /// Read the new password from this file (its first line); else `$LIFEBOAT_NEW_PASSWORD`,
    /// else a prompt on a terminal
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// The host name recorded in the key (default: this host's)
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Only these probes (default: all)
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only this target's jobs
    pub target: Option<String>,
    /// Only jobs that failed (or were interrupted or skipped)
    #[arg(long)]
    pub failed: bool,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test alert through each channel (or the named ones) and report per channel
    Test(NotifyTestArgs),
}

#[derive(Debug, Args)]
pub struct NotifyTestArgs {
    /// Only these channels (`[[notify]] name`)
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the HTTP endpoint listens [default: `[serve] listen`, 127.0.0.1:9300]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The log on stderr: a line of text per event, or a JSON object per line
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print it resolved, every secret redacted
    Check,
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Archive one WAL file: `archive_command = 'lifeboat -c /etc/lifeboat.toml wal push %p'`
    Push(WalPushArgs),
    /// Fetch one WAL file: `restore_command = 'lifeboat wal fetch %f %p'` (written by restore)
    Fetch(WalFetchArgs),
    /// Fetch the segments after NAME ahead of recovery (started by `wal fetch`)
    #[command(hide = true)]
    Prefetch(WalPrefetchArgs),
}

#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// The WAL file (`%p`: relative to the data directory)
    pub path: PathBuf,
    /// The physical target [default: the only one configured]
    #[arg(long)]
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    /// The WAL file's name (`%f`)
    pub name: String,
    /// Where to write it (`%p`)
    pub path: PathBuf,
    /// The physical target [default: the only one configured]
    #[arg(long)]
    pub target: Option<String>,
    /// The cluster's system identifier [default: from ./global/pg_control]
    #[arg(long)]
    pub system_id: Option<u64>,
}

#[derive(Debug, Args)]
pub struct WalPrefetchArgs {
    /// The segment recovery just got; the ones after it are fetched
    pub name: String,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub system_id: u64,
    /// The cluster's WAL segment size in bytes (the size of the segment just fetched)
    #[arg(long, default_value_t = 16 << 20)]
    pub segment_size: u64,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Targets to back up (default: all configured targets)
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only this target's snapshots
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The target to restore
    pub target: String,
    /// Snapshot id (or a unique prefix), or `latest`
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// PostgreSQL: the database to restore into; Redis: the server; bucket: `s3://bucket[/prefix]`
    /// [default: the target's own]
    #[arg(long, value_name = "URL", conflicts_with = "to_dir")]
    pub to: Option<String>,
    /// Bucket: restore only the objects whose keys start with this
    #[arg(long, value_name = "PREFIX", conflicts_with = "key")]
    pub prefix: Option<String>,
    /// Bucket: restore only this object
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Files: the folder to restore into (the files keep their absolute paths below it)
    #[arg(long, value_name = "DIR")]
    pub to_dir: Option<PathBuf>,
    /// PostgreSQL: restore only this table (`name` or `schema.name`)
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite existing data, after an emergency backup of it
    #[arg(long)]
    pub force: bool,
    /// Parallel pg_restore jobs, into a database the restore creates (> 1: several streams
    /// at once, the database dropped again if the load fails; staged in a temporary file for
    /// snapshots that lack the dump's layout). Into an existing database, or with `--table`,
    /// the restore is one transaction whatever this says
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Keep the dump's owners and privileges (the roles must exist on the target)
    #[arg(long)]
    pub keep_owners: bool,
    /// Do not run the target's `[[checks]]` on what was restored
    #[arg(long)]
    pub no_checks: bool,
    #[command(flatten)]
    pub pitr: PitrArgs,
}

/// Point-in-time recovery of a physical target (with `--to-dir`).
#[derive(Debug, Args, Default, Clone)]
pub struct PitrArgs {
    /// Physical targets: recover to this moment (RFC 3339 or "2026-11-22 10:01:00+00").
    /// Other kinds: restore the newest backup taken at or before it
    #[arg(long, group = "recovery_target")]
    pub time: Option<String>,
    /// Recover to this WAL position (`0/3000060`)
    #[arg(long, group = "recovery_target")]
    pub lsn: Option<String>,
    /// Recover to the end of this transaction id
    #[arg(long, group = "recovery_target")]
    pub xid: Option<String>,
    /// Recover to a restore point made with `pg_create_restore_point(name)`
    #[arg(long, group = "recovery_target")]
    pub name: Option<String>,
    /// Replay every archived WAL file
    #[arg(long, group = "recovery_target")]
    pub latest: bool,
    /// Pause at the target instead of promoting (inspect, then `pg_wal_replay_resume()`)
    #[arg(long)]
    pub pause: bool,
    /// Start the server on the restored directory and wait until it reaches the target
    #[arg(long, requires = "port")]
    pub start: bool,
    /// The port for `--start`
    #[arg(long)]
    pub port: Option<u16>,
    /// The restored server does not archive WAL (`archive_mode = off`): for a copy started
    /// to look at, so that it never writes into the production archive
    #[arg(long)]
    pub no_archive: bool,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Also remove the data no snapshot needs any more
    #[arg(long)]
    pub prune: bool,
    /// Show what would be forgotten and pruned; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The copies to bring up to date (default: every `[copies.NAME]`)
    pub names: Vec<String>,
    /// Read back every file of each copied snapshot in the copy before it counts (by
    /// default: every tree read back, every blob indexed in a pack that is there, and the
    /// manifest compared)
    #[arg(long)]
    pub read_data: bool,
    /// Show what would be copied; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read and verify every pack file (slow: reads the whole repository)
    #[arg(long)]
    pub read_data: bool,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Targets to drill (default: all configured targets)
    pub targets: Vec<String>,
    /// Drill a recovery plan as a whole (`[plans.NAME]`): its restores into scratch
    /// environments kept up while its commands run against them
    #[arg(long, value_name = "PLAN", conflicts_with_all = ["targets", "snapshot", "time", "dry_run"])]
    pub plan: Option<String>,
    /// Drill this snapshot (id or unique prefix) instead of the latest
    #[arg(long, conflicts_with = "time")]
    pub snapshot: Option<String>,
    /// Drill the newest snapshot taken at or before this time (RFC 3339 or
    /// "2026-11-22 10:01:00+00")
    #[arg(long)]
    pub time: Option<String>,
    /// Also write each report (Markdown, JSON, HTML) into this folder [default: `[drill]
    /// report-dir`]
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Parallel pg_restore jobs (> 1: several streams at once; staged in a temporary file
    /// over existing objects, for one table, or for snapshots that lack the dump's layout)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Show each drill's plan (snapshot, steps, checks) and provision nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DrillsArgs {
    /// Only this target's drills
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's folder (repository, config) and print where it is
    #[arg(long)]
    pub keep: bool,
}
