//! `lifeboat.toml`: the schema, loading with precise errors, environment overrides and
//! secret resolution.
//!
//! Unknown keys and wrong types are errors that name the key, the file, the line and the
//! column: a mistyped `keep-daily` must never silently disable retention. Secrets come from
//! `*-env`, `*-file` or `*-command` keys and are held in [`Redacted`]; nothing here prints
//! them. This module does not open repositories or databases.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    process::Command,
};

use serde::{Deserialize, Serialize};

use crate::{
    duration::HumanDuration,
    location::{Location, ObjectLock, S3Location, parse_s3_url},
    redact::Redacted,
    redact_url,
    schedule::Schedule,
};

/// Environment variables that override the file.
pub const ENV_REPOSITORY: &str = "LIFEBOAT_REPOSITORY";
pub const ENV_PASSWORD: &str = "LIFEBOAT_PASSWORD";
pub const ENV_PASSWORD_FILE: &str = "LIFEBOAT_PASSWORD_FILE";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{what} not found: {message}")]
    Secret { what: String, message: String },
}

impl ConfigError {
    /// A `hint:` line for the person reading the error, when the fix is known.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Read { .. } => Some(
                "pass the config with `-c FILE` or `$LIFEBOAT_CONFIG`, or run from the folder holding lifeboat.toml"
                    .into(),
            ),
            // serde's errors carry no kind (an unknown key, a wrong type and a bad value all
            // arrive as text), so every parse error gets the reference.
            Self::Parse { .. } => Some(
                "check the key and its value against the config reference in README.md".into(),
            ),
            Self::Secret { .. } => Some(
                "secrets come from `*-env` (an environment variable), `*-file` or `*-command` keys"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub repository: RepositoryConfig,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
    #[serde(default)]
    pub drill: DrillConfig,
    #[serde(default)]
    pub serve: ServeConfig,
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// `[[notify]]`: where alerts go.
    #[serde(default)]
    pub notify: Vec<NotifyConfig>,
    /// `[heartbeat]`: a dead man's switch pinged around each scheduled backup.
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    /// `[plans.NAME]`: recovery plans (`lifeboat recover`).
    #[serde(default)]
    pub plans: BTreeMap<String, crate::plans::PlanConfig>,
    /// `[[probes]]`: health probes of the protected services.
    #[serde(default)]
    pub probes: Vec<crate::probes::ProbeConfig>,
    /// `[copies.NAME]`: second copies of the repository (`lifeboat copy`, `--repo NAME`).
    #[serde(default)]
    pub copies: BTreeMap<String, RepositoryConfig>,
    /// The copy `--repo NAME` put in place of `[repository]`; `None` for the primary.
    #[serde(skip)]
    pub using_copy: Option<String>,
    /// Where the config was read from (for messages); not part of the file.
    #[serde(skip)]
    pub source: PathBuf,
    /// The file's text, to point at a key's line in later errors; not part of the file.
    #[serde(skip)]
    text: String,
}

/// Where a secret comes from: exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretSource {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
    pub command: Option<String>,
}

impl SecretSource {
    fn is_empty(&self) -> bool {
        self.env.is_none() && self.file.is_none() && self.command.is_none()
    }

    /// Resolve the secret. `what` names it in errors ("repository password").
    pub fn resolve(&self, what: &str) -> Result<Redacted, ConfigError> {
        let secret_err = |message: String| ConfigError::Secret {
            what: what.to_string(),
            message,
        };
        if let Some(var) = &self.env {
            return std::env::var(var)
                .map(Redacted::new)
                .map_err(|_| secret_err(format!("environment variable `{var}` is not set")));
        }
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| secret_err(format!("cannot read `{}`: {e}", path.display())))?;
            return Ok(Redacted::new(text.trim_end_matches(['\n', '\r'])));
        }
        if let Some(command) = &self.command {
            let out = Command::new("sh")
                .arg("-c")
                .arg(command)
                .output()
                .map_err(|e| secret_err(format!("cannot run `{command}`: {e}")))?;
            if !out.status.success() {
                return Err(secret_err(format!(
                    "`{command}` exited with {}",
                    out.status
                )));
            }
            let text = String::from_utf8(out.stdout)
                .map_err(|_| secret_err(format!("`{command}` printed non-UTF-8")))?;
            return Ok(Redacted::new(text.trim_end_matches(['\n', '\r'])));
        }
        Err(secret_err("no source configured".into()))
    }

    fn describe(&self) -> String {
        if let Some(v) = &self.env {
            format!("env `{v}`")
        } else if let Some(f) = &self.file {
            format!("file `{}`", f.display())
        } else if let Some(c) = &self.command {
            format!("command `{c}`")
        } else {
            "none".into()
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RepositoryConfig {
    /// A local path, or `s3://bucket/prefix`.
    pub url: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_command: Option<String>,
    /// S3: the server, `http(s)://host:port` (default: AWS, or `$AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// S3: the region (default `$AWS_REGION`, `$AWS_DEFAULT_REGION`, then `us-east-1`).
    pub region: Option<String>,
    /// S3: address buckets by path (`endpoint/bucket/key`), as MinIO, moto and R2 want.
    pub path_style: Option<bool>,
    /// S3: the variable holding the access key id (default `AWS_ACCESS_KEY_ID`).
    pub access_key_id_env: Option<String>,
    /// S3: the variable holding the secret access key (default `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key_env: Option<String>,
    /// Copies only: when `serve` copies into this one (`lifeboat copy NAME`).
    pub copy_schedule: Option<Schedule>,
    /// Copies only: the objective — a snapshot of the repository older than this and not
    /// yet in the copy is a miss in `status` and an alert in `serve`.
    pub max_lag: Option<HumanDuration>,
    /// S3 only: the bucket has Object Lock; `init` sets its default retention to this, and
    /// every object written carries it (see `object_lock` in lifeboat-repo).
    pub object_lock: Option<ObjectLock>,
}

impl RepositoryConfig {
    /// The key the password is set with, for errors pointing at it.
    fn password_key(&self) -> &'static str {
        if self.password_file.is_some() {
            "password-file"
        } else if self.password_command.is_some() {
            "password-command"
        } else {
            "password-env"
        }
    }

    pub fn password_source(&self) -> SecretSource {
        SecretSource {
            env: self.password_env.clone(),
            file: self.password_file.clone(),
            command: self.password_command.clone(),
        }
    }
}

/// Retention rules (restic's `keep-*`), per target unless overridden there.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<HumanDuration>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Recovery objectives of one target.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Objectives {
    pub rpo: Option<HumanDuration>,
    pub rto: Option<HumanDuration>,
    /// A drill older than this (or none) is a miss: the runbook's "test the restore monthly".
    pub drill_every: Option<HumanDuration>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    #[default]
    Postgres,
    Files,
    /// Any program's output: `backup` prints the backup, `restore` reads it on stdin.
    Command,
    /// A Redis server: an RDB snapshot over the replication protocol.
    Redis,
    /// An S3-compatible bucket, or a prefix of one.
    Bucket,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres => "postgres",
            Self::Files => "files",
            Self::Command => "command",
            Self::Redis => "redis",
            Self::Bucket => "bucket",
        })
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresMode {
    #[default]
    Logical,
    /// Base backups of the data directory plus continuous WAL archiving (self-hosted).
    Physical,
    /// Logical baselines plus every committed change captured through logical replication
    /// (managed servers: Supabase, RDS, Neon).
    Cdc,
}

