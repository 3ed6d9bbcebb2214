//! Linker use-cases: read, list, create or replace, patch, delete, list configurations and
//! validate. Writes check everything they can synchronously, then start an operation (linker
//! change + operation record + saga) in one store transaction and hand the saga to the
//! executor; the HTTP layer answers `201`/`202` with the operation's status URL.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde_json::Value;
use tether_adapters::Call;
use tether_model::catalog;
use tether_model::configuration::{self, Endpoint, KeyNaming, Password};
use tether_model::ids::{LinkerId, LinkerRef, OperationId, ResourceId};
use tether_model::linker::{AuthInfo, Linker, LinkerProperties, Sealed, SystemData};
use tether_model::operation::{Operation, OperationKind, OperationState, ProvisioningState};
use tether_model::{Error, ErrorKind};
use tether_store::{LinkerChange, OperationBegin};

use crate::sagas::{
    LINKER_CREATE, LINKER_DELETE, LINKER_UPDATE, LINKER_VALIDATE, LinkerParams, ValidateParams,
};
use crate::spec::{self, ConnectionSpec};
use crate::{App, Caller};

/// A write that was accepted and is running.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The linker as stored now (non-terminal provisioning state).
    pub linker: Linker,
    /// The operation doing the work.
    pub operation: OperationId,
    /// True when the linker did not exist before.
    pub created: bool,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    /// The linkers on this page.
    pub linkers: Vec<Linker>,
    /// An opaque token for the next page, if there is one.
    pub next: Option<String>,
}

/// The largest page a list returns.
pub const MAX_PAGE: u32 = 1000;
/// The page size when the caller does not say.
pub const DEFAULT_PAGE: u32 = 100;

impl App {
    /// A linker, or `404 ResourceNotFound`.
    pub async fn linker_get(&self, at: &LinkerRef) -> Result<Linker, Error> {
        self.store
            .linker_get(at)
            .await?
            .ok_or_else(|| not_found(at))
    }

    /// One page of a scope's linkers, by name. `token` is the `next` of the previous page;
    /// it is sealed and bound to the scope, so it cannot be forged or replayed elsewhere.
    pub async fn linkers_list(
        &self,
        scope: &ResourceId,
        token: Option<&str>,
        top: Option<u32>,
    ) -> Result<Page, Error> {
        let limit = top.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let owner = format!("skiptoken:{}", scope.key());
        let after = token
            .map(|t| {
                let bytes = URL_SAFE_NO_PAD.decode(t).ok().map(Sealed);
                let opened = bytes.and_then(|b| self.secrets.open(&b, owner.as_bytes()).ok());
                opened
                    .and_then(|plain| String::from_utf8(plain).ok())
                    .ok_or_else(|| {
                        Error::invalid(
                            "InvalidParameter",
                            "the $skipToken is invalid or belongs to another list",
                        )
                        .with_target("$skipToken")
                    })
            })
            .transpose()?;
        let mut linkers = self
            .store
            .linkers_list(scope, after.as_deref(), limit + 1)
            .await?;
        let next = if linkers.len() > limit as usize {
            linkers.truncate(limit as usize);
            let last = linkers
                .last()
                .expect("a full page has a last item")
                .at
                .name
                .key();
            Some(URL_SAFE_NO_PAD.encode(self.secrets.seal(last.as_bytes(), owner.as_bytes()).0))
        } else {
            None
        };
        Ok(Page { linkers, next })
    }

    /// PUT: creates the linker, or replaces an idle one's spec.
    pub async fn linker_put(
        &self,
        at: LinkerRef,
        props: LinkerProperties,
        caller: &Caller,
    ) -> Result<Accepted, Error> {
        let existing = self.store.linker_get(&at).await?;
        self.write(at, existing, props, caller).await
    }

    /// PATCH: merges `patch` (the request's `properties`, RFC 7396) into the stored spec and
    /// applies the result like a PUT.
    pub async fn linker_patch(
        &self,
        at: LinkerRef,
        patch: &Value,
        caller: &Caller,
    ) -> Result<Accepted, Error> {
        let existing = self.linker_get(&at).await?;
        let mut merged =
            serde_json::to_value(&existing.properties).expect("linker properties serialize");
        tether_model::merge::merge_patch(&mut merged, patch);
        let props = LinkerProperties::from_json(merged)?;
        self.write(at, Some(existing), props, caller).await
    }

