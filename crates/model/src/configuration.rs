//! The configuration a connection writes into its source: key names (per target, client type
//! and auth type, following `<CLOUD>_<TYPE>_<NAME>` or Spring property names) and value
//! formats (connection strings in each client library's syntax, with correct escaping).
//!
//! The templates here are checked against the reference matrix
//! (`data/connection-matrix.json`) by this module's tests: a new target is a new
//! [`TargetSpec`] row plus its templates.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::Error;
use crate::catalog::TargetSpec;
use crate::linker::{ActionType, AuthType, ClientType, ConfigurationInfo};

/// How a configuration key is named.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// `<PREFIX>_<SUFFIX>`, or `<PREFIX>_<CONNECTION>_<SUFFIX>` for a further connection to the
    /// same target type.
    Suffix(&'static str),
    /// A fixed name (Spring properties).
    Exact(&'static str),
}

/// The syntax of a value template, which decides how substituted values are escaped and how
/// `additionalConnectionStringProperties` are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// A plain value: substituted as is; nothing can be appended.
    Plain,
    /// libpq-style `key=value` pairs separated by spaces (psycopg2, lib/pq, pg_connect, ruby-pg).
    KeywordValue,
    /// ADO.NET `Key=Value;` pairs (Npgsql, SqlClient).
    AdoNet,
    /// A JDBC URL with `?a=b&c=d` query parameters.
    JdbcUrl,
}

/// One configuration entry template: a key and a value with `{host}`, `{port}`,
/// `{database}`, `{user}` and `{password}` placeholders.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// The key.
    pub key: Key,
    /// The value template.
    pub value: &'static str,
    /// The value's syntax.
    pub syntax: Syntax,
}

/// The templates of one (auth type, client types) cell.
#[derive(Debug)]
pub struct Cell {
    /// The auth type.
    pub auth: AuthType,
    /// The client types sharing these templates.
    pub clients: &'static [ClientType],
    /// The entries, in the order they are documented.
    pub entries: &'static [Template],
}

/// Whether this connection is the first to its target type on the source (plain key names)
/// or a further one (key names carry the connection name).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "segment")]
pub enum KeyNaming {
    /// `<CLOUD>_<TYPE>_<NAME>`.
    Plain,
    /// `<CLOUD>_<TYPE>_<CONNECTIONNAME>_<NAME>`; holds the upper-cased connection segment.
    Named(String),
}

impl KeyNaming {
    /// Naming for a further connection called `linker_name`: upper-cased, with every
    /// character that is not a letter, digit or `_` replaced by `_`.
    pub fn named(linker_name: &str) -> Self {
        let segment = linker_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        KeyNaming::Named(segment)
    }
}

/// The facts a configuration value is built from.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// User name.
    pub user: String,
}

/// What to put where a template says `{password}`.
#[derive(Clone, Copy)]
pub enum Password<'a> {
    /// The real secret: for writing into the source.
    Reveal(&'a str),
    /// A marker, for showing configuration to a client (`listConfigurations`).
    Redact,
}

/// The marker that stands for a secret in configuration shown to clients.
pub const REDACTED: &str = "<redacted>";

/// One generated configuration entry.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key name.
    pub name: String,
    /// The value.
    pub value: String,
    /// True when the value contains the secret (so it must never be logged or shown).
    pub holds_secret: bool,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.holds_secret {
            "[redacted]"
        } else {
            &self.value
        };
        write!(f, "{}={}", self.name, value)
    }
}

/// Everything needed to compute a connection's configuration.
pub struct Request<'a> {
    /// The target kind.
    pub target: &'static TargetSpec,
    /// The auth type.
    pub auth: AuthType,
    /// The client type.
    pub client: ClientType,
    /// First or further connection.
    pub naming: &'a KeyNaming,
    /// `configurationInfo` of the linker.
    pub info: Option<&'a ConfigurationInfo>,
}