/// Cdc mode: what happens when the slot keeps more WAL than `max-slot-lag`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnSlotLag {
    /// An objective miss (and `serve`'s alert); the slot stays.
    #[default]
    Alert,
    /// Also drop lifeboat's own slot, to protect the server's disk: the changes until a new
    /// baseline are a recorded gap.
    Drop,
}

/// One `[targets.<name>]` table. The keys of every kind live in one struct so that serde
/// reports unknown keys with their exact position; [`Config::validate`] then rejects keys
/// that do not belong to the target's kind.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetConfig {
    pub kind: TargetKind,
    #[serde(default)]
    pub objectives: Objectives,
    /// When `lifeboat serve` backs the target up.
    pub schedule: Option<Schedule>,
    /// When `lifeboat serve` drills the target.
    pub drill_schedule: Option<Schedule>,
    /// Spread the target's scheduled jobs over this much time after each slot (a fixed
    /// offset per target, so that many targets on one slot do not start at once).
    pub jitter: Option<HumanDuration>,
    pub retention: Option<Retention>,

    // postgres
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    pub mode: Option<PostgresMode>,
    pub pg_bin_dir: Option<PathBuf>,
    /// `pg_dumpall --globals-only` needs rights managed services may not give; `false` skips it.
    pub globals: Option<bool>,
    /// Physical mode: the server's data directory (local to lifeboat).
    pub data_dir: Option<PathBuf>,
    /// Cdc mode: captured changes are stored at least this often (default 1 s): the RPO.
    pub flush_interval: Option<HumanDuration>,
    /// Cdc mode: the replication slot's name (default `lifeboat_<target>`).
    pub slot: Option<String>,
    /// Cdc mode: the publication's name (default `lifeboat_<target>`).
    pub publication: Option<String>,
    /// Cdc mode: WAL the slot may keep on the server's disk before lifeboat acts (default
    /// 10 GiB).
    pub max_slot_lag: Option<crate::ByteSize>,
    /// Cdc mode: what lifeboat does beyond `max-slot-lag`: alert (the default), or drop its
    /// slot as well, recording the gap and starting a new chain.
    pub on_slot_lag: Option<OnSlotLag>,
    /// Cdc mode: a running capture takes a new baseline when the newest is this old
    /// (default 7 days), so a restore never replays more than that.
    pub baseline_every: Option<HumanDuration>,

    // files
    pub paths: Option<Vec<PathBuf>>,
    pub exclude: Option<Vec<String>>,

    // command
    /// Run by `sh -c`; its stdout is the backup, a non-zero exit fails it.
    pub backup: Option<String>,
    /// Run by `sh -c` with the backup on stdin.
    pub restore: Option<String>,
    /// Extra environment for both commands.
    pub env: Option<BTreeMap<String, String>>,
    /// Working directory of both commands.
    pub workdir: Option<PathBuf>,

    // bucket (unset: the repository's S3 settings, then `AWS_*`)
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
}

impl TargetConfig {
    /// The connection URL (PostgreSQL, Redis), resolved from `url`, `url-env` or `url-file`.
    pub fn connection_url(&self, target: &str) -> Result<Redacted, ConfigError> {
        if let Some(url) = &self.url {
            return Ok(Redacted::new(url.clone()));
        }
        SecretSource {
            env: self.url_env.clone(),
            file: self.url_file.clone(),
            command: None,
        }
        .resolve(&format!("database URL of target `{target}`"))
    }

    /// Where a bucket target is: its `url` and S3 settings (unset ones were taken from
    /// `[repository]` when the config was loaded), else `AWS_*` and defaults.
    pub fn bucket_location(&self, name: &str) -> Result<S3Location, ConfigError> {
        let url = self.url.as_deref().unwrap_or_default();
        let (bucket, prefix) = parse_s3_url(url)
            .unwrap_or_else(|| Err("not an `s3://` URL".into()))
            .map_err(|message| ConfigError::Secret {
                what: format!("location of target `{name}`"),
                message,
            })?;
        s3_location(
            bucket,
            prefix,
            [
                &self.endpoint,
                &self.region,
                &self.access_key_id_env,
                &self.secret_access_key_env,
            ],
            self.path_style,
        )
    }

    /// Cdc mode: the WAL the slot may keep before lifeboat acts, in bytes (default 10 GiB).
    pub fn max_slot_lag(&self) -> u64 {
        self.max_slot_lag.map_or(10 << 30, |b| b.0)
    }

    /// Cdc mode: the replication slot and the publication, by name.
    pub fn cdc_names(&self, target: &str) -> (String, String) {
        let default = format!("lifeboat_{}", target.to_ascii_lowercase().replace('-', "_"));
        (
            self.slot.clone().unwrap_or_else(|| default.clone()),
            self.publication.clone().unwrap_or(default),
        )
    }

    pub fn effective_retention<'a>(&'a self, global: &'a Retention) -> &'a Retention {
        self.retention.as_ref().unwrap_or(global)
    }
}

/// `[maintenance]`: the repository's upkeep that `lifeboat serve` runs.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MaintenanceConfig {
    /// When to apply retention and prune (`forget --prune`).
    pub forget_schedule: Option<Schedule>,
    /// When to check the repository (`check`).
    pub check_schedule: Option<Schedule>,
    /// How much pack content each scheduled check reads: `"5%"` reads one part in 20 —
    /// a different part each time, so 20 checks read every pack once — or `"all"`.
    /// Default: none (structure, index and manifests only).
    pub check_read_data: Option<ReadShare>,
}

/// A share of the packs a check reads: `"all"`, or `"P%"` (0 < P ≤ 100), which is one
/// part of `ceil(100 / P)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReadShare {
    /// Into how many parts the packs are split (1: every pack each time).
    pub parts: u32,
}

impl TryFrom<String> for ReadShare {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s.trim() == "all" {
            return Ok(Self { parts: 1 });
        }
        let percent: f64 = s
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.trim().parse().ok())
            .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
            .ok_or_else(|| {
                format!(
                    "`check-read-data = {s:?}`: write a share of the packs, e.g. \"5%\" or \"all\""
                )
            })?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let parts = (100.0 / percent).ceil() as u32;
        Ok(Self { parts })
    }
}

