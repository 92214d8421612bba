//! The Markdown rendering: a report as a document that reads well as plain text and in a
//! code forge, with tables for objectives, phases, checks and the target's recent drills.
//!
//! No charts (the HTML page has them). Every string from the report goes through
//! `md_text`, `md_code` or `md_fence`, so it cannot open an HTML tag, split a table cell or
//! end a code span early.

use std::fmt::Write as _;

use super::{
    checks_in_order, count, drills, facts, objective_cells, seconds, summary, verdict_label, when,
};
use crate::report::{DrillReport, HistoryPoint, Phase};

/// How many drills the Markdown history table lists.
const HISTORY_ROWS: usize = 20;

/// Markdown rendering of a report with its history (older drills of the same target, oldest
/// first, may be empty; may or may not include `report` itself — dedupe by id).
pub fn markdown(report: &DrillReport, history: &[HistoryPoint]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Drill of {} — {}\n",
        md_code(&report.target),
        verdict_label(report.verdict)
    );
    let _ = writeln!(
        out,
        "**Verdict: {}** — {}\n",
        verdict_label(report.verdict),
        md_text(&summary(report))
    );
    for fact in facts(report) {
        let value = if fact.code {
            md_code(&fact.value)
        } else {
            md_text(&fact.value)
        };
        let _ = writeln!(out, "- **{}:** {value}", fact.label);
    }
    if let Some(error) = &report.error {
        let fence = md_fence(error);
        let _ = write!(out, "\n## Error\n\n{fence}text\n{error}\n{fence}\n");
    }
    md_objectives(&mut out, report);
    md_phases(&mut out, &report.phases);
    md_checks(&mut out, report);
    md_history(&mut out, report, &drills(report, history));
    out
}

fn md_objectives(out: &mut String, r: &DrillReport) {
    out.push_str(
        "\n## Objectives\n\n| Objective | Declared | Measured | Result |\n|---|---:|---:|---|\n",
    );
    for (name, o) in [("RTO", &r.rto), ("RPO", &r.rpo)] {
        let [declared, measured, result] = objective_cells(o);
        let result = if o.missed() {
            format!("**{result}**")
        } else {
            result
        };
        let _ = writeln!(out, "| {name} | {declared} | {measured} | {result} |");
    }
}

fn md_phases(out: &mut String, phases: &[Phase]) {
    out.push_str("\n## Phases\n\n");
    if phases.is_empty() {
        out.push_str("No phases recorded.\n");
        return;
    }
    out.push_str("| Phase | Start | Duration | OK |\n|---|---:|---:|---|\n");
    for p in phases {
        let ok = if p.ok { "yes" } else { "**no**" };
        let _ = writeln!(
            out,
            "| {} | +{} | {} | {ok} |",
            md_text(&p.name),
            seconds(p.start),
            seconds(p.seconds)
        );
    }
}

fn md_checks(out: &mut String, r: &DrillReport) {
    out.push_str("\n## Checks\n\n");
    if r.checks.is_empty() {
        out.push_str("No checks ran.\n");
        return;
    }
    out.push_str("| Result | Kind | Name | Detail |\n|---|---|---|---|\n");
    for c in checks_in_order(r) {
        let result = if c.passed { "PASS" } else { "**FAIL**" };
        let _ = writeln!(
            out,
            "| {result} | {} | {} | {} |",
            md_text(&c.kind),
            md_text(&c.name),
            md_text(&c.detail)
        );
    }
}

fn md_history(out: &mut String, r: &DrillReport, drills: &[HistoryPoint]) {
    let shown = if drills.len() > HISTORY_ROWS {
        format!("The last {HISTORY_ROWS} drills")
    } else {
        count(drills.len(), "drill")
    };
    let _ = write!(
        out,
        "\n## History\n\n{shown} of {}, newest first.\n\n\
         | Started | Verdict | RTO | RPO |\n|---|---|---:|---:|\n",
        md_code(&r.target)
    );
    for d in drills.iter().rev().take(HISTORY_ROWS) {
        let this = if d.id == r.id { " (this drill)" } else { "" };
        let _ = writeln!(
            out,
            "| {}{this} | {} | {} | {} |",
            md_text(&when(&d.started_at)),
            verdict_label(d.verdict),
            d.rto_seconds.map_or_else(|| "—".into(), seconds),
            d.rpo_seconds.map_or_else(|| "—".into(), seconds)
        );
    }
}

/// Text that Markdown must show as it is, also inside a table cell: characters with a
/// meaning are backslash-escaped (`|` would split the cell, `<` open raw HTML) and line
/// breaks become `<br>` so a row stays on one line.
fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '`' | '*' | '|' | '<' | '>' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            _ => out.push(c),
        }
    }
    out
}

/// An inline code span that holds any text: delimited by more backticks than it contains,
/// on one line.
fn md_code(s: &str) -> String {
    let s = s.replace(['\r', '\n'], " ");
    let ticks = "`".repeat(longest_run(&s, '`') + 1);
    if s.starts_with('`') || s.ends_with('`') {
        format!("{ticks} {s} {ticks}")
    } else {
        format!("{ticks}{s}{ticks}")
    }
}

/// A code fence longer than any run of backticks in `s`.
fn md_fence(s: &str) -> String {
    "`".repeat((longest_run(s, '`') + 1).max(3))
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for x in s.chars() {
        run = if x == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::report;
    use crate::report::Verdict;

    #[test]
    fn markdown_history_lists_the_last_twenty_newest_first() {
        let r = report();
        let mut h: Vec<_> = (0..30)
            .map(|i| HistoryPoint {
                id: format!("2026{i:02}-app"),
                started_at: format!("2026-10-{:02}T06:00:00Z", i % 28 + 1),
                verdict: Verdict::Pass,
                rto_seconds: Some(10.0 + i as f64),
                rpo_seconds: None,
            })
            .collect();
        h.push(r.history_point());
        let md = markdown(&r, &h);
        let history = &md[md.find("## History").unwrap()..];
        assert!(history.contains("The last 20 drills of `app`, newest first."));
        let rows: Vec<_> = history
            .lines()
            .filter(|l| l.starts_with("| 2026"))
            .collect();
        assert_eq!(rows.len(), 20);
        assert_eq!(
            rows[0],
            "| 2026-11-22 06:15:02 UTC (this drill) | FAIL | 12.0 s | 15 min 02 s |"
        );
        assert!(rows[1].ends_with("| PASS | 39.0 s | — |"), "{}", rows[1]);
    }

    #[test]
    fn strings_from_the_report_are_escaped() {
        let md = markdown(&report(), &[]);
        assert!(md.contains(
            "| **FAIL** | sql | \\<script\\>alert(1)\\</script\\> \\| x | expected 0, got 3<br>& more |"
        ));
        // Every row of the checks table still has exactly five unescaped pipes.
        for line in md
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains("FAIL"))
        {
            assert_eq!(line.replace("\\|", "").matches('|').count(), 5, "{line}");
        }
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("`x"), "`` `x ``");
    }
}
