//! The Markdown and HTML renderings of a drill report, for people: the verdict first, then
//! the objectives, phases and checks; the HTML page adds a phase timeline and RTO/RPO trend
//! charts built from the target's earlier drills, Markdown a history table.
//!
//! The HTML page is self-contained — inline CSS and SVG, no JavaScript, no external assets —
//! so it can be mailed, attached to a ticket or opened from the repository years later.
//! Nothing here is parsed back: the JSON (`DrillReport::to_json`) is the source of truth.
//! Every string that comes from a report is escaped: check names, details and errors come
//! from configuration and from the restored data.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::report::{CheckResult, DrillReport, HistoryPoint, Objective, Phase, Verdict};

/// How many drills the Markdown history table lists.
const HISTORY_ROWS: usize = 20;

const PASS_COLOR: &str = "#1a7f37";
const FAIL_COLOR: &str = "#cf222e";
const ERROR_COLOR: &str = "#d4650a";
const BAR_COLOR: &str = "#0969da";
const GRID_COLOR: &str = "#d0d7de";
const MUTED_COLOR: &str = "#57606a";

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

/// A self-contained HTML page: no external assets, no JavaScript, inline CSS and inline SVG
/// charts.
pub fn html(report: &DrillReport, history: &[HistoryPoint]) -> String {
    let verdict = verdict_label(report.verdict);
    let class = report.verdict.as_str();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\n\
         <title>Drill of `{target}` — {verdict}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n\
         <h1>Drill of <code>{target}</code> — <span class=\"badge {class}\">{verdict}</span></h1>\n\
         <p class=\"summary {class}\">{summary}</p>\n",
        target = esc(&report.target),
        summary = esc(&summary(report)),
    );
    html_facts(&mut out, report);
    if let Some(error) = &report.error {
        let _ = writeln!(
            out,
            "<h2>Error</h2>\n<pre class=\"error\">{}</pre>",
            esc(error)
        );
    }
    html_objectives(&mut out, report);
    html_phases(&mut out, &report.phases);
    html_checks(&mut out, report);
    html_trends(&mut out, report, &drills(report, history));
    let _ = write!(
        out,
        "<footer>lifeboat {} · drill <code>{}</code></footer>\n</main>\n</body>\n</html>\n",
        esc(&report.lifeboat_version),
        esc(&report.id)
    );
    out
}

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

fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => PASS_COLOR,
        Verdict::Fail => FAIL_COLOR,
        Verdict::Error => ERROR_COLOR,
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

