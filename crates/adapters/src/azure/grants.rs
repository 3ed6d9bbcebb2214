//! Grants for identities on targets: ARM role assignments (`Microsoft.Authorization`, any
//! scope; role names resolved to definitions at the scope), database users created through
//! the server's SQL data plane with the statements each engine's Entra integration takes, and
//! the data-plane policies of Azure Cache for Redis and Cosmos DB.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Value, json};
use tether_model::catalog::Dialect;
use tether_model::ids::{ResourceId, is_canonical_guid};

use crate::arm::{ArmClient, Method};
use crate::{AdapterError, Call, Ensured, ErrorKind, Grant, Grantee, Grants};

const AUTHORIZATION_API: &str = "2022-04-01";
const REDIS_API: &str = "2023-08-01";
const COSMOS_API: &str = "2024-05-15";

/// Grants over ARM and the SQL data plane.
pub struct ArmGrants {
    arm: ArmClient,
    /// Role definition ids by (scope, lower-cased role name): they do not change.
    roles: Mutex<HashMap<(String, String), String>>,
}

impl ArmGrants {
    /// Grants over `arm`.
    pub fn new(arm: ArmClient) -> Self {
        Self {
            arm,
            roles: Mutex::new(HashMap::new()),
        }
    }

    /// The definition id of a role given by name or id, at `scope`.
    async fn role_definition(
        &self,
        call: &Call,
        scope: &ResourceId,
        role: &str,
    ) -> Result<String, AdapterError> {
        // A role assignment takes the subscription-level id of a definition (the same at
        // every scope of the subscription), whatever scope it was listed at.
        let at_subscription = |guid: &str| {
            format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
                scope.subscription()
            )
        };
        let guid = role.rsplit('/').next().unwrap_or(role);
        if is_canonical_guid(guid) {
            return Ok(at_subscription(guid));
        }
        let key = (scope.key().to_string(), role.to_ascii_lowercase());
        if let Some(id) = self.roles.lock().ok().and_then(|r| r.get(&key).cloned()) {
            return Ok(id);
        }
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions",
            scope.as_str()
        );
        let filter = format!("roleName eq '{}'", role.replace('\'', "''"));
        let body = self
            .arm
            .get_filtered(call, &path, AUTHORIZATION_API, &filter)
            .await?;
        let listed = body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| {
                d["properties"]["roleName"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(role))
            })
            .and_then(|d| d["id"].as_str())
            .ok_or_else(|| {
                AdapterError::new(
                    ErrorKind::BadRequest,
                    "find role definition",
                    "RoleDefinitionNotFound",
                    format!("no role named '{role}' is defined at the target's scope"),
                )
            })?;
        // Listed at a resource, the id is under that resource's scope.
        let id = at_subscription(listed.rsplit('/').next().unwrap_or(listed));
        if let Ok(mut roles) = self.roles.lock() {
            roles.insert(key, id.clone());
        }
        Ok(id)
    }

    async fn sql(
        &self,
        call: &Call,
        host: &str,
        database: &str,
        statements: &[String],
    ) -> Result<Value, AdapterError> {
        let body = json!({"server": host, "database": database, "statements": statements});
        self.arm.sql(call, &body).await
    }
}

/// The statements that make, check and drop a database user for an identity.
struct Dialects;

impl Dialects {
    fn exists(dialect: Dialect, name: &str) -> String {
        match dialect {
            Dialect::Postgres => format!("select 1 from pg_roles where rolname = '{name}'"),
            Dialect::Mysql => format!("select 1 from mysql.user where user = '{name}'"),
            Dialect::Sql => {
                format!("select name from sys.database_principals where name = '{name}'")
            }
        }
    }