impl From<ReadShare> for String {
    fn from(r: ReadShare) -> String {
        if r.parts == 1 {
            "all".into()
        } else {
            format!("{}%", 100.0 / f64::from(r.parts))
        }
    }
}

/// `[heartbeat]`: a healthchecks.io-style URL `serve` pings around every scheduled backup
/// (`<url>/start` before, `<url>` after a good one, `<url>/fail` after a failed one), so that
/// someone notices when the pings stop — the whole host gone.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HeartbeatConfig {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
}

impl HeartbeatConfig {
    /// The URL, if a heartbeat is configured (without a trailing `/`).
    pub fn address(&self) -> Result<Option<Redacted>, ConfigError> {
        Ok(url_from(
            &self.url,
            &self.url_env,
            &self.url_file,
            "`[heartbeat]` url",
        )?
        .map(|u| Redacted::new(u.expose().trim_end_matches('/').to_string())))
    }
}

/// A URL given as `url`, or — a secret — as `url-env` / `url-file`; none if none is.
fn url_from(
    url: &Option<String>,
    env: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> Result<Option<Redacted>, ConfigError> {
    if let Some(u) = url {
        return Ok(Some(Redacted::new(u.clone())));
    }
    if env.is_none() && file.is_none() {
        return Ok(None);
    }
    SecretSource {
        env: env.clone(),
        file: file.clone(),
        command: None,
    }
    .resolve(what)
    .map(Some)
}

/// `[[notify]]`: one channel alerts go to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifyConfig {
    pub name: String,
    pub kind: NotifyKind,
    /// The address (a webhook URL); or from `url-env` / `url-file`, as it is a secret.
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    /// `kind = "command"`: run with `sh -c`, the alert as JSON on stdin.
    pub command: Option<String>,
    /// `kind = "pagerduty"`: the integration's routing key (a secret), from the environment
    /// or a file. `url` then overrides the Events API v2 endpoint.
    pub routing_key_env: Option<String>,
    pub routing_key_file: Option<PathBuf>,
    /// `kind = "email"`: the sender and the recipients; the server is the `url`
    /// (`smtp://user:password@host:587?tls=required` for STARTTLS, `smtps://…:465` for TLS).
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    /// The alert kinds sent (`backup-failed`, `objective-missed`); default: every kind.
    pub events: Option<Vec<String>>,
    /// While a problem lasts, send it again this often (marked as a reminder); default:
    /// once when it begins, once when it ends.
    pub remind_every: Option<HumanDuration>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyKind {
    /// A POST of the alert as JSON.
    Webhook,
    /// Slack's incoming-webhook format.
    Slack,
    /// Discord's webhook format.
    Discord,
    /// A command, the alert as JSON on stdin.
    Command,
    /// PagerDuty's Events API v2: `trigger`, then `resolve` with the same `dedup_key`.
    Pagerduty,
    /// An email through an SMTP server, plain text and HTML.
    Email,
}

impl NotifyConfig {
    /// The channel's address: `url`, or the secret `url-env` / `url-file` names.
    pub fn address(&self) -> Result<Option<Redacted>, ConfigError> {
        url_from(
            &self.url,
            &self.url_env,
            &self.url_file,
            &format!("the url of `[[notify]] {}`", self.name),
        )
    }

    /// PagerDuty's routing key.
    pub fn routing_key(&self) -> Result<Redacted, ConfigError> {
        SecretSource {
            env: self.routing_key_env.clone(),
            file: self.routing_key_file.clone(),
            command: None,
        }
        .resolve(&format!("the routing key of `[[notify]] {}`", self.name))
    }

    /// The alert kinds a channel's `events` may name (`probe-up` is the resolution of a
    /// `probe-down`).
    pub const KINDS: &'static [&'static str] = &[
        "backup-failed",
        "drill-failed",
        "forget-failed",
        "check-failed",
        "job-overdue",
        "archiving-failed",
        "objective-missed",
        "probe-down",
        "probe-up",
        "capture-failed",
        "copy-failed",
        "copy-behind",
        "test",
    ];

    /// Whether alerts of `kind` go to this channel.
    pub fn wants(&self, kind: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|e| e.iter().any(|k| k == kind))
    }
}

/// `[serve]`: the long-running process (`lifeboat serve`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeConfig {
    /// Where the HTTP endpoint listens (`/healthz`, `/metrics`, `/api/...`).
    #[serde(default = "ServeConfig::default_listen")]
    pub listen: String,
    /// How long running jobs get to finish or stop after SIGTERM.
    #[serde(default = "ServeConfig::default_shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
    /// The time zone cron schedules are read in (default UTC).
    pub timezone: Option<String>,
    /// A job still running this long after it started is overdue: an alert (it goes on).
    #[serde(default = "ServeConfig::default_job_timeout")]
    pub job_timeout: HumanDuration,
    /// The environment variable holding the bearer token the HTTP endpoint requires
    /// (required when it listens beyond loopback).
    pub token_env: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: Self::default_listen(),
            shutdown_timeout: Self::default_shutdown_timeout(),
            timezone: None,
            job_timeout: Self::default_job_timeout(),
            token_env: None,
        }
    }
}

impl ServeConfig {
    fn default_listen() -> String {
        "127.0.0.1:9300".into()
    }

    fn default_shutdown_timeout() -> HumanDuration {
        HumanDuration::from_secs(60)
    }

    fn default_job_timeout() -> HumanDuration {
        HumanDuration::from_secs(6 * 3600)
    }

    /// The HTTP endpoint's bearer token, from `token-env`.
    pub fn token(&self) -> Result<Option<Redacted>, ConfigError> {
        match &self.token_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Redacted::new(v))),
                _ => Err(ConfigError::Secret {
                    what: format!("`serve.token-env` (${var})"),
                    message: format!("the environment variable `{var}` is not set"),
                }),
            },
        }
    }

    /// The time zone of cron schedules.
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone, String> {
        match &self.timezone {
            None => Ok(jiff::tz::TimeZone::UTC),
            Some(name) => jiff::tz::TimeZone::get(name)
                .map_err(|e| format!("`serve.timezone = \"{name}\"`: {e}")),
        }
    }
}

/// `[drill]`: where drills restore and where they write reports.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DrillConfig {
    /// A server the user provides for drills (a database `lifeboat_drill_<time>` is created
    /// in it and dropped afterwards). Default: a throwaway cluster on a free port.
    pub scratch_url: Option<String>,
    pub scratch_url_env: Option<String>,
    /// Also write every drill report (Markdown, JSON, HTML) into this folder.
    pub report_dir: Option<PathBuf>,
    /// Bucket targets are drilled into `s3://bucket[/prefix]/lifeboat-drill-<time>/` here
    /// (on the target's S3 server, with its credentials); default: a temporary folder.
    pub scratch_bucket: Option<String>,
}

