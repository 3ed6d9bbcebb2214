//! The steps of `linker-{create,update,delete}-v2`.
//!
//! `resolve` reads what later steps need and snapshots everything they may change (the
//! settings they touch, sealed because values can be secrets; the linker's firewall rules, the
//! IP rules and the source's identities, as they are), and what the linker applied before (its
//! stored record). Every other step converges one part of the backend from that record to the
//! desired spec — never removing what the linker did not create or what another linker still
//! holds — and its undo converges back to the snapshot, so a failure at any point leaves the
//! backend as it was.
//!
//! Crash-safety of all of them: names are derived (rules from the linker id, grants from the
//! grant, Key Vault secrets from the linker, key and value), so a rerun finds
//! what an interrupted run made, and an undo removes it whether the run finished or not.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_adapters::{
    Call, FirewallRule, Grant, Grantee, IdentityChange, Principal, Setting, SettingsChange,
    SourceFacts, SourceIdentity, TargetRef, UserIdentity,
};
use tether_model::catalog::FactSource;
use tether_model::configuration::{Entry, Reveal};
use tether_model::facts::Facts;
use tether_model::ids::ResourceId;
use tether_model::linker::Sealed;
use tether_saga::{Step, StepCx, StepError, StepKey};

use super::{LinkerCtx, LinkerParams, model_error, step_error};
use crate::applied::{Applied, Item, What, grant_name};
use crate::spec::{self, ConnectionSpec, rule_prefix, secret_owner};

/// The role an identity needs on a secret store to read the Key Vault references.
const SECRETS_USER: &str = "Key Vault Secrets User";

/// The output of `resolve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// The source's facts; `None` when a delete finds the source gone.
    pub source: Option<SourceFacts>,
    /// The source's identities before any change; `None` when none is in play (wanted or
    /// applied before), or the source is gone.
    pub identity: Option<SourceIdentity>,
    /// The facts of the desired target (none for a delete); never secret.
    pub target: Option<Facts>,
    /// What the linker applied before.
    pub before: Applied,
    /// The settings the steps may touch as they were (`None` = absent), sealed for this
    /// saga; `None` when the source is gone.
    pub settings: Option<Sealed>,
    /// The linker's firewall rules per target involved, before any change.
    pub rules: Vec<TargetRules>,
    /// The IP rules of each target involved, before any change.
    pub ip_rules: Vec<TargetIps>,
    /// The keys of the database users that existed before any change.
    pub existing_users: Vec<String>,
    /// The keys of the items another linker also holds (never removed here).
    pub shared: Vec<String>,
}

/// A target's rules with the linker's prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRules {
    /// The target.
    pub target: TargetRef,
    /// Its kind.
    pub kind: String,
    /// The rules.
    pub rules: Vec<FirewallRule>,
}

/// A target's IP rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetIps {
    /// The target.
    pub target: TargetRef,
    /// Its kind.
    pub kind: String,
    /// The entries.
    pub values: BTreeSet<String>,
}

/// The output of `identity`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityOut {
    /// The source's system-assigned identity, when the connection uses it.
    pub system: Option<Principal>,
    /// The user-assigned identity the connection uses.
    pub user: Option<UserIdentity>,
    /// What is applied.
    pub items: Vec<Item>,
}

impl IdentityOut {
    /// Whom a connection's grants are for: the identity it uses (as this output found it) or
    /// its service principal, with the database user name it asks for; `None` for auth types
    /// without a principal.
    pub(crate) fn grantee(&self, auth: &spec::Auth) -> Option<Grantee> {
        let principal = match auth {
            spec::Auth::SystemIdentity(_) => self.system.clone(),
            spec::Auth::UserIdentity { .. } => self.user.as_ref().map(|u| u.principal.clone()),
            spec::Auth::ServicePrincipal {
                client_id,
                principal_id,
                ..
            } => Some(Principal {
                principal_id: principal_id.clone(),
                client_id: Some(client_id.clone()),
            }),
            _ => None,
        }?;
        Some(Grantee {
            principal_id: principal.principal_id,
            client_id: principal.client_id,
            user_name: auth.identity().and_then(|o| o.user_name.clone()),
        })
    }
}

/// The output of `auth`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthOut {
    /// What is applied.
    pub items: Vec<Item>,
    /// The target's keys, sealed for this saga (secret auth of a keyed target).
    pub keys: Option<Sealed>,
}

/// The output of `secret_store`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretsOut {
    /// The Key Vault secret URI of each setting kept there.
    pub uris: BTreeMap<String, String>,
    /// What is applied.
    pub items: Vec<Item>,
}

/// The output of `network`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkOut {
    /// What is applied.
    pub items: Vec<Item>,
}

/// The output of `configuration`: the keys written, and (create and update) everything the
/// connection now holds, which the store keeps with the linker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationOut {
    /// Key names written.
    pub keys: Vec<String>,
    /// The whole applied record, for create and update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
}

/// `resolve`'s output key.
pub const RESOLVE: StepKey<Resolved> = StepKey::new("resolve");
/// `identity`'s output key.
pub const IDENTITY: StepKey<IdentityOut> = StepKey::new("identity");
/// `auth`'s output key.
pub const AUTH: StepKey<AuthOut> = StepKey::new("auth");
/// `secret_store`'s output key.
pub const SECRET_STORE: StepKey<SecretsOut> = StepKey::new("secret_store");
/// `network`'s output key.
pub const NETWORK: StepKey<NetworkOut> = StepKey::new("network");
/// `configuration`'s output key.
pub const CONFIGURATION: StepKey<ConfigurationOut> = StepKey::new("configuration");

fn call(cx: &StepCx<LinkerCtx>) -> Call {
    Call::correlated(cx.saga_id())
}

fn snapshot_owner(cx: &StepCx<LinkerCtx>) -> [u8; 16] {
    *cx.saga_id().as_uuid().as_bytes()
}

