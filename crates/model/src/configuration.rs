//! The configuration a connection writes into its source: key names (per target, client type
//! and auth type, `<CLOUD>_<TYPE>_<NAME>` or Spring property names) and values rendered from
//! the catalogue's templates and a connection's [`Facts`], escaped for each value's syntax.
//! Rendering never panics: a missing fact is an error naming it.

use std::collections::{BTreeMap, BTreeSet};

use crate::Error;
use crate::catalog::{Segment, TargetKind, Template};
use crate::facts::Facts;
use crate::linker::{ActionType, AuthType, ClientType, ConfigurationInfo};

pub use crate::catalog::percent_encode;

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

/// What to put where a template references a secret fact.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reveal {
    /// The real value: for writing into the source or comparing with it.
    Secrets,
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
    /// True when the value contains a secret (so it must never be logged or shown, and a
    /// source that has secret storage keeps it there).
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
    pub target: &'a TargetKind,
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
    /// True when `configurationInfo.action` is `optOut`: nothing is written into the source.
    pub fn opted_out(&self) -> bool {
        self.info.and_then(|i| i.action) == Some(ActionType::OptOut)
    }

    /// The key names this connection writes (after renames and additions), without values;
    /// checks `configurationInfo` (a `400` naming it when it is wrong).
    pub fn key_names(&self) -> Result<Vec<String>, Error> {
        let templates = self.templates()?;
        let names = templates.iter().map(|t| t.key.name(self.naming)).collect();
        let info = self.info.cloned().unwrap_or_default();
        let entries = self.finish(names, &info)?;
        Ok(entries.into_iter().map(|(name, _)| name).collect())
    }

    /// Renders the entries: templates of the (auth, client) cell with each fact escaped for
    /// the value's syntax, `customizedKeys` renames, `additionalConnectionStringProperties`
    /// appended to connection strings, then `additionalConfigurations`.
    pub fn render(&self, facts: &Facts, reveal: Reveal) -> Result<Vec<Entry>, Error> {
        let templates = self.templates()?;
        let info = self.info.cloned().unwrap_or_default();
        let extra_props = info
            .additional_connection_string_properties
            .clone()
            .unwrap_or_default();
        for (k, v) in &extra_props {
            validate_setting("additionalConnectionStringProperties", k, v)?;
        }
        let mut values = BTreeMap::new();
        let mut names = Vec::with_capacity(templates.len());
        for t in templates {
            let name = t.key.name(self.naming);
            let (mut value, holds_secret) = self.substitute(t, facts, reveal)?;
            if !extra_props.is_empty() && t.is_connection_string() {
                t.syntax.append(&mut value, &extra_props);
            }
            values.insert(name.clone(), (value, holds_secret));
            names.push(name);
        }
        let entries = self.finish(names, &info)?;
        Ok(entries
            .into_iter()
            .map(|(name, default_name)| match default_name {
                Some(default) => {
                    let (value, holds_secret) = values.remove(&default).unwrap_or_default();
                    Entry {
                        name,
                        value,
                        holds_secret,
                    }
                }
                None => {
                    let value = info
                        .additional_configurations
                        .as_ref()
                        .and_then(|a| a.get(&name))
                        .cloned()
                        .unwrap_or_default();
                    Entry {
                        name,
                        value,
                        holds_secret: false,
                    }
                }
            })
            .collect())
    }

    fn templates(&self) -> Result<&[Template], Error> {
        self.target
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
            })
    }

    /// Applies renames and additions to the generated key names: the final names, each with
    /// the generated name it came from (`None` for an addition). Refuses renames of keys that
    /// are not generated, bad names, and a key written twice.
    fn finish(
        &self,
        generated: Vec<String>,
        info: &ConfigurationInfo,
    ) -> Result<Vec<(String, Option<String>)>, Error> {
        let renames = info.customized_keys.clone().unwrap_or_default();
        for (from, to) in &renames {
            validate_setting("customizedKeys", from, to)?;
            validate_setting("customizedKeys", to, "")?;
            if !generated.contains(from) {
                return Err(Error::invalid(
                    "InvalidParameter",
                    format!(
                        "customizedKeys renames '{}', which this connection does not generate",
                        crate::error::quoted(from)
                    ),
                )
                .with_target("properties.configurationInfo.customizedKeys"));
            }
        }
        let mut out: Vec<(String, Option<String>)> = generated
            .into_iter()
            .map(|name| {
                let renamed = renames.get(&name).cloned().unwrap_or_else(|| name.clone());
                (renamed, Some(name))
            })
            .collect();
        for (name, value) in info.additional_configurations.iter().flatten() {
            validate_setting("additionalConfigurations", name, value)?;
            out.push((name.clone(), None));
        }
        let mut seen = BTreeSet::new();
        if let Some((dup, _)) = out
            .iter()
            .find(|(n, _)| !seen.insert(n.to_ascii_uppercase()))
        {
            return Err(Error::invalid(
                "InvalidParameter",
                format!("the configuration key '{dup}' would be written twice"),
            )
            .with_target("properties.configurationInfo"));
        }
        Ok(out)
    }

    fn substitute(
        &self,
        t: &Template,
        facts: &Facts,
        reveal: Reveal,
    ) -> Result<(String, bool), Error> {
        let mut out = String::new();
        let mut holds_secret = false;
        for segment in &t.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Fact(name) => {
                    let fact = facts.get(name).ok_or_else(|| {
                        Error::internal(
                            format!("no fact '{name}' for a {} connection", self.target.name),
                            std::io::Error::other("missing fact"),
                        )
                    })?;
                    if fact.secret && reveal == Reveal::Redact {
                        // The marker is shown as is, never escaped into something else.
                        out.push_str(REDACTED);
                        continue;
                    }
                    holds_secret |= fact.secret;
                    out.push_str(&t.syntax.escape(&fact.value));
                }
            }
        }
        Ok((out, holds_secret))
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
                crate::error::quoted(name)
            ),
        )
        .with_target(format!("properties.configurationInfo.{field}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
