//! `[[probes]]`: health probes of the services lifeboat protects, run by `lifeboat serve`
//! on their interval and once by `lifeboat probe`.
//!
//! ```toml
//! [[probes]]
//! name = "db"
//! kind = "postgres"
//! target = "app"                 # the connection of target `app`
//! max-connections-ratio = 0.9
//! on-down = "/srv/ops/failover.sh"
//!
//! [[probes]]
//! name = "queue"
//! kind = "bullmq"
//! url = "redis://cache:6379"
//! queues = ["images", "emails"]
//! max-waiting = 5000
//! depends-on = ["db"]
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{HumanDuration, Redacted, size::ByteSize};

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    Http,
    Tcp,
    Postgres,
    Redis,
    Bullmq,
    Sql,
    Command,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Bullmq => "bullmq",
            Self::Sql => "sql",
            Self::Command => "command",
        }
    }
}

/// One `[[probes]]` table. As with targets, the keys of every kind live in one struct and
/// [`validate`] refuses the ones that do not belong to the probe's kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProbeConfig {
    pub name: String,
    pub kind: ProbeKind,
    /// How often it runs (default 30 s).
    pub interval: Option<HumanDuration>,
    /// How long one run may take (default 10 s, at most the interval).
    pub timeout: Option<HumanDuration>,
    /// Consecutive failures before it is down (default 2).
    pub fail_after: Option<u32>,
    /// Consecutive successes before a down probe is up again (default 1).
    pub recover_after: Option<u32>,
    /// What it watches: `https://…` (http), `host:port` (tcp), `postgres://…`, `redis://…`.
    pub url: Option<String>,
    /// The URL from this environment variable (a URL with a password in it).
    pub url_env: Option<String>,
    /// Or the connection of this target (postgres, redis, bullmq, sql).
    pub target: Option<String>,
    /// While one of these probes is down, this probe's alerts are held back.
    pub depends_on: Option<Vec<String>>,
    /// Run by `sh -c` once when the probe goes down (failover).
    pub on_down: Option<String>,
    /// Run by `sh -c` once when it is up again.
    pub on_up: Option<String>,
    /// No hook runs within this long of the last one (default 30 min).
    pub cooldown: Option<HumanDuration>,

    // http
    /// `GET` (default), `HEAD`, `POST`…
    pub method: Option<String>,
    /// The status the answer must have (default: any 2xx).
    pub expect_status: Option<u16>,
    pub body_contains: Option<String>,
    pub max_latency: Option<HumanDuration>,

    // postgres
    /// Standbys' replay lag (on a primary), or this standby's (on a standby).
    pub max_replication_lag: Option<HumanDuration>,
    /// The database's size.
    pub max_size: Option<ByteSize>,
    /// Connections in use over `max_connections`, 0–1.
    pub max_connections_ratio: Option<f64>,
    /// WAL retained by any replication slot.
    pub max_slot_wal: Option<ByteSize>,

    // redis
    /// `used_memory` over `maxmemory`, 0–1 (when `maxmemory` is set).
    pub max_memory_ratio: Option<f64>,

    // bullmq
    pub queues: Option<Vec<String>>,
    /// BullMQ's key prefix (default `bull`).
    pub prefix: Option<String>,
    /// An active job older than this is stuck (default 1 h).
    pub stuck_after: Option<HumanDuration>,
    pub max_waiting: Option<u64>,
    pub max_failed: Option<u64>,
    /// Stuck jobs allowed (default 0).
    pub max_stuck: Option<u64>,
    /// With jobs waiting, at least this many must be active (1: "workers are alive").
    pub min_active_when_waiting: Option<u64>,
    /// The oldest waiting job's age.
    pub max_waiting_age: Option<HumanDuration>,

    // sql
    /// The target's `[[checks]]` to run (default: each with `on` including `production`).
    pub checks: Option<Vec<String>>,

    // command
    pub command: Option<String>,
}

impl ProbeConfig {
    pub fn interval(&self) -> HumanDuration {
        self.interval.unwrap_or(HumanDuration::from_secs(30))
    }

    pub fn timeout(&self) -> HumanDuration {
        self.timeout
            .unwrap_or(HumanDuration::from_secs(10))
            .min(self.interval())
    }

    pub fn fail_after(&self) -> u32 {
        self.fail_after.unwrap_or(2).max(1)
    }

    pub fn recover_after(&self) -> u32 {
        self.recover_after.unwrap_or(1).max(1)
    }

