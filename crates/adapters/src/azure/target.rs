//! One adapter for every ARM target kind: what differs between PostgreSQL, MySQL, SQL,
//! Storage, Key Vault, Service Bus, Redis, Cosmos DB and App Configuration is data in the
//! catalogue (api-version, which resource holds the facts, JSON pointers, the keys action,
//! the firewall collection or IP-rule array), interpreted here.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tether_model::catalog::{FactSource, Network, ResourceAt, TargetKind};
use tether_model::facts::Facts;
use tether_model::ids::ResourceId;

use crate::arm::{ArmClient, Method, Url};
use crate::{
    AccessKeys, AdapterError, Call, ErrorKind, FirewallRule, FirewallRules, IpRules, TargetFacts,
    TargetRef,
};

/// A target kind of the catalogue, over ARM.
pub struct ArmTarget {
    arm: ArmClient,
    kind: &'static TargetKind,
    api: String,
}

fn protocol(what: &str, message: impl Into<String>) -> AdapterError {
    AdapterError::new(ErrorKind::Protocol, what, "InvalidResponse", message)
}

fn bad_target(message: &str) -> AdapterError {
    AdapterError::new(
        ErrorKind::BadRequest,
        "resolve target",
        "InvalidTargetId",
        message,
    )
}

/// A JSON value as fact text: strings as they are, numbers and booleans printed.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl ArmTarget {
    /// The adapter of `kind`.
    pub fn new(arm: ArmClient, kind: &'static TargetKind) -> Self {
        let api = kind.api_version.clone().unwrap_or_default();
        Self { arm, kind, api }
    }

    /// Whether the kind has named firewall rules.
    pub fn firewall(&self) -> bool {
        matches!(self.kind.network, Some(Network::FirewallRules { .. }))
    }

    /// Whether the kind has unnamed IP rules.
    pub fn ip_rules(&self) -> bool {
        matches!(self.kind.network, Some(Network::IpRules { .. }))
    }

    fn id<'a>(&self, target: &'a TargetRef) -> Result<&'a ResourceId, AdapterError> {
        target
            .arm()
            .ok_or_else(|| bad_target("an ARM target needs a resource id"))
    }

    /// The resource that holds the facts: the target, or its parent.
    fn resource(&self, target: &TargetRef) -> Result<ResourceId, AdapterError> {
        let id = self.id(target)?;
        match self.kind.resource {
            ResourceAt::Target => Ok(id.clone()),
            ResourceAt::Parent => id
                .parent()
                .ok_or_else(|| bad_target("the target is not a child of a resource")),
        }
    }

    /// The ARM path of a named firewall rule.
    fn rule_path(&self, target: &TargetRef, name: &str) -> Result<String, AdapterError> {
        let Some(Network::FirewallRules { collection, .. }) = &self.kind.network else {
            return Err(bad_target("the target has no firewall rules"));
        };
        Ok(format!(
            "{}/{collection}/{}",
            self.resource(target)?.as_str(),
            self.wire_name(name)
        ))
    }

    /// Whether the kind's rule names may hold only letters and digits.
    fn alphanumeric_names(&self) -> bool {
        matches!(
            self.kind.network,
            Some(Network::FirewallRules {
                alphanumeric_names: true,
                ..
            })
        )
    }

    /// A rule's name as the backend keeps it: where names are letters and digits only, `-`
    /// becomes `x` and `_` becomes `y` (neither occurs in the names rules are given, so the
    /// mapping is undone exactly by [`ArmTarget::given_name`]).
    fn wire_name(&self, name: &str) -> String {
        if self.alphanumeric_names() {
            name.replace('-', "x").replace('_', "y")
        } else {
            name.to_string()
        }
    }

    /// The name a rule was given, from the backend's.
    fn given_name(&self, wire: &str) -> String {
        if self.alphanumeric_names() {
            wire.replace('x', "-").replace('y', "_")
        } else {
            wire.to_string()
        }
    }

    /// Where the IP rules live (the resource or a child) and its current body.
    async fn ip_rule_holder(
        &self,
        call: &Call,
        target: &TargetRef,
    ) -> Result<(String, Value), AdapterError> {
        let Some(Network::IpRules { child, .. }) = &self.kind.network else {
            return Err(bad_target("the target has no IP rules"));
        };
        let resource = self.resource(target)?;
        let path = match child {
            Some(child) => format!("{}/{child}", resource.as_str()),
            None => resource.as_str().to_string(),
        };
        let body = self.arm.get(call, &path, &self.api).await?;
        Ok((path, body))
    }
}

#[async_trait]
impl TargetFacts for ArmTarget {
    async fn facts(&self, call: &Call, target: &TargetRef) -> Result<Facts, AdapterError> {
        let id = self.id(target)?;
        let resource_id = self.resource(target)?;
        if resource_id != *id {
            // The target itself must exist too (a database of the server, `databases/0`).
            self.arm.get(call, id.as_str(), &self.api).await?;
        }
        let resource = self.arm.get(call, resource_id.as_str(), &self.api).await?;
        let mut facts = Facts::new();
        for spec in &self.kind.facts {
            let value = match &spec.source {
                FactSource::Pointer(p) => resource.pointer(p).and_then(text),
                FactSource::UrlHost(p) => resource
                    .pointer(p)
                    .and_then(Value::as_str)
                    .and_then(|u| Url::parse(u).ok())
                    .and_then(|u| u.host_str().map(str::to_string)),
                FactSource::Constant(c) => Some(c.clone()),
                FactSource::TargetName => Some(id.name().to_string()),
                FactSource::ResourceName => Some(resource_id.name().to_string()),
                FactSource::Subscription => Some(id.subscription().to_string()),
                FactSource::ResourceGroup => id.resource_group().map(str::to_string),
                // Endpoint facts and the caller's password do not come from ARM.
                _ => continue,
            };
            let value = value.ok_or_else(|| {
                protocol(
                    "read target",
                    format!("the target has no value for '{}'", spec.name),
                )
            })?;
            facts.set(&spec.name, value);
        }
        Ok(facts)
    }
}

