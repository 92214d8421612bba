//! Objectives: is a target's newest restorable point recent enough for its RPO, is its WAL
//! archiving working, and has a drill proved its RTO. Pure: the evidence comes in, the
//! problems go out; `lifeboat status` (and, later, the daemon's alerts) gather the evidence.

use lifeboat_drill::{Verdict, render::seconds};
use lifeboat_postgres::physical::ArchiverStats;

/// What is known about one target.
#[derive(Debug, Default, Clone)]
pub struct Evidence<'a> {
    /// Seconds since the newest restorable point (see [`backup_age`]); `None`: no backup.
    pub backup_age_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    /// The server's archiver, for a physical target whose server answered.
    pub archiver: Option<&'a ArchiverStats>,
    /// The last drill, if any.
    pub drill: Option<DrillFacts>,
    pub rto_seconds: Option<f64>,
    /// Seconds since the last drill started; `None`: no drill.
    pub drill_age_seconds: Option<f64>,
    /// `objectives.drill-every`.
    pub drill_every_seconds: Option<f64>,
}

/// What objectives need of a drill report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrillFacts {
    pub verdict: Verdict,
    /// Restore time measured by the drill.
    pub rto_seconds: Option<f64>,
}

/// Seconds from the newest restorable point to `now`: the backup's own point, or, when
/// WAL is archived after it, the newest archived segment, whichever is newer.
pub fn backup_age(
    now: jiff::Timestamp,
    restorable_at: Option<jiff::Timestamp>,
    wal_archived_at: Option<jiff::Timestamp>,
) -> Option<f64> {
    let since = |t: jiff::Timestamp| (now.as_millisecond() - t.as_millisecond()) as f64 / 1000.0;
    match (restorable_at.map(since), wal_archived_at.map(since)) {
        (Some(b), Some(w)) => Some(b.min(w)),
        (b, w) => b.or(w),
    }
}

