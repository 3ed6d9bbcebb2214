//! `resolve`, `network` and `configuration`.
//!
//! `resolve` reads facts and snapshots everything later steps may change (the configuration
//! keys of both specs, sealed because values can be secrets; the linker's firewall rules on
//! every target involved). `network` and `configuration` converge forward to the `after`
//! spec, and their undos converge back to that snapshot — so a failure at any point leaves
//! the backend exactly as it was, whatever it held before (even a setting the user had written
//! by hand under the same name).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_adapters::{Call, FirewallRule, SourceFacts};
use tether_model::ids::ResourceId;
use tether_model::linker::Sealed;
use tether_saga::{Step, StepCx, StepError, StepKey};

use super::spec::{ConnectionSpec, rule_prefix};
use super::{LinkerParams, SettingsChange, TargetFacts};
use crate::sagas::{LinkerCtx, step_error};

/// The output of `resolve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// The source's facts; `None` when a delete finds the source gone.
    pub source: Option<SourceFacts>,
    /// The facts of the `after` target (none for a delete).
    pub target: Option<TargetFacts>,
    /// The values the touched keys had (`None` = absent), sealed for this saga; `None` when
    /// the source is gone.
    pub settings: Option<Sealed>,
    /// The linker's firewall rules, per target involved, before any change.
    pub rules: Vec<TargetRules>,
}

/// The linker's rules on one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRules {
    /// The target.
    pub target: ResourceId,
    /// Its rules whose names carry the linker's prefix.
    pub rules: Vec<FirewallRule>,
}

/// The output of `network`: the rules now in place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkOut {
    /// Rule names.
    pub rules: Vec<String>,
}

/// The output of `configuration`: the keys written (names only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigurationOut {
    /// Key names.
    pub keys: Vec<String>,
}

/// `resolve`'s output key.
pub const RESOLVE: StepKey<Resolved> = StepKey::new("resolve");
/// `network`'s output key.
pub const NETWORK: StepKey<NetworkOut> = StepKey::new("network");
/// `configuration`'s output key.
pub const CONFIGURATION: StepKey<ConfigurationOut> = StepKey::new("configuration");

fn specs(p: &LinkerParams) -> impl Iterator<Item = &ConnectionSpec> {
    p.before.iter().chain(p.after.iter())
}

fn snapshot_owner(cx: &StepCx<LinkerCtx>) -> [u8; 16] {
    *cx.saga_id().as_uuid().as_bytes()
}

/// Reads facts and snapshots the state later steps change. No side effects.
///
/// Crash-safety: nothing to undo; a rerun takes a fresh snapshot, which is still the state
/// before any change because later steps only start once this output is logged.
pub struct Resolve;

#[async_trait]
impl Step<LinkerCtx> for Resolve {
    fn name(&self) -> &'static str {
        RESOLVE.name()
    }

    async fn run(&self, cx: &StepCx<LinkerCtx>) -> Result<Value, StepError> {
        let p: LinkerParams = cx.params()?;
        let ctx = cx.ctx();
        let call = Call::correlated(cx.saga_id());
        let scope = &p.linker.scope;
        let source = ctx.v1_source(scope)?;
        let source_facts = match source.facts(&call, scope).await {
            Ok(facts) => Some(facts),
            Err(e) if e.is_not_found() && p.after.is_none() => None,
            Err(e) => {
                return Err(step_error(e, || {
                    (
                        "SourceNotFound",
                        format!("the source resource '{scope}' was not found"),
                    )
                }));
            }
        };
        let target_facts = match &p.after {
            Some(spec) => {
                let facts = ctx
                    .v1_target(&spec.target)?
                    .facts(&call, &spec.target)
                    .await;
                Some(facts.map_err(|e| {
                    step_error(e, || {
                        (
                            "TargetNotFound",
                            format!("the target resource '{}' was not found", spec.target),
                        )
                    })
                })?)
            }
            None => None,
        };
        let settings = match source_facts {
            None => None,
            Some(_) => {
                let keys: BTreeSet<String> =
                    specs(&p).flat_map(ConnectionSpec::written_keys).collect();
                let current = source.read_settings(&call, scope).await.map_err(|e| {
                    step_error(e, || {
                        (
                            "SourceNotFound",
                            format!("the source resource '{scope}' was not found"),
                        )
                    })
                })?;
                let snapshot: BTreeMap<&String, Option<&String>> =
                    keys.iter().map(|k| (k, current.get(k))).collect();
                let plain = serde_json::to_vec(&snapshot).expect("a map of strings serializes");
                Some(ctx.secrets.seal(&plain, &snapshot_owner(cx)))
            }
        };
        let prefix = rule_prefix(&p.linker);
        let mut targets: Vec<&ResourceId> = Vec::new();
        for spec in specs(&p).filter(|s| s.has_firewall()) {
            if !targets.contains(&&spec.target) {
                targets.push(&spec.target);
            }
        }
        let mut rules = Vec::with_capacity(targets.len());
        for target in targets {
            let current = match ctx
                .v1_target(target)?
                .firewall_rules(&call, target, &prefix)
                .await
            {
                Ok(current) => current,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => {
                    return Err(step_error(e, || {
                        (
                            "TargetNotFound",
                            format!("the target '{target}' was not found"),
                        )
                    }));
                }
            };
            rules.push(TargetRules {
                target: target.clone(),
                rules: current,
            });
        }
        RESOLVE.output(&Resolved {
            source: source_facts,
            target: target_facts,
            settings,
            rules,
        })
    }

    async fn undo(&self, _cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        Ok(())
    }
}

