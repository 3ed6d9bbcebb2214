//! The step contract: what a step is, how it reads its inputs and earlier outputs, and the
//! serializable error it returns.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_model::ids::SagaId;

/// One step of a saga: an action and its undo.
///
/// Both must be idempotent: either may run more than once, and `undo` may run after a `run`
/// that crashed half-way (or never started). Neither may use fresh randomness or the clock for
/// anything it creates; names and ids come from the saga params or earlier outputs.
#[async_trait]
pub trait Step<C>: Send + Sync + 'static {
    /// The step's name in the log. Persisted: never rename a shipped step.
    fn name(&self) -> &'static str;

    /// Performs the side effect and returns the step's output (small, serializable, no
    /// secrets in clear text).
    async fn run(&self, cx: &StepCx<C>) -> Result<Value, StepError>;

    /// Reverses the side effect. Must succeed when there is nothing to reverse.
    async fn undo(&self, cx: &StepCx<C>) -> Result<(), StepError>;

    /// The output `run` would return when the step can tell from its inputs alone (no call,
    /// no side effect) that it has nothing to do. The executor then logs the step as started
    /// and succeeded within the commit of the step before it, instead of a commit of its own.
    /// `None` (the default), or any doubt: the step runs.
    fn skip(&self, _cx: &StepCx<C>) -> Option<Value> {
        None
    }
}

/// Names a step's output and types it, so later steps read it back as a typed value.
pub struct StepKey<T> {
    name: &'static str,
    _output: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> StepKey<T> {
    /// A key for the step called `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _output: PhantomData,
        }
    }

    /// The step name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Serializes a step's output.
    pub fn output(&self, value: &T) -> Result<Value, StepError> {
        serde_json::to_value(value).map_err(|e| {
            StepError::permanent(
                "InternalServerError",
                format!("step output of {}: {e}", self.name),
            )
        })
    }
}

/// What a step sees: the saga's params, the outputs of steps that completed, and the
/// application context `C` (adapters, keys).
pub struct StepCx<C> {
    pub(crate) saga_id: SagaId,
    pub(crate) params: Arc<Value>,
    pub(crate) outputs: Arc<BTreeMap<String, Value>>,
    pub(crate) ctx: Arc<C>,
}

impl<C> StepCx<C> {
    /// The saga this step belongs to.
    pub fn saga_id(&self) -> SagaId {
        self.saga_id
    }

    /// The application context.
    pub fn ctx(&self) -> &C {
        &self.ctx
    }

    /// The saga's params, deserialized.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, StepError> {
        P::deserialize(&*self.params)
            .map_err(|e| StepError::permanent("InternalServerError", format!("saga params: {e}")))
    }

    /// The output of an earlier step. Fails if that step has not completed, which is a bug in
    /// the saga's step order.
    pub fn get<T: Serialize + DeserializeOwned>(&self, key: &StepKey<T>) -> Result<T, StepError> {
        let value = self.outputs.get(key.name).ok_or_else(|| {
            StepError::permanent(
                "InternalServerError",
                format!("no output of step {}", key.name),
            )
        })?;
        T::deserialize(value).map_err(|e| {
            StepError::permanent(
                "InternalServerError",
                format!("output of step {}: {e}", key.name),
            )
        })
    }

    /// The output of an earlier step, or `None` if it never completed (useful in `undo`,
    /// which may run for a step whose predecessors' outputs are all there but whose own run
    /// never finished).
    pub fn try_get<T: Serialize + DeserializeOwned>(
        &self,
        key: &StepKey<T>,
    ) -> Result<Option<T>, StepError> {
        if self.outputs.contains_key(key.name) {
            self.get(key).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A step's failure. Serializable, because it is logged and read back after a restart; its
/// `code` and `message` are shown to clients, so they never hold secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StepError {
    /// A stable PascalCase code (`TargetNotFound`, `SourceUnavailable`, ...).
    pub code: String,
    /// A client-safe message.
    pub message: String,
    /// True when retrying may help (throttling, 5xx, timeouts, connection resets).
    #[serde(default)]
    pub transient: bool,
    /// A server's hint of when to retry.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_millis")]
    pub retry_after: Option<Duration>,
}

impl StepError {
    /// An error that retrying will not fix: the saga unwinds.
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            transient: false,
            retry_after: None,
        }
    }

    /// An error worth retrying with backoff (within the step's deadline).
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            transient: true,
            ..Self::permanent(code, message)
        }
    }

    /// Adds a retry hint.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_u64(d.as_millis() as u64),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
