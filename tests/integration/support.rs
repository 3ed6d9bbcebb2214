//! Shared fixtures: the binary under test, demo resources, linker bodies.

use serde_json::{Value, json};
pub use tether_mock_azure::demo::{
    API_APP_ID, PG_DATABASE_2_ID, PG_DATABASE_ID, PG_SERVER_ID, WEB_APP_ID,
};
use tether_test_utils::{Backend, TestEnv};

/// The `tether` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// A fresh environment.
pub async fn env(backend: Backend) -> TestEnv {
    TestEnv::new(BIN, backend).await
}

/// `properties` of a secret-auth connection to `target`.
pub fn secret_linker(target: &str, password: &str, client: &str, firewall: bool) -> Value {
    let mut properties = json!({
        "targetService": {"type": "AzureResource", "id": target},
        "authInfo": {"authType": "secret", "name": "appuser", "secretInfo": {"secretType": "rawValue", "value": password}},
        "clientType": client,
    });
    if firewall {
        properties["vNetSolution"] = json!({"type": "firewall"});
    }
    properties
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn(Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(tether_test_utils::Backend::Postgres).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(tether_test_utils::Backend::Sqlite).await;
            })*
        }
    };
}
pub(crate) use on_both_backends;