    pub fn cooldown(&self) -> HumanDuration {
        self.cooldown.unwrap_or(HumanDuration::from_secs(30 * 60))
    }

    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("bull")
    }

    pub fn stuck_after(&self) -> HumanDuration {
        self.stuck_after.unwrap_or(HumanDuration::from_secs(3600))
    }

    /// The probe's own URL (`url` or `url-env`); `None` when it takes its target's.
    pub fn own_url(&self) -> Result<Option<Redacted>, String> {
        if let Some(u) = &self.url {
            return Ok(Some(Redacted::new(u.clone())));
        }
        match &self.url_env {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Redacted::new(v))),
                _ => Err(format!(
                    "probe `{}`: `${var}` (from `url-env`) is not set",
                    self.name
                )),
            },
            None => Ok(None),
        }
    }

    /// The keys set on this probe that belong to one kind or another, by name.
    fn kind_keys(&self) -> Vec<&'static str> {
        let keys = [
            ("method", self.method.is_some()),
            ("expect-status", self.expect_status.is_some()),
            ("body-contains", self.body_contains.is_some()),
            ("max-latency", self.max_latency.is_some()),
            ("max-replication-lag", self.max_replication_lag.is_some()),
            ("max-size", self.max_size.is_some()),
            (
                "max-connections-ratio",
                self.max_connections_ratio.is_some(),
            ),
            ("max-slot-wal", self.max_slot_wal.is_some()),
            ("max-memory-ratio", self.max_memory_ratio.is_some()),
            ("queues", self.queues.is_some()),
            ("prefix", self.prefix.is_some()),
            ("stuck-after", self.stuck_after.is_some()),
            ("max-waiting", self.max_waiting.is_some()),
            ("max-failed", self.max_failed.is_some()),
            ("max-stuck", self.max_stuck.is_some()),
            (
                "min-active-when-waiting",
                self.min_active_when_waiting.is_some(),
            ),
            ("max-waiting-age", self.max_waiting_age.is_some()),
            ("checks", self.checks.is_some()),
            ("command", self.command.is_some()),
        ];
        keys.iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| *k)
            .collect()
    }
}

/// What `validate` needs to know of the rest of the config.
pub struct Known<'a> {
    /// Target name → its kind (`postgres`, `redis`…).
    pub targets: &'a BTreeMap<String, crate::TargetKind>,
    /// The `[[checks]]`: (name, target, runs in production).
    pub checks: Vec<(&'a str, &'a str, bool)>,
}

