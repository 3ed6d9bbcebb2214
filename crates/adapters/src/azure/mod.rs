//! Azure implementations of the adapters, over [`crate::arm::ArmClient`].

use std::sync::Arc;

use tether_model::catalog;

use crate::Adapters;
use crate::arm::ArmClient;

mod postgres;
mod web_app;

pub use postgres::PostgresFlexibleTarget;
pub use web_app::WebAppSource;

/// Every Azure adapter, sharing one ARM client.
pub fn adapters(arm: ArmClient) -> Adapters {
    Adapters::default()
        .with_source(&catalog::WEB_APP, Arc::new(WebAppSource::new(arm.clone())))
        .with_target(
            &catalog::POSTGRES_FLEXIBLE,
            Arc::new(PostgresFlexibleTarget::new(arm)),
        )
}