/// Makes the target's firewall admit the source: the linker's rules on each target involved
/// become exactly those the `after` spec wants (none on a target it no longer uses).
///
/// Crash-safety: rule names derive from the linker id and the address, so a rerun after a
/// crash finds rules it already made; the undo puts back the snapshot, whether the run
/// finished, half-finished or never started.
pub struct Network;

#[async_trait]
impl Step<LinkerCtx> for Network {
    fn name(&self) -> &'static str {
        NETWORK.name()
    }

    async fn run(&self, cx: &StepCx<LinkerCtx>) -> Result<Value, StepError> {
        let p: LinkerParams = cx.params()?;
        let resolved = cx.get(&RESOLVE)?;
        let prefix = rule_prefix(&p.linker);
        let mut names = Vec::new();
        for tr in &resolved.rules {
            let desired = match (&p.after, &resolved.source) {
                (Some(spec), Some(facts)) if spec.target == tr.target => {
                    spec.firewall_rules(&prefix, facts)
                }
                _ => Vec::new(),
            };
            converge(cx, &tr.target, &prefix, &desired).await?;
            names.extend(desired.into_iter().map(|r| r.name));
        }
        NETWORK.output(&NetworkOut { rules: names })
    }

    async fn undo(&self, cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        let Some(resolved) = cx.try_get(&RESOLVE)? else {
            return Ok(());
        };
        let p: LinkerParams = cx.params()?;
        let prefix = rule_prefix(&p.linker);
        for tr in &resolved.rules {
            converge(cx, &tr.target, &prefix, &tr.rules).await?;
        }
        Ok(())
    }
}

/// Makes the linker's rules on `target` exactly `desired`: creates or fixes missing ones,
/// removes the linker's other rules. Never touches rules without the linker's prefix.
async fn converge(
    cx: &StepCx<LinkerCtx>,
    target: &ResourceId,
    prefix: &str,
    desired: &[FirewallRule],
) -> Result<(), StepError> {
    let call = Call::correlated(cx.saga_id());
    let adapter = cx.ctx().v1_target(target)?;
    let not_found = || {
        (
            "TargetNotFound",
            format!("the target resource '{target}' was not found"),
        )
    };
    let current = match adapter.firewall_rules(&call, target, prefix).await {
        Ok(current) => current,
        Err(e) if e.is_not_found() && desired.is_empty() => return Ok(()),
        Err(e) => return Err(step_error(e, not_found)),
    };
    for rule in desired.iter().filter(|r| !current.contains(r)) {
        adapter
            .ensure_firewall_rule(&call, target, rule)
            .await
            .map_err(|e| step_error(e, not_found))?;
    }
    for rule in current
        .iter()
        .filter(|c| !desired.iter().any(|d| d.name == c.name))
    {
        adapter
            .remove_firewall_rule(&call, target, &rule.name)
            .await
            .map_err(|e| step_error(e, not_found))?;
    }
    Ok(())
}

/// Writes the `after` spec's configuration into the source and removes keys only the
/// `before` spec wrote; every other setting is left alone.
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
        let resolved = cx.get(&RESOLVE)?;
        if resolved.source.is_none() {
            return CONFIGURATION.output(&ConfigurationOut { keys: Vec::new() });
        }
        let ctx = cx.ctx();
        let mut change = SettingsChange::default();
        if let (Some(spec), Some(target)) = (&p.after, &resolved.target) {
            if !spec.written_keys().is_empty() {
                let entries = ctx.v1_configuration(spec, p.linker_id, target)?;
                change
                    .set
                    .extend(entries.into_iter().map(|e| (e.name, e.value)));
            }
        }
        for key in p.before.iter().flat_map(ConnectionSpec::written_keys) {
            if !change.set.contains_key(&key) {
                change.remove.insert(key);
            }
        }
        let keys: Vec<String> = change.set.keys().cloned().collect();
        apply(cx, &p, &change).await?;
        CONFIGURATION.output(&ConfigurationOut { keys })
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
        let plain = cx
            .ctx()
            .secrets
            .open(&sealed, &snapshot_owner(cx))
            .map_err(|_| {
                StepError::permanent(
                    "SecretUnavailable",
                    "the settings snapshot could not be decrypted",
                )
            })?;
        let snapshot: BTreeMap<String, Option<String>> =
            serde_json::from_slice(&plain).map_err(|e| {
                StepError::permanent("InternalServerError", format!("settings snapshot: {e}"))
            })?;
        let mut change = SettingsChange::default();
        for (key, value) in snapshot {
            match value {
                Some(v) => {
                    change.set.insert(key, v);
                }
                None => {
                    change.remove.insert(key);
                }
            }
        }
        match apply(cx, &p, &change).await {
            Err(e) if e.code == "SourceNotFound" => Ok(()),
            other => other,
        }
    }
}

async fn apply(
    cx: &StepCx<LinkerCtx>,
    p: &LinkerParams,
    change: &SettingsChange,
) -> Result<(), StepError> {
    let scope = &p.linker.scope;
    let call = Call::correlated(cx.saga_id());
    cx.ctx()
        .v1_source(scope)?
        .apply_settings(&call, scope, change)
        .await
        .map_err(|e| {
            step_error(e, || {
                (
                    "SourceNotFound",
                    format!("the source resource '{scope}' was not found"),
                )
            })
        })
}