impl DrillConfig {
    /// The scratch server's URL, if one is configured.
    pub fn scratch_url(&self) -> Result<Option<Redacted>, ConfigError> {
        if let Some(url) = &self.scratch_url {
            return Ok(Some(Redacted::new(url.clone())));
        }
        if self.scratch_url_env.is_none() {
            return Ok(None);
        }
        SecretSource {
            env: self.scratch_url_env.clone(),
            file: None,
            command: None,
        }
        .resolve("drill scratch URL")
        .map(Some)
    }
}

/// A `[[checks]]` rule of a target, run by every drill of it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckConfig {
    pub target: String,
    pub name: String,
    pub sql: Option<String>,
    pub command: Option<String>,
    pub expect: Option<String>,
    pub expect_min: Option<f64>,
    pub expect_max: Option<f64>,
    /// Where the rule runs: `drill` (drills and restores, the default), `production` (a
    /// `sql` probe runs it against the live target on its interval), or both.
    pub on: Option<Vec<CheckPlace>>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CheckPlace {
    Drill,
    Production,
}

impl CheckConfig {
    /// Whether drills (and restores) run it.
    pub fn in_drills(&self) -> bool {
        self.on
            .as_ref()
            .is_none_or(|on| on.contains(&CheckPlace::Drill))
    }

    /// Whether a `sql` probe runs it against the live target.
    pub fn in_production(&self) -> bool {
        self.on
            .as_ref()
            .is_some_and(|on| on.contains(&CheckPlace::Production))
    }
}

