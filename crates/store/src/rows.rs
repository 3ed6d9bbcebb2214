//! Row types shared by both backends (sqlx decodes uuids, json and integers the same way on
//! each) and their conversions to and from model types.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::types::Json;
use tether_model::ErrorDetail;
use tether_model::configuration::KeyNaming;
use tether_model::ids::{LinkerId, LinkerName, LinkerRef, OperationId, ResourceId};
use tether_model::linker::{Linker, LinkerProperties, PreviousSpec, Sealed, SystemData};
use tether_model::operation::{Operation, OperationKind, OperationState, ProvisioningState};
use tether_saga::{EventKind, SagaEvent, SagaOutcome, StepError};
use uuid::Uuid;

use crate::StoreError;

#[derive(sqlx::FromRow)]
pub(crate) struct LinkerRow {
    pub id: Uuid,
    pub scope: String,
    pub name: String,
    // The JSON columns decode straight into their model types (no `Value` in between: that
    // was a tenth of a GET's CPU); a document that does not fit is a decode error.
    pub properties: Json<LinkerProperties>,
    pub secret: Option<Vec<u8>>,
    pub key_naming: Json<KeyNaming>,
    pub provisioning_state: String,
    pub system_data: Json<SystemData>,
    pub generation: i64,
    pub operation_id: Option<Uuid>,
    pub next_operation_id: Option<Uuid>,
    pub previous_properties: Option<Json<LinkerProperties>>,
    pub previous_secret: Option<Vec<u8>>,
    pub spec: Option<Json<Value>>,
    pub previous_spec: Option<Json<Value>>,
}

/// The columns [`LinkerRow`] reads, for `select` lists.
pub(crate) const LINKER_COLUMNS: &str =
    "id, scope, name, properties, secret, key_naming, provisioning_state, system_data,
    generation, operation_id, next_operation_id, previous_properties, previous_secret, spec,
    previous_spec";

/// Another linker's name, keys, and the keys it had before a running update (still held: the
/// update may fail and put them back).
pub(crate) type OtherKeys = (String, Json<Vec<String>>, Option<Json<Vec<String>>>);

/// Refuses keys another linker of the source writes or may write again; keys compare
/// case-insensitively.
pub(crate) fn check_keys(mine: &[String], others: Vec<OtherKeys>) -> Result<(), StoreError> {
    for (linker, keys, previous) in others {
        let held = keys
            .0
            .iter()
            .chain(previous.iter().flat_map(|p| p.0.iter()));
        let held: Vec<&String> = held.collect();
        if let Some(key) = mine
            .iter()
            .find(|k| held.iter().any(|o| o.eq_ignore_ascii_case(k)))
        {
            return Err(StoreError::KeyConflict {
                key: key.clone(),
                linker,
            });
        }
    }
    Ok(())
}

/// A saga as operators see it.
#[derive(sqlx::FromRow)]
pub(crate) struct SagaSummaryRow {
    pub id: Uuid,
    pub name: String,
    pub state: String,
    pub owner: String,
    pub generation: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub blocked_by: Option<Uuid>,
    pub cancel_requested: bool,
    pub error: Option<Json<Value>>,
    pub undo_error: Option<Json<Value>>,
    pub operation_id: Option<Uuid>,
    pub resource_id: Option<String>,
    pub lease_expires_ms: i64,
}

impl SagaSummaryRow {
    pub fn into_summary(self) -> crate::SagaSummary {
        let lease_expires_at =
            chrono::DateTime::from_timestamp_millis(self.lease_expires_ms).unwrap_or_default();
        crate::SagaSummary {
            id: tether_model::ids::SagaId::from_uuid(self.id),
            name: self.name,
            state: self.state,
            owner: self.owner,
            generation: self.generation,
            lease_expires_at,
            updated_at: self.updated_at,
            blocked_by: self.blocked_by.map(tether_model::ids::SagaId::from_uuid),
            cancel_requested: self.cancel_requested,
            error: self.error.map(|e| e.0),
            undo_error: self.undo_error.map(|e| e.0),
            operation_id: self.operation_id.map(OperationId::from_uuid),
            resource_id: self.resource_id,
        }
    }
}

