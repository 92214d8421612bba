//! The post-mortem of an incident, as the runbooks' templates ask for it: summary and
//! severity, detection and time to recover, per target the point it was restored to and
//! the data lost (the window between that point and the incident's start, or the moment a
//! recovery was asked to reach), the snapshots used and how each was verified, the commands
//! run, the timeline, and empty sections for root cause, lessons and action items. As
//! Markdown, JSON, or a self-contained HTML page with a timeline chart.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Entry, Incident};

/// What the report says, computed from the incident and its timeline.
#[derive(Debug, Serialize)]
pub struct Report {
    pub incident: Incident,
    /// The first sign of trouble: the first alert, or the opening.
    pub detected_at: Option<String>,
    /// The moment data loss is measured from: a recovery's `--time`, else the detection.
    pub reference_time: Option<String>,
    /// From the opening to the last restore or plan step that ended well.
    pub time_to_recover_seconds: Option<f64>,
    pub targets: Vec<TargetOutcome>,
    pub commands: Vec<CommandRun>,
    pub timeline: Vec<Entry>,
}

/// One target restored during the incident.
#[derive(Debug, Default, Serialize)]
pub struct TargetOutcome {
    pub target: String,
    pub snapshot: Option<String>,
    /// The point restored to (the snapshot's time).
    pub restored_point: Option<String>,
    /// Reference time minus the restored point.
    pub data_loss_seconds: Option<f64>,
    pub emergency_snapshot: Option<String>,
    /// `verified`, `FAILED: …`, or `not finished`.
    pub verification: String,
}

/// A command a plan step ran.
#[derive(Debug, Serialize)]
pub struct CommandRun {
    pub command: String,
    pub ok: bool,
    pub detail: String,
}