impl Config {
    /// Read, parse and validate a config file, then apply environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        config.apply_env();
        config.inherit_s3_settings();
        config.validate()?;
        Ok(config)
    }

    /// Parse TOML text; errors carry line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })?;
        config.source = path.to_path_buf();
        config.text = text.to_string();
        Ok(config)
    }

    fn apply_env(&mut self) {
        if let Ok(url) = std::env::var(ENV_REPOSITORY)
            && !url.is_empty()
        {
            self.repository.url = Some(url);
        }
    }

    /// Checks serde cannot express: one secret source, keys that belong to the kind.
    /// Bucket targets take the repository's S3 settings they do not set themselves: the
    /// usual case is one provider for both.
    fn inherit_s3_settings(&mut self) {
        let r = self.repository.clone();
        for t in self.targets.values_mut() {
            if t.kind != TargetKind::Bucket {
                continue;
            }
            t.endpoint = t.endpoint.take().or(r.endpoint.clone());
            t.region = t.region.take().or(r.region.clone());
            t.path_style = t.path_style.or(r.path_style);
            t.access_key_id_env = t.access_key_id_env.take().or(r.access_key_id_env.clone());
            t.secret_access_key_env = t
                .secret_access_key_env
                .take()
                .or(r.secret_access_key_env.clone());
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: self.source.clone(),
            message,
        };
        check_repository("repository", &self.repository).map_err(&invalid)?;
        if self.repository.copy_schedule.is_some() || self.repository.max_lag.is_some() {
            return Err(invalid(
                "`copy-schedule` and `max-lag` belong in a `[copies.NAME]` section, not in `[repository]`"
                    .into(),
            ));
        }
        for (name, copy) in &self.copies {
            validate_target_name(name)
                .map_err(|m| invalid(format!("copy {}", m.trim_start_matches("target "))))?;
            let section = format!("copies.{name}");
            check_repository(&section, copy).map_err(&invalid)?;
            // `lifeboat copy` also compares the repositories' ids; this catches it early.
            let place = |r: &RepositoryConfig| {
                r.url
                    .as_deref()
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_string()
            };
            if place(copy) == place(&self.repository) {
                return Err(invalid(format!(
                    "`{section}.url` is the repository itself: a copy must be somewhere else"
                )));
            }
            if let Some((other, _)) = self
                .copies
                .iter()
                .find(|(o, c)| *o < name && place(c) == place(copy))
            {
                return Err(invalid(format!(
                    "copies `{other}` and `{name}` have the same `url`: give each a place of its own"
                )));
            }
        }
        for (name, t) in &self.targets {
            validate_target_name(name).map_err(|m| invalid(m.to_string()))?;
            let set_keys = [
                ("url", t.url.is_some()),
                ("url-env", t.url_env.is_some()),
                ("url-file", t.url_file.is_some()),
                ("mode", t.mode.is_some()),
                ("pg-bin-dir", t.pg_bin_dir.is_some()),
                ("globals", t.globals.is_some()),
                ("data-dir", t.data_dir.is_some()),
                ("flush-interval", t.flush_interval.is_some()),
                ("slot", t.slot.is_some()),
                ("publication", t.publication.is_some()),
                ("max-slot-lag", t.max_slot_lag.is_some()),
                ("on-slot-lag", t.on_slot_lag.is_some()),
                ("baseline-every", t.baseline_every.is_some()),
                ("paths", t.paths.is_some()),
                ("exclude", t.exclude.is_some()),
                ("backup", t.backup.is_some()),
                ("restore", t.restore.is_some()),
                ("env", t.env.is_some()),
                ("workdir", t.workdir.is_some()),
                ("endpoint", t.endpoint.is_some()),
                ("region", t.region.is_some()),
                ("path-style", t.path_style.is_some()),
                ("access-key-id-env", t.access_key_id_env.is_some()),
                ("secret-access-key-env", t.secret_access_key_env.is_some()),
            ];
            let applies: &[&str] = match t.kind {
                TargetKind::Postgres => &[
                    "url",
                    "url-env",
                    "url-file",
                    "mode",
                    "pg-bin-dir",
                    "globals",
                    "data-dir",
                    "flush-interval",
                    "slot",
                    "publication",
                    "max-slot-lag",
                    "on-slot-lag",
                    "baseline-every",
                ],
                TargetKind::Files => &["paths", "exclude"],
                TargetKind::Command => &["backup", "restore", "env", "workdir"],
                TargetKind::Redis => &["url", "url-env", "url-file"],
                TargetKind::Bucket => &[
                    "url",
                    "endpoint",
                    "region",
                    "path-style",
                    "access-key-id-env",
                    "secret-access-key-env",
                ],
            };
            let url_keys = [t.url.is_some(), t.url_env.is_some(), t.url_file.is_some()];
            if matches!(t.kind, TargetKind::Postgres | TargetKind::Redis)
                && url_keys.iter().filter(|s| **s).count() != 1
            {
                return Err(invalid(format!(
                    "`targets.{name}`: set exactly one of `url`, `url-env`, `url-file`"
                )));
            }
            if let Some((key, _)) = set_keys
                .iter()
                .find(|(key, set)| *set && !applies.contains(key))
            {
                return Err(invalid(format!(
                    "`targets.{name}.{key}` does not apply to kind `{}`",
                    t.kind
                )));
            }
            match t.kind {
                TargetKind::Postgres => match (t.mode.unwrap_or_default(), &t.data_dir) {
                    (PostgresMode::Logical | PostgresMode::Cdc, Some(_)) => {
                        return Err(invalid(format!(
                            "`targets.{name}.data-dir` applies to `mode = \"physical\"` only"
                        )));
                    }
                    (mode, _)
                        if mode != PostgresMode::Cdc
                            && let Some(key) = [
                                ("flush-interval", t.flush_interval.is_some()),
                                ("slot", t.slot.is_some()),
                                ("publication", t.publication.is_some()),
                                ("max-slot-lag", t.max_slot_lag.is_some()),
                                ("on-slot-lag", t.on_slot_lag.is_some()),
                                ("baseline-every", t.baseline_every.is_some()),
                            ]
                            .iter()
                            .find(|(_, set)| *set)
                            .map(|(k, _)| k) =>
                    {
                        return Err(invalid(format!(
                            "`targets.{name}.{key}` applies to `mode = \"cdc\"` only"
                        )));
                    }
                    (PostgresMode::Cdc, _)
                        if [&t.slot, &t.publication].into_iter().flatten().any(|n| {
                            n.is_empty()
                                || !n.chars().all(|c| {
                                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
                                })
                        }) =>
                    {
                        return Err(invalid(format!(
                            "`targets.{name}`: `slot` and `publication` take lower-case letters, digits and `_`"
                        )));
                    }
                    (PostgresMode::Physical, Some(d)) if !d.is_absolute() => {
                        return Err(invalid(format!(
                            "`targets.{name}.data-dir` must be an absolute path"
                        )));
                    }
                    _ => {}
                },
                TargetKind::Files => {
                    if t.paths.as_ref().is_none_or(Vec::is_empty) {
                        return Err(invalid(format!(
                            "`targets.{name}.paths` is empty or missing"
                        )));
                    }
                }
                TargetKind::Bucket => match t.url.as_deref().and_then(parse_s3_url) {
                    Some(Ok(_)) => {}
                    Some(Err(m)) => return Err(invalid(format!("`targets.{name}.url`: {m}"))),
                    None => {
                        return Err(invalid(format!(
                            "`targets.{name}.url` must be `s3://bucket[/prefix]`"
                        )));
                    }
                },
                TargetKind::Redis => {
                    if let Some(u) = &t.url
                        && !u.starts_with("redis://")
                        && !u.starts_with("rediss://")
                    {
                        return Err(invalid(format!(
                            "`targets.{name}.url` must be `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS)"
                        )));
                    }
                }
                TargetKind::Command => {
                    if t.backup.as_deref().is_none_or(|c| c.trim().is_empty()) {
                        return Err(invalid(format!(
                            "`targets.{name}.backup` is missing: the command whose output is the backup"
                        )));
                    }
                }
            }
        }
        for check in &self.checks {
            if !self.targets.contains_key(&check.target) {
                return Err(invalid(format!(
                    "check `{}` names target `{}`, which is not configured",
                    check.name, check.target
                )));
            }
            if check.sql.is_some() == check.command.is_some() {
                return Err(invalid(format!(
                    "check `{}`: set exactly one of `sql`, `command`",
                    check.name
                )));
            }
        }
        for check in &self.checks {
            if check.on.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(format!(
                    "check `{}`: `on` is empty: give `[\"drill\"]`, `[\"production\"]` or both",
                    check.name
                )));
            }
        }
        let kinds: BTreeMap<String, TargetKind> = self
            .targets
            .iter()
            .map(|(n, t)| (n.clone(), t.kind))
            .collect();
        let known = crate::probes::Known {
            targets: &kinds,
            checks: self
                .checks
                .iter()
                .map(|c| (c.name.as_str(), c.target.as_str(), c.in_production()))
                .collect(),
        };
        crate::probes::validate(&self.probes, &known).map_err(invalid)?;
        for n in &self.notify {
            if let Some(bad) = n
                .events
                .iter()
                .flatten()
                .find(|k| !NotifyConfig::KINDS.contains(&k.as_str()))
            {
                return Err(invalid(format!(
                    "`[[notify]] {}`: `events` names `{bad}`, which is no alert kind (kinds: {})",
                    n.name,
                    NotifyConfig::KINDS.join(", ")
                )));
            }
        }
        let probe_names: Vec<&str> = self.probes.iter().map(|p| p.name.as_str()).collect();
        crate::plans::validate(&self.plans, &|t| self.targets.contains_key(t), &|p| {
            probe_names.contains(&p)
        })
        .map_err(invalid)?;
        Ok(())
    }

    pub fn repository_url(&self) -> &str {
        self.repository.url.as_deref().unwrap_or_default()
    }

    /// Where the repository lives, with S3 settings and credentials resolved.
    pub fn repository_location(&self) -> Result<Location, ConfigError> {
        let url = self.repository_url();
        let Some(parsed) = parse_s3_url(url) else {
            return Ok(Location::Local(PathBuf::from(url)));
        };
        let (bucket, prefix) = parsed.map_err(|message| ConfigError::Invalid {
            path: self.source.clone(),
            message: format!("`repository.url`: {message}"),
        })?;
        let r = &self.repository;
        Ok(Location::S3(
            s3_location(
                bucket,
                prefix,
                [
                    &r.endpoint,
                    &r.region,
                    &r.access_key_id_env,
                    &r.secret_access_key_env,
                ],
                r.path_style,
            )
            .map(|mut loc| {
                loc.object_lock = r.object_lock;
                loc
            })?,
        ))
    }

    /// The repository password: `$LIFEBOAT_PASSWORD`, `$LIFEBOAT_PASSWORD_FILE`, then the file's keys.
    pub fn repository_password(&self) -> Result<Redacted, ConfigError> {
        if self.using_copy.is_some() {
            // `$LIFEBOAT_PASSWORD` and its file belong to the primary; a copy has its own.
            let source = self.repository.password_source();
            if source.is_empty() {
                return Err(ConfigError::Secret {
                    what: "repository password".into(),
                    message: format!(
                        "set `password-env`, `password-file` or `password-command` in [copies.{}]",
                        self.using_copy.as_deref().unwrap_or_default()
                    ),
                });
            }
            return source.resolve("the copy's password");
        }
        if let Ok(pw) = std::env::var(ENV_PASSWORD) {
            return Ok(Redacted::new(pw));
        }
        if let Ok(file) = std::env::var(ENV_PASSWORD_FILE) {
            return SecretSource {
                file: Some(file.into()),
                ..Default::default()
            }
            .resolve("repository password");
        }
        let source = self.repository.password_source();
        if source.is_empty() {
            return Err(ConfigError::Secret {
                what: "repository password".into(),
                message: format!(
                    "set `password-env`, `password-file` or `password-command` in [repository], or `${ENV_PASSWORD}`"
                ),
            });
        }
        source.resolve("repository password")
    }

    /// Resolve every secret the config names (passwords, connection URLs, S3 credentials,
    /// the drill's scratch URL), so that a missing variable or file shows now rather than
    /// at 3 a.m. The first that does not resolve is an error naming its key, with the
    /// file, line and column of that key.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        let at = |keys: &[&str], e: ConfigError| -> ConfigError {
            let message = match e {
                ConfigError::Secret { message, .. } => message,
                other => other.to_string(),
            };
            let (line, column) = self.position(keys);
            ConfigError::Parse {
                path: self.source.clone(),
                line,
                column,
                message: format!("`{}`: {message}", keys.join(".")),
            }
        };
        let r = &self.repository;
        let pw_key = r.password_key();
        self.repository_password()
            .map_err(|e| at(&["repository", pw_key], e))?;
        if self.repository_url().starts_with("s3://") {
            for (key, var) in [
                ("access-key-id-env", &r.access_key_id_env),
                ("secret-access-key-env", &r.secret_access_key_env),
            ] {
                resolve_env(var).map_err(|e| at(&["repository", key], e))?;
            }
        }
        for name in self.copies.keys() {
            let copy = self.with_copy(name)?;
            let r = &copy.repository;
            let pw_key = r.password_key();
            copy.repository_password()
                .map_err(|e| at(&["copies", name, pw_key], e))?;
            if copy.repository_url().starts_with("s3://") {
                for (key, var) in [
                    ("access-key-id-env", &r.access_key_id_env),
                    ("secret-access-key-env", &r.secret_access_key_env),
                ] {
                    resolve_env(var).map_err(|e| at(&["copies", name, key], e))?;
                }
            }
        }
        for (name, t) in &self.targets {
            match t.kind {
                TargetKind::Postgres | TargetKind::Redis => {
                    let key = if t.url_file.is_some() {
                        "url-file"
                    } else {
                        "url-env"
                    };
                    t.connection_url(name)
                        .map_err(|e| at(&["targets", name, key], e))?;
                }
                TargetKind::Bucket => {
                    for (key, var) in [
                        ("access-key-id-env", &t.access_key_id_env),
                        ("secret-access-key-env", &t.secret_access_key_env),
                    ] {
                        // Unset on the target: taken from `[repository]` when loaded.
                        let own = self.key_span(&["targets", name, key]).is_some();
                        let keys: &[&str] = if own {
                            &["targets", name, key]
                        } else {
                            &["repository", key]
                        };
                        resolve_env(var).map_err(|e| at(keys, e))?;
                    }
                }
                TargetKind::Files | TargetKind::Command => {}
            }
        }
        self.drill
            .scratch_url()
            .map_err(|e| at(&["drill", "scratch-url-env"], e))?;
        self.serve
            .token()
            .map_err(|e| at(&["serve", "token-env"], e))?;
        for (i, n) in self.notify.iter().enumerate() {
            let index = i.to_string();
            let key = if n.url_file.is_some() {
                "url-file"
            } else {
                "url-env"
            };
            n.address().map_err(|e| at(&["notify", &index, key], e))?;
            if n.kind == NotifyKind::Pagerduty {
                n.routing_key()
                    .map_err(|e| at(&["notify", &index, "routing-key-env"], e))?;
            }
        }
        let key = if self.heartbeat.url_file.is_some() {
            "url-file"
        } else {
            "url-env"
        };
        self.heartbeat
            .address()
            .map_err(|e| at(&["heartbeat", key], e))?;
        Ok(())
    }

    /// 1-based line and column of the key at `keys` in the file (`["targets", "app",
    /// "url-env"]`); the nearest enclosing table that is written there, else the start.
    pub fn position(&self, keys: &[&str]) -> (usize, usize) {
        (0..=keys.len())
            .rev()
            .find_map(|n| self.key_span(&keys[..n]))
            .map_or((1, 1), |start| line_column(&self.text, start))
    }

    /// Where the key at `keys` starts in the file's text, if it is written there.
    fn key_span(&self, keys: &[&str]) -> Option<usize> {
        let doc = toml::de::DeTable::parse(&self.text).ok()?;
        let mut table = doc.get_ref();
        let mut start = None;
        for (i, wanted) in keys.iter().enumerate() {
            let (key, value) = table.iter().find(|(k, _)| k.get_ref() == wanted)?;
            start = Some(key.span().start);
            if i + 1 < keys.len() {
                let toml::de::DeValue::Table(inner) = value.get_ref() else {
                    return None;
                };
                table = inner;
            }
        }
        start
    }

    /// Where the repository password comes from, for hints ("env `LIFEBOAT_PASSWORD`").
    pub fn password_origin(&self) -> String {
        if self.using_copy.is_none() && std::env::var_os(ENV_PASSWORD).is_some() {
            return format!("`${ENV_PASSWORD}`");
        }
        self.repository.password_source().describe()
    }

    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.get(name)
    }

    /// Put the copy `name` in place of `[repository]` (the global `--repo NAME`): every
    /// command after this reads and writes the copy. An unknown name is an error listing
    /// the declared ones.
    pub fn use_copy(&mut self, name: &str) -> Result<(), ConfigError> {
        let Some(copy) = self.copies.get(name) else {
            let known: Vec<&str> = self.copies.keys().map(String::as_str).collect();
            return Err(ConfigError::Invalid {
                path: self.source.clone(),
                message: if known.is_empty() {
                    format!("`--repo {name}`: the config declares no copies (`[copies.NAME]`)")
                } else {
                    format!(
                        "`--repo {name}`: no copy of that name; the config declares {}",
                        known.join(", ")
                    )
                },
            });
        };
        self.repository = copy.clone();
        self.using_copy = Some(name.to_string());
        Ok(())
    }

    /// This config with the copy `name` in place of `[repository]` (see [`Config::use_copy`]).
    pub fn with_copy(&self, name: &str) -> Result<Self, ConfigError> {
        let mut copy = self.clone();
        copy.use_copy(name)?;
        Ok(copy)
    }

    /// The resolved config as TOML-like JSON with every secret and URL password redacted.
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(url) = value.pointer_mut("/repository/url")
            && let Some(s) = url.as_str()
        {
            *url = redact_url(s).into();
        }
        if let Some(copies) = value.get_mut("copies").and_then(|c| c.as_object_mut()) {
            for c in copies.values_mut() {
                if let Some(url) = c.get_mut("url")
                    && let Some(s) = url.as_str()
                {
                    *url = redact_url(s).into();
                }
            }
        }
        if let Some(url) = value.pointer_mut("/drill/scratch-url")
            && let Some(s) = url.as_str()
        {
            *url = redact_url(s).into();
        }
        if let Some(targets) = value.get_mut("targets").and_then(|t| t.as_object_mut()) {
            for t in targets.values_mut() {
                if let Some(url) = t.get_mut("url")
                    && let Some(s) = url.as_str()
                {
                    *url = redact_url(s).into();
                }
                if let Some(env) = t.get_mut("env").and_then(|e| e.as_object_mut()) {
                    for (name, value) in env.iter_mut() {
                        if !env_value_is_plain(name) {
                            *value = "[redacted]".into();
                        }
                    }
                }
            }
        }
        if let Some(probes) = value.get_mut("probes").and_then(|p| p.as_array_mut()) {
            for p in probes {
                if let Some(url) = p.get_mut("url")
                    && let Some(s) = url.as_str()
                {
                    *url = redact_url(s).into();
                }
            }
        }
        strip_nulls(&mut value);
        value
    }
}

