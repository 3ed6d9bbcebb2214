//! Reading a saga's log back: which outputs exist and where to resume. Pure functions, so
//! recovery can be tested without any IO.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::step::StepError;
use crate::store::{EventKind, SagaEvent, SagaRecord, SagaState};

/// The error code of an unwind caused by a cancellation request.
pub const CANCELED: &str = "OperationCanceled";

/// Where a saga resumes.
#[derive(Debug, PartialEq)]
pub(crate) enum Position {
    /// Run steps from index `next` on (`next == steps.len()`: all done, finish it).
    Forward { next: usize },
    /// Undo these step indices, in this order, then end with `error`.
    Unwind {
        pending: Vec<usize>,
        error: StepError,
    },
}

/// The outputs of the steps that succeeded, by step name.
pub(crate) fn outputs(events: &[SagaEvent]) -> BTreeMap<String, Value> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Succeeded)
        .filter_map(|e| Some((e.step.clone(), e.data.clone()?)))
        .collect()
}

/// The last of `steps` the log mentions (started, succeeded, failed or undone), if any.
pub(crate) fn last_touched(steps: &[&'static str], events: &[SagaEvent]) -> Option<usize> {
    events
        .iter()
        .filter_map(|e| steps.iter().position(|s| *s == e.step))
        .max()
}

/// Decides where to resume. A saga unwinds when its state says so or a step failed; it then
/// undoes every step that may have started (including one that crashed half-way or failed,
/// because a failed call may still have had its effect), newest first, skipping undos that
/// already finished.
pub(crate) fn position(
    steps: &[&'static str],
    record: &SagaRecord,
    events: &[SagaEvent],
) -> Position {
    let has = |step: &str, kind: EventKind| events.iter().any(|e| e.step == step && e.kind == kind);
    let failed = events.iter().find(|e| e.kind == EventKind::Failed);
    let unwinding =
        matches!(record.state, SagaState::Unwinding | SagaState::Stuck) || failed.is_some();
    if !unwinding {
        let next = steps
            .iter()
            .position(|s| !has(s, EventKind::Succeeded))
            .unwrap_or(steps.len());
        return Position::Forward { next };
    }
    let error = record
        .error
        .clone()
        .or_else(|| failed.and_then(|e| serde_json::from_value(e.data.clone()?).ok()))
        .unwrap_or_else(|| StepError::permanent("SagaFailed", "the operation failed"));
    let touched = |s: &str| {
        has(s, EventKind::Started) || has(s, EventKind::Succeeded) || has(s, EventKind::Failed)
    };
    let pending = (0..steps.len())
        .rev()
        .filter(|&i| touched(steps[i]) && !has(steps[i], EventKind::UndoFinished))
        .collect();
    Position::Unwind { pending, error }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tether_model::ids::SagaId;

    use super::*;

    const STEPS: [&str; 3] = ["a", "b", "c"];

    fn record(state: SagaState) -> SagaRecord {
        SagaRecord {
            id: SagaId::new(),
            name: "t".into(),
            params: json!({}),
            state,
            lease: crate::Lease {
                owner: tether_model::ids::InstanceId::from_stored("test".into()),
                generation: 1,
            },
            cancel_requested: false,
            error: None,
        }
    }

    fn ev(step: &str, kind: EventKind) -> SagaEvent {
        SagaEvent::new(step, kind)
    }

    #[test]
    fn resumes_forward_at_the_first_unfinished_step() {
        let events = [
            ev("a", EventKind::Started),
            SagaEvent::with_data("a", EventKind::Succeeded, json!(1)),
            ev("b", EventKind::Started),
        ];
        assert_eq!(
            position(&STEPS, &record(SagaState::Running), &events),
            Position::Forward { next: 1 }
        );
        assert_eq!(outputs(&events)["a"], json!(1));
        assert_eq!(
            position(&STEPS, &record(SagaState::Running), &[]),
            Position::Forward { next: 0 }
        );
    }

    #[test]
    fn all_steps_done_means_finish() {
        let events: Vec<_> = STEPS
            .iter()
            .map(|s| SagaEvent::with_data(s, EventKind::Succeeded, json!(null)))
            .collect();
        assert_eq!(
            position(&STEPS, &record(SagaState::Running), &events),
            Position::Forward { next: 3 }
        );
    }

    #[test]
    fn unwinds_every_touched_step_newest_first() {
        let err = StepError::permanent("Boom", "b failed");
        let events = [
            ev("a", EventKind::Started),
            SagaEvent::with_data("a", EventKind::Succeeded, json!(1)),
            ev("b", EventKind::Started),
            SagaEvent::with_data("b", EventKind::Failed, serde_json::to_value(&err).unwrap()),
        ];
        let pos = position(&STEPS, &record(SagaState::Running), &events);
        assert_eq!(
            pos,
            Position::Unwind {
                pending: vec![1, 0],
                error: err
            }
        );
    }

    #[test]
    fn skips_finished_undos_and_retries_stuck_ones() {
        let mut rec = record(SagaState::Stuck);
        rec.error = Some(StepError::permanent("Boom", "x"));
        let events = [
            SagaEvent::with_data("a", EventKind::Succeeded, json!(1)),
            SagaEvent::with_data("b", EventKind::Succeeded, json!(2)),
            ev("c", EventKind::Started),
            ev("c", EventKind::UndoFinished),
            ev("b", EventKind::UndoFailed),
        ];
        let Position::Unwind { pending, error } = position(&STEPS, &rec, &events) else {
            panic!("expected unwind")
        };
        assert_eq!(pending, vec![1, 0]);
        assert_eq!(error.code, "Boom");
    }
}
