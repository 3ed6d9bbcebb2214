//! `Microsoft.AppConfiguration/configurationStores` (2023-03-01): endpoint and the four access
//! keys (two read-write, two read-only) with their connection strings (`listKeys`).

use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};

use super::{Ctx, Extras, default_field, properties_mut, random_key, with_secret};
use crate::error::{ArmError, rfc3339};
use crate::resources::ProviderPath;
use crate::state::State;

/// A store: sku default, `endpoint`, state; keys created with it.
pub(super) fn finalize_store(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    default_field(resource, "sku", json!({"name": "standard"}));
    let created = ctx
        .kept("/properties/creationDate")
        .unwrap_or_else(|| rfc3339(ctx.now).into());
    let properties = properties_mut(resource);
    properties.insert(
        "endpoint".into(),
        format!("https://{}.azconfig.io", name.to_lowercase()).into(),
    );
    properties.insert("provisioningState".into(), "Succeeded".into());
    properties.insert("creationDate".into(), created);
    default_field(properties, "disableLocalAuth", false.into());
    default_field(properties, "publicNetworkAccess", "Enabled".into());
    let now = rfc3339(ctx.now);
    let key = |name: &str, read_only: bool| {
        let suffix: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(20)
            .map(char::from)
            .collect();
        json!({
            "id": format!("{}-l0-s0:{suffix}", &random_key(3)[..4]),
            "name": name,
            "value": random_key(32),
            "readOnly": read_only,
            "lastModified": now,
        })
    };
    let secret = ctx.secret().is_none().then(|| {
        json!({"keys": [
            key("Primary", false),
            key("Secondary", false),
            key("Primary Read Only", true),
            key("Secondary Read Only", true),
        ]})
    });
    Ok(Extras {
        secret,
        entries: Vec::new(),
    })
}

/// `POST .../listKeys`: `{"value":[{id,name,value,connectionString,lastModified,readOnly}]}`.
pub(super) fn list_keys(state: &State, store: &ProviderPath) -> Result<Value, ArmError> {
    let (resource, secret) = with_secret(state, store)?;
    let endpoint = resource["properties"]["endpoint"]
        .as_str()
        .unwrap_or_default();
    let keys: Vec<Value> = secret["keys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|k| {
            let mut k = k.clone();
            k["connectionString"] = format!(
                "Endpoint={endpoint};Id={};Secret={}",
                k["id"].as_str().unwrap_or_default(),
                k["value"].as_str().unwrap_or_default()
            )
            .into();
            k
        })
        .collect();
    Ok(json!({ "value": keys }))
}
