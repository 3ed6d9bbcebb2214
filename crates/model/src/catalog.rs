//! What Tether can connect: source kinds and target kinds, each a row of data (resource type,
//! configuration prefix, supported auth and client types, network options, value templates).
//! Adding a target means adding a [`TargetSpec`] here and an adapter in `tether-adapters`.

use crate::configuration::{Cell, Key, Syntax, Template};
use crate::ids::ResourceId;
use crate::linker::{AuthType, ClientType};

/// A kind of source compute resource.
#[derive(Debug)]
pub struct SourceSpec {
    /// The matrix name of the source (`webapp`).
    pub name: &'static str,
    /// Its ARM resource type.
    pub resource_type: &'static str,
}

/// A kind of target service.
#[derive(Debug)]
pub struct TargetSpec {
    /// The matrix / CLI name of the target (`postgres-flexible`).
    pub name: &'static str,
    /// Its ARM resource type.
    pub resource_type: &'static str,
    /// The `<CLOUD>_<TYPE>` part of configuration keys.
    pub config_prefix: &'static str,
    /// The port clients connect to.
    pub port: u16,
    /// Whether firewall rules on the target can admit the source.
    pub firewall: bool,
    /// The configuration templates per (auth type, client types).
    pub cells: &'static [Cell],
}

impl TargetSpec {
    /// The templates of one auth type and client type, if supported.
    pub fn templates(&self, auth: AuthType, client: ClientType) -> Option<&'static [Template]> {
        self.cells
            .iter()
            .find(|c| c.auth == auth && c.clients.contains(&client))
            .map(|c| c.entries)
    }

    /// The auth types Tether supports for this target.
    pub fn auth_types(&self) -> Vec<AuthType> {
        let mut seen = Vec::new();
        for cell in self.cells {
            if !seen.contains(&cell.auth) {
                seen.push(cell.auth);
            }
        }
        seen
    }

    /// The client types supported with one auth type.
    pub fn client_types(&self, auth: AuthType) -> impl Iterator<Item = ClientType> + '_ {
        self.cells
            .iter()
            .filter(move |c| c.auth == auth)
            .flat_map(|c| c.clients.iter().copied())
    }
}

/// Azure App Service web apps.
pub static WEB_APP: SourceSpec = SourceSpec {
    name: "webapp",
    resource_type: "Microsoft.Web/sites",
};

/// Every source kind.
pub static SOURCES: &[&SourceSpec] = &[&WEB_APP];

/// The source kind of a resource id, if Tether supports it.
pub fn source_for(id: &ResourceId) -> Option<&'static SourceSpec> {
    SOURCES
        .iter()
        .copied()
        .find(|s| id.is_type(s.resource_type))
}

/// Every target kind.
pub static TARGETS: &[&TargetSpec] = &[&POSTGRES_FLEXIBLE];

/// The target kind of a resource id, if Tether supports it.
pub fn target_for(id: &ResourceId) -> Option<&'static TargetSpec> {
    TARGETS
        .iter()
        .copied()
        .find(|t| id.is_type(t.resource_type))
}

const fn suffix(key: &'static str, value: &'static str, syntax: Syntax) -> Template {
    Template {
        key: Key::Suffix(key),
        value,
        syntax,
    }
}

const fn exact(key: &'static str, value: &'static str, syntax: Syntax) -> Template {
    Template {
        key: Key::Exact(key),
        value,
        syntax,
    }
}

use ClientType as C;
use Syntax::{AdoNet, JdbcUrl, KeywordValue, Plain};

/// Azure Database for PostgreSQL flexible server (a database on it).
pub static POSTGRES_FLEXIBLE: TargetSpec = TargetSpec {
    name: "postgres-flexible",
    resource_type: "Microsoft.DBforPostgreSQL/flexibleServers/databases",
    config_prefix: "AZURE_POSTGRESQL",
    port: 5432,
    firewall: true,
    cells: &[
        Cell {
            auth: AuthType::Secret,
            clients: &[C::Dotnet],
            entries: &[suffix(
                "CONNECTIONSTRING",
                "Server={host};Database={database};Port={port};Ssl Mode=Require;User Id={user};Password={password};",
                AdoNet,
            )],
        },
        Cell {
            auth: AuthType::Secret,
            clients: &[C::Java],
            entries: &[suffix(
                "CONNECTIONSTRING",
                "jdbc:postgresql://{host}:{port}/{database}?sslmode=require&user={user}&password={password}",
                JdbcUrl,
            )],
        },
        Cell {
            auth: AuthType::Secret,
            clients: &[C::SpringBoot],
            entries: &[
                exact(
                    "spring.datasource.url",
                    "jdbc:postgresql://{host}:{port}/{database}?sslmode=require",
                    JdbcUrl,
                ),
                exact("spring.datasource.username", "{user}", Plain),
                exact("spring.datasource.password", "{password}", Plain),
            ],
        },
        Cell {
            auth: AuthType::Secret,
            clients: &[C::Python],
            entries: &[suffix(
                "CONNECTIONSTRING",
                "dbname={database} host={host} port={port} sslmode=require user={user} password={password}",
                KeywordValue,
            )],
        },
        Cell {
            auth: AuthType::Secret,
            clients: &[C::Django],
            entries: &[
                suffix("NAME", "{database}", Plain),
                suffix("HOST", "{host}", Plain),
                suffix("USER", "{user}", Plain),
                suffix("PASSWORD", "{password}", Plain),
            ],
        },
        Cell {
            auth: AuthType::Secret,
            clients: &[C::Go],
            entries: &[suffix(
                "CONNECTIONSTRING",
                "host={host} dbname={database} sslmode=require user={user} password={password}",
                KeywordValue,
            )],
        },
        Cell {
            auth: AuthType::Secret,
            clients: &[C::Nodejs],
            entries: &[
                suffix("HOST", "{host}", Plain),
                suffix("USER", "{user}", Plain),
                suffix("PASSWORD", "{password}", Plain),
                suffix("DATABASE", "{database}", Plain),
                suffix("PORT", "{port}", Plain),
                suffix("SSL", "true", Plain),
            ],
        },
        Cell {
            auth: AuthType::Secret,
            clients: &[C::Php, C::Ruby],
            entries: &[suffix(
                "CONNECTIONSTRING",
                "host={host} port={port} dbname={database} sslmode=require user={user} password={password}",
                KeywordValue,
            )],
        },
        Cell {
            auth: AuthType::Secret,
            clients: &[C::None],
            entries: &[
                suffix("HOST", "{host}", Plain),
                suffix("USERNAME", "{user}", Plain),
                suffix("DATABASE", "{database}", Plain),
                suffix("PORT", "{port}", Plain),
                suffix("SSL", "true", Plain),
                suffix("PASSWORD", "{password}", Plain),
            ],
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kinds_by_resource_type() {
        let site = ResourceId::parse(
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/microsoft.web/Sites/app",
        )
        .unwrap();
        assert_eq!(source_for(&site).unwrap().name, "webapp");
        assert!(target_for(&site).is_none());
        let db = ResourceId::parse(
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/d",
        )
        .unwrap();
        assert_eq!(target_for(&db).unwrap().name, "postgres-flexible");
        assert_eq!(POSTGRES_FLEXIBLE.auth_types(), vec![AuthType::Secret]);
    }
}