fn seal<T: Serialize>(cx: &StepCx<LinkerCtx>, value: &T) -> Result<Sealed, StepError> {
    let plain = serde_json::to_vec(value)
        .map_err(|e| StepError::permanent("InternalServerError", format!("seal: {e}")))?;
    Ok(cx.ctx().secrets.seal(&plain, &snapshot_owner(cx)))
}

fn open<T: serde::de::DeserializeOwned>(
    cx: &StepCx<LinkerCtx>,
    sealed: &Sealed,
) -> Result<T, StepError> {
    let plain = cx
        .ctx()
        .secrets
        .open(sealed, &snapshot_owner(cx))
        .map_err(|_| {
            StepError::permanent("SecretUnavailable", "a sealed snapshot could not be opened")
        })?;
    serde_json::from_slice(&plain)
        .map_err(|e| StepError::permanent("InternalServerError", format!("snapshot: {e}")))
}

/// The source kind of a linker.
fn source_kind(cx: &StepCx<LinkerCtx>, p: &LinkerParams) -> Result<String, StepError> {
    if let Some(spec) = &p.after {
        return Ok(spec.source.clone());
    }
    cx.ctx()
        .adapters
        .catalog
        .source_for(&p.linker.scope)
        .map(|s| s.name.clone())
        .ok_or_else(|| StepError::permanent("UnsupportedSource", "the source kind is unknown"))
}

/// The grants the linker made before that `wanted` no longer holds and that it may remove.
fn dropped_grants<'a>(
    r: &'a Resolved,
    wanted: &'a BTreeSet<String>,
) -> impl Iterator<Item = (&'a Grant, &'a Grantee, &'a str)> {
    r.before
        .items
        .iter()
        .filter_map(move |item| match &item.what {
            What::Grant {
                grant,
                grantee,
                name,
            } if !wanted.contains(&item.key) && removable(r, item) => {
                Some((grant, grantee, name.as_str()))
            }
            _ => None,
        })
}

/// What a grant is made on, for messages.
fn grant_scope(grant: &Grant) -> String {
    match grant {
        Grant::Role { scope, .. } => scope.to_string(),
        Grant::DatabaseUser { host, database, .. } => format!("{host}/{database}"),
        Grant::RedisAccessPolicy { cache, .. } => cache.to_string(),
        Grant::CosmosSqlRole { account, .. } => account.to_string(),
    }
}

/// The error of a resource that is gone: its code, and a message naming it.
fn not_found(
    code: &'static str,
    name: impl std::fmt::Display,
) -> impl FnOnce() -> (&'static str, String) {
    let what = match code {
        "SourceNotFound" => "source",
        "SecretStoreNotFound" => "secret store",
        "UserIdentityNotFound" => "user-assigned identity",
        _ => "target",
    };
    let message = format!("the {what} '{name}' was not found");
    move || (code, message)
}

/// Whether an item of the before record may be removed: the linker created it and no other
/// linker holds it.
fn removable(r: &Resolved, item: &Item) -> bool {
    item.created && !r.shared.contains(&item.key)
}

/// Reads facts and snapshots the state later steps change. No side effects.
///
/// Crash-safety: nothing to undo; a rerun takes a fresh snapshot, which is still the state
/// before any change because later steps only start once this output is logged.
pub struct Resolve {
    /// The saga creates the linker: it has applied nothing yet (its applied record is written
    /// when the create ends), so there is no record to read, and no firewall rule of its own
    /// to list on the target (the listing grows with every linker's rules there).
    pub new_linker: bool,
}

