//! Linker use-cases: read, list, create or replace, patch, delete, list configurations and
//! validate. Writes check everything they can synchronously, then start an operation (linker
//! change + operation record + saga) in one store transaction and hand the saga to the
//! executor; the HTTP layer answers `201`/`202` with the operation's status URL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::Value;
use tether_adapters::{Call, TargetRef};
use tether_model::authz::AuditRecord;
use tether_model::configuration::{self, KeyNaming, Reveal};
use tether_model::facts::Facts;
use tether_model::ids::{LinkerId, LinkerRef, OperationId, ResourceId};
use tether_model::linker::{
    AuthInfo, ConfigurationInfo, Linker, LinkerProperties, Sealed, Secret, SystemData,
    TargetService,
};
use tether_model::operation::{Operation, OperationKind, ProvisioningState};
use tether_model::{Error, ErrorKind};
use tether_store::{LinkerChange, OperationBegin, StoreError};

use crate::applied::{Applied, Item};
use crate::auth::AuditEntry;
use crate::sagas::steps::{IdentityOut, connection_facts};
use crate::sagas::{
    LINKER_CREATE, LINKER_DELETE, LINKER_UPDATE, LINKER_VALIDATE, LinkerParams, ValidateParams, v1,
};
use crate::spec::{self, Auth, ConnectionSpec, SecretInput, secret_owner};
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
    /// True when the request's audit record was stored with the operation (see
    /// [`AuditAccepted`]).
    pub audited: bool,
}

/// Builds the audit record of a write about to be accepted, from what it is about to accept
/// (`audited` not yet set), so that the record commits with the operation. Given by the HTTP
/// layer, which knows the request (`None`: it records nothing for it).
pub type AuditAccepted<'a> = &'a (dyn Fn(&Accepted) -> Option<AuditEntry> + Send + Sync);

/// Decides whether the caller may use the resources a connection names besides its source —
/// its target, its secret store, its user-assigned identity — once the request's spec is
/// known (the API's authorization; the source itself is checked before the request is read).
#[async_trait::async_trait]
pub trait NamedResources: Send + Sync {
    /// `Ok` when the caller may use every one of `named`.
    async fn allow(&self, named: &[ResourceId]) -> Result<(), Error>;
}

/// Allows every resource (the static-token mode, and tests).
pub struct AllowAll;