/// "2026-11-22" for an RFC 3339 time, for chart axes.
fn day(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d").to_string(),
        Err(_) => rfc3339.chars().take(10).collect(),
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
// Markdown.

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

// ---------------------------------------------------------------------------------------
// HTML.

const CSS: &str = "
:root { color-scheme: light; }
body { margin: 0; background: #f6f8fa; color: #1f2328;
  font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 24px 32px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 .3em; }
h2 { font-size: 1.2em; margin: 1.6em 0 .5em; border-bottom: 1px solid #d0d7de; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.badge { display: inline-block; padding: .05em .6em; border-radius: .4em; color: #fff;
  font-weight: 700; letter-spacing: .05em; vertical-align: middle; }
.badge.pass { background: #1a7f37; } .badge.fail { background: #cf222e; }
.badge.error { background: #d4650a; }
.summary { font-size: 1.1em; margin: 0 0 1em; }
.summary.fail { color: #cf222e; } .summary.error { color: #bc4c00; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1.2em; margin: 0; }
dl.facts dt { color: #57606a; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
pre.error { border-left: 4px solid #d4650a; background: #fff1e5; padding: .6em 1em;
  white-space: pre-wrap; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: .3em 0 1em; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #d0d7de;
  vertical-align: top; overflow-wrap: anywhere; }
th { background: #f6f8fa; }
.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.good { color: #1a7f37; font-weight: 600; } .bad { color: #cf222e; font-weight: 700; }
tr.failed td { background: #ffebe9; }
svg.chart { display: block; height: auto; margin: .3em 0 1.2em;
  font: 12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
footer { margin-top: 2em; color: #57606a; font-size: .85em; }
";

fn html_facts(out: &mut String, r: &DrillReport) {
    out.push_str("<dl class=\"facts\">\n");
    for fact in facts(r) {
        let value = esc(&fact.value);
        let value = match (&fact.full, fact.code) {
            (Some(full), _) => format!("<code title=\"{}\">{value}</code>", esc(full)),
            (None, true) => format!("<code>{value}</code>"),
            (None, false) => value,
        };
        let _ = writeln!(out, "<dt>{}</dt><dd>{value}</dd>", fact.label);
    }
    out.push_str("</dl>\n");
}

fn html_objectives(out: &mut String, r: &DrillReport) {
    out.push_str(
        "<h2>Objectives</h2>\n<table class=\"objectives\">\n<tr><th>Objective</th>\
         <th class=\"num\">Declared</th><th class=\"num\">Measured</th><th>Result</th></tr>\n",
    );
    for (name, o) in [("RTO", &r.rto), ("RPO", &r.rpo)] {
        let [declared, measured, result] = objective_cells(o);
        let class = match o.met {
            Some(true) => " class=\"good\"",
            Some(false) => " class=\"bad\"",
            None => "",
        };
        let _ = writeln!(
            out,
            "<tr><td>{name}</td><td class=\"num\">{declared}</td>\
             <td class=\"num\">{measured}</td><td{class}>{result}</td></tr>"
        );
    }
    out.push_str("</table>\n");
}

fn html_phases(out: &mut String, phases: &[Phase]) {
    out.push_str("<h2>Phases</h2>\n");
    if !phases.is_empty() {
        out.push_str(
            "<table class=\"phases\">\n<tr><th>Phase</th><th class=\"num\">Start</th>\
             <th class=\"num\">Duration</th><th>OK</th></tr>\n",
        );
        for p in phases {
            let (row, ok) = if p.ok {
                ("", "<span class=\"good\">yes</span>")
            } else {
                (" class=\"failed\"", "<span class=\"bad\">no</span>")
            };
            let _ = writeln!(
                out,
                "<tr{row}><td>{}</td><td class=\"num\">+{}</td><td class=\"num\">{}</td>\
                 <td>{ok}</td></tr>",
                esc(&p.name),
                seconds(p.start),
                seconds(p.seconds)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("<h3>Phase timeline</h3>\n");
    out.push_str(&timeline_svg(phases));
}

fn html_checks(out: &mut String, r: &DrillReport) {
    out.push_str("<h2>Checks</h2>\n");
    if r.checks.is_empty() {
        out.push_str("<p>No checks ran.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"checks\">\n<tr><th>Result</th><th>Kind</th><th>Name</th>\
         <th>Detail</th></tr>\n",
    );
    for c in checks_in_order(r) {
        let (row, result) = if c.passed {
            ("", "<span class=\"good\">PASS</span>")
        } else {
            (" class=\"failed\"", "<span class=\"bad\">FAIL</span>")
        };
        let _ = writeln!(
            out,
            "<tr{row}><td>{result}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.kind),
            esc(&c.name),
            esc(&c.detail)
        );
    }
    out.push_str("</table>\n");
}

fn html_trends(out: &mut String, r: &DrillReport, drills: &[HistoryPoint]) {
    let rto: Vec<_> = drills.iter().map(|d| (d, d.rto_seconds)).collect();
    let rpo: Vec<_> = drills.iter().map(|d| (d, d.rpo_seconds)).collect();
    out.push_str("<h2>Trends</h2>\n<h3>RTO: drill start to verified</h3>\n");
    out.push_str(&trend_svg(
        "rto-trend",
        "RTO",
        r.rto.objective_seconds,
        &rto,
        &r.id,
    ));
    out.push_str("<h3>RPO: restorable point to drill start</h3>\n");
    out.push_str(&trend_svg(
        "rpo-trend",
        "RPO",
        r.rpo.objective_seconds,
        &rpo,
        &r.id,
    ));
}

/// Escapes text for HTML content and quoted attribute values.
fn esc(s: &str) -> String {
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

// ---------------------------------------------------------------------------------------
// SVG charts. Coordinates are in a fixed viewBox; the page scales it to its width.

const CHART_WIDTH: f64 = 800.0;

/// Opens a chart: every chart has an id, a `<title>`, a viewBox and `width="100%"`.
fn svg_open(out: &mut String, id: &str, title: &str, height: f64) {
    let _ = writeln!(
        out,
        "<svg class=\"chart\" id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {CHART_WIDTH} {height}\" width=\"100%\" role=\"img\">\n\
         <title>{}</title>",
        esc(title)
    );
}

/// A `<text>`; `content` is escaped here.
fn svg_text(out: &mut String, x: f64, y: f64, anchor: &str, fill: &str, content: &str) {
    let _ = writeln!(
        out,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" fill=\"{fill}\">{}</text>",
        esc(content)
    );
}

fn svg_line(out: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str) {
    let _ = writeln!(
        out,
        "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{stroke}\"/>"
    );
}

/// One horizontal bar per phase, placed by its start and as long as it took, on an axis of
/// seconds since the drill started. Failed phases are red.
fn timeline_svg(phases: &[Phase]) -> String {
    const LEFT: f64 = 170.0;
    const RIGHT: f64 = 80.0;
    const TOP: f64 = 10.0;
    const ROW: f64 = 26.0;
    const BAR: f64 = 16.0;
    const AXIS: f64 = 34.0;
    let mut out = String::new();
    let title = "Phase timeline: seconds since the drill started";
    if phases.is_empty() {
        svg_open(&mut out, "timeline", title, 60.0);
        svg_text(
            &mut out,
            CHART_WIDTH / 2.0,
            34.0,
            "middle",
            MUTED_COLOR,
            "no phases recorded",
        );
        out.push_str("</svg>\n");
        return out;
    }
    let end = phases
        .iter()
        .map(|p| non_negative(p.start) + non_negative(p.seconds))
        .fold(0.0, f64::max);
    let (span, step) = axis_range(end);
    let plot = CHART_WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / span * plot;
    let axis_y = TOP + ROW * phases.len() as f64 + 4.0;
    svg_open(&mut out, "timeline", title, axis_y + AXIS);

    for t in ticks(span, step) {
        svg_line(&mut out, (x(t), TOP), (x(t), axis_y), GRID_COLOR);
        svg_text(
            &mut out,
            x(t),
            axis_y + 16.0,
            "middle",
            MUTED_COLOR,
            &seconds(t),
        );
    }
    svg_line(&mut out, (LEFT, axis_y), (LEFT + plot, axis_y), MUTED_COLOR);

    for (i, p) in phases.iter().enumerate() {
        let y = TOP + ROW * i as f64 + (ROW - BAR) / 2.0;
        let (x0, x1) = (
            x(non_negative(p.start)),
            x(non_negative(p.start) + non_negative(p.seconds)),
        );
        let width = (x1 - x0).max(1.0);
        let fill = if p.ok { BAR_COLOR } else { FAIL_COLOR };
        let status = if p.ok { "" } else { ", failed" };
        let _ = writeln!(
            out,
            "<rect class=\"phase\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" \
             height=\"{BAR}\" rx=\"2\" fill=\"{fill}\"><title>{}: +{} for {}{status}</title></rect>",
            esc(&p.name),
            seconds(p.start),
            seconds(p.seconds)
        );
        let baseline = y + BAR / 2.0 + 4.0;
        svg_text(
            &mut out,
            LEFT - 8.0,
            baseline,
            "end",
            "#1f2328",
            &truncate(&p.name, 24),
        );
        svg_text(
            &mut out,
            x0 + width + 6.0,
            baseline,
            "start",
            MUTED_COLOR,
            &seconds(p.seconds),
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Measured seconds over drill order: a line through the measured drills, a circle per
/// drill colored by its verdict (the current drill larger), the objective as a dashed line.
fn trend_svg(
    id: &str,
    what: &str,
    objective: Option<f64>,
    series: &[(&HistoryPoint, Option<f64>)],
    current: &str,
) -> String {
    const LEFT: f64 = 90.0;
    const RIGHT: f64 = 30.0;
    const TOP: f64 = 20.0;
    const PLOT_HEIGHT: f64 = 170.0;
    const HEIGHT: f64 = TOP + PLOT_HEIGHT + 40.0;
    let mut out = String::new();
    svg_open(
        &mut out,
        id,
        &format!("{what} of each drill, oldest first"),
        HEIGHT,
    );
    let objective = objective.filter(|o| o.is_finite() && *o > 0.0);
    let measured: Vec<f64> = series
        .iter()
        .filter_map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .collect();
    if measured.is_empty() {
        svg_text(
            &mut out,
            CHART_WIDTH / 2.0,
            HEIGHT / 2.0,
            "middle",
            MUTED_COLOR,
            "no measurement yet",
        );
        out.push_str("</svg>\n");
        return out;
    }

    let highest = measured.iter().copied().fold(0.0, f64::max);
    // An objective far above every measurement would flatten them onto the axis: the
    // scale follows the measurements and the objective line sits on the top edge.
    let off_scale = objective.is_some_and(|o| o > 3.0 * highest);
    let top_value = match objective {
        Some(o) if !off_scale => highest.max(o),
        _ => highest,
    };
    let (span, step) = axis_range(top_value * 1.05);
    let plot = CHART_WIDTH - LEFT - RIGHT;
    let bottom = TOP + PLOT_HEIGHT;
    let y = |v: f64| bottom - non_negative(v).min(span) / span * PLOT_HEIGHT;
    let n = series.len();
    let x = |i: usize| {
        if n == 1 {
            LEFT + plot / 2.0
        } else {
            LEFT + plot * i as f64 / (n - 1) as f64
        }
    };

    for t in ticks(span, step) {
        svg_line(&mut out, (LEFT, y(t)), (LEFT + plot, y(t)), GRID_COLOR);
        svg_text(
            &mut out,
            LEFT - 8.0,
            y(t) + 4.0,
            "end",
            MUTED_COLOR,
            &seconds(t),
        );
    }
    svg_line(&mut out, (LEFT, bottom), (LEFT + plot, bottom), MUTED_COLOR);
    let first = series[0].0;
    svg_text(
        &mut out,
        x(0),
        bottom + 20.0,
        if n == 1 { "middle" } else { "start" },
        MUTED_COLOR,
        &day(&first.started_at),
    );
    if n > 1 {
        let last = series[n - 1].0;
        svg_text(
            &mut out,
            x(n - 1),
            bottom + 20.0,
            "end",
            MUTED_COLOR,
            &day(&last.started_at),
        );
    }

    if let Some(o) = objective {
        let _ = writeln!(
            out,
            "<line class=\"objective\" x1=\"{LEFT:.1}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" \
             y2=\"{y:.1}\" stroke=\"{ERROR_COLOR}\" stroke-dasharray=\"6 4\"/>",
            y = y(o),
            x2 = LEFT + plot
        );
        let label = if off_scale {
            format!("objective {} (above the chart)", seconds(o))
        } else {
            format!("objective {}", seconds(o))
        };
        svg_text(
            &mut out,
            LEFT + plot,
            (y(o) - 6.0).max(TOP - 6.0),
            "end",
            ERROR_COLOR,
            &label,
        );
    }

    let points: Vec<String> = series
        .iter()
        .enumerate()
        .filter_map(|(i, (_, v))| {
            v.filter(|v| v.is_finite())
                .map(|v| format!("{:.1},{:.1}", x(i), y(v)))
        })
        .collect();
    if points.len() > 1 {
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{BAR_COLOR}\" stroke-width=\"2\"/>",
            points.join(" ")
        );
    }

    for (i, (drill, value)) in series.iter().enumerate() {
        let label = format!(
            "{} — {}",
            when(&drill.started_at),
            verdict_label(drill.verdict)
        );
        match value.filter(|v| v.is_finite()) {
            Some(v) => {
                let r = if drill.id == current { 6 } else { 4 };
                let _ = writeln!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{}\" stroke=\"#fff\">\
                     <title>{} — {what} {}</title></circle>",
                    x(i),
                    y(v),
                    verdict_color(drill.verdict),
                    esc(&label),
                    seconds(v)
                );
            }
            // A drill that measured nothing (it stopped early) still shows in the order.
            None => {
                let _ = writeln!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{}\">×\
                     <title>{} — {what} not measured</title></text>",
                    x(i),
                    bottom + 4.0,
                    verdict_color(drill.verdict),
                    esc(&label)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The axis end and tick step for values up to `max`: a round step of at most six
/// intervals, in units a person counts in (seconds, minutes, hours, days).
fn axis_range(max: f64) -> (f64, f64) {
    const STEPS: [f64; 21] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
        3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0,
    ];
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let want = max / 6.0;
    let step = match STEPS.iter().find(|&&s| s >= want) {
        Some(&s) => s,
        None => {
            let mut days = 1.0;
            while days * 86400.0 < want {
                days *= 2.0;
            }
            days * 86400.0
        }
    };
    ((max / step).ceil().max(1.0) * step, step)
}

fn ticks(span: f64, step: f64) -> impl Iterator<Item = f64> {
    let count = (span / step).round() as usize;
    (0..=count).map(move |i| i as f64 * step)
}

fn non_negative(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.into();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::REPORT_FORMAT;

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

    fn report() -> DrillReport {
        let mut r = DrillReport {
            format: REPORT_FORMAT,
            id: "20261122T061502Z-app".into(),
            target: "app".into(),
            kind: "postgres-logical".into(),
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

    fn point(id: &str, verdict: Verdict, rto: Option<f64>, rpo: Option<f64>) -> HistoryPoint {
        HistoryPoint {
            id: id.into(),
            started_at: format!("{}-{}-{}T06:00:00Z", &id[..4], &id[4..6], &id[6..8]),
            verdict,
            rto_seconds: rto,
            rpo_seconds: rpo,
        }
    }

    fn history() -> Vec<HistoryPoint> {
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
    fn svg<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page
            .find(&format!("id=\"{id}\""))
            .and_then(|i| page[..i].rfind("<svg"))
            .unwrap_or_else(|| panic!("no svg {id}"));
        let end = start + page[start..].find("</svg>").expect("svg is closed");
        &page[start..end]
    }

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

    #[test]
    fn strings_from_the_report_are_escaped() {
        let mut r = report();
        r.target = "a<b>&\"c\"".into();
        r.error = Some("</pre><script>x</script>".into());
        r.phases[0].name = "<script>".into();
        let page = html(&r, &history());
        assert!(!page.contains("<script"), "raw <script> in the page");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; | x"));
        assert!(page.contains("expected 0, got 3\n&amp; more"));
        assert!(page.contains("<code>a&lt;b&gt;&amp;&quot;c&quot;</code>"));

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

    #[test]
    fn timeline_has_a_bar_per_phase_and_failed_phases_are_red() {
        let page = html(&report(), &[]);
        let timeline = svg(&page, "timeline");
        assert_eq!(timeline.matches("<rect class=\"phase\"").count(), 3);
        assert_eq!(
            timeline.matches(&format!("fill=\"{FAIL_COLOR}\"")).count(),
            1
        );
        assert!(timeline.contains(">restore</text>"));
        assert!(
            timeline.contains(">10.0 s</text>"),
            "axis in seconds: {timeline}"
        );

        let mut r = report();
        r.phases.clear();
        let page = html(&r, &[]);
        let timeline = svg(&page, "timeline");
        assert!(timeline.contains("no phases recorded"));
        assert!(!timeline.contains("<rect"));
    }

    #[test]
    fn trends_have_a_circle_per_drill_and_the_declared_objective() {
        let r = report();
        // History that already holds the current drill: it is counted once.
        let mut h = history();
        h.push(r.history_point());
        h.push(h[0].clone());
        let page = html(&r, &h);
        let rto = svg(&page, "rto-trend");
        assert_eq!(
            rto.matches("<circle").count(),
            2,
            "the error drill measured nothing"
        );
        assert_eq!(rto.matches("<polyline").count(), 1);
        assert_eq!(rto.matches("stroke-dasharray").count(), 1);
        assert!(rto.contains("objective 2 h 00 min"));
        assert!(rto.contains("RTO not measured"));
        let rpo = svg(&page, "rpo-trend");
        assert_eq!(rpo.matches("<circle").count(), 2);
        assert!(
            !rpo.contains("stroke-dasharray"),
            "no RPO objective declared"
        );

        // Every drill measured: one circle per drill, current included once.
        let mut h = history();
        h[1].rto_seconds = Some(11.0);
        let page = html(&r, &h);
        assert_eq!(svg(&page, "rto-trend").matches("<circle").count(), 3);
    }

    #[test]
    fn an_objective_far_above_the_measurements_does_not_flatten_them() {
        // RTO 12 s against 2 h: the scale follows the measurements.
        let page = html(&report(), &history());
        let rto = svg(&page, "rto-trend");
        assert!(rto.contains("objective 2 h 00 min (above the chart)"));
        assert!(rto.contains(">15.0 s</text>"), "{rto}");
        let mut r = report();
        r.rto = Objective::new(Some(20.0), Some(12.0));
        let page = html(&r, &history());
        let rto = svg(&page, "rto-trend");
        assert!(rto.contains(">objective 20.0 s</text>"), "{rto}");
    }

    #[test]
    fn trends_with_one_or_no_measurement() {
        let r = report();
        let page = html(&r, &[]);
        let rto = svg(&page, "rto-trend");
        assert_eq!(rto.matches("<circle").count(), 1);
        assert!(!rto.contains("<polyline"));

        let mut r = report();
        r.rto = Objective::new(Some(60.0), None);
        let page = html(
            &r,
            &[point("20261121T060000Z-app", Verdict::Error, None, None)],
        );
        let rto = svg(&page, "rto-trend");
        assert!(rto.contains("no measurement yet"));
        assert!(!rto.contains("<circle"));
    }

    #[test]
    fn every_svg_has_a_title_a_viewbox_and_full_width() {
        let page = html(&report(), &history());
        assert_eq!(page.matches("<svg").count(), 3);
        for part in page.split("<svg").skip(1) {
            let open = &part[..part.find('>').unwrap()];
            assert!(open.contains("viewBox=\"0 0 "), "{open}");
            assert!(open.contains("width=\"100%\""), "{open}");
            assert!(
                part.trim_start_matches(|c| c != '>')
                    .starts_with(">\n<title>")
            );
        }
    }

    #[test]
    fn html_is_self_contained() {
        let page = html(&report(), &history());
        let without_xmlns = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!without_xmlns.contains("http://"));
        assert!(!without_xmlns.contains("https://"));
        for external in ["src=", "href=", "url(", "@import", "<script", "<link"] {
            assert!(!page.contains(external), "{external}");
        }
    }

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
}
