//! The dashboard at `GET /`: one server-rendered page from the state in memory (no
//! repository read), no JavaScript, no external assets; its one stylesheet is inline and
//! allowed by its hash in a strict Content-Security-Policy ([`csp`]). It shows the open
//! alerts, per target its objectives, restorable-point age, last backup and last drill
//! (with a link to the report), the probes with their state and history, the running and
//! failed jobs, charts of restorable-point age, backup durations and probe latencies, and
//! buttons that start a backup or a drill (POST forms with a CSRF field, see `http.rs`).

use std::{fmt::Write as _, sync::OnceLock};

use lifeboat_drill::render::{
    charts::{Series, series_svg},
    esc, seconds,
};
use sha2::Digest;

use super::Shared;
use crate::{
    jobs::Outcome,
    probes::status::State as ProbeState,
    serve::probes::{Hold, hold},
};

/// The `Content-Security-Policy` of the page: nothing may load; the inline stylesheet by
/// its hash; forms post only here.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = crate::format::base64(&sha2::Sha256::digest(CSS.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    })
}

/// The page; `csrf` goes into every form, `notice` (what the last button did) on top.
pub fn page(shared: &Shared, csrf: &str, notice: Option<&str>) -> String {
    let now = jiff::Timestamp::now();
    let config = &shared.engine.config;
    let firing = shared.firing();
    let state = shared.state();
    let missed = state
        .status
        .iter()
        .filter(|r| !r.problems.is_empty())
        .count();
    let down = state
        .probes
        .values()
        .filter(|p| p.state == ProbeState::Down)
        .count();
    let behind = state
        .copies
        .iter()
        .filter(|c| !c.problems.is_empty())
        .count();
    let trouble = firing.len().max(missed + down + behind);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"30\">\n\
         <title>lifeboat — {host}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n\
         <header><h1>lifeboat <span id=\"overall\" class=\"badge {class}\">{verdict}</span></h1>\n\
         <p class=\"muted\">{host} · {time} · refreshes every 30 s</p></header>\n",
        host = esc(&lifeboat_repo::hostname()),
        class = if trouble == 0 { "ok" } else { "bad" },
        verdict = if trouble == 0 {
            "all well".to_string()
        } else {
            format!("{trouble} problem(s)")
        },
        time = now.strftime("%Y-%m-%d %H:%M:%S UTC"),
    );
    if let Some(n) = notice {
        let _ = writeln!(out, "<p id=\"notice\" class=\"notice\">{}</p>", esc(n));
    }

    // Open alerts.
    let _ = writeln!(
        out,
        "<section id=\"alerts\"><h2>Open alerts ({})</h2>",
        firing.len()
    );
    if firing.is_empty() {
        out.push_str("<p class=\"muted\">none</p>\n");
    } else {
        out.push_str("<ul>\n");
        for a in &firing {
            let _ = writeln!(
                out,
                "<li class=\"bad\"><b>{}</b> <code>{}</code> since {}: {}</li>",
                esc(&a.kind),
                esc(&a.subject),
                esc(&short_time(&a.time)),
                esc(&a.message)
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");

    // Targets.
    out.push_str(
        "<section id=\"targets\"><h2>Targets</h2>\n<div class=\"scroll\"><table>\n\
         <tr><th>Target</th><th>Objectives</th><th>Restorable point</th><th>Last backup</th>\
         <th>Last drill</th></tr>\n",
    );
    for (name, target) in &config.targets {
        let row = state.status.iter().find(|r| r.target == name.as_str());
        let t = state.targets.get(name);
        let (class, objectives) = match row {
            None => ("unknown", "not judged yet".to_string()),
            Some(r) if r.problems.is_empty() => ("met", "✓ met".to_string()),
            Some(r) => ("missed", format!("✗ missed: {}", r.problems.join("; "))),
        };
        let age = match row.and_then(|r| r.backup_age_seconds) {
            Some(a) => format!(
                "{} old{}",
                seconds(a),
                target
                    .objectives
                    .rpo
                    .map_or(String::new(), |o| format!(" (RPO {o})"))
            ),
            None => "none".into(),
        };
        let running: Vec<String> = t
            .map(|t| t.running.keys().cloned().collect())
            .unwrap_or_default();
        let failed_last = t.and_then(|t| t.last_failed.get("backup")).copied() == Some(true);
        let last_backup = match (row.and_then(|r| r.last_backup.clone()), t) {
            (Some(at), Some(t)) => format!(
                "{}{}",
                short_time(&at),
                t.last_seconds
                    .get("backup")
                    .map_or(String::new(), |s| format!(" · took {}", seconds(*s)))
            ),
            (Some(at), None) => short_time(&at),
            (None, _) => "never".into(),
        };
        let last_backup = if failed_last {
            format!("{last_backup} · <span class=\"bad\">the last attempt failed</span>")
        } else {
            esc(&last_backup)
        };
        let drill = match row.and_then(|r| r.last_drill_verdict.map(|v| (r, v))) {
            Some((r, v)) => format!(
                "<span class=\"badge {v}\">{v}</span> {} · RTO {}{}{}",
                esc(&short_time(r.last_drill.as_deref().unwrap_or_default())),
                r.rto_seconds.map_or("—".into(), seconds),
                r.rto_objective_seconds
                    .map_or(String::new(), |o| format!(" of {}", seconds(o))),
                r.last_drill_id.as_ref().map_or(String::new(), |id| format!(
                    " · <a href=\"/drills/{}/{}\">report</a>",
                    esc(name),
                    esc(id)
                )),
                v = v.as_str(),
            ),
            None => "never".into(),
        };
        let _ = writeln!(
            out,
            "<tr id=\"target-{id}\" class=\"{class}\"><td><b>{id}</b> <small>{kind}</small>{running}\
             <div class=\"actions\">{backup}{drill_button}</div></td>\
             <td class=\"objectives\">{objectives}</td><td data-label=\"restorable point\">{age}</td>\
             <td data-label=\"last backup\">{last_backup}</td><td data-label=\"last drill\">{drill}</td></tr>",
            id = esc(name),
            kind = target.kind,
            running = if running.is_empty() {
                String::new()
            } else {
                format!(
                    "<br><span class=\"run\">running: {}</span>",
                    esc(&running.join(", "))
                )
            },
            objectives = esc(&objectives),
            age = esc(&age),
            backup = button("backup", name, "Back up now", csrf),
            drill_button = button("drill", name, "Drill now", csrf),
        );
    }
    out.push_str("</table></div>\n");
    let rpo_series: Vec<Series<'_>> = state
        .targets
        .iter()
        .filter(|(n, _)| config.targets.contains_key(*n))
        .map(|(n, t)| Series {
            label: n,
            points: sawtooth(&t.backups, now),
        })
        .collect();
    let rpo_objective = config
        .targets
        .values()
        .filter_map(|t| t.objectives.rpo)
        .map(|o| o.as_secs() as f64)
        .reduce(f64::min);
    out.push_str("<h3>Restorable point's age</h3>\n");
    out.push_str(&series_svg(
        "rpo-age",
        "Age of the restorable point over time",
        &rpo_series,
        rpo_objective,
    ));
    let durations: Vec<Series<'_>> = config
        .targets
        .keys()
        .map(|n| Series {
            label: n,
            points: state
                .recent
                .iter()
                .filter(|j| j.job == "backup" && j.target == n.as_str())
                .filter(|j| matches!(j.outcome, Outcome::Succeeded | Outcome::Failed))
                .filter_map(|j| {
                    let at = j.started_at?.as_second() as f64;
                    Some((at, j.seconds, j.outcome == Outcome::Succeeded))
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    out.push_str("<h3>Backup durations</h3>\n");
    out.push_str(&series_svg(
        "backup-duration",
        "How long each backup took",
        &durations,
        None,
    ));
    out.push_str("</section>\n");

    // Probes.
    let _ = writeln!(out, "<section id=\"probes\"><h2>Probes</h2>");
    if config.probes.is_empty() {
        out.push_str("<p class=\"muted\">none configured (<code>[[probes]]</code>)</p>\n");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table>\n<tr><th>Probe</th><th>State</th><th>Since</th>\
             <th>Last run</th><th>History</th></tr>\n",
        );
        for p in &config.probes {
            let Some(s) = state.probes.get(&p.name) else {
                continue;
            };
            let held = match (s.state, hold(config, &state.probes, &p.name)) {
                (ProbeState::Down, Hold::By(d)) => {
                    format!(
                        " <small>(alert held: <code>{}</code> is down)</small>",
                        esc(&d)
                    )
                }
                _ => String::new(),
            };
            let last = s.last.as_ref().map_or("not run yet".to_string(), |f| {
                format!("{} ms · {}", (f.latency_seconds * 1000.0).round(), f.detail)
            });
            let strip: String = s
                .history
                .iter()
                .map(|r| if r.ok { '▮' } else { '▯' })
                .collect();
            let _ = writeln!(
                out,
                "<tr id=\"probe-{id}\" class=\"{state}\"><td><b>{id}</b><br><small>{kind}</small></td>\
                 <td><span class=\"badge {state}\">{state}</span>{held}</td><td data-label=\"since\">{since}</td>\
                 <td class=\"detail\" data-label=\"last run\">{last}</td><td class=\"strip\" title=\"oldest first; hollow: failed\">{strip}</td></tr>",
                id = esc(&p.name),
                kind = p.kind.as_str(),
                state = s.state.as_str(),
                since = s
                    .since
                    .map_or("—".into(), |t| t.strftime("%m-%d %H:%M:%S").to_string()),
                last = esc(&last),
            );
        }
        out.push_str("</table></div>\n");
        let latency: Vec<Series<'_>> = config
            .probes
            .iter()
            .filter_map(|p| {
                let s = state.probes.get(&p.name)?;
                Some(Series {
                    label: &p.name,
                    points: s
                        .history
                        .iter()
                        .filter_map(|r| Some((r.at?.as_second() as f64, r.latency_seconds, r.ok)))
                        .collect(),
                })
            })
            .collect();
        out.push_str("<h3>Probe latency</h3>\n");
        out.push_str(&series_svg(
            "probe-latency",
            "Probe latency (red: a failed run)",
            &latency,
            None,
        ));
    }
    out.push_str("</section>\n");

    // Copies of the repository, if any.
    if !state.copies.is_empty() {
        out.push_str(
            "<section id=\"copies\"><h2>Copies</h2>\n<div class=\"scroll\"><table>\n\
             <tr><th>Copy</th><th>State</th><th>Last copy</th><th>Lacks</th><th>Lag</th></tr>\n",
        );
        for c in &state.copies {
            let class = if c.problems.is_empty() { "ok" } else { "bad" };
            let _ = writeln!(
                out,
                "<tr id=\"copy-{id}\" class=\"{class}\"><td><b>{id}</b><br><small>{url}</small></td>\
                 <td><span class=\"badge {class}\">{state}</span></td><td data-label=\"last copy\">{last}</td>\
                 <td data-label=\"lacks\">{lacks} snapshot(s)</td><td data-label=\"lag\">{lag}{max}</td></tr>",
                id = esc(&c.copy),
                url = esc(&c.url),
                state = if c.problems.is_empty() {
                    "ok"
                } else {
                    "behind"
                },
                last = c.last_copy.map_or("never".into(), |t| {
                    t.strftime("%m-%d %H:%M:%S").to_string()
                }),
                lacks = c.missing,
                lag = esc(&lifeboat_drill::render::seconds(c.lag_seconds)),
                max = c.max_lag_seconds.map_or(String::new(), |m| {
                    format!(" (max {})", esc(&lifeboat_drill::render::seconds(m)))
                }),
            );
        }
        out.push_str("</table></div>\n</section>\n");
    }

    // Jobs: running, and the recent failures.
    out.push_str("<section id=\"jobs\"><h2>Jobs</h2>\n");
    let running: Vec<String> = state
        .targets
        .iter()
        .flat_map(|(n, t)| {
            t.running.iter().map(move |(job, since)| {
                format!(
                    "<li class=\"run\">{} of <code>{}</code>, running for {}</li>",
                    esc(job),
                    esc(n),
                    seconds((now.as_millisecond() - since.as_millisecond()) as f64 / 1000.0)
                )
            })
        })
        .collect();
    let _ = writeln!(out, "<h3>Running ({})</h3>", running.len());
    if running.is_empty() {
        out.push_str("<p class=\"muted\">none</p>\n");
    } else {
        let _ = writeln!(out, "<ul>{}</ul>", running.join(""));
    }
    let failed: Vec<&crate::jobs::JobRecord> = state
        .recent
        .iter()
        .rev()
        .filter(|j| j.outcome == Outcome::Failed)
        .take(10)
        .collect();
    let _ = writeln!(out, "<h3>Failed recently ({})</h3>", failed.len());
    if failed.is_empty() {
        out.push_str("<p class=\"muted\">none</p>\n");
    } else {
        out.push_str("<ul>\n");
        for j in failed {
            let _ = writeln!(
                out,
                "<li class=\"bad\">{} {} of <code>{}</code>: {}</li>",
                j.started_at
                    .map_or("?".into(), |t| t.strftime("%m-%d %H:%M:%S").to_string()),
                esc(&j.job),
                esc(j.target.as_str()),
                esc(j.error.as_deref().unwrap_or_default())
            );
        }
        out.push_str("</ul>\n");
    }
    let _ = write!(
        out,
        "</section>\n<footer>lifeboat {} · <a href=\"/metrics\">metrics</a> · \
         <a href=\"/api/status\">status</a> · <a href=\"/api/probes\">probes</a></footer>\n\
         </main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// A POST button starting `job` of `target`.
fn button(job: &str, target: &str, label: &str, csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/actions/{job}/{t}\" id=\"{job}-{t}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">{label}</button></form>",
        t = esc(target),
        csrf = esc(csrf),
    )
}

/// The restorable point's age over time from the good backups' times: zero at each, rising
/// until the next, and up to `now`.
fn sawtooth(
    backups: &std::collections::VecDeque<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Vec<(f64, f64, bool)> {
    let secs = |t: jiff::Timestamp| t.as_millisecond() as f64 / 1000.0;
    let mut points = Vec::new();
    for (i, b) in backups.iter().enumerate() {
        if i > 0 {
            points.push((secs(*b), secs(*b) - secs(backups[i - 1]), true));
        }
        points.push((secs(*b), 0.0, true));
    }
    if let Some(last) = backups.back() {
        points.push((secs(now), secs(now) - secs(*last), true));
    }
    points
}

/// "2026-12-06 10:00" of an RFC 3339 time (as given if it is not one).
fn short_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// The page shown without a session: a form for the token.
pub fn login(csrf_free_note: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>lifeboat — sign in</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n\
         <h1>lifeboat</h1>\n<p>{}</p>\n\
         <form method=\"post\" action=\"/login\" id=\"login\"><label>Token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\"></label> \
         <button type=\"submit\">Sign in</button></form>\n</main>\n</body>\n</html>\n",
        esc(csrf_free_note)
    )
}

const CSS: &str = "
:root { color-scheme: light; }
body { margin: 0; background: #f6f8fa; color: #1f2328;
  font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 24px; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 .2em; }
h2 { font-size: 1.2em; margin: 1.4em 0 .5em; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1em; margin: 1em 0 .3em; }
.muted, small { color: #57606a; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .92em; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { background: #f6f8fa; }
tr.missed td.objectives, .bad { color: #cf222e; }
tr.missed { background: #fff5f5; }
tr.down { background: #fff5f5; }
tr.met td.objectives { color: #1a7f37; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 1em; color: #fff; font-size: .85em; }
.badge.ok, .badge.up, .badge.pass { background: #1a7f37; }
.badge.bad, .badge.down, .badge.fail { background: #cf222e; }
.badge.error { background: #d4650a; }
.badge.unknown { background: #57606a; }
.run { color: #0969da; }
.notice { background: #ddf4ff; border: 1px solid #54aeff; padding: 6px 10px; border-radius: 6px; }
.actions { margin-top: 4px; }
.actions form { display: inline-block; margin: 0 4px 4px 0; }
button { font: inherit; padding: 2px 10px; border: 1px solid #d0d7de; border-radius: 6px;
  background: #f6f8fa; cursor: pointer; }
td.detail { max-width: 420px; overflow-wrap: anywhere; }
td.strip { font-size: .7em; letter-spacing: -1px; color: #1a7f37; white-space: nowrap; }
svg.chart { max-width: 100%; height: auto; margin: 8px 0; }
svg text { font: 12px system-ui, sans-serif; }
footer { margin-top: 2em; color: #57606a; font-size: .85em; }
@media (max-width: 640px) {
  main { padding: 8px; } th, td { padding: 4px; }
  /* a phone: each target and probe is a card of lines */
  #targets table, #targets tr, #targets td, #probes table, #probes tr, #probes td { display: block; }
  #targets tr:first-child, #probes tr:first-child { display: none; }
  #targets tr, #probes tr { border-bottom: 2px solid #d0d7de; padding: 4px 0; }
  #targets td, #probes td { border: 0; }
  td[data-label]::before { content: attr(data-label) ': '; color: #57606a; }
}
";
