//! The Markdown and HTML renderings of a drill report, for people: the verdict first, then
//! the objectives, phases and checks; the HTML page adds a phase timeline and RTO/RPO trend
//! charts built from the target's earlier drills, Markdown a history table.
//!
//! The HTML page is self-contained — inline CSS and SVG, no JavaScript, no external assets —
//! so it can be mailed, attached to a ticket or opened from the repository years later.
//! Nothing here is parsed back: the JSON (`DrillReport::to_json`) is the source of truth.
//! Every string that comes from a report is escaped: check names, details and errors come
//! from configuration and from the restored data.
//!
//! Where things live:
//!
//! - this file: [`seconds()`], the content both renderings share (verdict label, summary
//!   sentence, facts, objective cells, check order), the history dedupe (`drills`) and
//!   HTML escaping (`esc`, also used by the charts);
//! - `markdown.rs`: [`markdown()`] and Markdown escaping;
//! - `html.rs`: [`html()`], the page's CSS and its sections;
//! - `charts.rs`: the inline SVG charts (phase timeline, RTO/RPO trends) and their axes;
//! - `fixtures.rs`: the report and history the tests of all four files render.

use std::collections::HashSet;

use crate::report::{CheckResult, DrillReport, HistoryPoint, Objective, Verdict};

pub mod charts;
#[cfg(test)]
mod fixtures;
mod html;
mod markdown;

pub use self::html::html;
pub use self::markdown::markdown;

/// Human duration for reports: "0.8 s", "42.1 s", "3 min 05 s", "2 h 01 min", "3 d 4 h".
pub fn seconds(s: f64) -> String {
    if s.is_nan() {
        return "—".into();
    }
    if s < 0.0 {
        return format!("-{}", seconds(-s));
    }
    if s.is_infinite() {
        return "∞".into();
    }
    // Each unit is chosen after rounding, so 59.96 s reads "1 min 00 s", not "60.0 s".
    if (s * 10.0).round() < 600.0 {
        return format!("{:.1} s", s + 0.0);
    }
    let secs = s.round() as u64;
    if secs < 3600 {
        return format!("{} min {:02} s", secs / 60, secs % 60);
    }
    let mins = (s / 60.0).round() as u64;
    if mins < 24 * 60 {
        return format!("{} h {:02} min", mins / 60, mins % 60);
    }
    let hours = (s / 3600.0).round() as u64;
    format!("{} d {} h", hours / 24, hours % 24)
}

// ---------------------------------------------------------------------------------------
// Shared content: the same facts, summary and ordering in both renderings.

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
    }
}

/// One sentence saying why the verdict is what it is.
fn summary(r: &DrillReport) -> String {
    let failed = r.failed_checks().count();
    match r.verdict {
        Verdict::Error => "the drill could not run to the end".into(),
        Verdict::Fail => {
            let mut why = Vec::new();
            if failed > 0 {
                why.push(format!(
                    "{failed} of {} failed",
                    count(r.checks.len(), "check")
                ));
            }
            for (name, o) in [("RTO", &r.rto), ("RPO", &r.rpo)] {
                if let (true, Some(m), Some(d)) =
                    (o.missed(), o.measured_seconds, o.objective_seconds)
                {
                    why.push(format!("{name} missed ({} > {})", seconds(m), seconds(d)));
                }
            }
            if why.is_empty() {
                "the drill failed".into()
            } else {
                why.join("; ")
            }
        }
        Verdict::Pass if r.checks.is_empty() => "no checks ran; no objective missed".into(),
        Verdict::Pass => format!(
            "{} passed; no objective missed",
            count(r.checks.len(), "check")
        ),
    }
}

struct Fact {
    label: &'static str,
    value: String,
    /// The full value when `value` is shortened (HTML shows it as a tooltip).
    full: Option<String>,
    /// Shown as code: ids and hashes.
    code: bool,
}

fn fact(label: &'static str, value: String) -> Fact {
    Fact {
        label,
        value,
        full: None,
        code: false,
    }
}

fn facts(r: &DrillReport) -> Vec<Fact> {
    let mut finished = when(&r.finished_at);
    if let Some(s) = elapsed(&r.started_at, &r.finished_at) {
        finished.push_str(&format!(" (after {})", seconds(s)));
    }
    let snapshot = if r.snapshot.is_empty() {
        fact("Snapshot", "none chosen".into())
    } else {
        Fact {
            label: "Snapshot",
            value: r.snapshot.chars().take(8).collect(),
            full: Some(r.snapshot.clone()),
            code: true,
        }
    };
    vec![
        fact("Started", when(&r.started_at)),
        fact("Finished", finished),
        fact("Host", or_dash(&r.host)),
        fact("Kind", or_dash(&r.kind)),
        snapshot,
        fact("Restorable at", when(&r.restorable_at)),
        fact("Scratch", or_dash(&r.scratch)),
    ]
}

/// Objectives as table cells: declared, measured, result.
fn objective_cells(o: &Objective) -> [String; 3] {
    let result = match o.met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "—",
    };
    [
        o.objective_seconds
            .map_or_else(|| "not declared".into(), seconds),
        o.measured_seconds.map_or_else(|| "—".into(), seconds),
        result.into(),
    ]
}