#[async_trait]
impl Step<LinkerCtx> for Resolve {
    fn name(&self) -> &'static str {
        RESOLVE.name()
    }

    async fn run(&self, cx: &StepCx<LinkerCtx>) -> Result<Value, StepError> {
        let p: LinkerParams = cx.params()?;
        let ctx = cx.ctx();
        let call = call(cx);
        let scope = &p.linker.scope;
        let source = ctx.source(&source_kind(cx, &p)?)?;
        let source_facts = match source.settings.facts(&call, scope).await {
            Ok(facts) => Some(facts),
            Err(e) if e.is_not_found() && p.after.is_none() => None,
            Err(e) => return Err(step_error(e, not_found("SourceNotFound", scope))),
        };
        let target_facts = match &p.after {
            Some(spec) => Some(
                ctx.target(&spec.kind)?
                    .facts
                    .facts(&call, &spec.target)
                    .await
                    .map_err(|e| step_error(e, not_found("TargetNotFound", &spec.target)))?,
            ),
            None => None,
        };
        let stored = if self.new_linker {
            None
        } else {
            ctx.store.linker_applied(p.linker_id).await.map_err(|e| {
                StepError::transient("StoreUnavailable", format!("reading the linker: {e}"))
            })?
        };
        let before = match stored {
            Some(stored) => {
                let mut before: Applied = serde_json::from_value(stored.record).map_err(|e| {
                    StepError::permanent("InternalServerError", format!("the applied record: {e}"))
                })?;
                // The store's flags are current: a linker that created an item and is gone
                // hands it to those still holding it.
                for item in &mut before.items {
                    item.created = stored.created.contains(&item.key);
                }
                before
            }
            None => p.legacy.clone().unwrap_or_default(),
        };
        // The identities only when some are in play: wanted, or applied before.
        let identities_in_play = wanted_identity(p.after.as_ref()) != (false, None)
            || before
                .items
                .iter()
                .any(|i| matches!(i.what, What::SystemIdentity | What::UserIdentity { .. }));
        let identity = match &source_facts {
            Some(_) if identities_in_play => Some(
                source
                    .identity
                    .identity(&call, scope)
                    .await
                    .map_err(|e| step_error(e, not_found("SourceNotFound", scope)))?,
            ),
            _ => None,
        };

        let settings = match &source_facts {
            None => None,
            Some(_) => {
                let mut by_scope: BTreeMap<Option<String>, BTreeSet<String>> = BTreeMap::new();
                for item in &before.items {
                    if let What::Setting { name, scope } = &item.what {
                        by_scope
                            .entry(scope.clone())
                            .or_default()
                            .insert(name.clone());
                    }
                }
                if let Some(spec) = &p.after {
                    by_scope
                        .entry(spec.scope.clone())
                        .or_default()
                        .extend(spec.written_keys());
                }
                let mut snapshot: Vec<(Option<String>, String, Option<Setting>)> = Vec::new();
                for (container, keys) in by_scope {
                    let current = source
                        .settings
                        .read_settings(&call, scope, container.as_deref())
                        .await
                        .map_err(|e| step_error(e, not_found("SourceNotFound", scope)))?;
                    for key in keys {
                        let value = current.get(&key).cloned();
                        snapshot.push((container.clone(), key, value));
                    }
                }
                Some(seal(cx, &snapshot)?)
            }
        };

        let prefix = rule_prefix(&p.linker);
        let mut involved: Vec<(TargetRef, String)> = Vec::new();
        if let Some(spec) = &p.after {
            involved.push((spec.target.clone(), spec.kind.clone()));
        }
        for item in &before.items {
            if let What::FirewallRule { target, kind, .. } | What::IpRule { target, kind, .. } =
                &item.what
            {
                involved.push((target.clone(), kind.clone()));
            }
        }
        involved.dedup();
        let mut rules = Vec::new();
        let mut ip_rules = Vec::new();
        for (target, kind) in involved {
            let adapters = ctx.target(&kind)?;
            if let Some(firewall) = &adapters.firewall {
                if rules.iter().any(|r: &TargetRules| r.target == target) {
                    continue;
                }
                let current = if self.new_linker {
                    // No rule carries a new linker's prefix: the prefix is its resource id's,
                    // and an earlier linker of that id took its rules along when its delete
                    // (or its failed create's unwind) ended, before this saga could start.
                    Vec::new()
                } else {
                    match firewall.rules(&call, &target, &prefix).await {
                        Ok(current) => current,
                        Err(e) if e.is_not_found() => Vec::new(),
                        Err(e) => return Err(step_error(e, not_found("TargetNotFound", &target))),
                    }
                };
                rules.push(TargetRules {
                    target,
                    kind,
                    rules: current,
                });
            } else if let Some(ips) = &adapters.ip_rules {
                if ip_rules.iter().any(|r: &TargetIps| r.target == target) {
                    continue;
                }
                let values = match ips.ip_rules(&call, &target).await {
                    Ok(values) => values,
                    Err(e) if e.is_not_found() => BTreeSet::new(),
                    Err(e) => return Err(step_error(e, not_found("TargetNotFound", &target))),
                };
                ip_rules.push(TargetIps {
                    target,
                    kind,
                    values,
                });
            }
        }

        let mut existing_users = Vec::new();
        if let (Some(spec), Some(facts)) = (&p.after, &target_facts) {
            let options = spec.auth.identity();
            for grant in spec.grants(facts).map_err(model_error)? {
                if let Grant::DatabaseUser { .. } = grant {
                    let grantee = Grantee {
                        principal_id: String::new(),
                        client_id: None,
                        user_name: options.and_then(|o| o.user_name.clone()),
                    };
                    let exists = ctx
                        .adapters
                        .grants
                        .grant_exists(&call, &grant, &grantee)
                        .await
                        .map_err(|e| step_error(e, not_found("TargetNotFound", &spec.target)))?;
                    if exists {
                        existing_users.push(grant.key(&grantee));
                    }
                }
            }
        }
        let keys: Vec<String> = before.items.iter().map(|i| i.key.clone()).collect();
        let shared = ctx.held_elsewhere(p.linker_id, &keys).await?;
        RESOLVE.output(&Resolved {
            source: source_facts,
            identity,
            target: target_facts.map(|f| f.public()),
            before,
            settings,
            rules,
            ip_rules,
            existing_users,
            shared,
        })
    }

    async fn undo(&self, _cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        Ok(())
    }
}

/// The source's managed identities: enables the system-assigned identity (for identity auth
/// or a secret store) and attaches a user-assigned one, recording whether this connection did;
/// turns off only what it did and no other linker uses.
///
/// Crash-safety: each change is applied only when not in effect, so a rerun converges; the
/// undo restores the snapshot's state of exactly the identities in play.
pub struct Identity;

/// What identities the desired spec needs.
fn wanted_identity(spec: Option<&ConnectionSpec>) -> (bool, Option<(&str, &str)>) {
    let Some(spec) = spec else {
        return (false, None);
    };
    let system = matches!(&spec.auth, spec::Auth::SystemIdentity(o) if !o.opt_out)
        || spec.secret_store.is_some();
    let user = match &spec.auth {
        spec::Auth::UserIdentity {
            client_id,
            subscription,
            options,
        } if !options.opt_out => Some((client_id.as_str(), subscription.as_str())),
        _ => None,
    };
    (system, user)
}

async fn find_user_identity(
    cx: &StepCx<LinkerCtx>,
    client_id: &str,
    subscription: &str,
) -> Result<UserIdentity, StepError> {
    cx.ctx()
        .adapters
        .identities
        .find(&call(cx), subscription, client_id)
        .await
        .map_err(|e| step_error(e, not_found("UserIdentityNotFound", client_id)))?
        .ok_or_else(|| {
            StepError::permanent(
                "UserIdentityNotFound",
                format!("no user-assigned identity with client id '{client_id}' in subscription '{subscription}'"),
            )
        })
}

