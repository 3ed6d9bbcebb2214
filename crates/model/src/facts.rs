//! Named facts a configuration value is built from (host, port, database, endpoint, key, client
//! id, …), each marked secret or not. Adapters and auth produce them; templates consume them.
//! A secret fact never appears in `Debug` output, and [`Facts::public`] drops them before
//! anything is persisted.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One fact.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// Its value.
    pub value: String,
    /// Whether it is a secret (a password, a key, a connection string with a key).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// Facts by name.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Facts(BTreeMap<String, Fact>);

impl Facts {
    /// No facts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a fact that is not secret.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(
            name.to_string(),
            Fact {
                value: value.into(),
                secret: false,
            },
        );
    }

    /// Adds (or replaces) a secret fact.
    pub fn set_secret(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(
            name.to_string(),
            Fact {
                value: value.into(),
                secret: true,
            },
        );
    }

    /// A fact by name.
    pub fn get(&self, name: &str) -> Option<&Fact> {
        self.0.get(name)
    }

    /// The value of a fact, if present.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|f| f.value.as_str())
    }

    /// Whether a fact is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Adds every fact of `other`, replacing those of the same name.
    pub fn extend(&mut self, other: Facts) {
        self.0.extend(other.0);
    }

    /// The facts that are not secret (what may be stored or shown).
    pub fn public(&self) -> Facts {
        Facts(
            self.0
                .iter()
                .filter(|(_, f)| !f.secret)
                .map(|(k, f)| (k.clone(), f.clone()))
                .collect(),
        )
    }

    /// The names of the facts present.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl fmt::Debug for Facts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, fact) in &self.0 {
            if fact.secret {
                map.entry(k, &"[redacted]");
            } else {
                map.entry(k, &fact.value);
            }
        }
        map.finish()
    }
}

impl fmt::Debug for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str("Fact([redacted])")
        } else {
            write!(f, "Fact({})", self.value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_and_public_views() {
        let mut facts = Facts::new();
        facts.set("host", "h.example");
        facts.set_secret("key", "hunter2");
        assert!(!format!("{facts:?}").contains("hunter2"));
        let public = facts.public();
        assert!(public.has("host") && !public.has("key"));
        assert!(!serde_json::to_string(&public).unwrap().contains("hunter2"));
    }
}