/// The columns of [`SagaSummaryRow`] (the saga is `s`, its operation `o`); each backend adds
/// its lease expiry as `lease_expires_ms` and the `from` clause.
pub(crate) const SAGA_SUMMARY_SELECT: &str =
    "select s.id, s.name, s.state, s.owner, s.generation, s.updated_at,
        s.blocked_by, s.cancel_requested, s.error,
        (select e.data from saga_event e where e.saga_id = s.id and e.kind = 'undo_failed'
         order by e.created_at desc limit 1) as undo_error,
        o.id as operation_id, o.resource_id";

impl TryFrom<LinkerRow> for Linker {
    type Error = StoreError;
    fn try_from(row: LinkerRow) -> Result<Self, StoreError> {
        Ok(Linker {
            id: LinkerId::from_uuid(row.id),
            at: LinkerRef {
                scope: ResourceId::parse(&row.scope).map_err(|e| corrupt("linker.scope", e))?,
                name: LinkerName::parse(&row.name).map_err(|e| corrupt("linker.name", e))?,
            },
            properties: row.properties.0,
            secret: row.secret.map(Sealed),
            key_naming: row.key_naming.0,
            provisioning_state: ProvisioningState::parse(&row.provisioning_state)
                .ok_or_else(|| corrupt("linker.provisioning_state", &row.provisioning_state))?,
            system_data: row.system_data.0,
            generation: row.generation,
            operation: row.operation_id.map(OperationId::from_uuid),
            next_operation: row.next_operation_id.map(OperationId::from_uuid),
            previous: row.previous_properties.map(|p| PreviousSpec {
                properties: p.0,
                secret: row.previous_secret.map(Sealed),
                spec: row.previous_spec.map(|s| s.0),
            }),
            spec: row.spec.map(|s| s.0),
        })
    }
}

/// The persisted columns of a linker, ready to bind.
pub(crate) struct LinkerValues {
    pub id: Uuid,
    pub scope_key: String,
    pub name_key: String,
    pub scope: String,
    pub name: String,
    pub properties: Json<Value>,
    pub secret: Option<Vec<u8>>,
    pub key_naming: Json<Value>,
    pub provisioning_state: &'static str,
    pub system_data: Json<Value>,
    pub generation: i64,
    pub operation_id: Option<Uuid>,
    pub spec: Option<Json<Value>>,
}