#[async_trait]
impl Step<LinkerCtx> for Identity {
    fn name(&self) -> &'static str {
        IDENTITY.name()
    }

    async fn run(&self, cx: &StepCx<LinkerCtx>) -> Result<Value, StepError> {
        let p: LinkerParams = cx.params()?;
        let r = cx.get(&RESOLVE)?;
        let Some(before) = &r.identity else {
            return IDENTITY.output(&IdentityOut::default());
        };
        let scope = &p.linker.scope;
        let call = call(cx);
        let adapter = &cx.ctx().source(&source_kind(cx, &p)?)?.identity;
        let apply = |change: IdentityChange| {
            let call = call.clone();
            async move {
                adapter
                    .apply_identity(&call, scope, &change)
                    .await
                    .map_err(|e| step_error(e, not_found("SourceNotFound", scope)))
            }
        };
        let (want_system, want_user) = wanted_identity(p.after.as_ref());
        let mut out = IdentityOut::default();
        let mut current = before.clone();
        if want_system {
            if current.system.is_none() {
                current = apply(IdentityChange::EnableSystem).await?;
            }
            let key = Item::system_identity(scope, true).key;
            let created = before.system.is_none() || r.before.created(&key);
            out.items.push(Item::system_identity(scope, created));
            out.system = current.system.clone();
        }
        if let Some((client_id, subscription)) = want_user {
            let uai = find_user_identity(cx, client_id, subscription).await?;
            if !current.user.contains_key(uai.id.key()) {
                apply(IdentityChange::Attach(uai.id.clone())).await?;
            }
            let key = Item::user_identity(scope, &uai.id, true).key;
            let created = !before.user.contains_key(uai.id.key()) || r.before.created(&key);
            out.items.push(Item::user_identity(scope, &uai.id, created));
            out.user = Some(uai);
        }
        let wanted: BTreeSet<&str> = out.items.iter().map(|i| i.key.as_str()).collect();
        for item in &r.before.items {
            if wanted.contains(item.key.as_str()) || !removable(&r, item) {
                continue;
            }
            match &item.what {
                What::SystemIdentity => {
                    apply(IdentityChange::DisableSystem).await?;
                }
                What::UserIdentity { identity } => {
                    apply(IdentityChange::Detach(identity.clone())).await?;
                }
                _ => {}
            }
        }
        IDENTITY.output(&out)
    }

    /// `resolve` read the source's identities only if some are in play.
    fn skip(&self, cx: &StepCx<LinkerCtx>) -> Option<Value> {
        let r = cx.get(&RESOLVE).ok()?;
        r.identity
            .is_none()
            .then(|| IDENTITY.output(&IdentityOut::default()).ok())?
    }

    async fn undo(&self, cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        let Some(r) = cx.try_get(&RESOLVE)? else {
            return Ok(());
        };
        let Some(before) = &r.identity else {
            return Ok(());
        };
        let p: LinkerParams = cx.params()?;
        let scope = &p.linker.scope;
        let call = call(cx);
        let adapter = &cx.ctx().source(&source_kind(cx, &p)?)?.identity;
        let current = match adapter.identity(&call, scope).await {
            Ok(current) => current,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(step_error(e, not_found("SourceNotFound", scope))),
        };
        let (want_system, want_user) = wanted_identity(p.after.as_ref());
        let system_in_play = want_system
            || r.before
                .items
                .iter()
                .any(|i| matches!(i.what, What::SystemIdentity));
        let mut changes = Vec::new();
        if system_in_play {
            match (before.system.is_some(), current.system.is_some()) {
                (false, true) => changes.push(IdentityChange::DisableSystem),
                (true, false) => changes.push(IdentityChange::EnableSystem),
                _ => {}
            }
        }
        let mut users: Vec<ResourceId> = r
            .before
            .items
            .iter()
            .filter_map(|i| match &i.what {
                What::UserIdentity { identity } => Some(identity.clone()),
                _ => None,
            })
            .collect();
        if let Some((client_id, subscription)) = want_user {
            if let Ok(uai) = find_user_identity(cx, client_id, subscription).await {
                users.push(uai.id);
            }
        }
        for id in users {
            match (
                before.user.contains_key(id.key()),
                current.user.contains_key(id.key()),
            ) {
                (false, true) => changes.push(IdentityChange::Detach(id)),
                (true, false) => changes.push(IdentityChange::Attach(id)),
                _ => {}
            }
        }
        for change in changes {
            adapter
                .apply_identity(&call, scope, &change)
                .await
                .map_err(|e| step_error(e, not_found("SourceNotFound", scope)))?;
        }
        Ok(())
    }
}

/// The grants the desired spec needs, for whom, under which names.
fn wanted_grants(
    p: &LinkerParams,
    r: &Resolved,
    identity: Option<&IdentityOut>,
) -> Result<Vec<(Grant, Grantee, String)>, StepError> {
    let Some(spec) = &p.after else {
        return Ok(Vec::new());
    };
    let mut wanted = Vec::new();
    let no_identity = IdentityOut::default();
    let grantee = identity.unwrap_or(&no_identity).grantee(&spec.auth);
    if let (Some(grantee), Some(facts)) = (grantee, &r.target) {
        for grant in spec.grants(facts).map_err(model_error)? {
            let name = grant_name(&grant.key(&grantee));
            wanted.push((grant, grantee.clone(), name));
        }
    }
    if let (Some(store), Some(system)) =
        (&spec.secret_store, identity.and_then(|i| i.system.clone()))
    {
        let grant = Grant::Role {
            scope: store.vault.clone(),
            role: SECRETS_USER.to_string(),
        };
        let grantee = Grantee {
            principal_id: system.principal_id,
            client_id: None,
            user_name: None,
        };
        let name = grant_name(&grant.key(&grantee));
        wanted.push((grant, grantee, name));
    }
    Ok(wanted)
}