/// Failed checks first, otherwise in the order they ran.
fn checks_in_order(r: &DrillReport) -> Vec<&CheckResult> {
    let (mut failed, passed): (Vec<_>, Vec<_>) = r.checks.iter().partition(|c| !c.passed);
    failed.extend(passed);
    failed
}

/// The drills to chart or list, oldest first: `history` without repeated ids, with the
/// current report in place of its own entry, or appended when it is not there yet.
fn drills(report: &DrillReport, history: &[HistoryPoint]) -> Vec<HistoryPoint> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(history.len() + 1);
    let mut placed = false;
    for point in history {
        if !seen.insert(point.id.as_str()) {
            continue;
        }
        if point.id == report.id {
            out.push(report.history_point());
            placed = true;
        } else {
            out.push(point.clone());
        }
    }
    if !placed {
        out.push(report.history_point());
    }
    out
}

/// "2026-11-22 06:15:02 UTC" for an RFC 3339 time; anything else as it is.
fn when(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => or_dash(rfc3339),
    }
}

fn elapsed(from: &str, to: &str) -> Option<f64> {
    let from = from.parse::<jiff::Timestamp>().ok()?;
    let to = to.parse::<jiff::Timestamp>().ok()?;
    Some(to.duration_since(from).as_secs_f64())
}

/// "1 check", "2 checks".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "—".into() } else { s.into() }
}

// ---------------------------------------------------------------------------------------
// Escaping for HTML, shared by the page and its charts (Markdown escaping is in
// `markdown.rs`).

/// Escapes text for HTML content and quoted attribute values (drill, incident and plan
/// reports, alert emails).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! The content both renderings share, checked in both; what only one rendering or the
    //! charts show is tested next to its code.

    use super::*;
    use crate::render::fixtures::report;

    #[test]
    fn seconds_reads_like_a_person_would_say_it() {
        assert_eq!(seconds(0.8), "0.8 s");
        assert_eq!(seconds(0.0), "0.0 s");
        assert_eq!(seconds(42.14), "42.1 s");
        assert_eq!(seconds(59.96), "1 min 00 s");
        assert_eq!(seconds(185.0), "3 min 05 s");
        assert_eq!(seconds(3599.6), "1 h 00 min");
        assert_eq!(seconds(7260.0), "2 h 01 min");
        assert_eq!(seconds(3.0 * 86400.0 + 4.0 * 3600.0), "3 d 4 h");
        assert_eq!(seconds(-5.0), "-5.0 s");
        assert_eq!(seconds(f64::NAN), "—");
    }

    #[test]
    fn verdict_is_in_the_title_and_the_badge() {
        let r = report();
        assert_eq!(r.verdict, Verdict::Fail);
        let md = markdown(&r, &[]);
        assert!(md.starts_with("# Drill of `app` — FAIL\n"), "{md}");
        assert!(md.contains("**Verdict: FAIL** — 1 of 2 checks failed"));
        let page = html(&r, &[]);
        assert!(page.contains("<title>Drill of `app` — FAIL</title>"));
        assert!(page.contains("<span class=\"badge fail\">FAIL</span>"));
        assert!(page.contains(".badge.fail { background: #cf222e; }"));

        let mut passed = report();
        passed.checks.truncate(1);
        passed.decide();
        let page = html(&passed, &[]);
        assert!(page.contains("<span class=\"badge pass\">PASS</span>"));
        assert!(page.contains("1 check passed; no objective missed"));
        assert!(markdown(&passed, &[]).contains("1 drill of `app`, newest first."));
        passed.error = Some("no scratch server".into());
        passed.decide();
        let page = html(&passed, &[]);
        assert!(page.contains("<span class=\"badge error\">ERROR</span>"));
        assert!(page.contains("<pre class=\"error\">no scratch server</pre>"));
        assert!(markdown(&passed, &[]).contains("```text\nno scratch server\n```"));
    }

    #[test]
    fn facts_objectives_and_snapshot_are_shown() {
        let r = report();
        let md = markdown(&r, &[]);
        assert!(md.contains("- **Started:** 2026-11-22 06:15:02 UTC"));
        assert!(md.contains("- **Finished:** 2026-11-22 06:15:14 UTC (after 12.0 s)"));
        assert!(md.contains("- **Snapshot:** `01234567`"));
        assert!(md.contains("- **Restorable at:** 2026-11-22 06:00:00 UTC"));
        assert!(md.contains("| RTO | 2 h 00 min | 12.0 s | met |"));
        assert!(md.contains("| RPO | not declared | 15 min 02 s | — |"));
        let page = html(&r, &[]);
        assert!(page.contains(&format!("<code title=\"{}\">01234567</code>", r.snapshot)));
        assert!(page.contains("<td>RPO</td><td class=\"num\">not declared</td>"));
        assert!(page.contains("<td class=\"good\">met</td>"));
    }

    #[test]
    fn failed_checks_come_first() {
        let md = markdown(&report(), &[]);
        let failed = md.find("| **FAIL** | sql |").expect("failed check row");
        let passed = md.find("| PASS | rows |").expect("passed check row");
        assert!(failed < passed);
        let page = html(&report(), &[]);
        let failed = page
            .find("<tr class=\"failed\"><td><span class=\"bad\">FAIL")
            .unwrap();
        assert!(failed < page.find("rows public.users").unwrap());
    }
}