/// An S3 location from its settings (`[endpoint, region, access-key-id-env,
/// secret-access-key-env]`), falling back to the `AWS_*` variables and defaults.
fn s3_location(
    bucket: String,
    prefix: String,
    [endpoint, region, key_env, secret_env]: [&Option<String>; 4],
    path_style: Option<bool>,
) -> Result<S3Location, ConfigError> {
    let var = |configured: &Option<String>, default: &str| -> Result<_, ConfigError> {
        match configured {
            Some(name) => SecretSource {
                env: Some(name.clone()),
                ..Default::default()
            }
            .resolve(&format!("S3 credential `{name}`"))
            .map(Some),
            None => Ok(std::env::var(default).ok().map(Redacted::new)),
        }
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Ok(S3Location {
        bucket,
        prefix,
        endpoint: endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")),
        region: region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into()),
        path_style: path_style.unwrap_or(false),
        access_key_id: var(key_env, "AWS_ACCESS_KEY_ID")?,
        secret_access_key: var(secret_env, "AWS_SECRET_ACCESS_KEY")?,
        object_lock: None,
    })
}

/// The value of a configured `*-env` variable; unset variables are an error. Nothing
/// configured is no error (the `AWS_*` defaults, or none).
fn resolve_env(var: &Option<String>) -> Result<(), ConfigError> {
    match var {
        Some(name) => SecretSource {
            env: Some(name.clone()),
            ..Default::default()
        }
        .resolve(&format!("S3 credential `{name}`"))
        .map(drop),
        None => Ok(()),
    }
}

