//! Where the DDL event trigger is missing (a provider or role that may not create one), the
//! capture watches the tables' shape (a hash of every table's columns, types, `NOT NULL`,
//! constraints, and the enum labels; [`preflight::schema_shape`]) every 10 s. When it
//! changes, the changes from the look before the last unchanged one on (a DDL may commit
//! before it is visible) can no longer replay onto the baseline: that stretch is recorded
//! as a gap (`schema`: nothing was lost on the server), and once the shape has held still
//! for two more looks (a migration is often several transactions; a dump in the middle of
//! one would block it) a baseline is taken beside the capture, which ends the gap. A
//! baseline that fails is tried again a minute later while the capture goes on.
//!
//! The shape last seen is kept at `cdc/<target>/shape.json`, so a change made while no
//! capture ran is found when the next one starts (a gap from where the last one looked).

use std::time::{Duration, Instant};

use lifeboat_postgres::cdc::preflight::{self, Shape};

use super::segments;
use crate::{Engine, EngineResult, events::Event};

/// Looks the shape must hold still after a change before the baseline is taken.
const STILL_LOOKS: u32 = 2;
/// How often the shape seen goes into the side area.
const KEEP_EVERY: Duration = Duration::from_secs(60);

/// The watch of one capture.
pub(super) struct Watch {
    /// The newest look that found the shape unchanged, and the one before it.
    seen: Shape,
    before: Shape,
    /// A change found, its gap recorded: the newest shape and how many looks it held.
    changed: Option<(Shape, u32)>,
    /// A failed baseline is tried again from then on.
    retry_at: Option<Instant>,
    kept_at: Instant,
}

fn shape_path(target: &str) -> String {
    format!("{}/{target}/shape.json", segments::DIR)
}

async fn read_kept(engine: &Engine, name: &str) -> EngineResult<Option<Shape>> {
    let path = shape_path(name);
    let got = engine.repo.call(move |r| r.side().get(&path)).await?;
    Ok(got.and_then(|b| serde_json::from_slice(&b).ok()))
}

async fn keep(engine: &Engine, name: &str, shape: &Shape) -> EngineResult<()> {
    let (path, bytes) = (
        shape_path(name),
        serde_json::to_vec(shape).unwrap_or_default(),
    );
    engine
        .repo
        .call(move |r| r.side().put(&path, &bytes))
        .await?;
    Ok(())
}

impl Watch {
    /// Start watching (before the capture's own baseline, if it takes one): `None` while
    /// the DDL trigger is installed. A shape unlike the one the last capture kept records a
    /// gap from where it looked; the capture then takes a baseline (the gap is pending).
    pub(super) async fn start(
        engine: &Engine,
        name: &str,
        client: &tokio_postgres::Client,
        history: bool,
    ) -> EngineResult<Option<Self>> {
        let now = match preflight::schema_shape(client).await {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(None),
            Err(e) => {
                warn(
                    engine,
                    name,
                    format!("cannot watch the tables for schema changes: {e}"),
                );
                return Ok(None);
            }
        };
        if history
            && let Some(kept) = read_kept(engine, name).await?
            && kept.hash != now.hash
        {
            record(
                engine,
                name,
                &kept,
                "the tables changed shape while no capture ran",
            )
            .await?;
        }
        keep(engine, name, &now).await?;
        Ok(Some(Self {
            before: now.clone(),
            seen: now,
            changed: None,
            retry_at: None,
            kept_at: Instant::now(),
        }))
    }

    /// Look again; the shape for which a baseline should be taken now, if any.
    pub(super) async fn look(
        &mut self,
        engine: &Engine,
        name: &str,
        client: &tokio_postgres::Client,
    ) -> EngineResult<Option<Shape>> {
        let now = match preflight::schema_shape(client).await {
            Ok(Some(s)) => s,
            // The trigger sends schema changes from now on.
            Ok(None) => return Ok(None),
            Err(e) => {
                log::warn!("cannot read the tables' shape of `{name}`: {e}");
                return Ok(None);
            }
        };
        match self.changed.take() {
            None if now.hash == self.seen.hash => {
                self.before = std::mem::replace(&mut self.seen, now);
                if self.kept_at.elapsed() >= KEEP_EVERY {
                    keep(engine, name, &self.before).await?;
                    self.kept_at = Instant::now();
                }
                Ok(None)
            }
            None => {
                record(
                    engine,
                    name,
                    &self.before,
                    "a table changed shape (ALTER, CREATE or DROP TABLE, a constraint, an enum)",
                )
                .await?;
                self.changed = Some((now, 0));
                Ok(None)
            }
            Some((last, looks)) if last.hash == now.hash => {
                let due =
                    looks + 1 >= STILL_LOOKS && self.retry_at.is_none_or(|t| Instant::now() >= t);
                self.changed = Some((last.clone(), looks + 1));
                Ok(due.then_some(last))
            }
            // Still changing: wait until it holds still.
            Some(_) => {
                self.changed = Some((now, 0));
                Ok(None)
            }
        }
    }

    /// The baseline that ends the gap is stored, at `to`: the watch goes on from there.
    pub(super) async fn ended(
        &mut self,
        engine: &Engine,
        name: &str,
        shape: Shape,
        to: (u64, Option<jiff::Timestamp>),
    ) -> EngineResult<()> {
        let at = Shape {
            lsn: to.0,
            at: to.1.unwrap_or(shape.at),
            hash: shape.hash,
        };
        keep(engine, name, &at).await?;
        self.before = at.clone();
        self.seen = at;
        self.changed = None;
        self.retry_at = None;
        Ok(())
    }

    /// The baseline failed: tried again a minute later.
    pub(super) fn failed(&mut self) {
        self.retry_at = Some(Instant::now() + Duration::from_secs(60));
    }
}

/// Record the gap of a schema change from `from` (pending until a baseline ends it).
async fn record(engine: &Engine, name: &str, from: &Shape, what: &str) -> EngineResult<()> {
    let why = format!(
        "{what} where no event trigger sends schema changes into the stream (`lifeboat cdc check {name} --fix` installs it)"
    );
    segments::record_gap(
        &engine.repo,
        name,
        segments::Gap {
            from_lsn: from.lsn,
            from_time: Some(from.at),
            to_lsn: 0,
            to_time: None,
            why: why.clone(),
            schema: true,
        },
    )
    .await?;
    warn(
        engine,
        name,
        format!(
            "{why}: moments from {} until a new baseline cannot be restored (nothing is lost on the server; the baseline is taken once the change has held still)",
            from.at
        ),
    );
    Ok(())
}

fn warn(engine: &Engine, name: &str, text: String) {
    engine.events.event(Event::Warning {
        target: Some(name.into()),
        text,
    });
}