    fn create(dialect: Dialect, name: &str, database: &str, grantee: &Grantee) -> Vec<String> {
        let oid = &grantee.principal_id;
        match dialect {
            Dialect::Postgres => vec![
                format!(
                    "select * from pgaadauth_create_principal_with_oid('{name}', '{oid}', 'service', false, false)"
                ),
                format!("grant all privileges on database \"{database}\" to \"{name}\""),
            ],
            Dialect::Mysql => {
                let id = grantee.client_id.as_deref().unwrap_or(oid);
                vec![
                    "set aad_auth_validate_oids_in_tenant = off".to_string(),
                    format!("create aaduser if not exists '{name}' identified by '{id}'"),
                    format!("grant all privileges on `{database}`.* to '{name}'@'%'"),
                    "flush privileges".to_string(),
                ]
            }
            Dialect::Sql => vec![
                format!("create user [{name}] from external provider with object_id = '{oid}'"),
                format!("alter role db_datareader add member [{name}]"),
                format!("alter role db_datawriter add member [{name}]"),
                format!("alter role db_ddladmin add member [{name}]"),
            ],
        }
    }

    fn drop(dialect: Dialect, name: &str) -> String {
        match dialect {
            Dialect::Postgres => format!("drop role if exists \"{name}\""),
            Dialect::Mysql => format!("drop user if exists '{name}'@'%'"),
            Dialect::Sql => format!("drop user if exists [{name}]"),
        }
    }
}

/// The database user name of a grantee (checked by the connection: letters, digits, `_`).
fn user_name(grantee: &Grantee) -> Result<&str, AdapterError> {
    grantee.user_name.as_deref().ok_or_else(|| {
        AdapterError::new(
            ErrorKind::BadRequest,
            "create database user",
            "UserNameRequired",
            "a database user needs a name",
        )
    })
}

fn has_rows(result: &Value) -> bool {
    result["results"][0]["rows"]
        .as_array()
        .is_some_and(|rows| !rows.is_empty())
}

#[async_trait]
impl Grants for ArmGrants {
    async fn ensure_grant(
        &self,
        call: &Call,
        grant: &Grant,
        grantee: &Grantee,
        name: &str,
    ) -> Result<Ensured, AdapterError> {
        match grant {
            Grant::Role { scope, role } => {
                let definition = self.role_definition(call, scope, role).await?;
                let path = format!(
                    "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                    scope.as_str()
                );
                let body = json!({"properties": {
                    "roleDefinitionId": definition,
                    "principalId": grantee.principal_id,
                    "principalType": "ServicePrincipal",
                }});
                match self
                    .arm
                    .write(call, Method::PUT, &path, AUTHORIZATION_API, &body)
                    .await
                {
                    Ok(()) => Ok(Ensured::Created),
                    // The same role for the same principal at the same scope, under another
                    // name: someone else's assignment.
                    Err(e) if e.code == "RoleAssignmentExists" => Ok(Ensured::Existed),
                    Err(e) => Err(e),
                }
            }
            Grant::DatabaseUser {
                host,
                database,
                dialect,
            } => {
                let user = user_name(grantee)?;
                let found = self
                    .sql(call, host, database, &[Dialects::exists(*dialect, user)])
                    .await?;
                if has_rows(&found) {
                    return Ok(Ensured::Existed);
                }
                let statements = Dialects::create(*dialect, user, database, grantee);
                self.sql(call, host, database, &statements).await?;
                Ok(Ensured::Created)
            }
            Grant::RedisAccessPolicy { cache, policy } => {
                let path = format!("{}/accessPolicyAssignments/{name}", cache.as_str());
                let body = json!({"properties": {
                    "accessPolicyName": policy,
                    "objectId": grantee.principal_id,
                    "objectIdAlias": name,
                }});
                self.arm
                    .write(call, Method::PUT, &path, REDIS_API, &body)
                    .await?;
                Ok(Ensured::Created)
            }
            Grant::CosmosSqlRole { account, role } => {
                let path = format!("{}/sqlRoleAssignments/{name}", account.as_str());
                let body = json!({"properties": {
                    "roleDefinitionId": format!("{}/sqlRoleDefinitions/{role}", account.as_str()),
                    "scope": account.as_str(),
                    "principalId": grantee.principal_id,
                }});
                self.arm
                    .write(call, Method::PUT, &path, COSMOS_API, &body)
                    .await?;
                Ok(Ensured::Created)
            }
        }
    }

