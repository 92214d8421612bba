//! The HTML rendering: one self-contained page — inline CSS, inline SVG charts, no
//! JavaScript, no external assets; a Content-Security-Policy forbids loading any.
//!
//! This file assembles the page and its tables; the charts are drawn in `charts.rs`. Every
//! string from the report goes through `esc`.

use std::fmt::Write as _;

use super::charts::{timeline_svg, trend_svg};
use super::{
    checks_in_order, drills, esc, facts, objective_cells, seconds, summary, verdict_label,
};
use crate::report::{DrillReport, HistoryPoint, Phase};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{history, report};

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
}