/// Grants for the identity on the target (role assignments, a database user, data-plane
/// policies) and on the secret store; for secret auth of a keyed target, its keys (sealed,
/// passed on to later steps, never stored). Removes the grants the linker made before and no
/// longer wants, unless another linker holds them.
///
/// Crash-safety: grant names derive from the grant, so a rerun finds them and the undo
/// removes them; a database user counts as this connection's only if it did not
/// exist when `resolve` looked.
pub struct Auth;

#[async_trait]
impl Step<LinkerCtx> for Auth {
    fn name(&self) -> &'static str {
        AUTH.name()
    }

    async fn run(&self, cx: &StepCx<LinkerCtx>) -> Result<Value, StepError> {
        let p: LinkerParams = cx.params()?;
        let r = cx.get(&RESOLVE)?;
        let identity = cx.try_get(&IDENTITY)?;
        let ctx = cx.ctx();
        let call = call(cx);
        let grants = &ctx.adapters.grants;
        let mut out = AuthOut::default();
        for (grant, grantee, name) in wanted_grants(&p, &r, identity.as_ref())? {
            let ensured = grants
                .ensure_grant(&call, &grant, &grantee, &name)
                .await
                .map_err(|e| step_error(e, not_found("TargetNotFound", grant_scope(&grant))))?;
            let key = grant.key(&grantee);
            let created = match grant {
                Grant::DatabaseUser { .. } => !r.existing_users.contains(&key),
                _ => ensured == tether_adapters::Ensured::Created,
            } || r.before.created(&key);
            out.items
                .push(Item::grant(&grant, &grantee, &name, created));
        }
        let wanted: BTreeSet<String> = out.items.iter().map(|i| i.key.clone()).collect();
        for (grant, grantee, name) in dropped_grants(&r, &wanted) {
            grants
                .remove_grant(&call, grant, grantee, name)
                .await
                .map_err(|e| step_error(e, not_found("TargetNotFound", grant_scope(grant))))?;
        }
        if let Some(spec) = p
            .after
            .as_ref()
            .filter(|s| s.auth == spec::Auth::TargetKeys)
        {
            let keys = ctx
                .target(&spec.kind)?
                .keys
                .as_ref()
                .ok_or_else(|| StepError::permanent("UnsupportedTarget", "the target has no keys"))?
                .keys(&call, &spec.target)
                .await
                .map_err(|e| step_error(e, not_found("TargetNotFound", &spec.target)))?;
            out.keys = Some(seal(cx, &keys)?);
        }
        AUTH.output(&out)
    }

    /// No grant wanted or to drop, and no keys to list.
    fn skip(&self, cx: &StepCx<LinkerCtx>) -> Option<Value> {
        let p: LinkerParams = cx.params().ok()?;
        let r = cx.get(&RESOLVE).ok()?;
        let identity = cx.try_get(&IDENTITY).ok()?;
        let idle = wanted_grants(&p, &r, identity.as_ref()).ok()?.is_empty()
            && dropped_grants(&r, &BTreeSet::new()).next().is_none()
            && p.after
                .as_ref()
                .is_none_or(|s| s.auth != spec::Auth::TargetKeys);
        idle.then(|| AUTH.output(&AuthOut::default()).ok())?
    }

    async fn undo(&self, cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        let Some(r) = cx.try_get(&RESOLVE)? else {
            return Ok(());
        };
        let p: LinkerParams = cx.params()?;
        let identity = cx.try_get(&IDENTITY)?;
        let call = call(cx);
        let grants = &cx.ctx().adapters.grants;
        let wanted = wanted_grants(&p, &r, identity.as_ref())?;
        // A grant another linker holds stays (it may have made it since `resolve` looked).
        let keys: Vec<String> = wanted.iter().map(|(g, who, _)| g.key(who)).collect();
        let held = cx.ctx().held_elsewhere(p.linker_id, &keys).await?;
        for ((grant, grantee, name), key) in wanted.iter().zip(&keys) {
            let ours = match grant {
                Grant::DatabaseUser { .. } => !r.existing_users.contains(key),
                _ => true,
            };
            if ours && !r.before.has(key) && !held.contains(key) {
                grants
                    .remove_grant(&call, grant, grantee, name)
                    .await
                    .map_err(|e| step_error(e, not_found("TargetNotFound", grant_scope(grant))))?;
            }
        }
        let wanted: BTreeSet<String> = keys.into_iter().collect();
        for (grant, grantee, name) in dropped_grants(&r, &wanted) {
            grants
                .ensure_grant(&call, grant, grantee, name)
                .await
                .map_err(|e| step_error(e, not_found("TargetNotFound", grant_scope(grant))))?;
        }
        Ok(())
    }
}

