//! The engine's events as the terminal shows them: phases on stderr (not with `--quiet`),
//! the plan and the emergency backup on stdout (not with `--json`, whose document says
//! both), warnings through the log.

use lifeboat_engine::{
    events::{Event, Op, Reporter},
    format,
};

pub struct Terminal {
    pub json: bool,
    pub quiet: bool,
}

impl Terminal {
    fn say(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }
}

impl Reporter for Terminal {
    fn event(&self, event: Event) {
        match event {
            Event::Started {
                op: Op::Backup,
                target,
                kind,
            } => self.say(&format!("backing up `{target}` ({kind})")),
            Event::Started {
                op: Op::Drill,
                target,
                kind,
            } => self.say(&format!("drill of `{target}` ({kind})")),
            Event::Started { .. } | Event::Finished { .. } | Event::Failed { .. } => {}
            Event::Step { text, .. } => self.say(&text),
            Event::Planned { plan } if !self.json => {
                for line in plan.lines(false) {
                    outln!("{line}");
                }
            }
            Event::Planned { .. } => {}
            Event::EmergencyBackup {
                target,
                snapshot,
                bytes,
            } if !self.json => {
                let short = format::short(&snapshot);
                outln!(
                    "emergency backup: snapshot {short} ({}); restore it with `lifeboat restore {target} --snapshot {short}`",
                    format::bytes(bytes)
                );
            }
            Event::EmergencyBackup { .. } => {}
            Event::Warning { text, .. } => log::warn!("{text}"),
        }
    }
}

/// The engine's events as `serve` logs them: one line per event on stderr, with the time;
/// with `json`, one JSON object per line (`time` and the event's fields).
pub struct Log {
    pub json: bool,
}

impl Reporter for Log {
    fn event(&self, event: Event) {
        if self.json {
            if matches!(event, Event::Step { .. } | Event::Planned { .. }) {
                return;
            }
            let mut line = serde_json::to_value(&event).unwrap_or_default();
            if let serde_json::Value::Object(o) = &mut line {
                o.insert("time".into(), jiff::Timestamp::now().to_string().into());
            }
            eprintln!("{line}");
            return;
        }
        let line = match event {
            Event::Started { op, target, kind } => {
                format!("{} of `{target}` ({kind}) started", op.as_str())
            }
            Event::Step { .. } | Event::Planned { .. } => return,
            Event::EmergencyBackup {
                target, snapshot, ..
            } => format!(
                "emergency backup of `{target}`: snapshot {}",
                snapshot.short()
            ),
            Event::Warning { target, text } => match target {
                Some(t) => format!("warning: `{t}`: {text}"),
                None => format!("warning: {text}"),
            },
            Event::Finished {
                op,
                target,
                snapshot,
                seconds,
                bytes,
            } => format!(
                "{} of `{target}` finished in {seconds:.1} s{}{}",
                op.as_str(),
                snapshot.map_or(String::new(), |s| format!(": snapshot {}", s.short())),
                if bytes > 0 {
                    format!(", {}", format::bytes(bytes))
                } else {
                    String::new()
                }
            ),
            Event::Failed { op, target, error } => {
                format!("{} of `{target}` failed: {error}", op.as_str())
            }
        };
        eprintln!(
            "{} {}",
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            line
        );
    }
}