    async fn grant_exists(
        &self,
        call: &Call,
        grant: &Grant,
        grantee: &Grantee,
    ) -> Result<bool, AdapterError> {
        let principal = |v: &Value, field: &str| {
            v["properties"][field]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(&grantee.principal_id))
        };
        match grant {
            Grant::Role { scope, role } => {
                let definition = self.role_definition(call, scope, role).await?;
                let path = format!(
                    "{}/providers/Microsoft.Authorization/roleAssignments",
                    scope.as_str()
                );
                let filter = format!("principalId eq '{}'", grantee.principal_id);
                let body = self
                    .arm
                    .get_filtered(call, &path, AUTHORIZATION_API, &filter)
                    .await?;
                let guid = definition.rsplit('/').next().unwrap_or_default();
                Ok(body["value"].as_array().into_iter().flatten().any(|a| {
                    let p = &a["properties"];
                    p["scope"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case(scope.as_str()))
                        && p["roleDefinitionId"].as_str().is_some_and(|d| {
                            d.to_ascii_lowercase().ends_with(&guid.to_ascii_lowercase())
                        })
                }))
            }
            Grant::DatabaseUser {
                host,
                database,
                dialect,
            } => {
                let user = user_name(grantee)?;
                let found = self
                    .sql(call, host, database, &[Dialects::exists(*dialect, user)])
                    .await?;
                Ok(has_rows(&found))
            }
            Grant::RedisAccessPolicy { cache, policy } => {
                let path = format!("{}/accessPolicyAssignments", cache.as_str());
                let body = self.arm.get(call, &path, REDIS_API).await?;
                Ok(body["value"].as_array().into_iter().flatten().any(|a| {
                    principal(a, "objectId")
                        && a["properties"]["accessPolicyName"]
                            .as_str()
                            .is_some_and(|p| p.eq_ignore_ascii_case(policy))
                }))
            }
            Grant::CosmosSqlRole { account, role } => {
                let path = format!("{}/sqlRoleAssignments", account.as_str());
                let body = self.arm.get(call, &path, COSMOS_API).await?;
                Ok(body["value"].as_array().into_iter().flatten().any(|a| {
                    principal(a, "principalId")
                        && a["properties"]["roleDefinitionId"]
                            .as_str()
                            .is_some_and(|d| {
                                d.to_ascii_lowercase().ends_with(&role.to_ascii_lowercase())
                            })
                }))
            }
        }
    }

    async fn remove_grant(
        &self,
        call: &Call,
        grant: &Grant,
        grantee: &Grantee,
        name: &str,
    ) -> Result<(), AdapterError> {
        let gone = |r: Result<(), AdapterError>| match r {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        };
        match grant {
            Grant::Role { scope, .. } => {
                let path = format!(
                    "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                    scope.as_str()
                );
                gone(self.arm.delete(call, &path, AUTHORIZATION_API).await)
            }
            Grant::DatabaseUser {
                host,
                database,
                dialect,
            } => {
                let user = user_name(grantee)?;
                let dropped = self
                    .sql(call, host, database, &[Dialects::drop(*dialect, user)])
                    .await
                    .map(drop);
                // A server or database that is gone has no user left to drop.
                gone(dropped)
            }
            Grant::RedisAccessPolicy { cache, .. } => {
                let path = format!("{}/accessPolicyAssignments/{name}", cache.as_str());
                gone(self.arm.delete(call, &path, REDIS_API).await)
            }
            Grant::CosmosSqlRole { account, .. } => {
                let path = format!("{}/sqlRoleAssignments/{name}", account.as_str());
                gone(self.arm.delete(call, &path, COSMOS_API).await)
            }
        }
    }
}
