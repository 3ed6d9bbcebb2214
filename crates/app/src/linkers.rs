//! Linker use-cases: read, list, create or replace, patch, delete, list configurations and
//! validate. Writes check everything they can synchronously, then start an operation (linker
//! change + operation record + saga) in one store transaction and hand the saga to the
//! executor; the HTTP layer answers `201`/`202` with the operation's status URL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::Value;
use tether_adapters::Call;
use tether_model::catalog;
use tether_model::configuration::{self, KeyNaming, Password};
use tether_model::ids::{LinkerId, LinkerRef, OperationId, ResourceId};
use tether_model::linker::{AuthInfo, Linker, LinkerProperties, Sealed, SystemData};
use tether_model::operation::{Operation, OperationKind, ProvisioningState};
use tether_model::{Error, ErrorKind};
use tether_store::{LinkerChange, OperationBegin, StoreError};

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
        let more = linkers.len() > limit as usize;
        linkers.truncate(limit as usize);
        let next = match linkers.last() {
            Some(last) if more => Some(self.page_token(scope, last)),
            _ => None,
        };
        Ok(Page { linkers, next })
    }

    /// The `$skipToken` of the page that continues after `last` in `scope`'s list: its
    /// lower-cased name, sealed and bound to the scope.
    pub fn page_token(&self, scope: &ResourceId, last: &Linker) -> String {
        let owner = format!("skiptoken:{}", scope.key());
        let sealed = self
            .secrets
            .seal(last.at.name.key().as_bytes(), owner.as_bytes());
        URL_SAFE_NO_PAD.encode(sealed.0)
    }

    /// PUT: creates the linker, or replaces an idle one's spec. A retry of the request that
    /// started the running operation gets that operation, whichever replica answers and
    /// however the first attempt ended (see [`App::write`]).
    pub async fn linker_put(
        &self,
        at: LinkerRef,
        props: LinkerProperties,
        caller: &Caller,
    ) -> Result<Accepted, Error> {
        for _ in 0..RACE_ATTEMPTS {
            let existing = self.store.linker_get(&at).await?;
            if let Some(accepted) = self.write(&at, existing, props.clone(), caller).await? {
                return Ok(accepted);
            }
        }
        Err(raced(&at))
    }

    /// PATCH: merges `patch` (the request's `properties`, RFC 7396) into the stored spec and
    /// applies the result like a PUT.
    pub async fn linker_patch(
        &self,
        at: LinkerRef,
        patch: &Value,
        caller: &Caller,
    ) -> Result<Accepted, Error> {
        for _ in 0..RACE_ATTEMPTS {
            let existing = self.linker_get(&at).await?;
            let mut merged = serde_json::to_value(&existing.properties)
                .map_err(|e| Error::internal("linker properties do not serialize", e))?;
            tether_model::merge::merge_patch(&mut merged, patch);
            let props = LinkerProperties::from_json(merged)?;
            if let Some(accepted) = self.write(&at, Some(existing), props, caller).await? {
                return Ok(accepted);
            }
        }
        Err(raced(&at))
    }

    /// DELETE: starts removing the linker's configuration and network rules; `None` when there
    /// is no such linker (ARM's `204`). A delete during a create or an update cancels it (it
    /// unwinds at its next step boundary) and runs after it; a repeated delete returns the
    /// operation already running or queued.
    pub async fn linker_delete(&self, at: LinkerRef) -> Result<Option<OperationId>, Error> {
        for _ in 0..RACE_ATTEMPTS {
            if let Some(outcome) = self.delete_once(&at).await? {
                return Ok(outcome);
            }
        }
        Err(raced(&at))
    }

    /// One attempt of a delete: `None` when another write got in between the read and the
    /// commit (the caller reads again).
    async fn delete_once(&self, at: &LinkerRef) -> Result<Option<Option<OperationId>>, Error> {
        let Some(existing) = self.store.linker_get(at).await? else {
            return Ok(Some(None));
        };
        let change = match (existing.operation, existing.next_operation) {
            (_, Some(queued)) => return Ok(Some(Some(queued))),
            (Some(running), None) if existing.provisioning_state == ProvisioningState::Deleting => {
                return Ok(Some(Some(running)));
            }
            (Some(_), None) => LinkerChange::CancelAndDelete {
                id: existing.id,
                expected_generation: existing.generation,
            },
            (None, None) => LinkerChange::Delete {
                id: existing.id,
                expected_generation: existing.generation,
            },
        };
        let operation = Operation::start(OperationKind::Delete, &existing);
        let id = operation.id;
        let params = LinkerParams {
            linker_id: existing.id,
            linker: existing.at.clone(),
            before: self.specs_held(&existing)?,
            after: None,
        };
        let begun = self
            .begin(LINKER_DELETE, &params, change, operation)
            .await?;
        Ok(begun.then_some(Some(id)))
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
        spec.configuration_request()
            .render(&spec.endpoint(&facts), Password::Redact)
    }

    /// `validateLinker`: starts a validation of the linker; the result arrives with the
    /// operation.
    pub async fn linker_validate(&self, at: &LinkerRef) -> Result<OperationId, Error> {
        let linker = self.linker_get(at).await?;
        let spec = self.spec_of(&linker)?;
        let operation = Operation::start(OperationKind::Validate, &linker);
        let id = operation.id;
        let params = ValidateParams {
            linker_id: linker.id,
            linker: linker.at.clone(),
            spec,
        };
        if !self
            .begin(LINKER_VALIDATE, &params, LinkerChange::Nothing, operation)
            .await?
        {
            return Err(raced(at));
        }
        Ok(id)
    }

    /// An operation by id, if it exists.
    pub async fn operation_get(&self, id: OperationId) -> Result<Option<Operation>, Error> {
        Ok(self.store.operation_get(id).await?)
    }

    /// One attempt of a PUT or PATCH against `existing` as just read: `None` when another
    /// write committed in between (the caller reads again; an identical retry then finds its
    /// own operation).
    async fn write(
        &self,
        at: &LinkerRef,
        existing: Option<Linker>,
        mut props: LinkerProperties,
        caller: &Caller,
    ) -> Result<Option<Accepted>, Error> {
        props.provisioning_state = None;
        let new_secret = props.take_secret();
        if let Some(l) = &existing {
            if let Some(running) = l.operation {
                // A client retrying the request that started the running operation gets that
                // operation back; anything else waits for it to finish.
                let retry = l.next_operation.is_none()
                    && matches!(
                        l.provisioning_state,
                        ProvisioningState::Accepted | ProvisioningState::Updating
                    )
                    && l.properties == props
                    && self.same_secret(l, new_secret.as_ref());
                if retry {
                    return Ok(Some(Accepted {
                        linker: l.clone(),
                        operation: running,
                        created: l.provisioning_state == ProvisioningState::Accepted,
                    }));
                }
                return Err(busy(l, running));
            }
        }
        let linker_id = existing.as_ref().map_or_else(LinkerId::new, |l| l.id);
        let secret = match new_secret {
            Some(s) => Some(
                self.secrets
                    .seal_str(s.expose(), linker_id.as_uuid().as_bytes()),
            ),
            None => existing.as_ref().and_then(|l| kept_secret(l, &props)),
        };
        let naming = match &existing {
            Some(l) => l.key_naming.clone(),
            None => {
                let others = self.store.linkers_list(&at.scope, None, MAX_PAGE).await?;
                self.naming_for(at, &props, &others)
            }
        };
        let after = spec::check(at, &props, secret.clone(), naming.clone())?;
        let keys = after.written_keys();

        let now = Utc::now();
        let modified = |created: Option<&SystemData>| SystemData {
            created_by: created.map_or_else(|| caller.name.clone(), |c| c.created_by.clone()),
            created_by_type: created
                .map_or_else(|| caller.kind.clone(), |c| c.created_by_type.clone()),
            created_at: created.map_or(now, |c| c.created_at),
            last_modified_by: caller.name.clone(),
            last_modified_by_type: caller.kind.clone(),
            last_modified_at: now,
        };
        let (kind, saga, state, before, generation) = match &existing {
            None => (
                OperationKind::Create,
                LINKER_CREATE,
                ProvisioningState::Accepted,
                Vec::new(),
                1,
            ),
            Some(l) => (
                OperationKind::Update,
                LINKER_UPDATE,
                ProvisioningState::Updating,
                self.specs_held(l)?,
                l.generation + 1,
            ),
        };
        let mut linker = Linker {
            id: linker_id,
            at: at.clone(),
            properties: props,
            secret,
            key_naming: naming,
            provisioning_state: state,
            system_data: modified(existing.as_ref().map(|l| &l.system_data)),
            generation,
            operation: None,
            next_operation: None,
            previous: None,
        };
        let operation = Operation::start(kind, &linker);
        linker.operation = Some(operation.id);
        let params = LinkerParams {
            linker_id,
            linker: linker.at.clone(),
            before,
            after: Some(after),
        };
        let change = match &existing {
            None => LinkerChange::Create {
                linker: linker.clone(),
                keys,
            },
            Some(l) => LinkerChange::Update {
                linker: linker.clone(),
                expected_generation: l.generation,
                keys,
            },
        };
        let operation_id = operation.id;
        if !self.begin(saga, &params, change, operation).await? {
            return Ok(None);
        }
        Ok(Some(Accepted {
            linker,
            operation: operation_id,
            created: existing.is_none(),
        }))
    }

    /// Stores the operation with its saga in one transaction, then starts the saga here —
    /// unless it is queued behind another saga on the same source (sagas that change a
    /// source run one at a time), which the executor adopts when its turn comes. False when
    /// the linker changed since it was read (another write committed first).
    ///
    /// The commit and the start run on a task of their own: a client that gives up (its
    /// request future dropped) cannot leave a committed saga waiting for its lease to expire.
    async fn begin(
        &self,
        saga: &str,
        params: &impl serde::Serialize,
        change: LinkerChange,
        operation: Operation,
    ) -> Result<bool, Error> {
        // Validations change nothing: they need no place in the source's queue.
        let chain = match change {
            LinkerChange::Nothing => None,
            _ => Some(source_chain(&operation)),
        };
        let params = serde_json::to_value(params)
            .map_err(|e| Error::internal("saga params do not serialize", e))?;
        let name = saga;
        let saga = self.executor.new_saga(name, params, chain);
        let saga_id = saga.id;
        let store = self.store.clone();
        let executor = self.executor.clone();
        let begin = OperationBegin {
            change,
            operation,
            saga,
        };
        let name = name.to_string();
        let started = tokio::spawn(async move {
            let begun = store.operation_begin(&begin).await?;
            tether_saga::crash_point(&name, "begin", "after");
            if !begun.queued {
                executor.start(saga_id);
            }
            Ok::<_, StoreError>(())
        });
        match started.await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(StoreError::LinkerExists | StoreError::Conflict(_))) => Ok(false),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(Error::internal("starting the operation failed", e)),
        }
    }

    /// The specs the backend may hold for a stored linker: its own, and while an update runs
    /// the one the update replaced (it comes back if the update fails).
    fn specs_held(&self, linker: &Linker) -> Result<Vec<ConnectionSpec>, Error> {
        let mut specs = vec![self.spec_of(linker)?];
        if let Some(previous) = &linker.previous {
            specs.push(spec::check(
                &linker.at,
                &previous.properties,
                previous.secret.clone(),
                linker.key_naming.clone(),
            )?);
        }
        Ok(specs)
    }

    /// True when `secret` is the linker's stored one (or absent: the stored one is kept).
    fn same_secret(&self, linker: &Linker, secret: Option<&tether_model::linker::Secret>) -> bool {
        let Some(secret) = secret else { return true };
        let stored = linker.secret.as_ref().and_then(|s| {
            self.secrets
                .open_str(s, linker.id.as_uuid().as_bytes())
                .ok()
        });
        stored.is_some_and(|s| s.expose_secret() == secret.expose())
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

fn busy(linker: &Linker, running: OperationId) -> Error {
    Error::conflict(
        "AnotherOperationInProgress",
        format!(
            "operation '{running}' is in progress on linker '{}'; retry when it has finished",
            linker.at.name
        ),
    )
}

/// The chain of a linker operation's saga: its source (whose settings are read, merged and
/// written back, so two sagas must not interleave there).
fn source_chain(operation: &Operation) -> String {
    let (scope, _) = operation
        .resource_id
        .rsplit_once("/providers/Microsoft.ServiceLinker/")
        .expect("a linker id contains the provider");
    scope.to_ascii_lowercase()
}

/// How many times a write reads and tries again when another write commits in between.
const RACE_ATTEMPTS: usize = 3;

fn raced(at: &LinkerRef) -> Error {
    Error::conflict(
        "AnotherOperationInProgress",
        format!(
            "linker '{}' keeps changing concurrently; retry the request",
            at.name
        ),
    )
}

fn not_found(at: &LinkerRef) -> Error {
    Error::resource_not_found(
        tether_model::ids::LINKER_TYPE,
        at.name.as_str(),
        at.scope.as_str(),
    )
}