#[async_trait]
impl AccessKeys for ArmTarget {
    async fn keys(&self, call: &Call, target: &TargetRef) -> Result<Facts, AdapterError> {
        let spec = self
            .kind
            .keys
            .as_ref()
            .ok_or_else(|| bad_target("the target has no keys"))?;
        let path = format!("{}/{}", self.resource(target)?.as_str(), spec.action);
        let body: Value = self.arm.post(call, &path, &self.api, None).await?;
        let mut facts = Facts::new();
        for (name, pointer) in &spec.facts {
            let value = body.pointer(pointer).and_then(text).ok_or_else(|| {
                protocol("list keys", format!("the keys hold no value for '{name}'"))
            })?;
            facts.set_secret(name, value);
        }
        Ok(facts)
    }
}

#[async_trait]
impl FirewallRules for ArmTarget {
    async fn rules(
        &self,
        call: &Call,
        target: &TargetRef,
        prefix: &str,
    ) -> Result<Vec<FirewallRule>, AdapterError> {
        let Some(Network::FirewallRules {
            collection,
            start,
            end,
            ..
        }) = &self.kind.network
        else {
            return Err(bad_target("the target has no firewall rules"));
        };
        let path = format!("{}/{collection}", self.resource(target)?.as_str());
        let body = self.arm.get(call, &path, &self.api).await?;
        let field = |v: &Value, f: &str| v["properties"][f].as_str()?.parse().ok();
        let mut rules: Vec<FirewallRule> = body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                Some(FirewallRule {
                    name: self.given_name(v["name"].as_str()?),
                    start: field(v, start)?,
                    end: field(v, end)?,
                })
            })
            .filter(|r| r.name.starts_with(prefix))
            .collect();
        rules.sort();
        Ok(rules)
    }

    async fn ensure_rule(
        &self,
        call: &Call,
        target: &TargetRef,
        rule: &FirewallRule,
    ) -> Result<(), AdapterError> {
        let Some(Network::FirewallRules { start, end, .. }) = &self.kind.network else {
            return Err(bad_target("the target has no firewall rules"));
        };
        let mut properties = Map::new();
        properties.insert(start.clone(), json!(rule.start.to_string()));
        properties.insert(end.clone(), json!(rule.end.to_string()));
        let path = self.rule_path(target, &rule.name)?;
        self.arm
            .write(
                call,
                Method::PUT,
                &path,
                &self.api,
                &json!({ "properties": properties }),
            )
            .await
    }

    async fn remove_rule(
        &self,
        call: &Call,
        target: &TargetRef,
        name: &str,
    ) -> Result<(), AdapterError> {
        let path = self.rule_path(target, name)?;
        self.arm.delete(call, &path, &self.api).await
    }
}

#[async_trait]
impl IpRules for ArmTarget {
    async fn ip_rules(
        &self,
        call: &Call,
        target: &TargetRef,
    ) -> Result<BTreeSet<String>, AdapterError> {
        let Some(Network::IpRules { pointer, field, .. }) = &self.kind.network else {
            return Err(bad_target("the target has no IP rules"));
        };
        let (_, body) = self.ip_rule_holder(call, target).await?;
        Ok(body
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r[field.as_str()].as_str().map(str::to_string))
            .collect())
    }

    async fn apply_ip_rules(
        &self,
        call: &Call,
        target: &TargetRef,
        add: &BTreeSet<String>,
        remove: &BTreeSet<String>,
    ) -> Result<(), AdapterError> {
        let Some(Network::IpRules {
            child,
            pointer,
            field,
            extra,
        }) = &self.kind.network
        else {
            return Err(bad_target("the target has no IP rules"));
        };
        let (path, body) = self.ip_rule_holder(call, target).await?;
        let current: Vec<Value> = body
            .pointer(pointer)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let value_of = |r: &Value| r[field.as_str()].as_str().map(str::to_string);
        let present: BTreeSet<String> = current.iter().filter_map(value_of).collect();
        let mut next: Vec<Value> = current
            .into_iter()
            .filter(|r| value_of(r).is_none_or(|v| !remove.contains(&v)))
            .collect();
        for value in add
            .iter()
            .filter(|v| !present.contains(*v) && !remove.contains(*v))
        {
            let mut entry = extra.clone();
            entry.insert(field.clone(), json!(value));
            next.push(Value::Object(entry));
        }
        let after: BTreeSet<String> = next.iter().filter_map(value_of).collect();
        if after == present {
            return Ok(());
        }
        // The array, nested in objects along its pointer; merge patch keeps every sibling.
        let mut patch = Value::Array(next);
        for segment in pointer.trim_start_matches('/').rsplit('/') {
            let mut object = Map::new();
            object.insert(segment.to_string(), patch);
            patch = Value::Object(object);
        }
        match child {
            // A child holding the rules (`networkRuleSets/default`) is replaced as a whole.
            Some(_) => {
                let mut whole = body;
                if let (Some(Value::Object(props)), Some(Value::Object(new_props))) =
                    (whole.get_mut("properties"), patch.get("properties"))
                {
                    props.extend(new_props.clone());
                }
                let put = json!({ "properties": whole["properties"] });
                self.arm
                    .write(call, Method::PUT, &path, &self.api, &put)
                    .await
            }
            None => {
                self.arm
                    .write(call, Method::PATCH, &path, &self.api, &patch)
                    .await
            }
        }
    }
}
