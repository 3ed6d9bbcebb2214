//! Key Vault secrets through ARM (`Microsoft.KeyVault/vaults/{vault}/secrets/{name}`): where a
//! connection keeps its secret settings when its linker names a secret store, so the source
//! holds only a Key Vault reference.

use async_trait::async_trait;
use serde_json::json;
use tether_model::ids::ResourceId;

use crate::arm::ArmClient;
use crate::{AdapterError, Call, ErrorKind, SecretVault};

const API: &str = "2023-07-01";

/// Key Vault secrets over ARM.
pub struct KeyVaultSecrets {
    arm: ArmClient,
}

impl KeyVaultSecrets {
    /// Secrets over `arm`.
    pub fn new(arm: ArmClient) -> Self {
        Self { arm }
    }
}

#[async_trait]
impl SecretVault for KeyVaultSecrets {
    async fn put_secret(
        &self,
        call: &Call,
        vault: &ResourceId,
        name: &str,
        value: &str,
    ) -> Result<String, AdapterError> {
        let path = format!("{}/secrets/{name}", vault.as_str());
        let secret = self
            .arm
            .put(call, &path, API, &json!({"properties": {"value": value}}))
            .await?;
        secret["properties"]["secretUri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                AdapterError::new(
                    ErrorKind::Protocol,
                    "put Key Vault secret",
                    "InvalidResponse",
                    "the secret has no secretUri",
                )
            })
    }

    async fn remove_secret(
        &self,
        call: &Call,
        vault: &ResourceId,
        name: &str,
    ) -> Result<(), AdapterError> {
        let path = format!("{}/secrets/{name}", vault.as_str());
        self.arm.delete(call, &path, API).await
    }
}
