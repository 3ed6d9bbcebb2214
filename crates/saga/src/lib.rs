//! `tether-saga`: a generic, durable saga engine.
//!
//! A saga is an ordered list of [`Step`]s, each an idempotent action with an idempotent undo.
//! The [`Executor`] runs them and writes an intent log through the [`SagaStore`] port — one
//! commit per step boundary — so that any replica can resume a saga after a crash. Failures
//! unwind the completed steps in reverse. Ownership is a lease (owner + generation); every
//! write is conditional on it, so a replica that lost a saga can never write to it again.
//!
//! This crate knows nothing about linkers, HTTP or SQL.

mod executor;
mod log;
pub mod memory;
mod step;
mod store;

pub use executor::{Executor, ExecutorConfig, SagaDef, Stored, crash_point};
pub use log::CANCELED;
pub use step::{Step, StepCx, StepError, StepKey};
pub use store::{
    Ack, Ended, EventKind, Lease, NewSaga, SagaEvent, SagaOutcome, SagaRecord, SagaState,
    SagaStore, SagaStoreError,
};

#[cfg(test)]
mod tests;