/// Every objective the evidence shows missed, in words; empty when all are met.
pub fn problems(e: &Evidence) -> Vec<String> {
    let mut problems = Vec::new();
    match (e.backup_age_seconds, e.rpo_seconds) {
        (None, _) => problems.push("no backup".to_string()),
        (Some(a), Some(o)) if a > o => problems.push(format!(
            "last backup is {} old, RPO objective {}",
            seconds(a),
            seconds(o)
        )),
        _ => {}
    }
    if let Some(s) = e.archiver
        && s.failing
    {
        problems.push(format!(
            "WAL archiving is failing ({} failures; last: {} at {})",
            s.failed_count,
            s.last_failed_wal.as_deref().unwrap_or("?"),
            s.last_failed_time.as_deref().unwrap_or("?")
        ));
    }
    let measured = e.drill.and_then(|d| d.rto_seconds);
    if let Some(o) = e.rto_seconds {
        match (e.drill, measured) {
            (None, _) => problems.push("RTO unproven: no drill yet".into()),
            (Some(d), _) if d.verdict != Verdict::Pass => problems.push(format!(
                "last drill {}",
                if d.verdict == Verdict::Fail {
                    "failed"
                } else {
                    "did not finish"
                }
            )),
            (Some(_), Some(m)) if m > o => problems.push(format!(
                "RTO {} measured, objective {}",
                seconds(m),
                seconds(o)
            )),
            _ => {}
        }
    } else if let Some(d) = e.drill
        && d.verdict != Verdict::Pass
    {
        problems.push("last drill failed".into());
    }
    if let Some(every) = e.drill_every_seconds {
        match e.drill_age_seconds {
            None => problems.push(format!(
                "no drill yet (one every {} is due)",
                seconds(every)
            )),
            Some(age) if age > every => problems.push(format!(
                "last drill is {} old, one every {} is due",
                seconds(age),
                seconds(every)
            )),
            Some(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn drill(verdict: Verdict, rto: f64) -> Option<DrillFacts> {
        Some(DrillFacts {
            verdict,
            rto_seconds: Some(rto),
        })
    }

    #[test]
    fn the_age_counts_from_the_newer_of_the_backup_and_the_archived_wal() {
        let now = at("2026-12-06T12:00:00Z");
        let base = Some(at("2026-12-06T02:00:00Z"));
        let wal = Some(at("2026-12-06T11:59:30Z"));
        assert_eq!(backup_age(now, base, wal), Some(30.0));
        assert_eq!(backup_age(now, base, None), Some(36_000.0));
        // WAL older than the backup (archiving stopped before it): the backup counts.
        assert_eq!(
            backup_age(now, base, Some(at("2026-12-05T00:00:00Z"))),
            Some(36_000.0)
        );
        assert_eq!(backup_age(now, None, None), None);
    }

    #[test]
    fn met_objectives_leave_no_problem() {
        let e = Evidence {
            backup_age_seconds: Some(600.0),
            rpo_seconds: Some(900.0),
            drill: drill(Verdict::Pass, 50.0),
            rto_seconds: Some(3600.0),
            ..Default::default()
        };
        assert!(problems(&e).is_empty(), "{:?}", problems(&e));
        // No objectives and no drill: a backup is all that is asked.
        let e = Evidence {
            backup_age_seconds: Some(1e9),
            ..Default::default()
        };
        assert!(problems(&e).is_empty());
    }

    /// Issue 19, point 4: `objectives.drill-every`.
    #[test]
    fn a_drill_older_than_drill_every_is_a_miss() {
        let month = 30.0 * 86400.0;
        let with_age = |age: Option<f64>| Evidence {
            backup_age_seconds: Some(60.0),
            drill: age.and(drill(Verdict::Pass, 10.0)),
            drill_age_seconds: age,
            drill_every_seconds: Some(month),
            ..Default::default()
        };
        assert!(problems(&with_age(Some(month - 1.0))).is_empty());
        assert_eq!(
            problems(&with_age(Some(month + 86400.0))),
            ["last drill is 31 d 0 h old, one every 30 d 0 h is due"]
        );
        assert_eq!(
            problems(&with_age(None)),
            ["no drill yet (one every 30 d 0 h is due)"]
        );
    }

    #[test]
    fn each_missed_objective_is_named() {
        let failing = ArchiverStats {
            archived_count: 10,
            last_archived_wal: None,
            last_archived_time: None,
            failed_count: 3,
            last_failed_wal: Some("000000010000000000000007".into()),
            last_failed_time: Some("2026-12-06 11:00:00+00".into()),
            failing: true,
        };
        let cases: Vec<(Evidence, &str)> = vec![
            (Evidence::default(), "no backup"),
            (
                Evidence {
                    backup_age_seconds: Some(1200.0),
                    rpo_seconds: Some(900.0),
                    ..Default::default()
                },
                "last backup is 20 min 00 s old, RPO objective 15 min 00 s",
            ),
            (
                Evidence {
                    backup_age_seconds: Some(1.0),
                    archiver: Some(&failing),
                    ..Default::default()
                },
                "WAL archiving is failing (3 failures; last: 000000010000000000000007 at 2026-12-06 11:00:00+00)",
            ),
            (
                Evidence {
                    backup_age_seconds: Some(1.0),
                    rto_seconds: Some(60.0),
                    ..Default::default()
                },
                "RTO unproven: no drill yet",
            ),
            (
                Evidence {
                    backup_age_seconds: Some(1.0),
                    rto_seconds: Some(60.0),
                    drill: drill(Verdict::Fail, 10.0),
                    ..Default::default()
                },
                "last drill failed",
            ),
            (
                Evidence {
                    backup_age_seconds: Some(1.0),
                    rto_seconds: Some(60.0),
                    drill: drill(Verdict::Error, 10.0),
                    ..Default::default()
                },
                "last drill did not finish",
            ),
            (
                Evidence {
                    backup_age_seconds: Some(1.0),
                    rto_seconds: Some(60.0),
                    drill: drill(Verdict::Pass, 90.0),
                    ..Default::default()
                },
                "RTO 1 min 30 s measured, objective 1 min 00 s",
            ),
            (
                Evidence {
                    backup_age_seconds: Some(1.0),
                    drill: drill(Verdict::Fail, 1.0),
                    ..Default::default()
                },
                "last drill failed",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(problems(&e), [want], "{e:?}");
        }
    }
}