impl Request<'_> {
    /// The key names this connection writes (after renames and additions), without values.
    pub fn key_names(&self) -> Result<Vec<String>, Error> {
        let dummy = Endpoint {
            host: String::new(),
            port: 0,
            database: String::new(),
            user: String::new(),
        };
        Ok(self
            .render(&dummy, Password::Redact)?
            .into_iter()
            .map(|e| e.name)
            .collect())
    }

    /// True when `configurationInfo.action` is `optOut`: nothing is written into the source.
    pub fn opted_out(&self) -> bool {
        self.info.and_then(|i| i.action) == Some(ActionType::OptOut)
    }

    /// Renders the entries: templates of the (auth, client) cell with escaping per syntax,
    /// `customizedKeys` renames, `additionalConnectionStringProperties` appended to
    /// connection strings, then `additionalConfigurations`. Errors are `400`s naming the
    /// offending input.
    pub fn render(&self, endpoint: &Endpoint, password: Password<'_>) -> Result<Vec<Entry>, Error> {
        let templates = self
            .target
            .templates(self.auth, self.client)
            .ok_or_else(|| {
                Error::invalid(
                    "InvalidParameter",
                    format!(
                        "client type '{}' with auth type '{}' is not supported for target '{}'",
                        self.client.as_str(),
                        self.auth.as_str(),
                        self.target.name
                    ),
                )
                .with_target("properties.clientType")
            })?;
        let info = self.info.cloned().unwrap_or_default();
        let renames = info.customized_keys.unwrap_or_default();
        let extra_props = info
            .additional_connection_string_properties
            .unwrap_or_default();
        for (k, v) in &extra_props {
            validate_setting("additionalConnectionStringProperties", k, v)?;
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(templates.len());
        for t in templates {
            let default_name = self.key_name(t.key);
            let name = renames.get(&default_name).cloned().unwrap_or(default_name);
            let (mut value, holds_secret) = substitute(t, endpoint, password);
            if !extra_props.is_empty() && t.syntax != Syntax::Plain && t.value.contains("{host}") {
                append_properties(&mut value, t.syntax, &extra_props);
            }
            entries.push(Entry {
                name,
                value,
                holds_secret,
            });
        }
        for (from, to) in &renames {
            validate_setting("customizedKeys", from, to)?;
            if !entries.iter().any(|e| &e.name == to) {
                return Err(Error::invalid(
                    "InvalidParameter",
                    format!(
                        "customizedKeys renames '{from}', which this connection does not generate"
                    ),
                )
                .with_target("properties.configurationInfo.customizedKeys"));
            }
        }
        for (name, value) in info.additional_configurations.unwrap_or_default() {
            validate_setting("additionalConfigurations", &name, &value)?;
            entries.push(Entry {
                name,
                value,
                holds_secret: false,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = entries
            .iter()
            .find(|e| !seen.insert(e.name.to_ascii_uppercase()))
        {
            return Err(Error::invalid(
                "InvalidParameter",
                format!(
                    "the configuration key '{}' would be written twice",
                    dup.name
                ),
            )
            .with_target("properties.configurationInfo"));
        }
        Ok(entries)
    }

    fn key_name(&self, key: Key) -> String {
        match (key, self.naming) {
            (Key::Exact(name), _) => name.to_string(),
            (Key::Suffix(suffix), KeyNaming::Plain) => {
                format!("{}_{suffix}", self.target.config_prefix)
            }
            (Key::Suffix(suffix), KeyNaming::Named(conn)) => {
                format!("{}_{conn}_{suffix}", self.target.config_prefix)
            }
        }
    }
}

fn validate_setting(field: &str, name: &str, value: &str) -> Result<(), Error> {
    let bad_name = name.is_empty()
        || name.len() > 256
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'));
    if bad_name || value.chars().any(char::is_control) {
        return Err(Error::invalid(
            "InvalidParameter",
            format!(
                "configurationInfo.{field} has an invalid entry '{}': names are 1-256 letters, digits, '_', '.', '-' or ':' and values have no control characters",
                name.escape_default()
            ),
        )
        .with_target(format!("properties.configurationInfo.{field}")));
    }
    Ok(())
}

fn substitute(t: &Template, endpoint: &Endpoint, password: Password<'_>) -> (String, bool) {
    let mut out = String::with_capacity(t.value.len() + 32);
    let mut holds_secret = false;
    let mut rest = t.value;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .expect("templates are well-formed");
        let value = match &rest[open + 1..close] {
            "host" => endpoint.host.clone(),
            "port" => endpoint.port.to_string(),
            "database" => endpoint.database.clone(),
            "user" => endpoint.user.clone(),
            "password" => match password {
                Password::Reveal(p) => {
                    holds_secret = true;
                    p.to_string()
                }
                // The marker is shown as is, never escaped into something else.
                Password::Redact => {
                    out.push_str(REDACTED);
                    rest = &rest[close + 1..];
                    continue;
                }
            },
            other => unreachable!("unknown placeholder {other} in a template"),
        };
        out.push_str(&escape(&value, t.syntax));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    (out, holds_secret)
}

/// Escapes a substituted value for the template's syntax.
fn escape(value: &str, syntax: Syntax) -> String {
    match syntax {
        Syntax::Plain => value.to_string(),
        Syntax::KeywordValue => {
            let needs_quotes = value.is_empty()
                || value
                    .chars()
                    .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
            if needs_quotes {
                format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
            } else {
                value.to_string()
            }
        }
        Syntax::AdoNet => {
            let needs_quotes = value.contains([';', '"', '\'', '='])
                || value.starts_with(char::is_whitespace)
                || value.ends_with(char::is_whitespace);
            if needs_quotes {
                format!("\"{}\"", value.replace('"', "\"\""))
            } else {
                value.to_string()
            }
        }
        Syntax::JdbcUrl => percent_encode(value),
    }
}

/// RFC 3986's unreserved characters stay; every other byte is percent-encoded.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes a value for a URL query component, as JDBC URLs carry user names and passwords.
pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, URL_COMPONENT).to_string()
}

fn append_properties(value: &mut String, syntax: Syntax, props: &BTreeMap<String, String>) {
    for (k, v) in props {
        match syntax {
            Syntax::KeywordValue => {
                value.push(' ');
                value.push_str(&format!("{k}={}", escape(v, syntax)));
            }
            Syntax::AdoNet => {
                if !value.ends_with(';') {
                    value.push(';');
                }
                value.push_str(&format!("{k}={};", escape(v, syntax)));
            }
            Syntax::JdbcUrl => {
                value.push(if value.contains('?') { '&' } else { '?' });
                value.push_str(&format!("{}={}", percent_encode(k), percent_encode(v)));
            }
            Syntax::Plain => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::catalog::{self, POSTGRES_FLEXIBLE};

    fn request<'a>(
        client: ClientType,
        naming: &'a KeyNaming,
        info: Option<&'a ConfigurationInfo>,
    ) -> Request<'a> {
        Request {
            target: &POSTGRES_FLEXIBLE,
            auth: AuthType::Secret,
            client,
            naming,
            info,
        }
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            host: "pgsrv.postgres.database.azure.com".into(),
            port: 5432,
            database: "ordersdb".into(),
            user: "appuser".into(),
        }
    }

    fn matrix() -> Value {
        serde_json::from_str(include_str!("../data/connection-matrix.json")).unwrap()
    }

    /// The matrix's examples keep the documentation's placeholders (sometimes misspelled);
    /// replace them with the concrete values our renderer gets.
    fn concrete(example: &str) -> String {
        [
            (
                "<PostgreSQL-server-name>.postgres.database.azure.com",
                "pgsrv.postgres.database.azure.com",
            ),
            (
                "<your-postgres-server-name>.postgres.database.azure.com",
                "pgsrv.postgres.database.azure.com",
            ),
            ("<database-name>", "ordersdb"),
            ("<username>", "appuser"),
            ("<database-password>", "pw"),
            ("<password>", "pw"),
        ]
        .iter()
        .fold(example.to_string(), |s, (from, to)| s.replace(from, to))
    }

    #[test]
    fn postgres_secret_keys_and_values_match_the_matrix() {
        let m = matrix();
        let target = &m["targets"][POSTGRES_FLEXIBLE.name];
        let cells = target["configurations"]["secret"].as_object().unwrap();
        let mut checked = 0;
        for client in catalog::POSTGRES_FLEXIBLE.client_types(AuthType::Secret) {
            let documented = cells
                .get(client.as_str())
                .or_else(|| cells.get("*"))
                .unwrap_or_else(|| panic!("matrix has no cell for {client:?}"));
            let ours = request(client, &KeyNaming::Plain, None)
                .render(&endpoint(), Password::Reveal("pw"))
                .unwrap();
            let want: BTreeSet<_> = documented
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .collect();
            let got: BTreeSet<_> = ours.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(got, want, "key names for {client:?}");
            for doc in documented.as_array().unwrap() {
                let name = doc["name"].as_str().unwrap();
                let mut expected = concrete(doc["example"].as_str().unwrap());
                if client == ClientType::Dotnet {
                    // The matrix notes that the newest doc omits the password a real secret
                    // connection needs; we append it in ADO.NET syntax.
                    assert!(
                        doc["note"]
                            .as_str()
                            .unwrap()
                            .contains("Password=<password>")
                    );
                    expected.push_str("Password=pw;");
                }
                let entry = ours.iter().find(|e| e.name == name).unwrap();
                assert_eq!(entry.value, expected, "value of {name} for {client:?}");
            }
            checked += 1;
        }
        assert_eq!(
            checked, 10,
            "every documented client type of postgres-flexible"
        );
    }

    #[test]
    fn supported_client_types_are_the_matrix_list_minus_undocumented_ones() {
        let m = matrix();
        let listed: BTreeSet<String> =
            m["targets"][POSTGRES_FLEXIBLE.name]["supported_client_types_cli"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .filter(|c| m["cli_client_types_without_docs"].get(c).is_none())
                .collect();
        let ours: BTreeSet<String> = POSTGRES_FLEXIBLE
            .client_types(AuthType::Secret)
            .map(|c| c.as_str().to_string())
            .collect();
        assert_eq!(ours, listed);
    }

    #[test]
    fn further_connections_carry_the_connection_name() {
        let naming = KeyNaming::named("orders-ro");
        let names = request(ClientType::Python, &naming, None)
            .key_names()
            .unwrap();
        assert_eq!(names, vec!["AZURE_POSTGRESQL_ORDERS_RO_CONNECTIONSTRING"]);
        // Spring property names are never prefixed.
        let names = request(ClientType::SpringBoot, &naming, None)
            .key_names()
            .unwrap();
        assert!(names.contains(&"spring.datasource.url".to_string()));
    }

    #[test]
    fn values_are_escaped_for_their_syntax() {
        let tricky = "p@ss word;'\"\\=&";
        let render = |client| {
            request(client, &KeyNaming::Plain, None)
                .render(&endpoint(), Password::Reveal(tricky))
                .unwrap()
                .remove(0)
                .value
        };
        assert!(
            render(ClientType::Python).ends_with(r#"password='p@ss word;\'"\\=&'"#),
            "{}",
            render(ClientType::Python)
        );
        assert!(
            render(ClientType::Dotnet).ends_with(r#"Password="p@ss word;'""\=&";"#),
            "{}",
            render(ClientType::Dotnet)
        );
        assert!(
            render(ClientType::Java).ends_with("password=p%40ss%20word%3B%27%22%5C%3D%26"),
            "{}",
            render(ClientType::Java)
        );
    }

    #[test]
    fn redaction_hides_the_secret() {
        let entries = request(ClientType::Python, &KeyNaming::Plain, None)
            .render(&endpoint(), Password::Redact)
            .unwrap();
        assert!(entries[0].value.ends_with("password=<redacted>"));
        assert!(!entries[0].holds_secret);
        let jdbc = request(ClientType::Java, &KeyNaming::Plain, None)
            .render(&endpoint(), Password::Redact)
            .unwrap();
        assert!(
            jdbc[0].value.ends_with("&password=<redacted>"),
            "the marker is not escaped: {}",
            jdbc[0].value
        );
        let revealed = request(ClientType::Python, &KeyNaming::Plain, None)
            .render(&endpoint(), Password::Reveal("pw"))
            .unwrap();
        assert!(revealed[0].holds_secret);
        assert!(!format!("{revealed:?}").contains("pw"));
    }

    #[test]
    fn configuration_info_renames_appends_and_adds() {
        let info = ConfigurationInfo {
            customized_keys: Some(
                [("AZURE_POSTGRESQL_CONNECTIONSTRING".into(), "DB_URL".into())].into(),
            ),
            additional_configurations: Some([("FEATURE_X".into(), "on".into())].into()),
            additional_connection_string_properties: Some(
                [("connect_timeout".into(), "10".into())].into(),
            ),
            ..Default::default()
        };
        let entries = request(ClientType::Python, &KeyNaming::Plain, Some(&info))
            .render(&endpoint(), Password::Reveal("pw"))
            .unwrap();
        assert_eq!(entries[0].name, "DB_URL");
        assert!(entries[0].value.ends_with("password=pw connect_timeout=10"));
        assert_eq!(
            (entries[1].name.as_str(), entries[1].value.as_str()),
            ("FEATURE_X", "on")
        );
    }

    #[test]
    fn configuration_info_errors_are_client_errors() {
        let bad_rename = ConfigurationInfo {
            customized_keys: Some([("NOT_GENERATED".into(), "X".into())].into()),
            ..Default::default()
        };
        let collision = ConfigurationInfo {
            additional_configurations: Some(
                [("AZURE_POSTGRESQL_CONNECTIONSTRING".into(), "x".into())].into(),
            ),
            ..Default::default()
        };
        let bad_name = ConfigurationInfo {
            additional_configurations: Some([("has space".into(), "x".into())].into()),
            ..Default::default()
        };
        for info in [bad_rename, collision, bad_name] {
            let err = request(ClientType::Python, &KeyNaming::Plain, Some(&info))
                .render(&endpoint(), Password::Redact)
                .unwrap_err();
            assert_eq!(err.code(), "InvalidParameter", "{err:?}");
        }
    }
}
