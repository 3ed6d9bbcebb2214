//! `validate`: checks that a connection still works — source and target exist, the source
//! holds the expected configuration, the target admits the source, the identity is there with
//! its grants — and reports each check as ARM's `ValidateResult`. Read-only: nothing to undo.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tether_adapters::{AdapterError, Call};
use tether_model::configuration::Reveal;
use tether_saga::{Step, StepCx, StepError};

use super::steps::{IdentityOut, connection_facts};
use super::{LinkerCtx, ValidateParams, model_error, step_error};
use crate::spec::{Auth, rule_prefix};

/// One check of a validation (`ValidationResultItem`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Item {
    name: &'static str,
    description: &'static str,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<String>,
}

impl Item {
    pub(crate) fn new(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            description,
            result: "success",
            error_message: None,
            error_code: None,
        }
    }

    pub(crate) fn fail(mut self, code: &str, message: impl Into<String>) -> Self {
        self.result = "failure";
        self.error_code = Some(code.to_string());
        self.error_message = Some(message.into());
        self
    }

    pub(crate) fn warn(mut self, code: &str, message: impl Into<String>) -> Self {
        self.result = "warning";
        self.error_code = Some(code.to_string());
        self.error_message = Some(message.into());
        self
    }

    pub(crate) fn failed(&self) -> bool {
        self.result == "failure"
    }
}

/// Transient adapter errors make the step retry; others become a failed check.
pub(crate) fn check_error(item: Item, e: AdapterError, not_found: &str) -> Result<Item, StepError> {
    if e.is_transient() {
        return Err(step_error(e, || ("NotFound", not_found.to_string())));
    }
    if e.is_not_found() {
        return Ok(item.fail("NotFound", not_found));
    }
    Ok(item.fail(&e.code, format!("{}: {}", e.operation, e.message)))
}

/// The validation step.
pub struct Validate;

