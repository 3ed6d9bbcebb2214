//! Value templates: a documented example with its placeholders replaced by `{fact}`
//! references, parsed once into literal and fact segments, with the syntax that decides how a
//! substituted value is escaped and how extra connection-string properties are appended.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::configuration::KeyNaming;

/// How a template's key is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `<PREFIX>_<SUFFIX>`, or `<PREFIX>_<CONNECTION>_<SUFFIX>` for a further connection to the
    /// same target kind.
    Suffix {
        /// The `<CLOUD>_<TYPE>` prefix.
        prefix: String,
        /// The rest.
        suffix: String,
    },
    /// A fixed name (Spring properties).
    Exact(String),
}

impl Key {
    /// The key's name under `naming`.
    pub fn name(&self, naming: &KeyNaming) -> String {
        match (self, naming) {
            (Key::Exact(name), _) => name.clone(),
            (Key::Suffix { prefix, suffix }, KeyNaming::Plain) => format!("{prefix}_{suffix}"),
            (Key::Suffix { prefix, suffix }, KeyNaming::Named(conn)) => {
                format!("{prefix}_{conn}_{suffix}")
            }
        }
    }
}

/// The syntax of a value: how substituted facts are escaped, and how
/// `additionalConnectionStringProperties` are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// A plain value: facts substituted as they are; nothing can be appended.
    Plain,
    /// libpq-style `key=value` pairs separated by spaces.
    KeywordValue,
    /// ADO.NET-style `Key=Value;` pairs (Npgsql, SqlClient, Azure connection strings).
    AdoNet,
    /// A JDBC URL with `?a=b&c=d` query parameters (PostgreSQL, MySQL).
    JdbcUrl,
    /// A SQL Server JDBC URL with `;key=value` properties.
    JdbcSqlServer,
    /// A URL whose user information carries a secret (`rediss://:key@host:port/db`).
    Url,
    /// A Java JAAS line with single-quoted values.
    Jaas,
}

impl Syntax {
    /// Guesses the syntax of a template from its shape. Every connection-string shape of the
    /// matrix is recognised; the catalogue's tests check each entry's guess.
    pub fn of(template: &str) -> Self {
        let t = template.trim();
        if t.starts_with("jdbc:sqlserver:") {
            Syntax::JdbcSqlServer
        } else if t.starts_with("jdbc:") {
            Syntax::JdbcUrl
        } else if t.starts_with("redis://") || t.starts_with("rediss://") {
            Syntax::Url
        } else if t.contains("LoginModule required") {
            Syntax::Jaas
        } else if t.contains('=') && t.contains(';') {
            Syntax::AdoNet
        } else if t.contains('=') && t.contains(' ') && !t.contains("://") {
            Syntax::KeywordValue
        } else {
            Syntax::Plain
        }
    }

    /// Whether extra `key=value` properties can be appended to values of this syntax.
    pub fn takes_properties(self) -> bool {
        !matches!(self, Syntax::Plain | Syntax::Jaas)
    }

    /// Escapes a substituted value for this syntax.
    pub fn escape(self, value: &str) -> String {
        match self {
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
                let needs_quotes = value.contains([';', '"', '\''])
                    || value.starts_with(char::is_whitespace)
                    || value.ends_with(char::is_whitespace);
                if needs_quotes {
                    format!("\"{}\"", value.replace('"', "\"\""))
                } else {
                    value.to_string()
                }
            }
            Syntax::JdbcUrl | Syntax::Url => percent_encode(value),
            Syntax::JdbcSqlServer => {
                if value.contains([';', '{', '}', '=']) {
                    format!("{{{}}}", value.replace('}', "}}"))
                } else {
                    value.to_string()
                }
            }
            Syntax::Jaas => value.replace('\\', "\\\\").replace('\'', "\\'"),
        }
    }

    /// Appends `props` to a rendered value of this syntax.
    pub fn append(self, value: &mut String, props: &BTreeMap<String, String>) {
        for (k, v) in props {
            match self {
                Syntax::KeywordValue => {
                    value.push(' ');
                    value.push_str(&format!("{k}={}", self.escape(v)));
                }
                Syntax::AdoNet | Syntax::JdbcSqlServer => {
                    if !value.ends_with(';') {
                        value.push(';');
                    }
                    value.push_str(&format!("{k}={};", self.escape(v)));
                }
                Syntax::JdbcUrl | Syntax::Url => {
                    value.push(if value.contains('?') { '&' } else { '?' });
                    value.push_str(&format!("{}={}", percent_encode(k), percent_encode(v)));
                }
                Syntax::Plain | Syntax::Jaas => {}
            }
        }
    }
}