#[async_trait::async_trait]
impl NamedResources for AllowAll {
    async fn allow(&self, _named: &[ResourceId]) -> Result<(), Error> {
        Ok(())
    }
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
        named: &dyn NamedResources,
        audit: Option<AuditAccepted<'_>>,
    ) -> Result<Accepted, Error> {
        for _ in 0..RACE_ATTEMPTS {
            let existing = self.store.linker_get(&at).await?;
            if let Some(accepted) = self
                .write(&at, existing, props.clone(), caller, named, audit)
                .await?
            {
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
        named: &dyn NamedResources,
        audit: Option<AuditAccepted<'_>>,
    ) -> Result<Accepted, Error> {
        for _ in 0..RACE_ATTEMPTS {
            let existing = self.linker_get(&at).await?;
            let mut merged = serde_json::to_value(&existing.properties)
                .map_err(|e| Error::internal("linker properties do not serialize", e))?;
            tether_model::merge::merge_patch(&mut merged, patch);
            let props = LinkerProperties::from_json(merged)?;
            if let Some(accepted) = self
                .write(&at, Some(existing), props, caller, named, audit)
                .await?
            {
                return Ok(accepted);
            }
        }
        Err(raced(&at))
    }

    /// DELETE: starts removing the linker's configuration and network rules; `None` when there
    /// is no such linker (ARM's `204`). A delete during a create or an update cancels it (it
    /// unwinds at its next commit) and runs after it; a repeated delete returns the
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
            after: None,
            legacy: legacy_applied(&existing)?,
        };
        let begun = self
            .begin(LINKER_DELETE, &params, change, operation, None)
            .await?;
        Ok(begun.then_some(Some(id)))
    }

    /// `listConfigurations`: the entries the connection provides to its source, with secrets
    /// replaced by a marker (they are write-only). Facts are read live from the target (and
    /// the identity from the source); keys are never listed for this.
    ///
    /// With `info` (`generateConfigurations`), the entries the connection would provide with
    /// that `configurationInfo` instead of its own; nothing is changed. A first-release linker
    /// must be updated once for this (`409 LinkerNeedsUpdate`).
    pub async fn linker_configurations(
        &self,
        at: &LinkerRef,
        info: Option<ConfigurationInfo>,
    ) -> Result<Vec<configuration::Entry>, Error> {
        let linker = self.linker_get(at).await?;
        if linker.spec.is_none() && info.is_none() {
            // A first-release linker lists what that release listed.
            return self
                .ctx
                .v1_configurations(linker.id, &legacy_spec(&linker)?)
                .await;
        }
        let mut spec = stored_spec(&linker)?;
        if info.is_some() {
            spec.configuration = info;
        }
        let kind = spec.kind()?;
        let call = Call::correlated(linker.id);
        let ctx = &self.ctx;
        let unavailable = || {
            Error::new(
                ErrorKind::Unavailable,
                "TargetUnsupported",
                "no adapter is configured for this target type",
            )
        };
        let target = ctx.adapters.target(&kind.name).ok_or_else(unavailable)?;
        let mut facts = target
            .facts
            .facts(&call, &spec.target)
            .await
            .map_err(target_unreadable(&spec.target))?;
        let keys = (spec.auth == Auth::TargetKeys).then(|| {
            let mut redacted = Facts::new();
            for (name, _) in kind.keys.iter().flat_map(|k| k.facts.iter()) {
                redacted.set_secret(name, configuration::REDACTED);
            }
            redacted
        });
        let identity = self.identity_of(&call, &linker, &spec).await;
        facts = connection_facts(ctx, linker.id, &spec, &facts, keys, Some(&identity))
            .map_err(|e| Error::internal("the linker's facts", std::io::Error::other(e.message)))?;
        spec.configuration_request()?.render(&facts, Reveal::Redact)
    }

    /// The identity a connection uses, as its source holds it now (for showing its ids; an
    /// identity that cannot be read shows empty).
    async fn identity_of(
        &self,
        call: &Call,
        linker: &Linker,
        spec: &ConnectionSpec,
    ) -> IdentityOut {
        let mut out = IdentityOut::default();
        match &spec.auth {
            Auth::SystemIdentity(_) => {
                if let Some(source) = self.ctx.adapters.source(&spec.source) {
                    if let Ok(identity) = source.identity.identity(call, &linker.at.scope).await {
                        out.system = identity.system;
                    }
                }
            }
            Auth::UserIdentity {
                client_id,
                subscription,
                ..
            } => {
                out.user = self
                    .ctx
                    .adapters
                    .identities
                    .find(call, subscription, client_id)
                    .await
                    .ok()
                    .flatten();
            }
            _ => {}
        }
        out
    }

    /// `validateLinker`: starts a validation of the linker; the result arrives with the
    /// operation.
    pub async fn linker_validate(&self, at: &LinkerRef) -> Result<OperationId, Error> {
        let linker = self.linker_get(at).await?;
        let operation = Operation::start(OperationKind::Validate, &linker);
        let id = operation.id;
        let begun = match &linker.spec {
            Some(_) => {
                let params = ValidateParams {
                    linker_id: linker.id,
                    linker: linker.at.clone(),
                    spec: stored_spec(&linker)?,
                };
                self.begin(
                    LINKER_VALIDATE,
                    &params,
                    LinkerChange::Nothing,
                    operation,
                    None,
                )
                .await?
            }
            // A first-release linker is validated as that release did.
            None => {
                let params = v1::ValidateParams {
                    linker_id: linker.id,
                    linker: linker.at.clone(),
                    spec: legacy_spec(&linker)?,
                };
                self.begin(
                    v1::LINKER_VALIDATE,
                    &params,
                    LinkerChange::Nothing,
                    operation,
                    None,
                )
                .await?
            }
        };
        if !begun {
            return Err(raced(at));
        }
        Ok(id)
    }

    /// Checks the user-assigned identity a spec attaches (found by its client id, with our
    /// credentials): an identity the caller may not use is answered exactly like one that
    /// does not exist (`400` naming `authInfo.clientId`), so the lookup reveals nothing.
    async fn allow_identity(
        &self,
        spec: &ConnectionSpec,
        named: &dyn NamedResources,
    ) -> Result<(), Error> {
        let Auth::UserIdentity {
            client_id,
            subscription,
            options,
        } = &spec.auth
        else {
            return Ok(());
        };
        if options.opt_out {
            return Ok(());
        }
        let unknown = || {
            Error::invalid(
                "InvalidParameter",
                format!(
                    "no user-assigned identity with client id '{}' that the caller may use in subscription '{subscription}'",
                    tether_model::error::quoted(client_id)
                ),
            )
            .with_target("properties.authInfo.clientId")
        };
        let found = self
            .ctx
            .adapters
            .identities
            .find(
                &Call::correlated("identity-lookup"),
                subscription,
                client_id,
            )
            .await
            .map_err(|e| Error::unavailable("looking up the user-assigned identity failed", e))?
            .ok_or_else(unknown)?;
        match named.allow(std::slice::from_ref(&found.id)).await {
            Err(e) if e.kind() == ErrorKind::Forbidden => Err(unknown()),
            other => other,
        }
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
        named: &dyn NamedResources,
        audit: Option<AuditAccepted<'_>>,
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
                        audited: false,
                    }));
                }
                return Err(busy(l, running));
            }
        }
        let linker_id = existing.as_ref().map_or_else(LinkerId::new, |l| l.id);
        let catalog = tether_model::catalog::catalog()?;
        let (_, target) = spec::target_of(catalog, &props)?;
        // The resources the request names that need no lookup are authorized before its
        // content is checked further: a caller who may not write them is refused (and audited
        // as refused), whatever else is wrong with the request.
        let vault = props
            .secret_store
            .as_ref()
            .and_then(|s| s.key_vault_id.as_deref())
            .and_then(|id| ResourceId::parse(id).ok());
        let early: Vec<ResourceId> = target.arm().cloned().into_iter().chain(vault).collect();
        named.allow(&early).await?;
        let owner = secret_owner(linker_id, &target);
        let secret = match new_secret {
            Some(s) => Some(self.secrets.seal_str(s.expose(), &owner)),
            None => match &existing {
                Some(l) => self.kept_secret(l, &props, &target, &owner),
                None => None,
            },
        };
        let naming = match &existing {
            Some(l) => l.key_naming.clone(),
            None => self.naming_for(at, &props).await?,
        };
        let after = spec::check(spec::Request {
            catalog,
            at,
            props: &props,
            secret: match &secret {
                Some(s) => SecretInput::Sealed(s.clone()),
                None => SecretInput::Missing,
            },
            naming: naming.clone(),
            database_users: self.ctx.adapters.database_users,
        })?;
        self.allow_identity(&after, named).await?;
        let keys = after.written_keys();
        let stored = serde_json::to_value(&after)
            .map_err(|e| Error::internal("a spec does not serialize", e))?;

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
        let (kind, saga, state, legacy, generation) = match &existing {
            None => (
                OperationKind::Create,
                LINKER_CREATE,
                ProvisioningState::Accepted,
                None,
                1,
            ),
            Some(l) => (
                OperationKind::Update,
                LINKER_UPDATE,
                ProvisioningState::Updating,
                legacy_applied(l)?,
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
            spec: Some(stored),
        };
        let operation = Operation::start(kind, &linker);
        linker.operation = Some(operation.id);
        let params = LinkerParams {
            linker_id,
            linker: linker.at.clone(),
            after: Some(after),
            legacy,
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
        let mut accepted = Accepted {
            operation: operation.id,
            linker,
            created: existing.is_none(),
            audited: false,
        };
        let record = audit
            .and_then(|audit| audit(&accepted))
            .map(AuditEntry::into_record);
        accepted.audited = record.is_some();
        if !self.begin(saga, &params, change, operation, record).await? {
            return Ok(None);
        }
        Ok(Some(accepted))
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
        audit: Option<AuditRecord>,
    ) -> Result<bool, Error> {
        // Validations change nothing: they need no place in the source's queue.
        let chain = match change {
            LinkerChange::Nothing => None,
            _ => Some(source_chain(&operation)),
        };
        let params = serde_json::to_value(params)
            .map_err(|e| Error::internal("saga params do not serialize", e))?;
        // Only the leading region writes; the saga engine checks again at every commit.
        if self.write_epoch().is_none() {
            return Err(Error::region_not_active());
        }
        let name = saga;
        let saga = self.executor.new_saga(name, params, chain);
        let stored = self.executor.stored(&saga);
        let store = self.store.clone();
        let executor = self.executor.clone();
        let begin = OperationBegin {
            change,
            operation,
            saga,
            audit,
        };
        let name = name.to_string();
        let started = tokio::spawn(async move {
            let begun = store.operation_begin(&begin).await?;
            if let Some(record) = &begin.audit {
                crate::auth::count_recorded(record);
            }
            tether_saga::crash_point(&name, "begin", "after");
            if !begun.queued {
                executor.start_stored(stored);
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

    /// True when `secret` is the linker's stored one (or absent: the stored one is kept).
    fn same_secret(&self, linker: &Linker, secret: Option<&Secret>) -> bool {
        let Some(secret) = secret else { return true };
        let stored = linker
            .secret
            .as_ref()
            .and_then(|s| self.secrets.open_str(s, &stored_owner(linker)).ok());
        stored.is_some_and(|s| s.expose_secret() == secret.expose())
    }

    /// The first connection of a target kind on a source gets plain key names; further ones
    /// carry their own name (`AZURE_POSTGRESQL_<NAME>_CONNECTIONSTRING`). Asks the store only
    /// about the source's linkers of kinds with the same key prefix (an indexed read).
    async fn naming_for(
        &self,
        at: &LinkerRef,
        props: &LinkerProperties,
    ) -> Result<KeyNaming, Error> {
        let catalog = tether_model::catalog::catalog()?;
        let prefix_of = |t: &TargetService| {
            let (kind, _) = spec::target_of_service(catalog, t).ok()?;
            kind.prefixes.first().cloned()
        };
        let Some(mine) = props.target_service.as_ref().and_then(prefix_of) else {
            return Ok(KeyNaming::Plain);
        };
        let kinds: Vec<String> = catalog
            .targets
            .iter()
            .filter(|k| k.prefixes.first() == Some(&mine))
            .map(|k| k.name.clone())
            .collect();
        let others = self.store.linker_targets(&at.scope, &kinds).await?;
        Ok(
            if others.iter().any(|o| prefix_of(o).as_ref() == Some(&mine)) {
                KeyNaming::named(at.name.as_str())
            } else {
                KeyNaming::Plain
            },
        )
    }

    /// The stored secret a PUT or PATCH without one keeps: only while the target, the auth
    /// type and the user name (or the principal) stay the same, so a secret never follows a
    /// linker to another target or identity. Sealed again for `owner` (a first-release secret
    /// was bound to the linker alone).
    fn kept_secret(
        &self,
        existing: &Linker,
        props: &LinkerProperties,
        target: &TargetRef,
        owner: &[u8],
    ) -> Option<Sealed> {
        let same_identity = match (&existing.properties.auth_info, &props.auth_info) {
            (Some(AuthInfo::Secret(old)), Some(AuthInfo::Secret(new))) => old.name == new.name,
            (
                Some(AuthInfo::ServicePrincipalSecret(old)),
                Some(AuthInfo::ServicePrincipalSecret(new)),
            ) => old.client_id == new.client_id && old.principal_id == new.principal_id,
            _ => false,
        };
        let old_target = tether_model::catalog::catalog()
            .ok()
            .and_then(|c| spec::target_of(c, &existing.properties).ok())
            .map(|(_, t)| t);
        if !same_identity || old_target.as_ref() != Some(target) {
            return None;
        }
        let plain = self
            .secrets
            .open_str(existing.secret.as_ref()?, &stored_owner(existing))
            .ok()?;
        Some(self.secrets.seal_str(plain.expose_secret(), owner))
    }
}

/// The error of a linker's target that could not be read for a request: `404
/// TargetNotFound` when it is gone, else `503`.
pub(crate) fn target_unreadable(
    target: &impl std::fmt::Display,
) -> impl FnOnce(tether_adapters::AdapterError) -> Error {
    let message = format!("the target '{target}' of the linker was not found");
    move |e| match e.is_not_found() {
        true => Error::new(ErrorKind::NotFound, "TargetNotFound", message),
        false => Error::unavailable("reading the target failed", e),
    }
}

/// What a stored linker's secret is bound to: the linker and its target (the first release
/// bound it to the linker alone).
fn stored_owner(linker: &Linker) -> Vec<u8> {
    match stored_spec(linker) {
        Ok(spec) => secret_owner(linker.id, &spec.target),
        Err(_) => linker.id.as_uuid().as_bytes().to_vec(),
    }
}

/// The spec a linker was accepted with, as stored; never checked again.
fn stored_spec(linker: &Linker) -> Result<ConnectionSpec, Error> {
    match &linker.spec {
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| Error::internal("a stored spec does not parse", e)),
        None => Err(Error::new(
            ErrorKind::Conflict,
            "LinkerNeedsUpdate",
            "this linker was created by an earlier release; update it (PUT or PATCH) once to use this operation",
        )),
    }
}

/// The spec of a linker the first release stored.
fn legacy_spec(linker: &Linker) -> Result<v1::ConnectionSpec, Error> {
    v1::spec::stored(
        &linker.properties,
        linker.secret.clone(),
        linker.key_naming.clone(),
    )
}

/// What a first-release linker applied (it stored no record): its settings, and its
/// firewall rules on its target (found by the linker's rule prefix).
fn legacy_applied(linker: &Linker) -> Result<Option<Applied>, Error> {
    if linker.spec.is_some() {
        return Ok(None);
    }
    let legacy = legacy_spec(linker)?;
    let mut items: Vec<Item> = legacy
        .written_keys()
        .iter()
        .map(|k| Item::setting(k, None))
        .collect();
    if legacy.has_firewall() {
        items.push(Item::firewall_rule(
            &TargetRef::Arm(legacy.target.clone()),
            &legacy.kind()?.name,
            &spec::rule_prefix(&linker.at),
        ));
    }
    Ok(Some(Applied { items }))
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
