//! Test support (feature `testing`): an [`App`] whose adapters point at an address nothing
//! listens on, for tests of the layers above that never reach the backend.

#![allow(
    clippy::expect_used,
    reason = "test support: the fixed settings are valid"
)]

use std::sync::Arc;
use std::time::Duration;

use tether_adapters::arm::{ArmClient, ArmConfig, Url};
use tether_model::ids::InstanceId;
use tether_store::Store;

use crate::App;
use crate::secrets::SecretBox;

/// An app over `store` with a fresh secret key and a backend at a closed loopback port.
pub fn offline_app(store: Arc<dyn Store>) -> App {
    let nowhere: Url = "http://127.0.0.1:9".parse().expect("a URL");
    let arm = ArmClient::new(ArmConfig {
        endpoint: nowhere.clone(),
        authority: nowhere,
        tenant_id: "tenant".into(),
        client_id: "client".into(),
        client_secret: String::from("secret").into(),
        max_retries: 0,
        max_retry_after: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        lro_timeout: Duration::from_secs(1),
        max_response_bytes: tether_adapters::arm::DEFAULT_MAX_RESPONSE_BYTES,
        sql_data_plane: None,
        user_agent: "tether-test".into(),
    })
    .expect("an ARM client");
    let catalog = tether_model::catalog::catalog().expect("the built-in catalogue");
    App::new(
        store,
        tether_adapters::azure::adapters(arm, catalog),
        SecretBox::from_base64(&SecretBox::generate_key()).expect("a fresh key"),
        InstanceId::generate("test"),
        tether_saga::ExecutorConfig::default(),
        Arc::new(tether_model::fencing::SingleRegion),
        4,
        "tenant".into(),
    )
}
