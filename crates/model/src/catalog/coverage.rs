//! The connection coverage table of `docs/connections.md`, rendered from the catalogue (a
//! test keeps the document equal to this rendering; `UPDATE_DOCS=1` rewrites it).

use std::fmt::Write;

use super::{Catalog, IdentityGrant, Network, SecretSource, ServiceType, TargetKind};

/// The whole document.
pub fn render(catalog: &Catalog) -> String {
    let mut out = String::from(
        "# Connections\n\n\
         <!-- Generated from crates/model/data/targets.toml and connection-matrix.json by\n\
         \x20    tether-model's tests: do not edit; run `UPDATE_DOCS=1 cargo test -p tether-model`. -->\n\n\
         Every source × target × auth type × client type below is supported end to end (and\n\
         tested against the mock, `tests/integration/catalogue.rs`). Key names and value formats\n\
         are the matrix's, per client type.\n\n## Sources\n\n| kind | resource type | configuration goes to |\n|---|---|---|\n",
    );
    for s in &catalog.sources {
        let settings = match s.settings {
            super::SettingsKind::AppSettings => {
                "app settings (secrets as values or Key Vault references)"
            }
            super::SettingsKind::ContainerEnv => {
                "a container's env (`properties.scope`, or the only container); secrets as app secrets by `secretRef`, on a new revision"
            }
        };
        let name = if s.name == "webapp" {
            "webapp, functionapp"
        } else {
            s.name.as_str()
        };
        let _ = writeln!(out, "| {name} | `{}` | {settings} |", s.resource_type);
    }
    out.push_str(
        "\n## Targets\n\n| target | named by | auth types (App Service, Functions / Container Apps) | client types | network | identity gets | secret auth |\n|---|---|---|---|---|---|---|\n",
    );
    let mut cells = 0;
    for t in &catalog.targets {
        let _ = writeln!(
            out,
            "| {} (`{}`) | {} | {} | {} | {} | {} | {} |",
            t.display_name,
            t.name,
            named_by(t),
            auth_types(catalog, t),
            clients(t),
            network(t),
            grants(t),
            secret(t),
        );
        for s in &catalog.sources {
            for auth in t.auth_types(&s.name) {
                cells += t.client_types(*auth).count();
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{cells} (source kind, auth type, client type) cells in all; `functionapp` shares `webapp`'s."
    );
    out
}

fn named_by(t: &TargetKind) -> String {
    match (t.service_type, &t.resource_type) {
        (ServiceType::AzureResource, Some(rt)) => format!("`{rt}`"),
        (service, _) if !t.schemes.is_empty() => {
            let schemes: Vec<String> = t.schemes.iter().map(|s| format!("`{s}://`")).collect();
            format!("`{service:?}` endpoint {}", schemes.join(", "))
        }
        (service, _) => format!("`{service:?}` endpoint"),
    }
}

fn auth_types(catalog: &Catalog, t: &TargetKind) -> String {
    let per_source: Vec<String> = catalog
        .sources
        .iter()
        .map(|s| {
            let names: Vec<&str> = t.auth_types(&s.name).iter().map(|a| a.as_str()).collect();
            names.join(", ")
        })
        .collect();
    if per_source.windows(2).all(|w| w[0] == w[1]) {
        per_source.first().cloned().unwrap_or_default()
    } else {
        per_source.join(" / ")
    }
}

fn clients(t: &TargetKind) -> String {
    let names: Vec<&str> = t.clients.iter().map(|c| c.as_str()).collect();
    names.join(", ")
}

fn network(t: &TargetKind) -> String {
    match &t.network {
        Some(Network::FirewallRules { collection, .. }) => {
            format!("firewall rules (`{collection}`)")
        }
        Some(Network::IpRules { child, pointer, .. }) => match child {
            Some(c) => format!("IP rules (`{c}` `{pointer}`)"),
            None => format!("IP rules (`{pointer}`)"),
        },
        None => "—".into(),
    }
}

fn grants(t: &TargetKind) -> String {
    if t.identity.is_empty() {
        return "—".into();
    }
    let parts: Vec<String> = t
        .identity
        .iter()
        .map(|g| match g {
            IdentityGrant::Role { roles } => format!("role {}", roles.join(", ")),
            IdentityGrant::DatabaseUser { .. } => {
                "a database user (through the SQL data plane)".into()
            }
            IdentityGrant::RedisAccessPolicy { policy } => format!("access policy {policy}"),
            IdentityGrant::CosmosSqlRole { role } => format!("SQL role {role}"),
        })
        .collect();
    parts.join("; ")
}

fn secret(t: &TargetKind) -> &'static str {
    match t.secret {
        SecretSource::Caller => {
            "the caller's user name and password, or a Key Vault secret URI where the password is a setting of its own"
        }
        SecretSource::Keys => "the target's keys, listed when the connection is made",
        SecretSource::None => "—",
    }
}
