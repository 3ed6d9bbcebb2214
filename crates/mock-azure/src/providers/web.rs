//! `Microsoft.Web/sites` (web and function apps: computed host name and outbound IPs, managed
//! identity) and their app settings (`config/appsettings`, replaced as a whole).

use serde_json::{Map, Value, json};

use super::{Ctx, Extras, fnv1a, identity, properties_mut};
use crate::error::ArmError;
use crate::resources::{self, ProviderPath};
use crate::state::State;

/// A site: identity, `defaultHostName`, `state`, outbound addresses (body, else previous, else
/// derived from the id), and its app settings resource (created empty, kept otherwise).
pub(super) fn finalize_site(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    identity::apply(ctx, resource)?;
    let id = ctx.path.key();
    let properties = properties_mut(resource);
    properties.insert(
        "defaultHostName".into(),
        format!("{}.azurewebsites.net", name.to_lowercase()).into(),
    );
    properties.insert("state".into(), "Running".into());
    let (outbound, possible) = generated_outbound_ips(&id);
    for (field, generated) in [
        ("outboundIpAddresses", outbound),
        ("possibleOutboundIpAddresses", possible),
    ] {
        let previous = ctx.kept(&format!("/properties/{field}"));
        if !properties.get(field).is_some_and(Value::is_string) {
            properties.insert(field.into(), previous.unwrap_or(generated.into()));
        }
    }
    let settings_key = app_settings_key(&id);
    let settings = ctx
        .state
        .resources
        .get(&settings_key)
        .and_then(|s| s["properties"].as_object())
        .cloned()
        .unwrap_or_default();
    let site = Value::Object(resource.clone());
    Ok(Extras {
        secret: None,
        entries: vec![(settings_key, app_settings_resource(&site, settings))],
    })
}

/// Deterministic outbound addresses in 20.0.0.0/8 from a hash of the (lower-cased) id.
pub(super) fn generated_outbound_ips(id: &str) -> (String, String) {
    let ips: Vec<String> = (0..4u8)
        .map(|i| {
            let h = fnv1a(format!("{id}#{i}").as_bytes());
            format!(
                "20.{}.{}.{}",
                (h >> 16) & 0xff,
                (h >> 8) & 0xff,
                1 + (h & 0xff) % 254
            )
        })
        .collect();
    (ips[..2].join(","), ips.join(","))
}

/// The state key of a site's app settings resource.
fn app_settings_key(site_key: &str) -> String {
    format!("{site_key}/config/appsettings")
}

fn app_settings_resource(site: &Value, settings: Map<String, Value>) -> Value {
    let site_id = site["id"].as_str().unwrap_or_default();
    json!({
        "id": format!("{site_id}/config/appsettings"),
        "name": "appsettings",
        "type": "Microsoft.Web/sites/config",
        "location": site["location"],
        "properties": settings,
    })
}

/// Replaces a site's whole app settings dictionary; every value must be a string.
pub(crate) fn put_app_settings(
    state: &mut State,
    site: &ProviderPath,
    body: &Map<String, Value>,
) -> Result<Value, ArmError> {
    let site_resource = resources::get(state, site)?;
    let settings = match body.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(settings)) => settings.clone(),
        Some(_) => {
            return Err(ArmError::bad_request(
                "BadRequest",
                "The app settings 'properties' must be an object of string values.",
            ));
        }
    };
    if let Some((name, _)) = settings.iter().find(|(_, v)| !v.is_string()) {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!("The value of app setting '{name}' must be a string."),
        ));
    }
    let resource = app_settings_resource(&site_resource, settings);
    state
        .resources
        .insert(app_settings_key(&site.key()), resource.clone());
    Ok(resource)
}

/// A site's app settings (an empty dictionary if none were ever set).
pub(crate) fn get_app_settings(state: &State, site: &ProviderPath) -> Result<Value, ArmError> {
    let site_resource = resources::get(state, site)?;
    let settings = state
        .resources
        .get(&app_settings_key(&site.key()))
        .and_then(|s| s["properties"].as_object())
        .cloned()
        .unwrap_or_default();
    Ok(app_settings_resource(&site_resource, settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn outbound_ips_are_deterministic_and_in_20_slash_8() {
        let (outbound, possible) = generated_outbound_ips("/subscriptions/x/a");
        assert_eq!(
            generated_outbound_ips("/subscriptions/x/a"),
            (outbound.clone(), possible.clone())
        );
        assert!(possible.starts_with(&outbound));
        for ip in possible.split(',') {
            let ip: Ipv4Addr = ip.parse().unwrap();
            assert_eq!(ip.octets()[0], 20);
        }
        assert_ne!(generated_outbound_ips("/subscriptions/x/b").0, outbound);
    }
}