/// RFC 3986's unreserved characters stay; every other byte is percent-encoded.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes a value for a URL component, as JDBC URLs carry user names and passwords.
pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, URL_COMPONENT).to_string()
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text written as is.
    Literal(String),
    /// A fact, escaped for the template's syntax.
    Fact(String),
}

/// One configuration entry template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The key.
    pub key: Key,
    /// The value, in pieces.
    pub segments: Vec<Segment>,
    /// The value's syntax.
    pub syntax: Syntax,
    /// What the key holds, in the matrix's words (`configurationNames` shows it).
    pub description: String,
}

impl Template {
    /// Parses a value template (`{fact}` references in text); `Err` names what is malformed.
    pub fn parse(key: Key, value: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut rest = value;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                segments.push(Segment::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| format!("an unclosed '{{' in '{value}'"))?;
            let name = &rest[open + 1..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("'{{{name}}}' in '{value}' is not a fact reference"));
            }
            segments.push(Segment::Fact(name.to_string()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_string()));
        }
        if let Some(Segment::Literal(l)) = segments.iter().find(|s| match s {
            Segment::Literal(l) => l.contains(['<', '>', '}']),
            Segment::Fact(_) => false,
        }) {
            return Err(format!("'{l}' in '{value}' still holds a placeholder"));
        }
        Ok(Self {
            key,
            segments,
            syntax: Syntax::of(value),
            description: String::new(),
        })
    }

    /// The template with what its key holds.
    pub fn described(self, description: &str) -> Self {
        Self {
            description: description.to_string(),
            ..self
        }
    }

    /// The facts the template uses.
    pub fn facts(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Fact(f) => Some(f.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Whether the value is a connection string (it names the target's host or endpoint and
    /// has a syntax that takes extra properties).
    pub fn is_connection_string(&self) -> bool {
        self.syntax.takes_properties()
            && self
                .facts()
                .any(|f| matches!(f, "host" | "endpoint" | "namespace"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntaxes_are_recognised_by_shape() {
        for (text, want) in [
            (
                "jdbc:postgresql://h:5432/d?sslmode=require",
                Syntax::JdbcUrl,
            ),
            (
                "jdbc:sqlserver://h:1433;databaseName=d;",
                Syntax::JdbcSqlServer,
            ),
            ("rediss://:k@h:6380/0", Syntax::Url),
            ("Server=h;Database=d;", Syntax::AdoNet),
            ("dbname=d host=h port=5432", Syntax::KeywordValue),
            ("https://h.vault.azure.net/", Syntax::Plain),
            (
                "org.apache.kafka.common.security.plain.PlainLoginModule required username='u';",
                Syntax::Jaas,
            ),
        ] {
            assert_eq!(Syntax::of(text), want, "{text}");
        }
    }

    #[test]
    fn escaping_keeps_each_syntax_parseable() {
        let tricky = "p@ss word;'\"\\={}&";
        assert_eq!(
            Syntax::KeywordValue.escape(tricky),
            r#"'p@ss word;\'"\\={}&'"#
        );
        assert_eq!(Syntax::AdoNet.escape(tricky), r#""p@ss word;'""\={}&""#);
        assert_eq!(
            Syntax::JdbcUrl.escape(tricky),
            "p%40ss%20word%3B%27%22%5C%3D%7B%7D%26"
        );
        assert_eq!(
            Syntax::JdbcSqlServer.escape(tricky),
            "{p@ss word;'\"\\={}}&}"
        );
        assert_eq!(Syntax::Jaas.escape("it's"), "it\\'s");
        assert_eq!(Syntax::Plain.escape(tricky), tricky);
    }

    #[test]
    fn templates_parse_into_segments() {
        let t = Template::parse(Key::Exact("k".into()), "host={host} port={port}").unwrap();
        assert_eq!(t.facts().collect::<Vec<_>>(), ["host", "port"]);
        assert!(t.is_connection_string());
        for bad in ["{host", "<left> {x}", "{not a fact}", "x}"] {
            assert!(
                Template::parse(Key::Exact("k".into()), bad).is_err(),
                "{bad}"
            );
        }
    }
}
