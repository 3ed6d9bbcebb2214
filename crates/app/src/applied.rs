//! What a connection applied to the backend: every setting, rule, IP-rule entry, identity
//! change, grant and Key Vault secret, each with a stable key and whether this connection
//! created it. Stored with the linker when a create or update succeeds; updates and deletes
//! converge from it, and never remove what they did not create or what another linker still
//! holds (the store knows who holds which key).

use serde::{Deserialize, Serialize};
use tether_adapters::{Grant, Grantee, TargetRef};
use tether_model::ids::ResourceId;

/// The record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Every item.
    pub items: Vec<Item>,
}

/// One thing applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// Its stable identity: the same thing applied by two linkers has the same key.
    pub key: String,
    /// Whether a Tether connection created it (else it existed and is never removed).
    pub created: bool,
    /// What it is.
    pub what: What,
}

/// The kinds of things applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum What {
    /// A configuration entry of the source (in a container, for container apps).
    Setting {
        /// The key.
        name: String,
        /// The container.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
    /// A named firewall rule on a target.
    FirewallRule {
        /// The target.
        target: TargetRef,
        /// Its kind.
        kind: String,
        /// The rule's name.
        name: String,
    },
    /// An entry of a target's IP rules.
    IpRule {
        /// The target.
        target: TargetRef,
        /// Its kind.
        kind: String,
        /// The address or CIDR block.
        value: String,
    },
    /// The source's system-assigned identity, enabled.
    SystemIdentity,
    /// A user-assigned identity attached to the source.
    UserIdentity {
        /// The identity.
        identity: ResourceId,
    },
    /// A grant to an identity on a target.
    Grant {
        /// The grant.
        grant: Grant,
        /// For whom.
        grantee: Grantee,
        /// Its name, where grants have names.
        name: String,
    },
    /// A secret in a Key Vault.
    VaultSecret {
        /// The vault.
        vault: ResourceId,
        /// The secret's name.
        name: String,
    },
}

impl Item {
    /// A setting.
    pub fn setting(name: &str, scope: Option<&str>) -> Self {
        Self {
            key: format!("setting:{}:{name}", scope.unwrap_or_default()),
            created: true,
            what: What::Setting {
                name: name.to_string(),
                scope: scope.map(str::to_string),
            },
        }
    }

    /// A firewall rule.
    pub fn firewall_rule(target: &TargetRef, kind: &str, name: &str) -> Self {
        Self {
            key: format!("rule:{}:{name}", target_key(target)),
            created: true,
            what: What::FirewallRule {
                target: target.clone(),
                kind: kind.to_string(),
                name: name.to_string(),
            },
        }
    }

    /// An IP-rule entry.
    pub fn ip_rule(target: &TargetRef, kind: &str, value: &str, created: bool) -> Self {
        Self {
            key: format!("ip:{}:{value}", target_key(target)),
            created,
            what: What::IpRule {
                target: target.clone(),
                kind: kind.to_string(),
                value: value.to_string(),
            },
        }
    }

    /// The source's system identity.
    pub fn system_identity(source: &ResourceId, created: bool) -> Self {
        Self {
            key: format!("identity:{}:system", source.key()),
            created,
            what: What::SystemIdentity,
        }
    }

    /// A user-assigned identity on the source.
    pub fn user_identity(source: &ResourceId, identity: &ResourceId, created: bool) -> Self {
        Self {
            key: format!("identity:{}:user:{}", source.key(), identity.key()),
            created,
            what: What::UserIdentity {
                identity: identity.clone(),
            },
        }
    }

    /// A grant.
    pub fn grant(grant: &Grant, grantee: &Grantee, name: &str, created: bool) -> Self {
        Self {
            key: grant.key(grantee),
            created,
            what: What::Grant {
                grant: grant.clone(),
                grantee: grantee.clone(),
                name: name.to_string(),
            },
        }
    }

    /// A Key Vault secret.
    pub fn vault_secret(vault: &ResourceId, name: &str) -> Self {
        Self {
            key: format!("vault:{}:{}", vault.key(), name.to_ascii_lowercase()),
            created: true,
            what: What::VaultSecret {
                vault: vault.clone(),
                name: name.to_string(),
            },
        }
    }
}

fn target_key(target: &TargetRef) -> String {
    match target {
        TargetRef::Arm(id) => id.key().to_string(),
        TargetRef::Endpoint(e) => e.to_ascii_lowercase(),
    }
}

/// The namespace of grant names (a fixed random GUID).
const GRANT_NAMES: uuid::Uuid = uuid::uuid!("5d3f4c2e-8b1a-4f6e-9c07-2a41e9b3d6f8");

/// The name of a grant: a GUID derived from the grant's key alone, so a rerun (or a later
/// delete) finds it, and two linkers that need the same grant make one resource and share
/// it (an assignment someone else made exists under another name and is never removed).
pub fn grant_name(key: &str) -> String {
    uuid::Uuid::new_v5(&GRANT_NAMES, key.as_bytes()).to_string()
}

impl Applied {
    /// The items of one kind of thing, with their keys.
    pub fn items<'a>(
        &'a self,
        pick: impl Fn(&What) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Item> {
        self.items.iter().filter(move |i| pick(&i.what))
    }

    /// Whether an item with `key` is recorded.
    pub fn has(&self, key: &str) -> bool {
        self.items.iter().any(|i| i.key == key)
    }

    /// Whether the item with `key` was created by a connection.
    pub fn created(&self, key: &str) -> bool {
        self.items.iter().any(|i| i.key == key && i.created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_names_are_stable_guids_per_grant() {
        assert_eq!(grant_name("role:x"), grant_name("role:x"));
        assert_ne!(grant_name("role:x"), grant_name("role:y"));
        assert!(tether_model::ids::is_canonical_guid(&grant_name("k")));
    }
}
