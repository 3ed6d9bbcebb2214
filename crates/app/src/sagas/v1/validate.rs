//! `validate`: checks that a connection still works — source and target exist, the source's
//! configuration holds the expected entries, the target's firewall admits the source — and
//! reports each check as ARM's `ValidateResult`. Read-only: nothing to undo.

use async_trait::async_trait;
use serde_json::Value;
use tether_adapters::Call;
use tether_saga::{Step, StepCx, StepError};

use super::ValidateParams;
use super::spec::rule_prefix;
use crate::sagas::LinkerCtx;
use crate::sagas::validate::{Item, check_error};

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
        let source = ctx.v1_source(scope)?;
        let target = ctx.v1_target(&spec.target)?;
        let mut items = Vec::new();

        let source_item = Item::new("SourceExistence", "The source resource exists.");
        let source_facts = match source.facts(&call, scope).await {
            Ok(facts) => {
                items.push(source_item);
                Some(facts)
            }
            Err(e) => {
                items.push(check_error(
                    source_item,
                    e,
                    "The source resource was not found.",
                )?);
                None
            }
        };
        let target_item = Item::new("TargetExistence", "The target resource exists.");
        let target_facts = match target.facts(&call, &spec.target).await {
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

        let config_item = Item::new(
            "ConfigurationPresence",
            "The source holds the connection's configuration.",
        );
        let opted_out = spec.configuration.as_ref().and_then(|c| c.action)
            == Some(tether_model::linker::ActionType::OptOut);
        match (&source_facts, &target_facts) {
            _ if opted_out => items.push(config_item.warn(
                "ConfigurationOptedOut",
                "configurationInfo.action is optOut: the application must be configured by other means.",
            )),
            (Some(_), Some(t)) => {
                let expected = ctx.v1_configuration(spec, p.linker_id, t)?;
                match source.read_settings(&call, scope).await {
                    Ok(actual) => {
                        let missing: Vec<&str> = expected
                            .iter()
                            .filter(|e| actual.get(&e.name) != Some(&e.value))
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

        let network_item = Item::new(
            "TargetNetworkAccess",
            "The target's firewall admits the source.",
        );
        let prefix = rule_prefix(&p.linker);
        match &source_facts {
            Some(facts) if spec.has_firewall() => {
                let wanted = spec.firewall_rules(&prefix, facts);
                if wanted.is_empty() {
                    items.push(network_item.warn(
                        "NoNetworkSetup",
                        "The connection asks for no firewall rules; make sure the target admits the source.",
                    ));
                } else {
                    match target.firewall_rules(&call, &spec.target, &prefix).await {
                        Ok(present) => {
                            let missing: Vec<&str> = wanted
                                .iter()
                                .filter(|w| !present.contains(w))
                                .map(|w| w.name.as_str())
                                .collect();
                            if missing.is_empty() {
                                items.push(network_item);
                            } else {
                                items.push(network_item.fail(
                                    "FirewallRuleMissing",
                                    format!(
                                        "These firewall rules are missing or differ: {}.",
                                        missing.join(", ")
                                    ),
                                ));
                            }
                        }
                        Err(e) => items.push(check_error(
                            network_item,
                            e,
                            "The target resource was not found.",
                        )?),
                    }
                }
            }
            Some(_) => items
                .push(network_item.warn("NotApplicable", "The target has no firewall to check.")),
            None => items.push(network_item.fail("Unknown", "Not checked: the source is missing.")),
        }

        let available = items.iter().all(|i| !i.failed());
        Ok(serde_json::json!({
            "linkerName": p.linker.name.as_str(),
            "isConnectionAvailable": available,
            "sourceId": scope.as_str(),
            "targetId": spec.target.as_str(),
            "authType": spec.auth.as_str(),
            "validationDetail": items,
        }))
    }

    async fn undo(&self, _cx: &StepCx<LinkerCtx>) -> Result<(), StepError> {
        Ok(())
    }
}