/// A command target's `env` value may hold a secret (a token, a password, a URL with
/// credentials) unless its name says plainly that it does not.
fn env_value_is_plain(name: &str) -> bool {
    const PLAIN: &[&str] = &[
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "USER",
        "SHELL",
        "TMPDIR",
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGSSLMODE",
    ];
    PLAIN.contains(&name) || name.starts_with("LC_")
}

fn strip_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Target names become tags (`target=<name>`) and paths: keep them plain.
/// The checks of one repository section (`repository`, `copies.NAME`) serde cannot
/// express: a URL of a supported kind, S3 keys only for S3, one password source.
fn check_repository(section: &str, r: &RepositoryConfig) -> Result<(), String> {
    let url = r.url.as_deref().unwrap_or("");
    if url.is_empty() {
        return Err(if section == "repository" {
            format!("`repository.url` is not set (set it in the file or `${ENV_REPOSITORY}`)")
        } else {
            format!("`{section}.url` is not set")
        });
    }
    match parse_s3_url(url) {
        Some(Err(message)) => return Err(format!("`{section}.url`: {message}")),
        None if url.contains("://") => {
            return Err(format!(
                "`{section}.url` = `{}`: only a local path or `s3://bucket/prefix` is supported",
                redact_url(url)
            ));
        }
        None => {
            let s3_keys = [
                ("endpoint", r.endpoint.is_some()),
                ("region", r.region.is_some()),
                ("path-style", r.path_style.is_some()),
                ("access-key-id-env", r.access_key_id_env.is_some()),
                ("secret-access-key-env", r.secret_access_key_env.is_some()),
                ("object-lock", r.object_lock.is_some()),
            ];
            if let Some((key, _)) = s3_keys.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "`{section}.{key}` is for S3 repositories, but `{section}.url` is a local path"
                ));
            }
        }
        Some(Ok(_)) => {}
    }
    if let Some(lock) = r.object_lock
        && !(1..=36_500).contains(&lock.days)
    {
        return Err(format!(
            "`{section}.object-lock.days` = {}: from 1 to 36500 days",
            lock.days
        ));
    }
    let pw = r.password_source();
    let sources = [pw.env.is_some(), pw.file.is_some(), pw.command.is_some()];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(format!(
            "`{section}`: set only one of `password-env`, `password-file`, `password-command`"
        ));
    }
    Ok(())
}

pub fn validate_target_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "target name `{name}` must be 1-64 characters of letters, digits, `-` and `_`"
        ))
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[repository]
url = "/var/backups/lifeboat"
password-env = "LB_TEST_PW"

[retention]
keep-daily = 7
keep-within = "2d"

[targets.app]
kind = "postgres"
url = "postgres://app:s3cret@db/app"
mode = "logical"
objectives = { rpo = "15m", rto = "2h" }