/// Every fact the configuration is built from: the target's, its keys (when listed), and the
/// auth's (user, password, client id and secret, tenant, principal).
pub(crate) fn connection_facts(
    ctx: &LinkerCtx,
    linker: tether_model::ids::LinkerId,
    spec: &ConnectionSpec,
    target: &Facts,
    keys: Option<Facts>,
    identity: Option<&IdentityOut>,
) -> Result<Facts, StepError> {
    let mut facts = target.clone();
    if let Some(keys) = keys {
        facts.extend(keys);
    }
    let owner = secret_owner(linker, &spec.target);
    let open = |sealed: &Sealed| {
        ctx.secrets
            .open_str(sealed, &owner)
            .map(|s| s.expose_secret().to_string())
            .map_err(|_| {
                StepError::permanent(
                    "SecretUnavailable",
                    "the linker's secret could not be decrypted with the configured key",
                )
            })
    };
    let user_name = spec.auth.user().map(str::to_string);
    match &spec.auth {
        spec::Auth::Secret { user, password } => {
            facts.set("user", user.clone());
            facts.set_secret("password", open(password)?);
        }
        spec::Auth::SecretReference { user, uri } => {
            facts.set("user", user.clone());
            facts.set("password", format!("@Microsoft.KeyVault(SecretUri={uri})"));
        }
        spec::Auth::TargetKeys => {}
        spec::Auth::SystemIdentity(_) => {
            let principal = identity.and_then(|i| i.system.as_ref());
            let id = principal
                .map(|p| p.principal_id.clone())
                .unwrap_or_default();
            facts.set("user", user_name.unwrap_or_else(|| id.clone()));
            facts.set("principalId", id);
        }
        spec::Auth::UserIdentity { client_id, .. } => {
            let principal = identity
                .and_then(|i| i.user.as_ref())
                .map(|u| u.principal.principal_id.clone())
                .unwrap_or_default();
            facts.set("user", user_name.unwrap_or_else(|| client_id.clone()));
            facts.set("clientId", client_id.clone());
            facts.set("principalId", principal);
        }
        spec::Auth::ServicePrincipal {
            client_id,
            principal_id,
            secret,
            ..
        } => {
            facts.set("user", user_name.unwrap_or_else(|| client_id.clone()));
            facts.set("clientId", client_id.clone());
            facts.set_secret("clientSecret", open(secret)?);
            facts.set("tenantId", ctx.tenant_id.clone());
            facts.set("principalId", principal_id.clone());
        }
    }
    let kind = spec.kind().map_err(model_error)?;
    for fact in &kind.facts {
        if fact.source == FactSource::Password {
            if let Some(password) = facts.get("password").cloned() {
                facts.set_secret(&fact.name, password.value);
            }
        }
    }
    Ok(facts)
}

/// The entries the desired spec writes, with every fact it needs.
fn entries(
    cx: &StepCx<LinkerCtx>,
    p: &LinkerParams,
    spec: &ConnectionSpec,
) -> Result<Vec<Entry>, StepError> {
    let r = cx.get(&RESOLVE)?;
    let target = r
        .target
        .as_ref()
        .ok_or_else(|| StepError::permanent("InternalServerError", "no target facts"))?;
    let keys: Option<Facts> = match cx.try_get(&AUTH)?.and_then(|a| a.keys) {
        Some(sealed) => Some(open(cx, &sealed)?),
        None => None,
    };
    let identity = cx.try_get(&IDENTITY)?;
    let facts = connection_facts(cx.ctx(), p.linker_id, spec, target, keys, identity.as_ref())?;
    spec.configuration_request()
        .map_err(model_error)?
        .render(&facts, Reveal::Secrets)
        .map_err(model_error)
}

/// The Key Vault secret a setting is kept in: the caller's name (with the key's position
/// after the first), or one derived from the linker, the key and the value (a new value is a
/// new secret, so an update never overwrites what a rollback would need).
fn vault_secret_name(
    p: &LinkerParams,
    spec: &ConnectionSpec,
    index: usize,
    entry: &Entry,
) -> String {
    if let Some(name) = spec.secret_store.as_ref().and_then(|s| s.name.clone()) {
        return if index == 0 {
            name
        } else {
            format!("{name}-{index}")
        };
    }
    let hash = entry.value.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let raw = format!(
        "{}-{}-{:08x}",
        p.linker.name.as_str(),
        entry.name,
        hash >> 32
    );
    raw.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(127)
        .collect()
}

/// Keeps the connection's secret settings in the linker's secret store (when it names one):
/// each becomes a Key Vault secret, and the source gets a reference. Removes the secrets the
/// linker kept before and no longer needs.
///
/// Crash-safety: secret names derive from the linker, the key and the value, so a rerun
/// writes the same secrets and the undo removes exactly the new ones.
pub struct SecretStore;

#[async_trait]
impl Step<LinkerCtx> for SecretStore {
    fn name(&self) -> &'static str {
        SECRET_STORE.name()
    }

    async fn run(&self, cx: &StepCx<LinkerCtx>) -> Result<Value, StepError> {
        let p: LinkerParams = cx.params()?;
        let r = cx.get(&RESOLVE)?;
        let call = call(cx);
        let vault = &cx.ctx().adapters.vault;
        let mut out = SecretsOut::default();
        if let Some(spec) = p.after.as_ref().filter(|s| s.writes_configuration()) {
            if let Some(store) = &spec.secret_store {
                let secret_entries: Vec<Entry> = entries(cx, &p, spec)?
                    .into_iter()
                    .filter(|e| e.holds_secret)
                    .collect();
                for (i, entry) in secret_entries.iter().enumerate() {
                    let name = vault_secret_name(&p, spec, i, entry);
                    let uri = vault
                        .put_secret(&call, &store.vault, &name, &entry.value)
                        .await
                        .map_err(|e| {
                            step_error(e, not_found("SecretStoreNotFound", &store.vault))
                        })?;
                    out.uris.insert(entry.name.clone(), uri);
                    out.items.push(Item::vault_secret(&store.vault, &name));
                }
            }
        }
        let wanted: BTreeSet<String> = out.items.iter().map(|i| i.key.clone()).collect();
        for item in &r.before.items {
            if let What::VaultSecret { vault: v, name } = &item.what {
                if !wanted.contains(&item.key) && removable(&r, item) {
                    vault
                        .remove_secret(&call, v, name)
                        .await
                        .map_err(|e| step_error(e, not_found("SecretStoreNotFound", v)))?;
                }
            }
        }
        SECRET_STORE.output(&out)
    }

    /// No secret store wanted, and no secret the linker kept before to remove.
    fn skip(&self, cx: &StepCx<LinkerCtx>) -> Option<Value> {
        let p: LinkerParams = cx.params().ok()?;
        let r = cx.get(&RESOLVE).ok()?;
        let wanted = p
            .after
            .as_ref()
            .is_some_and(|s| s.writes_configuration() && s.secret_store.is_some());
        let kept = r
            .before
            .items
            .iter()
            .any(|item| matches!(item.what, What::VaultSecret { .. }) && removable(&r, item));
        (!wanted && !kept).then(|| SECRET_STORE.output(&SecretsOut::default()).ok())?
    }

    async fn undo(&self, cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        let Some(r) = cx.try_get(&RESOLVE)? else {
            return Ok(());
        };
        let p: LinkerParams = cx.params()?;
        let Some(spec) = p.after.as_ref().filter(|s| s.writes_configuration()) else {
            return Ok(());
        };
        let Some(store) = &spec.secret_store else {
            return Ok(());
        };
        if r.target.is_none() {
            return Ok(());
        }
        let call = call(cx);
        let secret_entries: Vec<Entry> = entries(cx, &p, spec)?
            .into_iter()
            .filter(|e| e.holds_secret)
            .collect();
        for (i, entry) in secret_entries.iter().enumerate() {
            let name = vault_secret_name(&p, spec, i, entry);
            if !r.before.has(&Item::vault_secret(&store.vault, &name).key) {
                cx.ctx()
                    .adapters
                    .vault
                    .remove_secret(&call, &store.vault, &name)
                    .await
                    .map_err(|e| step_error(e, not_found("SecretStoreNotFound", &store.vault)))?;
            }
        }
        Ok(())
    }
}

