//! What a kind's restore planner returns: a [`RestorePlan`] (the shown [`Plan`], the
//! refusal, the emergency backup, and the [`Act`] that carries it out), and what the act
//! reports back ([`RestoreOutcome`]).

use crate::{
    BoxFuture, Engine, EngineResult,
    cancel::Cancel,
    restore::plan::{Emergency, Plan, Refusal},
};

/// What the kind's act gets: the engine, the token, and the emergency snapshot.
pub struct ActCx {
    pub engine: Engine,
    pub cancel: Cancel,
    pub emergency_snapshot: Option<lifeboat_core::SnapshotId>,
}

/// The kind's part of carrying out a plan.
pub type Act = Box<dyn FnOnce(ActCx) -> BoxFuture<'static, EngineResult<RestoreOutcome>> + Send>;

/// Make an [`Act`] of an async closure.
pub fn act<F, Fut>(f: F) -> Act
where
    F: FnOnce(ActCx) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = EngineResult<RestoreOutcome>> + Send + 'static,
{
    Box::new(move |cx| Box::pin(f(cx)))
}

/// A decided restore: shown, then carried out exactly.
pub struct RestorePlan {
    pub plan: Plan,
    pub refusal: Option<Refusal>,
    pub emergency: Option<Emergency>,
    pub(crate) act: Act,
}

impl RestorePlan {
    pub fn new(plan: Plan, act: Act) -> Self {
        Self {
            plan,
            refusal: None,
            emergency: None,
            act,
        }
    }

    /// Whether the real run would refuse with this `force`.
    pub fn refuses(&self, force: bool) -> Option<&Refusal> {
        self.refusal.as_ref().filter(|r| r.stands(force))
    }
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    /// Everything read back matched the manifest.
    pub verified: bool,
    /// What failed verification, when it did: "restored row counts differ from the manifest".
    pub problem: Option<String>,
    /// The kind's results, as JSON fields.
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// The same, as lines for a person.
    pub lines: Vec<String>,
}

impl RestoreOutcome {
    /// An outcome: `problem` is said only when not `verified`; `facts` is a JSON object.
    pub fn new(
        verified: bool,
        problem: &str,
        facts: serde_json::Value,
        lines: Vec<String>,
    ) -> Self {
        Self {
            verified,
            problem: (!verified).then(|| problem.to_string()),
            facts: match facts {
                serde_json::Value::Object(o) => o,
                _ => Default::default(),
            },
            lines,
        }
    }
}