[targets.env]
kind = "files"
paths = ["/srv/app/.env"]
exclude = ["*.tmp"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let c = Config::parse(text, Path::new("lifeboat.toml"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn copies_are_repositories_of_their_own_and_repo_swaps_one_in() {
        let text = format!(
            "{GOOD}\n[copies.offsite]\nurl = \"s3://dr-copies/lifeboat\"\nendpoint = \"http://127.0.0.1:9\"\npassword-file = \"/etc/lifeboat/offsite\"\ncopy-schedule = \"hourly\"\nmax-lag = \"2h\"\n"
        );
        let mut c = parse(&text).unwrap();
        let copy = &c.copies["offsite"];
        assert_eq!(copy.max_lag.unwrap().as_secs(), 7200);
        assert!(copy.copy_schedule.is_some());
        // `--repo offsite`: the copy stands in for `[repository]`, with its own password.
        let swapped = c.with_copy("offsite").unwrap();
        assert_eq!(swapped.repository_url(), "s3://dr-copies/lifeboat");
        assert_eq!(swapped.using_copy.as_deref(), Some("offsite"));
        assert!(matches!(
            swapped.repository_location().unwrap(),
            crate::Location::S3(_)
        ));
        let err = c.use_copy("usb").unwrap_err().to_string();
        assert!(
            err.contains("no copy of that name") && err.contains("offsite"),
            "{err}"
        );
        assert_eq!(
            c.repository_url(),
            "/var/backups/lifeboat",
            "unchanged after a refusal"
        );
    }

    #[test]
    fn object_lock_is_for_s3_with_a_mode_and_a_period() {
        let copy = |lock: &str| {
            format!(
                "{GOOD}\n[copies.vault]\nurl = \"s3://vault/lb\"\npassword-env = \"X\"\nobject-lock = {lock}\n"
            )
        };
        let c = parse(&copy("{ mode = \"compliance\", days = 30 }")).unwrap();
        let vault = c.with_copy("vault").unwrap();
        let crate::Location::S3(loc) = vault.repository_location().unwrap() else {
            panic!("an S3 location");
        };
        assert_eq!(
            loc.object_lock,
            Some(ObjectLock {
                mode: crate::LockMode::Compliance,
                days: 30
            })
        );
        let cases = [
            (
                copy("{ mode = \"governance\", days = 0 }"),
                "`copies.vault.object-lock.days` = 0: from 1 to 36500 days",
            ),
            (
                copy("{ mode = \"strict\", days = 3 }"),
                "unknown variant `strict`",
            ),
            (copy("{ days = 3 }"), "missing field `mode`"),
            (
                format!(
                    "{GOOD}\n[copies.usb]\nurl = \"/mnt/usb\"\npassword-env = \"X\"\nobject-lock = {{ mode = \"governance\", days = 3 }}\n"
                ),
                "`copies.usb.object-lock` is for S3 repositories",
            ),
        ];
        for (text, wanted) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(wanted), "{wanted}: {err}");
        }
    }

    #[test]
    fn copy_keys_in_the_wrong_place_and_a_copy_of_itself_are_refused() {
        let cases = [
            (
                GOOD.replace(
                    "password-env = \"LB_TEST_PW\"",
                    "password-env = \"LB_TEST_PW\"\nmax-lag = \"1h\"",
                ),
                "belong in a `[copies.NAME]` section",
            ),
            (
                format!(
                    "{GOOD}\n[copies.same]\nurl = \"/var/backups/lifeboat\"\npassword-env = \"X\"\n"
                ),
                "is the repository itself",
            ),
            (
                format!(
                    "{GOOD}\n[copies.local]\nurl = \"/mnt/usb\"\nregion = \"eu\"\npassword-env = \"X\"\n"
                ),
                "`copies.local.region` is for S3 repositories",
            ),
            (
                format!(
                    "{GOOD}\n[copies.slash]\nurl = \"/var/backups/lifeboat/\"\npassword-env = \"X\"\n"
                ),
                "is the repository itself",
            ),
            (
                format!(
                    "{GOOD}\n[copies.a]\nurl = \"/mnt/usb\"\npassword-env = \"X\"\n[copies.b]\nurl = \"/mnt/usb/\"\npassword-env = \"X\"\n"
                ),
                "copies `a` and `b` have the same `url`",
            ),
            (
                format!("{GOOD}\n[copies.nourl]\npassword-env = \"X\"\n"),
                "`copies.nourl.url` is not set",
            ),
            (
                format!(
                    "{GOOD}\n[copies.two]\nurl = \"/mnt/usb\"\npassword-env = \"X\"\npassword-file = \"/x\"\n"
                ),
                "`copies.two`: set only one of",
            ),
        ];
        for (text, wanted) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(wanted), "{wanted}: {err}");
        }
    }

    #[test]
    fn a_check_read_share_is_a_number_of_parts() {
        let share = |s: &str| ReadShare::try_from(s.to_string()).map(|r| r.parts);
        assert_eq!(share("5%"), Ok(20));
        assert_eq!(share("100%"), Ok(1));
        assert_eq!(share("all"), Ok(1));
        assert_eq!(
            share("30%"),
            Ok(4),
            "rounds the parts up: each reads at most 30%"
        );
        for bad in ["0%", "150%", "5", "half"] {
            let e = share(bad).unwrap_err();
            assert!(e.contains("check-read-data") && e.contains(bad), "{e}");
        }
        let c = parse(&format!(
            "{GOOD}\n[maintenance]\ncheck-read-data = \"10%\"\n"
        ))
        .unwrap();
        assert_eq!(c.maintenance.check_read_data, Some(ReadShare { parts: 10 }));
        assert_eq!(String::from(ReadShare { parts: 20 }), "5%");
    }

    #[test]
    fn slot_lag_keys_belong_to_cdc_targets() {
        let cdc = |extra: &str| {
            parse(&format!(
                "{GOOD}\n[targets.live]\nkind = \"postgres\"\nurl = \"postgres://db/app\"\n{extra}"
            ))
        };
        let c = cdc("mode = \"cdc\"\nmax-slot-lag = \"512MB\"\non-slot-lag = \"drop\"").unwrap();
        assert_eq!(c.targets["live"].max_slot_lag(), 512_000_000);
        assert_eq!(c.targets["live"].on_slot_lag, Some(OnSlotLag::Drop));
        let c = cdc("mode = \"cdc\"").unwrap();
        assert_eq!(c.targets["live"].max_slot_lag(), 10 << 30, "the default");
        let e = cdc("max-slot-lag = \"1GB\"").unwrap_err().to_string();
        assert!(e.contains("applies to `mode = \"cdc\"` only"), "{e}");
        let e = cdc("mode = \"cdc\"\non-slot-lag = \"panic\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected `alert` or `drop`"), "{e}");
    }

    #[test]
    fn parses_the_design_example() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.retention.keep_daily, Some(7));
        assert_eq!(c.targets["app"].objectives.rpo.unwrap().as_secs(), 900);
        assert_eq!(c.targets["env"].kind, TargetKind::Files);
    }

    #[test]
    fn unknown_key_names_key_line_and_column() {
        let text = GOOD.replace("keep-daily = 7", "keep-dailly = 7");
        let err = parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("lifeboat.toml:7:1:"), "{msg}");
        assert!(msg.contains("keep-dailly"), "{msg}");
    }

    #[test]
    fn wrong_type_names_position() {
        let text = GOOD.replace("keep-daily = 7", "keep-daily = \"seven\"");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.starts_with("lifeboat.toml:7:14:"), "{msg}");
    }

    #[test]
    fn key_of_another_kind_is_rejected() {
        let text = GOOD.replace("paths = [", "url = \"x\"\npaths = [");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("targets.env.url"), "{msg}");
    }

    #[test]
    fn redaction_hides_url_passwords() {
        let c = parse(GOOD).unwrap();
        let shown = c.redacted().to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        let probe = format!(
            "{GOOD}\n[[probes]]\nname = \"cache\"\nkind = \"redis\"\nurl = \"redis://:pr0be-pw@cache:6379\"\n"
        );
        let shown = parse(&probe).unwrap().redacted().to_string();
        assert!(!shown.contains("pr0be-pw"), "{shown}");
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 0), (1, 1));
    }
}