/// Makes the target admit the source: the linker's named firewall rules on each target
/// involved become exactly those the desired spec wants, and the IP rules it wants are added
/// (those the linker added before and no longer wants are removed, unless another linker
/// holds them).
///
/// Crash-safety: rule names derive from the linker id and the address; IP-rule entries are
/// added only when absent. The undo puts back the snapshot, whether the run finished,
/// half-finished or never started.
pub struct Network;

/// `known`: the rules as `resolve` listed them, used instead of listing them again when no
/// desired rule is among them (then every desired rule is put and every listed one not
/// desired is removed, whatever the target holds now: both are idempotent, so a rerun after
/// a crash halfway converges the same). Otherwise, and for the undo, the rules are listed.
async fn converge_rules(
    cx: &StepCx<LinkerCtx>,
    tr: &TargetRules,
    prefix: &str,
    desired: &[FirewallRule],
    known: Option<&[FirewallRule]>,
) -> Result<(), StepError> {
    let call = call(cx);
    let Some(firewall) = &cx.ctx().target(&tr.kind)?.firewall else {
        return Ok(());
    };
    let target = &tr.target;
    let known = known.filter(|k| !desired.iter().any(|d| k.contains(d)));
    let current = match known {
        Some(known) => known.to_vec(),
        None => match firewall.rules(&call, target, prefix).await {
            Ok(current) => current,
            Err(e) if e.is_not_found() && desired.is_empty() => return Ok(()),
            Err(e) => return Err(step_error(e, not_found("TargetNotFound", target))),
        },
    };
    for rule in desired.iter().filter(|r| !current.contains(r)) {
        firewall
            .ensure_rule(&call, target, rule)
            .await
            .map_err(|e| step_error(e, not_found("TargetNotFound", target)))?;
    }
    for rule in current
        .iter()
        .filter(|c| !desired.iter().any(|d| d.name == c.name))
    {
        firewall
            .remove_rule(&call, target, &rule.name)
            .await
            .map_err(|e| step_error(e, not_found("TargetNotFound", target)))?;
    }
    Ok(())
}

/// The IP-rule entries the desired spec wants on `target`.
fn wanted_ips(p: &LinkerParams, r: &Resolved, target: &TargetRef) -> BTreeSet<String> {
    match (&p.after, &r.source) {
        (Some(spec), Some(source)) if &spec.target == target => spec.ip_rules(&source.outbound_ips),
        _ => BTreeSet::new(),
    }
}

/// The IP-rule entries of `target` this saga may touch: those it wants, and those the
/// linker added before.
fn ips_in_play(p: &LinkerParams, r: &Resolved, target: &TargetRef) -> BTreeSet<String> {
    let mut values = wanted_ips(p, r, target);
    for item in &r.before.items {
        if let What::IpRule {
            target: t, value, ..
        } = &item.what
        {
            if t == target && removable(r, item) {
                values.insert(value.clone());
            }
        }
    }
    values
}