#[async_trait]
impl Step<LinkerCtx> for Validate {
    fn name(&self) -> &'static str {
        "validate"
    }

    async fn run(&self, cx: &StepCx<LinkerCtx>) -> Result<Value, StepError> {
        let p: ValidateParams = cx.params()?;
        let ctx = cx.ctx();
        let call = Call::correlated(cx.saga_id());
        let scope = &p.linker.scope;
        let spec = &p.spec;
        let source = ctx.source(&spec.source)?;
        let target = ctx.target(&spec.kind)?;
        let kind = spec.kind().map_err(model_error)?;
        let mut items = Vec::new();

        let source_item = Item::new("SourceExistence", "The source resource exists.");
        let (source_facts, identity) = match source.settings.facts(&call, scope).await {
            Ok(facts) => match source.identity.identity(&call, scope).await {
                Ok(identity) => {
                    items.push(source_item);
                    (Some(facts), Some(identity))
                }
                Err(e) => {
                    items.push(check_error(
                        source_item,
                        e,
                        "The source resource was not found.",
                    )?);
                    (None, None)
                }
            },
            Err(e) => {
                items.push(check_error(
                    source_item,
                    e,
                    "The source resource was not found.",
                )?);
                (None, None)
            }
        };
        let target_item = Item::new("TargetExistence", "The target resource exists.");
        let target_facts = match target.facts.facts(&call, &spec.target).await {
            Ok(facts) => {
                items.push(target_item);
                Some(facts)
            }
            Err(e) => {
                items.push(check_error(
                    target_item,
                    e,
                    "The target resource was not found.",
                )?);
                None
            }
        };

        // The identity the connection uses, as the source holds it now.
        let mut identity_out = IdentityOut::default();
        let auth_item = Item::new(
            "AuthenticationPresence",
            "The source holds the identity, and the target grants it access.",
        );
        let mut auth_missing: Vec<String> = Vec::new();
        if let Some(held) = &identity {
            match &spec.auth {
                Auth::SystemIdentity(o) if !o.opt_out => match &held.system {
                    Some(p) => identity_out.system = Some(p.clone()),
                    None => auth_missing.push("the source's system-assigned identity".into()),
                },
                Auth::UserIdentity {
                    client_id,
                    subscription,
                    options,
                } if !options.opt_out => {
                    match ctx
                        .adapters
                        .identities
                        .find(&call, subscription, client_id)
                        .await
                    {
                        Ok(Some(uai)) if held.user.contains_key(uai.id.key()) => {
                            identity_out.user = Some(uai);
                        }
                        Ok(_) => {
                            auth_missing.push(format!("the user-assigned identity {client_id}"))
                        }
                        Err(e) => return Err(step_error(e, || ("NotFound", String::new()))),
                    }
                }
                _ => {}
            }
        }

        let config_item = Item::new(
            "ConfigurationPresence",
            "The source holds the connection's configuration.",
        );
        match (&source_facts, &target_facts) {
            _ if !spec.writes_configuration() => items.push(config_item.warn(
                "ConfigurationOptedOut",
                "configurationInfo.action is optOut: the application must be configured by other means.",
            )),
            (Some(_), Some(facts)) => {
                let keys = match (&spec.auth, &target.keys) {
                    (Auth::TargetKeys, Some(keys)) => Some(
                        keys.keys(&call, &spec.target)
                            .await
                            .map_err(|e| step_error(e, || ("NotFound", String::new())))?,
                    ),
                    _ => None,
                };
                let facts = connection_facts(ctx, p.linker_id, spec, facts, keys, Some(&identity_out))?;
                let expected = spec
                    .configuration_request()
                    .map_err(model_error)?
                    .render(&facts, Reveal::Secrets)
                    .map_err(model_error)?;
                match source.settings.read_settings(&call, scope, spec.scope.as_deref()).await {
                    Ok(actual) => {
                        let stored_in_vault = spec.secret_store.is_some();
                        let missing: Vec<&str> = expected
                            .iter()
                            .filter(|e| match actual.get(&e.name) {
                                None => true,
                                Some(a) if stored_in_vault && e.holds_secret => {
                                    !a.value.starts_with("@Microsoft.KeyVault(")
                                }
                                Some(a) => a.value != e.value,
                            })
                            .map(|e| e.name.as_str())
                            .collect();
                        if missing.is_empty() {
                            items.push(config_item);
                        } else {
                            items.push(config_item.fail(
                                "ConfigurationMismatch",
                                format!("These settings are missing or differ from the connection: {}.", missing.join(", ")),
                            ));
                        }
                    }
                    Err(e) => items.push(check_error(config_item, e, "The source resource was not found.")?),
                }
            }
            _ => items.push(config_item.fail("Unknown", "Not checked: the source or the target is missing.")),
        }

        let network_item = Item::new("TargetNetworkAccess", "The target admits the source.");
        let prefix = rule_prefix(&p.linker);
        match &source_facts {
            Some(facts) if kind.has_network() => {
                let wanted_rules = spec.firewall_rules(&prefix, &facts.outbound_ips);
                let wanted_ips = spec.ip_rules(&facts.outbound_ips);
                let missing: Result<Vec<String>, AdapterError> =
                    match (&target.firewall, &target.ip_rules) {
                        (Some(firewall), _) => firewall
                            .rules(&call, &spec.target, &prefix)
                            .await
                            .map(|present| {
                                wanted_rules
                                    .iter()
                                    .filter(|w| !present.contains(w))
                                    .map(|w| w.name.clone())
                                    .collect()
                            }),
                        (None, Some(ips)) => ips
                            .ip_rules(&call, &spec.target)
                            .await
                            .map(|present| wanted_ips.difference(&present).cloned().collect()),
                        (None, None) => Ok(Vec::new()),
                    };
                match missing {
                    _ if wanted_rules.is_empty() && wanted_ips.is_empty() => items.push(network_item.warn(
                        "NoNetworkSetup",
                        "The connection asks for no network access; make sure the target admits the source.",
                    )),
                    Ok(missing) if missing.is_empty() => items.push(network_item),
                    Ok(missing) => items.push(network_item.fail(
                        "NetworkAccessMissing",
                        format!("These rules are missing or differ: {}.", missing.join(", ")),
                    )),
                    Err(e) => items.push(check_error(network_item, e, "The target resource was not found.")?),
                }
            }
            Some(_) => items.push(
                network_item.warn("NotApplicable", "The target has no network rules to check."),
            ),
            None => items.push(network_item.fail("Unknown", "Not checked: the source is missing.")),
        }

        // Grants of identity auth.
        let granted = spec.auth.identity().is_some_and(|o| !o.opt_out);
        if let (true, Some(facts)) = (granted, &target_facts) {
            if let Some(grantee) = identity_out.grantee(&spec.auth) {
                let mut seen = BTreeSet::new();
                for grant in spec.grants(facts).map_err(model_error)? {
                    if !seen.insert(grant.key(&grantee)) {
                        continue;
                    }
                    let exists = ctx
                        .adapters
                        .grants
                        .grant_exists(&call, &grant, &grantee)
                        .await
                        .map_err(|e| step_error(e, || ("NotFound", String::new())))?;
                    if !exists {
                        auth_missing.push(format!("the grant {}", grant.key(&grantee)));
                    }
                }
            }
            items.push(if auth_missing.is_empty() {
                auth_item
            } else {
                auth_item.fail(
                    "AuthenticationMissing",
                    format!("Missing: {}.", auth_missing.join(", ")),
                )
            });
        }

        let available = items.iter().all(|i| !i.failed());
        Ok(serde_json::json!({
            "linkerName": p.linker.name.as_str(),
            "isConnectionAvailable": available,
            "sourceId": scope.as_str(),
            "targetId": spec.target.to_string(),
            "authType": spec.auth_type.as_str(),
            "validationDetail": items,
        }))
    }

    async fn undo(&self, _cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        Ok(())
    }
}
