//! Test fixtures shared by the tests of the rendering modules: a failing report with
//! phases, checks and a hostile check name, a short history, and a way to pick one chart
//! out of a page.

use crate::report::{
    CheckResult, DrillReport, HistoryPoint, Objective, Phase, REPORT_FORMAT, Verdict,
};

fn phase(name: &str, start: f64, seconds: f64, ok: bool) -> Phase {
    Phase {
        name: name.into(),
        start,
        seconds,
        ok,
    }
}

fn check(name: &str, kind: &str, passed: bool, detail: &str) -> CheckResult {
    CheckResult {
        name: name.into(),
        kind: kind.into(),
        passed,
        detail: detail.into(),
    }
}

pub(super) fn report() -> DrillReport {
    let mut r = DrillReport {
        format: REPORT_FORMAT,
        id: "20261122T061502Z-app".into(),
        target: "app".into(),
        kind: "logical".into(),
        started_at: "2026-11-22T06:15:02Z".into(),
        finished_at: "2026-11-22T06:15:14Z".into(),
        host: "db1".into(),
        lifeboat_version: "0.1.0".into(),
        snapshot: "0123456789abcdef".repeat(4),
        restorable_at: "2026-11-22T06:00:00Z".into(),
        scratch: "throwaway PostgreSQL 15 on 127.0.0.1:5999".into(),
        phases: vec![
            phase("provision", 0.0, 1.2, true),
            phase("restore", 1.2, 8.4, true),
            phase("checks", 9.6, 2.1, false),
        ],
        checks: vec![
            check("rows public.users", "rows", true, "2,000 = manifest"),
            check(
                "<script>alert(1)</script> | x",
                "sql",
                false,
                "expected 0, got 3\n& more",
            ),
        ],
        rto: Objective::new(Some(7200.0), Some(12.0)),
        rpo: Objective::new(None, Some(902.0)),
        verdict: Verdict::Error,
        error: None,
    };
    r.decide();
    r
}

pub(super) fn point(
    id: &str,
    verdict: Verdict,
    rto: Option<f64>,
    rpo: Option<f64>,
) -> HistoryPoint {
    HistoryPoint {
        id: id.into(),
        started_at: format!("{}-{}-{}T06:00:00Z", &id[..4], &id[4..6], &id[6..8]),
        verdict,
        rto_seconds: rto,
        rpo_seconds: rpo,
    }
}

pub(super) fn history() -> Vec<HistoryPoint> {
    vec![
        point(
            "20261120T060000Z-app",
            Verdict::Pass,
            Some(10.0),
            Some(600.0),
        ),
        point("20261121T060000Z-app", Verdict::Error, None, None),
    ]
}

/// The `<svg id="...">` element, from its start to its end.
pub(super) fn svg<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"{id}\""))
        .and_then(|i| page[..i].rfind("<svg"))
        .unwrap_or_else(|| panic!("no svg {id}"));
    let end = start + page[start..].find("</svg>").expect("svg is closed");
    &page[start..end]
}
