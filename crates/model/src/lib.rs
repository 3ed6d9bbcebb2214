//! Tether's domain model: typed ids and ARM id parsing, the api-versions and what each one
//! can express, the linker resource model (one strict serde model for all versions, with
//! write-only secrets), operations, the catalogue of sources and targets (built from the
//! connection matrix and Tether's data at load time), named facts and the configuration they
//! render to, and the transport-agnostic service [`Error`].
//!
//! This crate does no IO: no sqlx, axum, reqwest or tokio networking.

pub mod api_version;
pub mod authz;
pub mod catalog;
pub mod configuration;
pub mod error;
pub mod facts;
pub mod fencing;
pub mod ids;
pub mod limits;
pub mod linker;
pub mod merge;
pub mod operation;

pub use api_version::ApiVersion;
pub use error::{Error, ErrorChain, ErrorDetail, ErrorKind};