fn at(t: Option<jiff::Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

fn parse(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// Compute the report.
pub fn build(incident: &Incident, timeline: &[Entry]) -> Report {
    // The first sign: a problem that began (an alert firing), or the opening, whichever
    // came first.
    let detected = timeline
        .iter()
        .filter(|e| {
            e.kind == "alert" && e.data.get("state").and_then(Value::as_str) != Some("resolved")
        })
        .filter_map(|e| e.time)
        .chain(incident.opened_at)
        .min();
    let asked = timeline
        .iter()
        .find_map(|e| e.data.get("time").and_then(Value::as_str).and_then(parse));
    let reference = asked.or(detected);
    let recovered = timeline
        .iter()
        .filter(|e| {
            (e.kind == "restore" || e.kind == "plan-step" || e.kind == "plan")
                && e.data.get("ok") == Some(&Value::Bool(true))
        })
        .filter_map(|e| e.time)
        .max();
    let mut targets: BTreeMap<String, TargetOutcome> = BTreeMap::new();
    for e in timeline {
        let Some(name) = &e.target else { continue };
        let get = |k: &str| e.data.get(k).and_then(Value::as_str).map(str::to_string);
        let entry = || TargetOutcome {
            target: name.clone(),
            verification: "not finished".into(),
            ..TargetOutcome::default()
        };
        match e.kind.as_str() {
            "restore-planned" => {
                // A new attempt (a resumed recovery): what the earlier one did is replaced.
                targets.insert(name.clone(), entry());
                let t = targets.get_mut(name).expect("just inserted");
                t.snapshot = get("snapshot");
                t.restored_point = get("snapshot_time");
                t.data_loss_seconds = match (reference, t.restored_point.as_deref().and_then(parse))
                {
                    (Some(r), Some(p)) => {
                        Some(((r.as_millisecond() - p.as_millisecond()) as f64 / 1000.0).max(0.0))
                    }
                    _ => None,
                };
            }
            "emergency-backup" => {
                targets
                    .entry(name.clone())
                    .or_insert_with(entry)
                    .emergency_snapshot = get("snapshot");
            }
            "restore" => {
                let t = targets.entry(name.clone()).or_insert_with(entry);
                t.verification = if e.data.get("ok") == Some(&Value::Bool(true)) {
                    "verified against the manifest".into()
                } else {
                    format!("FAILED: {}", get("error").unwrap_or_default())
                };
            }
            "checks" => {
                let t = targets.entry(name.clone()).or_insert_with(entry);
                t.verification = format!("{}; {}", t.verification, e.text);
            }
            _ => {}
        }
    }
    let commands = timeline
        .iter()
        .filter_map(|e| {
            let command = e.data.get("command")?.as_str()?.to_string();
            Some(CommandRun {
                command,
                ok: e.data.get("ok") == Some(&Value::Bool(true)),
                detail: e.text.clone(),
            })
        })
        .collect();
    Report {
        incident: incident.clone(),
        detected_at: at(detected),
        reference_time: at(reference),
        time_to_recover_seconds: match (incident.opened_at, recovered) {
            (Some(o), Some(r)) => Some((r.as_millisecond() - o.as_millisecond()) as f64 / 1000.0),
            _ => None,
        },
        targets: targets.into_values().collect(),
        commands,
        timeline: timeline.to_vec(),
    }
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "—".into(), lifeboat_drill::render::seconds)
}

impl Report {
    pub fn markdown(&self) -> String {
        let i = &self.incident;
        let mut out = format!(
            "# Incident {}: {}\n\n| | |\n| --- | --- |\n| severity | {} |\n| opened | {} |\n| closed | {} |\n| detected | {} |\n| time to recover | {} |\n| host | {} |\n\n## Summary\n\n{}\n\n## Targets\n\n",
            i.id,
            i.title,
            i.severity,
            at(i.opened_at).unwrap_or_default(),
            at(i.closed_at).unwrap_or_else(|| "still open".into()),
            self.detected_at.as_deref().unwrap_or("—"),
            seconds(self.time_to_recover_seconds),
            i.host,
            i.summary.as_deref().unwrap_or("(to write)"),
        );
        if self.targets.is_empty() {
            out.push_str("No target was restored.\n");
        } else {
            out.push_str("| target | snapshot | restored to | data lost | emergency snapshot | verification |\n| --- | --- | --- | --- | --- | --- |\n");
            for t in &self.targets {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    t.target,
                    t.snapshot.as_deref().map_or("—", |s| &s[..s.len().min(8)]),
                    t.restored_point.as_deref().unwrap_or("—"),
                    seconds(t.data_loss_seconds),
                    t.emergency_snapshot
                        .as_deref()
                        .map_or("—", |s| &s[..s.len().min(8)]),
                    t.verification
                ));
            }
            if let Some(r) = &self.reference_time {
                out.push_str(&format!("\nData lost is measured from {r}.\n"));
            }
        }
        out.push_str("\n## Commands run\n\n");
        if self.commands.is_empty() {
            out.push_str("None.\n");
        }
        for c in &self.commands {
            out.push_str(&format!(
                "- `{}`: {}\n",
                c.command,
                if c.ok { "ok" } else { "FAILED" }
            ));
        }
        out.push_str("\n## Timeline\n\n| time | what | target | |\n| --- | --- | --- | --- |\n");
        for e in &self.timeline {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                at(e.time).unwrap_or_default(),
                e.kind,
                e.target.as_deref().unwrap_or(""),
                e.text.replace('|', "\\|").replace('\n', " ")
            ));
        }
        out.push_str("\n## Root cause\n\n(to write)\n\n## Lessons\n\n(to write)\n\n## Action items\n\n- [ ] (to write)\n");
        out
    }

    pub fn html(&self) -> String {
        let esc = lifeboat_drill::render::esc;
        let body = esc(&self.markdown());
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Incident {id}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}pre{{white-space:pre-wrap}}svg text{{font-size:11px}}</style></head><body><h1>Incident {id}: {title}</h1>{chart}<pre>{body}</pre></body></html>\n",
            id = esc(&self.incident.id),
            title = esc(&self.incident.title),
            chart = self.chart(),
        )
    }

    /// The timeline as an SVG chart: one row per entry at its time, coloured by kind
    /// (green: went well, red: failed, blue: other).
    fn chart(&self) -> String {
        let times: Vec<i64> = self
            .timeline
            .iter()
            .filter_map(|e| e.time.map(|t| t.as_millisecond()))
            .collect();
        let (Some(&first), Some(&last)) = (times.iter().min(), times.iter().max()) else {
            return String::new();
        };
        let span = (last - first).max(1) as f64;
        let (width, row) = (1000.0, 18.0);
        let height = row * self.timeline.len() as f64 + 30.0;
        let mut svg = format!(
            "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\"><rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#fafafa\"/>"
        );
        for (n, e) in self.timeline.iter().enumerate() {
            let Some(t) = e.time else { continue };
            let x = 10.0 + (t.as_millisecond() - first) as f64 / span * 480.0;
            let y = 20.0 + n as f64 * row;
            let colour = match e.data.get("ok") {
                Some(Value::Bool(true)) => "#2e7d32",
                Some(Value::Bool(false)) => "#c62828",
                _ => "#1565c0",
            };
            let text = lifeboat_drill::render::esc(&format!(
                "{} {}",
                t.strftime("%H:%M:%S"),
                e.text.chars().take(70).collect::<String>()
            ));
            svg.push_str(&format!(
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{colour}\"/><text x=\"510\" y=\"{:.1}\">{text}</text>",
                y + 4.0
            ));
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(at: &str, kind: &str, target: Option<&str>, data: Value) -> Entry {
        Entry {
            time: Some(at.parse().unwrap()),
            kind: kind.into(),
            target: target.map(str::to_string),
            text: format!("{kind} {}", target.unwrap_or("")),
            data,
        }
    }

    #[test]
    fn the_report_measures_detection_recovery_and_data_lost_per_target() {
        let incident = Incident {
            id: "20261206-100000-1".into(),
            title: "Database corrupted".into(),
            severity: 1,
            opened_at: Some("2026-12-06T10:00:00Z".parse().unwrap()),
            closed_at: None,
            summary: None,
            host: "h".into(),
        };
        let timeline = vec![
            entry("2026-12-06T09:58:00Z", "alert", Some("db"), json!({})),
            entry("2026-12-06T10:00:00Z", "opened", None, json!(null)),
            entry(
                "2026-12-06T10:01:00Z",
                "restore-planned",
                Some("db"),
                json!({"snapshot": "abcdef0123", "snapshot_time": "2026-12-06T09:00:00Z"}),
            ),
            entry(
                "2026-12-06T10:01:05Z",
                "emergency-backup",
                Some("db"),
                json!({"snapshot": "ee00ff"}),
            ),
            entry(
                "2026-12-06T10:05:00Z",
                "restore",
                Some("db"),
                json!({"ok": true}),
            ),
            entry(
                "2026-12-06T10:06:00Z",
                "plan-step",
                None,
                json!({"ok": false, "command": "false"}),
            ),
        ];
        let r = build(&incident, &timeline);
        assert_eq!(r.detected_at.as_deref(), Some("2026-12-06T09:58:00Z"));
        // From the opening to the last step that went well (the failed command is not one).
        assert_eq!(r.time_to_recover_seconds, Some(300.0));
        let db = &r.targets[0];
        assert_eq!(db.restored_point.as_deref(), Some("2026-12-06T09:00:00Z"));
        // Detection (09:58) minus the restored point (09:00).
        assert_eq!(db.data_loss_seconds, Some(3480.0));
        assert_eq!(db.emergency_snapshot.as_deref(), Some("ee00ff"));
        assert_eq!(db.verification, "verified against the manifest");
        assert_eq!(r.commands.len(), 1);
        assert!(!r.commands[0].ok);
        let md = r.markdown();
        for part in [
            "| db | abcdef01 |",
            "58 min",
            "## Root cause",
            "## Action items",
            "FAILED",
        ] {
            assert!(md.contains(part), "no {part:?} in:\n{md}");
        }
        // A recovery asked for a moment: data lost is measured from it.
        let mut asked = timeline.clone();
        asked.insert(
            1,
            entry(
                "2026-12-06T10:00:30Z",
                "plan",
                None,
                json!({"time": "2026-12-06T09:30:00Z"}),
            ),
        );
        let r = build(&incident, &asked);
        assert_eq!(r.targets[0].data_loss_seconds, Some(1800.0));
        assert!(r.html().contains("<svg id=\"timeline\""));
    }
}