    /// DELETE: starts removing the linker's configuration and network rules; `None` when there
    /// is no such linker (ARM's `204`).
    pub async fn linker_delete(&self, at: LinkerRef) -> Result<Option<OperationId>, Error> {
        let Some(existing) = self.store.linker_get(&at).await? else {
            return Ok(None);
        };
        ensure_idle(&existing)?;
        let before = self.spec_of(&existing)?;
        let operation = new_operation(OperationKind::Delete, &existing);
        let id = operation.id;
        let params = LinkerParams {
            linker_id: existing.id,
            linker: existing.at.clone(),
            before: Some(before),
            after: None,
        };
        let change = LinkerChange::Delete {
            id: existing.id,
            expected_generation: existing.generation,
        };
        self.begin(LINKER_DELETE, &params, change, operation)
            .await?;
        Ok(Some(id))
    }

    /// `listConfigurations`: the entries the connection provides to its source, with secrets
    /// replaced by a marker (they are write-only).
    pub async fn linker_configurations(
        &self,
        at: &LinkerRef,
    ) -> Result<Vec<configuration::Entry>, Error> {
        let linker = self.linker_get(at).await?;
        let spec = self.spec_of(&linker)?;
        let adapter = self.adapters.target(spec.target_spec()).ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "TargetUnsupported",
                "no adapter is configured for this target type",
            )
        })?;
        let facts = adapter
            .facts(&Call::correlated(linker.id), &spec.target)
            .await
            .map_err(|e| match e.is_not_found() {
                true => Error::new(
                    ErrorKind::NotFound,
                    "TargetNotFound",
                    format!(
                        "the target resource '{}' of the linker was not found",
                        spec.target
                    ),
                ),
                false => Error::unavailable("reading the target failed", e),
            })?;
        let endpoint = Endpoint {
            host: facts.host,
            port: facts.port,
            database: facts.database,
            user: spec.user.clone(),
        };
        spec.configuration_request()
            .render(&endpoint, Password::Redact)
    }

    /// `validateLinker`: starts a validation of the linker; the result arrives with the
    /// operation.
    pub async fn linker_validate(&self, at: &LinkerRef) -> Result<OperationId, Error> {
        let linker = self.linker_get(at).await?;
        let spec = self.spec_of(&linker)?;
        let operation = new_operation(OperationKind::Validate, &linker);
        let id = operation.id;
        let params = ValidateParams {
            linker_id: linker.id,
            linker: linker.at.clone(),
            spec,
        };
        self.begin(LINKER_VALIDATE, &params, LinkerChange::Nothing, operation)
            .await?;
        Ok(id)
    }

    /// An operation by id, if it exists.
    pub async fn operation_get(&self, id: OperationId) -> Result<Option<Operation>, Error> {
        Ok(self.store.operation_get(id).await?)
    }

    async fn write(
        &self,
        at: LinkerRef,
        existing: Option<Linker>,
        mut props: LinkerProperties,
        caller: &Caller,
    ) -> Result<Accepted, Error> {
        if let Some(l) = &existing {
            ensure_idle(l)?;
        }
        let linker_id = existing.as_ref().map_or_else(LinkerId::new, |l| l.id);
        let secret = match props.take_secret() {
            Some(s) => Some(
                self.secrets
                    .seal_str(s.expose(), linker_id.as_uuid().as_bytes()),
            ),
            None => existing.as_ref().and_then(|l| kept_secret(l, &props)),
        };
        let others: Vec<Linker> = self
            .store
            .linkers_list(&at.scope, None, MAX_PAGE)
            .await?
            .into_iter()
            .filter(|l| l.id != linker_id)
            .collect();
        let naming = match &existing {
            Some(l) => l.key_naming.clone(),
            None => self.naming_for(&at, &props, &others),
        };
        let after = spec::check(&at, &props, secret.clone(), naming.clone())?;
        self.ensure_no_key_conflict(&after, &others)?;

        let now = Utc::now();
        let (kind, saga, state, before, system_data, generation) = match &existing {
            None => {
                let system_data = SystemData {
                    created_by: caller.name.clone(),
                    created_by_type: caller.kind.clone(),
                    created_at: now,
                    last_modified_by: caller.name.clone(),
                    last_modified_by_type: caller.kind.clone(),
                    last_modified_at: now,
                };
                (
                    OperationKind::Create,
                    LINKER_CREATE,
                    ProvisioningState::Accepted,
                    None,
                    system_data,
                    1,
                )
            }
            Some(l) => {
                let system_data = SystemData {
                    last_modified_by: caller.name.clone(),
                    last_modified_by_type: caller.kind.clone(),
                    last_modified_at: now,
                    ..l.system_data.clone()
                };
                let before = self.spec_of(l).ok();
                (
                    OperationKind::Update,
                    LINKER_UPDATE,
                    ProvisioningState::Updating,
                    before,
                    system_data,
                    l.generation + 1,
                )
            }
        };
        let mut linker = Linker {
            id: linker_id,
            at,
            properties: props,
            secret,
            key_naming: naming,
            provisioning_state: state,
            system_data,
            generation,
            operation: None,
        };
        let operation = new_operation(kind, &linker);
        linker.operation = Some(operation.id);
        let params = LinkerParams {
            linker_id,
            linker: linker.at.clone(),
            before,
            after: Some(after),
        };
        let change = match &existing {
            None => LinkerChange::Create(linker.clone()),
            Some(l) => LinkerChange::Update {
                linker: linker.clone(),
                expected_generation: l.generation,
            },
        };
        let operation_id = operation.id;
        self.begin(saga, &params, change, operation).await?;
        Ok(Accepted {
            linker,
            operation: operation_id,
            created: existing.is_none(),
        })
    }

    /// Stores the operation with its saga in one transaction, then starts the saga here.
    async fn begin(
        &self,
        saga: &str,
        params: &impl serde::Serialize,
        change: LinkerChange,
        operation: Operation,
    ) -> Result<(), Error> {
        let params = serde_json::to_value(params).expect("saga params serialize");
        let saga = self.executor.new_saga(saga, params);
        let saga_id = saga.id;
        self.store
            .operation_begin(&OperationBegin {
                change,
                operation,
                saga,
            })
            .await?;
        self.executor.start(saga_id);
        Ok(())
    }

    /// The spec a stored linker was accepted with.
    fn spec_of(&self, linker: &Linker) -> Result<ConnectionSpec, Error> {
        spec::check(
            &linker.at,
            &linker.properties,
            linker.secret.clone(),
            linker.key_naming.clone(),
        )
    }

    /// The first connection of a target type on a source gets plain key names; further ones
    /// carry their own name (`AZURE_POSTGRESQL_<NAME>_CONNECTIONSTRING`).
    fn naming_for(&self, at: &LinkerRef, props: &LinkerProperties, others: &[Linker]) -> KeyNaming {
        let prefix_of = |p: &LinkerProperties| {
            let id = match &p.target_service {
                Some(tether_model::linker::TargetService::AzureResource(r)) => r.id.as_deref()?,
                _ => return None,
            };
            catalog::target_for(&ResourceId::parse(id).ok()?).map(|t| t.config_prefix)
        };
        let mine = prefix_of(props);
        if mine.is_some() && others.iter().any(|o| prefix_of(&o.properties) == mine) {
            KeyNaming::named(at.name.as_str())
        } else {
            KeyNaming::Plain
        }
    }

    /// Two linkers on one source must not write the same key (Spring property names, or
    /// renames, could collide).
    fn ensure_no_key_conflict(
        &self,
        spec: &ConnectionSpec,
        others: &[Linker],
    ) -> Result<(), Error> {
        let mine: BTreeSet<String> = spec
            .written_keys()
            .into_iter()
            .map(|k| k.to_ascii_uppercase())
            .collect();
        for other in others {
            let Ok(theirs) = self.spec_of(other) else {
                continue;
            };
            if let Some(key) = theirs
                .written_keys()
                .into_iter()
                .find(|k| mine.contains(&k.to_ascii_uppercase()))
            {
                return Err(Error::conflict(
                    "ConfigurationKeyConflict",
                    format!(
                        "the configuration key '{key}' is already written by linker '{}' on this source; rename it with configurationInfo.customizedKeys",
                        other.at.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A PUT or PATCH may leave out the (write-only) password when it keeps the auth type and the
/// user name; the stored secret is then kept. A new user name needs a new password.
fn kept_secret(existing: &Linker, props: &LinkerProperties) -> Option<Sealed> {
    match (&existing.properties.auth_info, &props.auth_info) {
        (Some(AuthInfo::Secret(old)), Some(AuthInfo::Secret(new))) if old.name == new.name => {
            existing.secret.clone()
        }
        _ => None,
    }
}

fn ensure_idle(linker: &Linker) -> Result<(), Error> {
    match linker.operation {
        Some(op) => Err(Error::conflict(
            "AnotherOperationInProgress",
            format!(
                "operation '{op}' is in progress on linker '{}'; retry when it has finished",
                linker.at.name
            ),
        )),
        None => Ok(()),
    }
}

fn new_operation(kind: OperationKind, linker: &Linker) -> Operation {
    Operation {
        id: OperationId::new(),
        kind,
        linker_id: linker.id,
        subscription: linker.at.scope.subscription().to_ascii_lowercase(),
        resource_id: linker.at.resource_id(),
        status: OperationState::InProgress,
        start_time: Utc::now(),
        end_time: None,
        error: None,
        result: None,
    }
}

fn not_found(at: &LinkerRef) -> Error {
    Error::resource_not_found(
        tether_model::ids::LINKER_TYPE,
        at.name.as_str(),
        at.scope.as_str(),
    )
}