impl LinkerValues {
    pub fn of(l: &Linker) -> Self {
        LinkerValues {
            id: l.id.as_uuid(),
            scope_key: l.at.scope.key().to_string(),
            name_key: l.at.name.key(),
            scope: l.at.scope.as_str().to_string(),
            name: l.at.name.as_str().to_string(),
            properties: Json(to_json(&l.properties)),
            secret: l.secret.as_ref().map(|s| s.0.clone()),
            key_naming: Json(to_json(&l.key_naming)),
            provisioning_state: l.provisioning_state.as_str(),
            system_data: Json(to_json(&l.system_data)),
            generation: l.generation,
            operation_id: l.operation.map(|o| o.as_uuid()),
            spec: l.spec.clone().map(Json),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OperationRow {
    pub id: Uuid,
    pub kind: String,
    pub linker_id: Uuid,
    pub subscription: String,
    pub resource_id: String,
    pub status: String,
    pub error: Option<Json<Value>>,
    pub result: Option<Json<Value>>,
    pub start_time: chrono::DateTime<chrono::Utc>,
    pub end_time: Option<chrono::DateTime<chrono::Utc>>,
    pub saga_state: String,
    pub saga_error: Option<Json<Value>>,
    pub undo_error: Option<Json<Value>>,
}

/// Reads an [`OperationRow`]: the operation, its saga's state and error, and the saga's latest
/// undo failure. Both backends speak this SQL; append `where o.id = <param>`.
pub(crate) const OPERATION_SELECT: &str = "select o.id, o.kind, o.linker_id, o.subscription, o.resource_id,
        o.status, o.error, o.result, o.start_time, o.end_time, s.state as saga_state, s.error as saga_error,
        (select e.data from saga_event e where e.saga_id = s.id and e.kind = 'undo_failed'
         order by e.created_at desc limit 1) as undo_error
    from operation o join saga s on s.id = o.saga_id";

/// A stored [`StepError`] as a client-facing error detail.
fn step_error_detail(what: &str, value: Value) -> Result<ErrorDetail, StoreError> {
    let e = from_json::<StepError>(what, value)?;
    Ok(ErrorDetail::new(e.code, e.message))
}

impl TryFrom<OperationRow> for Operation {
    type Error = StoreError;
    fn try_from(row: OperationRow) -> Result<Self, StoreError> {
        let stuck = row.saga_state == tether_saga::SagaState::Stuck.as_str();
        let (error, stuck) = if stuck {
            (
                row.saga_error
                    .map(|e| step_error_detail("saga.error", e.0))
                    .transpose()?,
                row.undo_error
                    .map(|e| step_error_detail("saga_event.data", e.0))
                    .transpose()?,
            )
        } else {
            let error = row
                .error
                .map(|e| from_json::<ErrorDetail>("operation.error", e.0))
                .transpose()?;
            (error, None)
        };
        Ok(Operation {
            id: OperationId::from_uuid(row.id),
            kind: OperationKind::parse(&row.kind)
                .ok_or_else(|| corrupt("operation.kind", &row.kind))?,
            linker_id: LinkerId::from_uuid(row.linker_id),
            subscription: row.subscription,
            resource_id: row.resource_id,
            status: OperationState::parse(&row.status)
                .ok_or_else(|| corrupt("operation.status", &row.status))?,
            start_time: row.start_time,
            end_time: row.end_time,
            error,
            stuck,
            result: row.result.map(|r| r.0),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SagaRow {
    pub id: Uuid,
    pub name: String,
    pub params: Json<Value>,
    pub state: String,
    pub owner: String,
    pub generation: i64,
    pub cancel_requested: bool,
    pub error: Option<Json<Value>>,
}

pub(crate) const SAGA_COLUMNS: &str =
    "id, name, params, state, owner, generation, cancel_requested, error";

impl TryFrom<SagaRow> for tether_saga::SagaRecord {
    type Error = StoreError;
    fn try_from(row: SagaRow) -> Result<Self, StoreError> {
        Ok(tether_saga::SagaRecord {
            id: tether_model::ids::SagaId::from_uuid(row.id),
            name: row.name,
            params: row.params.0,
            state: tether_saga::SagaState::parse(&row.state)
                .ok_or_else(|| corrupt("saga.state", &row.state))?,
            lease: tether_saga::Lease {
                owner: tether_model::ids::InstanceId::from_stored(row.owner),
                generation: row.generation,
            },
            cancel_requested: row.cancel_requested,
            error: row
                .error
                .map(|e| from_json::<StepError>("saga.error", e.0))
                .transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    pub step: String,
    pub kind: String,
    pub data: Option<Json<Value>>,
}

impl TryFrom<EventRow> for SagaEvent {
    type Error = StoreError;
    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        Ok(SagaEvent {
            kind: EventKind::parse(&row.kind)
                .ok_or_else(|| corrupt("saga_event.kind", &row.kind))?,
            step: row.step,
            data: row.data.map(|d| d.0),
        })
    }
}

/// What ending a saga does to its operation and linker, decided once for both backends.
pub(crate) struct Completion {
    pub status: OperationState,
    pub error: Option<Json<Value>>,
    pub result: Option<Json<Value>>,
    pub linker: LinkerEffect,
    /// What a successful create or update applied, to keep with the linker.
    pub applied: Option<AppliedRows>,
}

/// A linker's applied record (`{"items": [{"key", "created", …}]}`, written by the
/// application's last step as `applied`) and its items' keys and created flags, for
/// `linker_item`.
pub(crate) struct AppliedRows {
    pub record: Json<Value>,
    pub keys: Vec<String>,
    pub created: Vec<bool>,
}

impl AppliedRows {
    /// The record in a saga's final output, if it carries one.
    fn of(output: &Value) -> Result<Option<Self>, StoreError> {
        let Some(record) = output.get("applied") else {
            return Ok(None);
        };
        let items = record
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| corrupt("applied", "no items"))?;
        let mut keys = Vec::with_capacity(items.len());
        let mut created = Vec::with_capacity(items.len());
        for item in items {
            let key = item.get("key").and_then(Value::as_str);
            let flag = item.get("created").and_then(Value::as_bool);
            let (Some(key), Some(flag)) = (key, flag) else {
                return Err(corrupt("applied", "an item without key or created"));
            };
            keys.push(key.to_string());
            created.push(flag);
        }
        Ok(Some(AppliedRows {
            record: Json(record.clone()),
            keys,
            created,
        }))
    }
}

/// The linker side of a completion.
#[derive(Clone, Copy)]
pub(crate) enum LinkerEffect {
    /// Validation: the linker is not touched.
    None,
    /// Set the provisioning state and clear the running operation.
    Settle(ProvisioningState),
    /// Like `Settle`, and put back the spec an update replaced.
    Revert(ProvisioningState),
    /// A successful delete: remove the row.
    Remove,
}

impl LinkerEffect {
    /// Its name and the provisioning state it sets, as `tether_complete_operation` takes them.
    pub fn parts(self) -> (&'static str, Option<&'static str>) {
        match self {
            LinkerEffect::None => ("none", None),
            LinkerEffect::Settle(state) => ("settle", Some(state.as_str())),
            LinkerEffect::Revert(state) => ("revert", Some(state.as_str())),
            LinkerEffect::Remove => ("remove", None),
        }
    }
}

impl Completion {
    /// The completion of `outcome` for every operation kind, by the kind's persisted name, for
    /// a store that learns the kind only inside its final statement (Postgres's
    /// `tether_end_saga`): `{kind: {status, error?, result?, effect, state?, applied?, keys?,
    /// created?}}`. A kind whose completion cannot be built (the output is corrupt for it) is
    /// left out, so ending an operation of that kind fails as [`Completion::of`] would.
    pub fn by_kind(outcome: &SagaOutcome) -> Value {
        let mut all = serde_json::Map::new();
        for kind in OperationKind::ALL {
            let Ok(done) = Completion::of(kind, outcome) else {
                continue;
            };
            let (effect, state) = done.linker.parts();
            let mut one = serde_json::json!({"status": done.status.as_str(), "effect": effect});
            let (applied, keys, created) = match done.applied {
                Some(a) => (
                    Some(a.record.0),
                    Some(a.keys.into()),
                    Some(a.created.into()),
                ),
                None => (None, None, None),
            };
            let fields = [
                ("error", done.error.map(|e| e.0)),
                ("result", done.result.map(|r| r.0)),
                ("state", state.map(Value::from)),
                ("applied", applied),
                ("keys", keys),
                ("created", created),
            ];
            for (name, value) in fields {
                if let Some(value) = value {
                    one[name] = value;
                }
            }
            all.insert(kind.as_str().to_string(), one);
        }
        Value::Object(all)
    }

    pub fn of(kind: OperationKind, outcome: &SagaOutcome) -> Result<Self, StoreError> {
        let (status, error) = match outcome {
            SagaOutcome::Succeeded(_) => (OperationState::Succeeded, None),
            SagaOutcome::Failed(e) => (OperationState::Failed, Some(error_json(e))),
            SagaOutcome::Canceled(e) => (OperationState::Canceled, Some(error_json(e))),
        };
        let failed_state = if status == OperationState::Canceled {
            ProvisioningState::Canceled
        } else {
            ProvisioningState::Failed
        };
        let linker = match (kind, status) {
            (OperationKind::Validate, _) => LinkerEffect::None,
            (OperationKind::Delete, OperationState::Succeeded) => LinkerEffect::Remove,
            (_, OperationState::Succeeded) => LinkerEffect::Settle(ProvisioningState::Succeeded),
            (OperationKind::Update, _) => LinkerEffect::Revert(failed_state),
            _ => LinkerEffect::Settle(failed_state),
        };
        let applied = match (&linker, outcome) {
            (LinkerEffect::Settle(_), SagaOutcome::Succeeded(output)) => AppliedRows::of(output)?,
            _ => None,
        };
        // Only actions have a result body; a create's last output is internal.
        let result = match (kind, outcome) {
            (OperationKind::Validate, SagaOutcome::Succeeded(output)) => Some(Json(output.clone())),
            _ => None,
        };
        Ok(Completion {
            status,
            error,
            result,
            linker,
            applied,
        })
    }
}

fn error_json(e: &StepError) -> Json<Value> {
    Json(to_json(&ErrorDetail::new(
        e.code.clone(),
        e.message.clone(),
    )))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("model types serialize to json")
}

pub(crate) fn from_json<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| corrupt(what, e))
}

/// A store failure as the saga engine sees it.
pub(crate) fn backend(e: impl Into<StoreError>) -> tether_saga::SagaStoreError {
    tether_saga::SagaStoreError::Backend(Box::new(e.into()))
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

/// Step errors as stored with a saga.
pub(crate) fn step_error_json(e: &StepError) -> Json<Value> {
    Json(to_json(e))
}