#[async_trait]
impl Step<LinkerCtx> for Network {
    fn name(&self) -> &'static str {
        NETWORK.name()
    }

    async fn run(&self, cx: &StepCx<LinkerCtx>) -> Result<Value, StepError> {
        let p: LinkerParams = cx.params()?;
        let r = cx.get(&RESOLVE)?;
        let prefix = rule_prefix(&p.linker);
        let mut out = NetworkOut::default();
        for tr in &r.rules {
            let desired = match (&p.after, &r.source) {
                (Some(spec), Some(source)) if spec.target == tr.target => {
                    spec.firewall_rules(&prefix, &source.outbound_ips)
                }
                _ => Vec::new(),
            };
            converge_rules(cx, tr, &prefix, &desired, Some(&tr.rules)).await?;
            out.items.extend(
                desired
                    .iter()
                    .map(|rule| Item::firewall_rule(&tr.target, &tr.kind, &rule.name)),
            );
        }
        let call = call(cx);
        for ti in &r.ip_rules {
            let Some(ips) = &cx.ctx().target(&ti.kind)?.ip_rules else {
                continue;
            };
            let wanted = wanted_ips(&p, &r, &ti.target);
            let add: BTreeSet<String> = wanted.difference(&ti.values).cloned().collect();
            let remove: BTreeSet<String> = ips_in_play(&p, &r, &ti.target)
                .difference(&wanted)
                .cloned()
                .collect();
            ips.apply_ip_rules(&call, &ti.target, &add, &remove)
                .await
                .map_err(|e| step_error(e, not_found("TargetNotFound", &ti.target)))?;
            for value in &wanted {
                let key = Item::ip_rule(&ti.target, &ti.kind, value, true).key;
                let created = !ti.values.contains(value) || r.before.created(&key);
                out.items
                    .push(Item::ip_rule(&ti.target, &ti.kind, value, created));
            }
        }
        NETWORK.output(&out)
    }

    async fn undo(&self, cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        let Some(r) = cx.try_get(&RESOLVE)? else {
            return Ok(());
        };
        let p: LinkerParams = cx.params()?;
        let prefix = rule_prefix(&p.linker);
        for tr in &r.rules {
            converge_rules(cx, tr, &prefix, &tr.rules, None).await?;
        }
        let call = call(cx);
        for ti in &r.ip_rules {
            let Some(ips) = &cx.ctx().target(&ti.kind)?.ip_rules else {
                continue;
            };
            let in_play = ips_in_play(&p, &r, &ti.target);
            let current = match ips.ip_rules(&call, &ti.target).await {
                Ok(current) => current,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(step_error(e, not_found("TargetNotFound", &ti.target))),
            };
            let add: BTreeSet<String> = in_play
                .iter()
                .filter(|v| ti.values.contains(*v) && !current.contains(*v))
                .cloned()
                .collect();
            let remove: BTreeSet<String> = in_play
                .iter()
                .filter(|v| !ti.values.contains(*v) && current.contains(*v))
                .cloned()
                .collect();
            ips.apply_ip_rules(&call, &ti.target, &add, &remove)
                .await
                .map_err(|e| step_error(e, not_found("TargetNotFound", &ti.target)))?;
        }
        Ok(())
    }
}

/// Writes the desired spec's configuration into the source (secrets as the source keeps
/// them, or as Key Vault references with a secret store) and removes the settings the linker
/// wrote before and no longer writes; every other setting is left alone. For create and
/// update its output carries the whole applied record.
///
/// Crash-safety: the write is a merge of fixed keys and values, so a rerun converges to the
/// same settings; the undo restores the snapshot of exactly those keys.
pub struct Configuration;

#[async_trait]
impl Step<LinkerCtx> for Configuration {
    fn name(&self) -> &'static str {
        CONFIGURATION.name()
    }

    async fn run(&self, cx: &StepCx<LinkerCtx>) -> Result<Value, StepError> {
        let p: LinkerParams = cx.params()?;
        let r = cx.get(&RESOLVE)?;
        let mut out = ConfigurationOut::default();
        let mut items = Vec::new();
        if r.source.is_some() {
            let mut changes: BTreeMap<Option<String>, SettingsChange> = BTreeMap::new();
            if let Some(spec) = p.after.as_ref().filter(|s| s.writes_configuration()) {
                let uris = cx
                    .try_get(&SECRET_STORE)?
                    .map(|s| s.uris)
                    .unwrap_or_default();
                let change = changes.entry(spec.scope.clone()).or_default();
                for entry in entries(cx, &p, spec)? {
                    let (value, secret) = match uris.get(&entry.name) {
                        Some(uri) => (format!("@Microsoft.KeyVault(SecretUri={uri})"), true),
                        None => {
                            let reference = entry.value.starts_with("@Microsoft.KeyVault(");
                            (entry.value, entry.holds_secret || reference)
                        }
                    };
                    items.push(Item::setting(&entry.name, spec.scope.as_deref()));
                    change.set.insert(entry.name, Setting { value, secret });
                }
                out.keys = change.set.keys().cloned().collect();
            }
            for item in &r.before.items {
                if let What::Setting { name, scope } = &item.what {
                    let change = changes.entry(scope.clone()).or_default();
                    if !change.set.contains_key(name) {
                        change.remove.insert(name.clone());
                    }
                }
            }
            for (container, change) in &changes {
                apply_settings(cx, &p, container.as_deref(), change).await?;
            }
        }
        if p.after.is_some() {
            let mut applied = Applied::default();
            if let Some(o) = cx.try_get(&IDENTITY)? {
                applied.items.extend(o.items);
            }
            if let Some(o) = cx.try_get(&AUTH)? {
                applied.items.extend(o.items);
            }
            if let Some(o) = cx.try_get(&SECRET_STORE)? {
                applied.items.extend(o.items);
            }
            if let Some(o) = cx.try_get(&NETWORK)? {
                applied.items.extend(o.items);
            }
            applied.items.extend(items);
            out.applied = Some(applied);
        }
        CONFIGURATION.output(&out)
    }

    async fn undo(&self, cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        let Some(Resolved {
            settings: Some(sealed),
            ..
        }) = cx.try_get(&RESOLVE)?
        else {
            return Ok(());
        };
        let p: LinkerParams = cx.params()?;
        let snapshot: Vec<(Option<String>, String, Option<Setting>)> = open(cx, &sealed)?;
        let mut changes: BTreeMap<Option<String>, SettingsChange> = BTreeMap::new();
        for (container, key, value) in snapshot {
            let change = changes.entry(container).or_default();
            match value {
                Some(v) => {
                    change.set.insert(key, v);
                }
                None => {
                    change.remove.insert(key);
                }
            }
        }
        for (container, change) in &changes {
            match apply_settings(cx, &p, container.as_deref(), change).await {
                Err(e) if e.code == "SourceNotFound" => {}
                other => other?,
            }
        }
        Ok(())
    }
}

async fn apply_settings(
    cx: &StepCx<LinkerCtx>,
    p: &LinkerParams,
    container: Option<&str>,
    change: &SettingsChange,
) -> Result<(), StepError> {
    let scope = &p.linker.scope;
    cx.ctx()
        .source(&source_kind(cx, p)?)?
        .settings
        .apply_settings(&call(cx), scope, container, change)
        .await
        .map_err(|e| step_error(e, not_found("SourceNotFound", scope)))
}