/// Checks serde cannot express: unique names, the keys of each kind, a URL or target that
/// fits the kind, dependencies that exist and do not loop, production checks that a `sql`
/// probe runs.
pub fn validate(probes: &[ProbeConfig], known: &Known<'_>) -> Result<(), String> {
    use crate::TargetKind as T;
    let mut names = BTreeSet::new();
    for p in probes {
        crate::config::validate_target_name(&p.name)
            .map_err(|e| format!("probe: {}", e.replace("target name", "probe name")))?;
        if !names.insert(p.name.as_str()) {
            return Err(format!("two probes are named `{}`", p.name));
        }
    }
    for p in probes {
        let at = format!("probe `{}`", p.name);
        let applies: &[&str] = match p.kind {
            ProbeKind::Http => &["method", "expect-status", "body-contains", "max-latency"],
            ProbeKind::Tcp => &[],
            ProbeKind::Command => &["command"],
            ProbeKind::Postgres => &[
                "max-replication-lag",
                "max-size",
                "max-connections-ratio",
                "max-slot-wal",
            ],
            ProbeKind::Redis => &["max-memory-ratio"],
            ProbeKind::Bullmq => &[
                "queues",
                "prefix",
                "stuck-after",
                "max-waiting",
                "max-failed",
                "max-stuck",
                "min-active-when-waiting",
                "max-waiting-age",
            ],
            ProbeKind::Sql => &["checks"],
        };
        if let Some(key) = p.kind_keys().into_iter().find(|k| !applies.contains(k)) {
            return Err(format!(
                "{at}: `{key}` does not apply to kind `{}`",
                p.kind.as_str()
            ));
        }
        if p.url.is_some() && p.url_env.is_some() {
            return Err(format!("{at}: set only one of `url`, `url-env`"));
        }
        let has_url = p.url.is_some() || p.url_env.is_some();
        // Which targets can lend their connection, and what a URL must look like.
        let (lenders, schemes): (&[T], &[&str]) = match p.kind {
            ProbeKind::Http => (&[], &["http://", "https://"]),
            ProbeKind::Tcp | ProbeKind::Command => (&[], &[]),
            ProbeKind::Postgres => (&[T::Postgres], &["postgres://", "postgresql://"]),
            ProbeKind::Redis | ProbeKind::Bullmq => (&[T::Redis], &["redis://", "rediss://"]),
            ProbeKind::Sql => (&[T::Postgres], &[]),
        };
        match (&p.target, has_url) {
            (Some(_), true) => return Err(format!("{at}: set `url` or `target`, not both")),
            (Some(t), false) => match known.targets.get(t) {
                None => return Err(format!("{at} names target `{t}`, which is not configured")),
                Some(k) if !lenders.contains(k) => {
                    return Err(format!(
                        "{at}: a `{}` probe cannot take its connection from target `{t}` of kind `{k}`",
                        p.kind.as_str()
                    ));
                }
                Some(_) => {}
            },
            (None, false) if p.kind == ProbeKind::Command => {}
            (None, false) if p.kind == ProbeKind::Sql => {
                return Err(format!(
                    "{at}: set `target`: the PostgreSQL target whose `[[checks]]` it runs"
                ));
            }
            (None, false) => return Err(format!("{at}: set `url` (or `target`)")),
            (None, true) if p.kind == ProbeKind::Sql => {
                return Err(format!(
                    "{at}: a `sql` probe runs its target's checks on the target's database: set `target`, not `url`"
                ));
            }
            (None, true) => {}
        }
        if let Some(url) = &p.url {
            let fits = match p.kind {
                ProbeKind::Tcp => url
                    .rsplit_once(':')
                    .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok()),
                _ => schemes.iter().any(|s| url.starts_with(s)),
            };
            if !fits {
                let want = match p.kind {
                    ProbeKind::Tcp => "`host:port`".to_string(),
                    _ => schemes
                        .iter()
                        .map(|s| format!("`{s}…`"))
                        .collect::<Vec<_>>()
                        .join(" or "),
                };
                return Err(format!(
                    "{at}: `url` must be {want} for kind `{}`",
                    p.kind.as_str()
                ));
            }
        }
        if p.kind == ProbeKind::Command && p.command.as_deref().is_none_or(|c| c.trim().is_empty())
        {
            return Err(format!("{at}: set `command` (exit 0 is up)"));
        }
        if p.kind == ProbeKind::Bullmq && p.queues.as_ref().is_none_or(Vec::is_empty) {
            return Err(format!(
                "{at}: set `queues`, the BullMQ queue names to watch"
            ));
        }
        if let Some(m) = &p.method
            && !m.chars().all(|c| c.is_ascii_uppercase())
        {
            return Err(format!(
                "{at}: `method` must be an HTTP method in capitals (`GET`, `HEAD`, `POST`)"
            ));
        }
        for (key, ratio) in [
            ("max-connections-ratio", p.max_connections_ratio),
            ("max-memory-ratio", p.max_memory_ratio),
        ] {
            if ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return Err(format!("{at}: `{key}` is a ratio between 0 and 1"));
            }
        }
        if p.interval().as_secs() == 0 {
            return Err(format!("{at}: `interval` must be at least 1s"));
        }
        for dep in p.depends_on.iter().flatten() {
            if dep == &p.name {
                return Err(format!("{at} depends on itself"));
            }
            if !names.contains(dep.as_str()) {
                return Err(format!(
                    "{at} depends on probe `{dep}`, which is not configured"
                ));
            }
        }
        if p.kind == ProbeKind::Sql {
            let target = p.target.as_deref().unwrap_or_default();
            for c in p.checks.iter().flatten() {
                match known.checks.iter().find(|(n, _, _)| n == c) {
                    None => return Err(format!("{at} names check `{c}`, which is not configured")),
                    Some((_, t, _)) if t != &target => {
                        return Err(format!(
                            "{at} names check `{c}` of target `{t}`; it runs target `{target}`'s checks"
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    // Dependencies that loop would hold each other's alerts back forever.
    let deps: BTreeMap<&str, Vec<&str>> = probes
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.depends_on.iter().flatten().map(String::as_str).collect(),
            )
        })
        .collect();
    for p in probes {
        let mut stack = vec![p.name.as_str()];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            for d in deps.get(n).into_iter().flatten() {
                if *d == p.name {
                    return Err(format!(
                        "probe `{}`: `depends-on` goes round in a circle",
                        p.name
                    ));
                }
                if seen.insert(*d) {
                    stack.push(d);
                }
            }
        }
    }
    // A production rule nothing runs would silently never run.
    for (check, target, production) in &known.checks {
        if !production {
            continue;
        }
        let run = probes.iter().any(|p| {
            p.kind == ProbeKind::Sql
                && p.target.as_deref() == Some(*target)
                && p.checks
                    .as_ref()
                    .is_none_or(|cs| cs.iter().any(|c| c == check))
        });
        if !run {
            return Err(format!(
                "check `{check}` has `on = [\"production\"]`, but no probe runs it: add `[[probes]]` with `kind = \"sql\"` and `target = \"{target}\"`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ProbeConfig>, String> {
        #[derive(Deserialize)]
        struct File {
            probes: Vec<ProbeConfig>,
        }
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let targets = BTreeMap::from([
            ("app".to_string(), crate::TargetKind::Postgres),
            ("cache".to_string(), crate::TargetKind::Redis),
        ]);
        let known = Known {
            targets: &targets,
            checks: vec![
                ("balances", "app", true),
                ("orphans", "app", false),
                ("keys", "cache", false),
            ],
        };
        validate(&f.probes, &known).map(|()| f.probes)
    }

    #[test]
    fn a_stack_of_probes_is_accepted_with_its_defaults() {
        let probes = parse(
            r#"
            [[probes]]
            name = "db"
            kind = "postgres"
            target = "app"
            max-size = "50GB"
            [[probes]]
            name = "balances"
            kind = "sql"
            target = "app"
            interval = "5m"
            depends-on = ["db"]
            [[probes]]
            name = "queue"
            kind = "bullmq"
            target = "cache"
            queues = ["images"]
            [[probes]]
            name = "api"
            kind = "http"
            url = "https://example.com/health"
            expect-status = 200
            "#,
        )
        .unwrap();
        let db = &probes[0];
        assert_eq!((db.interval().as_secs(), db.timeout().as_secs()), (30, 10));
        assert_eq!((db.fail_after(), db.recover_after()), (2, 1));
        assert_eq!(db.cooldown().as_secs(), 1800);
        assert_eq!(db.max_size.map(|s| s.0), Some(50_000_000_000));
        assert_eq!(probes[2].prefix(), "bull");
        assert_eq!(probes[2].stuck_after().as_secs(), 3600);
    }

    #[test]
    fn mistakes_are_refused_naming_the_probe_and_the_fix() {
        let cases = [
            (
                "name = \"a\"\nkind = \"http\"\nurl = \"ftp://x\"",
                "`url` must be `http://…` or `https://…`",
            ),
            (
                "name = \"a\"\nkind = \"tcp\"\nurl = \"db\"",
                "`url` must be `host:port`",
            ),
            (
                "name = \"a\"\nkind = \"redis\"\ntarget = \"app\"",
                "cannot take its connection from target `app` of kind `postgres`",
            ),
            (
                "name = \"a\"\nkind = \"http\"\nurl = \"http://x\"\nqueues = [\"q\"]",
                "`queues` does not apply to kind `http`",
            ),
            (
                "name = \"a\"\nkind = \"bullmq\"\nurl = \"redis://x\"",
                "set `queues`",
            ),
            (
                "name = \"a\"\nkind = \"tcp\"\nurl = \"x:1\"\ndepends-on = [\"b\"]",
                "depends on probe `b`, which is not configured",
            ),
            ("name = \"a\"\nkind = \"command\"", "set `command`"),
            (
                "name = \"a\"\nkind = \"postgres\"\ntarget = \"app\"\nmax-connections-ratio = 90",
                "ratio between 0 and 1",
            ),
        ];
        for (body, expected) in cases {
            let text = format!("[[probes]]\n{body}\n");
            let err = parse(&text).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
        // A circle of dependencies.
        let err = parse(
            "[[probes]]\nname = \"a\"\nkind = \"tcp\"\nurl = \"x:1\"\ndepends-on = [\"b\"]\n\
             [[probes]]\nname = \"b\"\nkind = \"tcp\"\nurl = \"x:2\"\ndepends-on = [\"a\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("circle"), "{err}");
        // A production check without a probe to run it.
        let err = parse("[[probes]]\nname = \"a\"\nkind = \"tcp\"\nurl = \"x:1\"\n").unwrap_err();
        assert!(
            err.contains("check `balances`") && err.contains("kind = \"sql\""),
            "{err}"
        );
        // Two probes of one name.
        let err = parse(
            "[[probes]]\nname = \"a\"\nkind = \"sql\"\ntarget = \"app\"\n\
             [[probes]]\nname = \"a\"\nkind = \"tcp\"\nurl = \"x:1\"\n",
        )
        .unwrap_err();
        assert!(err.contains("two probes are named `a`"), "{err}");
    }
}
