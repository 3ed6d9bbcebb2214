//! Azure Database for PostgreSQL flexible server databases as connection targets: the endpoint
//! comes from the server, network access from its firewall rules.

use async_trait::async_trait;
use serde_json::{Value, json};
use tether_model::catalog::POSTGRES_FLEXIBLE;
use tether_model::ids::ResourceId;

use crate::arm::ArmClient;
use crate::{AdapterError, Call, ErrorKind, FirewallRule, TargetAdapter, TargetFacts};

const API_VERSION: &str = "2022-12-01";

/// The PostgreSQL flexible server target adapter. Targets are databases
/// (`.../flexibleServers/{server}/databases/{database}`); firewall rules live on the server.
pub struct PostgresFlexibleTarget {
    arm: ArmClient,
}

impl PostgresFlexibleTarget {
    /// An adapter over `arm`.
    pub fn new(arm: ArmClient) -> Self {
        Self { arm }
    }
}

fn server_of(target: &ResourceId) -> Result<ResourceId, AdapterError> {
    target.parent().ok_or_else(|| {
        AdapterError::new(
            ErrorKind::BadRequest,
            "resolve server",
            "InvalidTargetId",
            "the target is not a database of a server",
        )
    })
}

fn parse_rule(value: &Value) -> Option<FirewallRule> {
    Some(FirewallRule {
        name: value.get("name")?.as_str()?.to_string(),
        start: value
            .pointer("/properties/startIpAddress")?
            .as_str()?
            .parse()
            .ok()?,
        end: value
            .pointer("/properties/endIpAddress")?
            .as_str()?
            .parse()
            .ok()?,
    })
}

#[async_trait]
impl TargetAdapter for PostgresFlexibleTarget {
    async fn facts(&self, call: &Call, target: &ResourceId) -> Result<TargetFacts, AdapterError> {
        let server = self
            .arm
            .get(call, server_of(target)?.as_str(), API_VERSION)
            .await?;
        let host = server
            .pointer("/properties/fullyQualifiedDomainName")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AdapterError::new(
                    ErrorKind::Protocol,
                    "read server",
                    "InvalidResponse",
                    "the server has no fullyQualifiedDomainName",
                )
            })?
            .to_string();
        let database = self.arm.get(call, target.as_str(), API_VERSION).await?;
        let name = database
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(target.name())
            .to_string();
        Ok(TargetFacts {
            host,
            port: POSTGRES_FLEXIBLE.port,
            database: name,
        })
    }

    async fn firewall_rules(
        &self,
        call: &Call,
        target: &ResourceId,
        prefix: &str,
    ) -> Result<Vec<FirewallRule>, AdapterError> {
        let path = format!("{}/firewallRules", server_of(target)?.as_str());
        let body = self.arm.get(call, &path, API_VERSION).await?;
        let mut rules: Vec<FirewallRule> = body
            .get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(parse_rule)
            .filter(|r| r.name.starts_with(prefix))
            .collect();
        rules.sort();
        Ok(rules)
    }

    async fn ensure_firewall_rule(
        &self,
        call: &Call,
        target: &ResourceId,
        rule: &FirewallRule,
    ) -> Result<(), AdapterError> {
        let path = format!(
            "{}/firewallRules/{}",
            server_of(target)?.as_str(),
            rule.name
        );
        let body = json!({"properties": {"startIpAddress": rule.start.to_string(), "endIpAddress": rule.end.to_string()}});
        self.arm.put(call, &path, API_VERSION, &body).await?;
        Ok(())
    }

    async fn remove_firewall_rule(
        &self,
        call: &Call,
        target: &ResourceId,
        name: &str,
    ) -> Result<(), AdapterError> {
        let path = format!("{}/firewallRules/{name}", server_of(target)?.as_str());
        self.arm.delete(call, &path, API_VERSION).await
    }
}
