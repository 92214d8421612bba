//! Drill reports in the repository's side area (`lifeboat/drills/<target>/<id>.{json,md,html}`)
//! and in a report folder: [`store`] writes one, [`read_history`] and [`history_of`] read
//! them back for `drills`, `status` and the next report's history chart.

use std::{path::Path, sync::Arc};

use lifeboat_core::Config;
use lifeboat_drill::{DrillReport, HistoryPoint, render};
use lifeboat_repo::Repo;

use crate::{Engine, EngineError, EngineResult, events::Event};

/// Where drill reports live in the side area.
pub const DRILLS_DIR: &str = "drills";

/// Store the report (JSON, Markdown, HTML) in the side area and in `report_dir`; returns
/// the places written. A place that cannot be written is a warning, not a failure: the
/// drill's verdict stands.
pub async fn store(
    engine: &Engine,
    report: &DrillReport,
    report_dir: Option<&Path>,
) -> Vec<String> {
    let warn = |text: String| {
        engine.events.event(Event::Warning {
            target: Some(report.target.clone().into()),
            text,
        })
    };
    let history = match read_history(&engine.repo, &report.target).await {
        Ok(h) => h.iter().map(DrillReport::history_point).collect(),
        Err(e) => {
            warn(e.full_message());
            Vec::<HistoryPoint>::new()
        }
    };
    let files = [
        ("json", report.to_json()),
        ("md", render::markdown(report, &history).into_bytes()),
        ("html", render::html(report, &history).into_bytes()),
    ];
    let mut written = Vec::new();
    let base = format!("{DRILLS_DIR}/{}/{}", report.target, report.id);
    let (items, b) = (files.clone(), base.clone());
    let stored = engine
        .repo
        .call(move |r| {
            for (ext, bytes) in &items {
                r.side().put(&format!("{b}.{ext}"), bytes)?;
            }
            Ok::<_, lifeboat_repo::SideError>(())
        })
        .await;
    match stored {
        Ok(()) => written.push(engine.repo.side().display(&format!("{base}.html"))),
        Err(e) => warn(format!(
            "cannot store the drill report in the repository: {e}"
        )),
    }
    if let Some(dir) = report_dir {
        let result = std::fs::create_dir_all(dir).and_then(|()| {
            for (ext, bytes) in &files {
                std::fs::write(dir.join(format!("{}.{ext}", report.id)), bytes)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => written.push(
                dir.join(format!("{}.html", report.id))
                    .display()
                    .to_string(),
            ),
            Err(e) => warn(format!(
                "cannot write the drill report into `{}`: {e}",
                dir.display()
            )),
        }
    }
    written
}

/// Every stored drill report of `target`, oldest first. An unreadable one is skipped with
/// a log line.
pub async fn read_history(repo: &Arc<Repo>, target: &str) -> EngineResult<Vec<DrillReport>> {
    let dir = format!("{DRILLS_DIR}/{target}");
    repo.call(move |r| {
        let mut names = r.side().list(&dir)?;
        names.retain(|n| n.ends_with(".json"));
        names.sort();
        let mut reports = Vec::new();
        for n in names {
            if let Some(bytes) = r.side().get(&format!("{dir}/{n}"))? {
                match DrillReport::from_json(&bytes) {
                    Ok(rep) => reports.push(rep),
                    Err(e) => log::warn!("unreadable drill report `{dir}/{n}`: {e}"),
                }
            }
        }
        Ok::<_, lifeboat_repo::SideError>(reports)
    })
    .await
    .map_err(|e| EngineError::from(e).context("cannot read drill history"))
}

/// Drill history of the configured targets, or of one, oldest first.
pub async fn history_of(
    repo: &Arc<Repo>,
    config: &Config,
    target: Option<&str>,
) -> EngineResult<Vec<DrillReport>> {
    let mut all = Vec::new();
    for name in config.targets.keys() {
        if target.is_none_or(|t| t == name) {
            all.extend(read_history(repo, name).await?);
        }
    }
    all.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(all)
}
