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
