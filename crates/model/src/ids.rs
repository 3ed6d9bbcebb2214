//! Typed identifiers: ARM resource ids (parsed, case-insensitive, caller casing preserved),
//! linker names, and the opaque ids Tether mints for linkers, sagas, operations and replicas.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

/// The ARM provider namespace Tether serves.
pub const PROVIDER_NAMESPACE: &str = "Microsoft.ServiceLinker";
/// The ARM resource type of a linker.
pub const LINKER_TYPE: &str = "Microsoft.ServiceLinker/linkers";

/// A parsed ARM resource id such as
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/sites/{site}`.
///
/// Comparison and hashing use [`ResourceId::key`] (lower-cased), because ARM ids are
/// case-insensitive; [`ResourceId::as_str`] keeps the casing the caller used.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceId {
    raw: String,
    key: String,
}

impl ResourceId {
    /// Parses an id: one leading slash (two are tolerated, as some clients splice a scope that
    /// already starts with `/` after a template slash), `subscriptions/{guid}` first, then an
    /// optional resource group and any number of `providers/{namespace}/{type}/{name}...` parts.
    ///
    /// One resource has one spelling up to letter case: the subscription id must be a GUID in
    /// its canonical hyphenated form (no braces, `urn:uuid:` prefix or bare hex), and `.` and
    /// `..` segments are refused, so no two distinct strings name the same resource.
    ///
    /// Errors are `400 LinkedInvalidPropertyId` with a message naming the problem.
    pub fn parse(input: &str) -> Result<Self, Error> {
        if input.len() > MAX_ID_LEN {
            return Err(invalid_id(
                input,
                &format!("it is longer than {MAX_ID_LEN} bytes"),
            ));
        }
        let trimmed = input.strip_prefix("//").or_else(|| input.strip_prefix('/'));
        let Some(rest) = trimmed else {
            return Err(invalid_id(input, "it must start with '/subscriptions/'"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(invalid_id(input, "it has an empty segment"));
        }
        if segments.iter().any(|s| s.chars().any(char::is_control)) {
            return Err(invalid_id(input, "it contains control characters"));
        }
        if segments.iter().any(|s| matches!(*s, "." | "..")) {
            return Err(invalid_id(input, "it has a '.' or '..' segment"));
        }
        if segments.len() < 2 || !segments[0].eq_ignore_ascii_case("subscriptions") {
            return Err(invalid_id(
                input,
                "it must start with '/subscriptions/{subscriptionId}'",
            ));
        }
        if !is_canonical_guid(segments[1]) {
            return Err(invalid_id(
                input,
                "the subscription id is not a GUID in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
            ));
        }
        let mut i = 2;
        if i < segments.len() && segments[i].eq_ignore_ascii_case("resourceGroups") {
            let Some(rg) = segments.get(i + 1) else {
                return Err(invalid_id(input, "the resource group name is missing"));
            };
            validate_resource_group(rg).map_err(|why| invalid_id(input, why))?;
            i += 2;
        }
        while i < segments.len() {
            if !segments[i].eq_ignore_ascii_case("providers") {
                return Err(invalid_id(input, "expected a 'providers' segment"));
            }
            // providers/{namespace}/{type}/{name}[/{type}/{name}]* — a namespace plus pairs.
            let start = i + 2;
            let mut end = start;
            while end < segments.len() && !segments[end].eq_ignore_ascii_case("providers") {
                end += 1;
            }
            if start > segments.len() || end == start || (end - start) % 2 != 0 {
                return Err(invalid_id(
                    input,
                    "a provider part must be '{namespace}/{type}/{name}' with type/name pairs",
                ));
            }
            i = end;
        }
        let raw = format!("/{}", segments.join("/"));
        let key = raw.to_ascii_lowercase();
        Ok(Self { raw, key })
    }

    /// The id as the caller spelled it, with exactly one leading slash.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The lower-cased id: the identity used for lookups and uniqueness.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subscription id, as spelled by the caller.
    pub fn subscription(&self) -> &str {
        self.segments()
            .nth(1)
            .expect("parse guarantees a subscription segment")
    }

    /// The resource group name, if the id is inside one.
    pub fn resource_group(&self) -> Option<&str> {
        let mut segments = self.segments();
        segments
            .nth(2)
            .filter(|s| s.eq_ignore_ascii_case("resourceGroups"))?;
        segments.next()
    }

    /// The full resource type of the innermost provider part, e.g. `Microsoft.Web/sites` or
    /// `Microsoft.DBforPostgreSQL/flexibleServers/databases`; `None` for a subscription or group.
    pub fn resource_type(&self) -> Option<String> {
        let (namespace, pairs) = self.last_provider_part()?;
        let mut ty = namespace.to_string();
        for pair in pairs.chunks(2) {
            ty.push('/');
            ty.push_str(pair[0]);
        }
        Some(ty)
    }

    /// The last segment: the resource's own name.
    pub fn name(&self) -> &str {
        self.raw
            .rsplit('/')
            .next()
            .expect("an id has at least one segment")
    }

    /// The id of the enclosing resource of a child resource (`.../servers/s/databases/d` →
    /// `.../servers/s`); `None` when the innermost provider part is not a child.
    pub fn parent(&self) -> Option<ResourceId> {
        let (_, pairs) = self.last_provider_part()?;
        if pairs.len() < 4 {
            return None;
        }
        let cut = self.raw.rfind('/')?;
        let cut = self.raw[..cut].rfind('/')?;
        ResourceId::parse(&self.raw[..cut]).ok()
    }

    /// True when the resource type matches `ty` (case-insensitively).
    pub fn is_type(&self, ty: &str) -> bool {
        self.resource_type()
            .is_some_and(|t| t.eq_ignore_ascii_case(ty))
    }

    fn segments(&self) -> impl Iterator<Item = &str> {
        self.raw[1..].split('/')
    }

    fn last_provider_part(&self) -> Option<(&str, Vec<&str>)> {
        let segments: Vec<&str> = self.segments().collect();
        let at = segments
            .iter()
            .rposition(|s| s.eq_ignore_ascii_case("providers"))?;
        let namespace = segments.get(at + 1)?;
        Some((namespace, segments[at + 2..].to_vec()))
    }
}

/// The longest resource id accepted (ARM's URL limit leaves about this much for the id).
pub const MAX_ID_LEN: usize = 2048;

/// True for a GUID in the one form ARM uses in ids: 36 characters, hex digits with hyphens
/// at positions 8, 13, 18 and 23 (either letter case).
pub fn is_canonical_guid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn validate_resource_group(name: &str) -> Result<(), &'static str> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '(' | ')' | '.'));
    if name.is_empty() || name.chars().count() > 90 || !ok_chars || name.ends_with('.') {
        return Err(
            "the resource group name must be 1-90 letters, digits, '-', '_', '(', ')' or '.', not ending in '.'",
        );
    }
    Ok(())
}

fn invalid_id(input: &str, why: &str) -> Error {
    Error::invalid(
        "LinkedInvalidPropertyId",
        format!(
            "the resource id '{}' is invalid: {why}",
            crate::error::quoted(input)
        ),
    )
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for ResourceId {}
impl std::hash::Hash for ResourceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}
impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}
impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({})", self.raw)
    }
}
impl TryFrom<String> for ResourceId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        ResourceId::parse(&value)
    }
}
impl From<ResourceId> for String {
    fn from(id: ResourceId) -> String {
        id.raw
    }
}

/// A linker (connection) name: 1-260 characters, none of `< > % & : \ ? / #`, no control
/// characters. Compared case-insensitively; the caller's casing is kept for display.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LinkerName(String);

impl LinkerName {
    /// Validates a name; errors are `400 InvalidParameter` targeting `linkerName`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let bad = name
            .chars()
            .any(|c| c.is_control() || "<>%&:\\?/#".contains(c));
        let dots = matches!(name, "." | "..");
        if name.is_empty() || name.chars().count() > 260 || bad || dots {
            return Err(Error::invalid(
                "InvalidParameter",
                format!(
                    "the linker name '{}' is invalid: use 1-260 characters without < > % & : \\ ? / # or control characters, other than '.' and '..'",
                    crate::error::quoted(name)
                ),
            )
            .with_target("linkerName"));
        }
        Ok(Self(name.to_string()))
    }

    /// The name as spelled by the caller.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-cased name used for lookups.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for LinkerName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for LinkerName {}
impl fmt::Display for LinkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for LinkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkerName({})", self.0)
    }
}
impl TryFrom<String> for LinkerName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        LinkerName::parse(&value)
    }
}
impl From<LinkerName> for String {
    fn from(name: LinkerName) -> String {
        name.0
    }
}

/// Where a linker lives: the source resource (its scope) plus its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkerRef {
    /// The source resource the linker extends.
    pub scope: ResourceId,
    /// The linker's name under that scope.
    pub name: LinkerName,
}

impl LinkerRef {
    /// The linker's ARM id: `{scope}/providers/Microsoft.ServiceLinker/linkers/{name}`.
    pub fn resource_id(&self) -> String {
        format!(
            "{}/providers/{PROVIDER_NAMESPACE}/linkers/{}",
            self.scope.as_str(),
            self.name.as_str()
        )
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Mints a fresh random id.
            #[expect(clippy::disallowed_methods, reason = "the one sanctioned place that mints ids")]
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
            /// Wraps an id read back from storage.
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// The raw value, for storage.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// The internal id of a linker row. A linker deleted and created again under the same
    /// name gets a new id, so work queued for the old one can never touch the new one.
    LinkerId
);
uuid_id!(
    /// The id of one saga (one create, update, delete or validate run).
    SagaId
);
uuid_id!(
    /// The id of a long-running operation, as it appears in `Azure-AsyncOperation` URLs.
    /// Random and unguessable (122 random bits), never derived from request ids.
    OperationId
);

/// The identity of one running replica (`tether serve` or `tether dev` process): a readable
/// name plus a per-process suffix, so a restarted process never mistakes itself for its past.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(String);

impl InstanceId {
    /// A new identity for this process: `{name}-{8 random hex digits}`.
    #[expect(
        clippy::disallowed_methods,
        reason = "the one sanctioned place that mints ids"
    )]
    pub fn generate(name: &str) -> Self {
        let suffix = Uuid::new_v4().simple().to_string();
        Self(format!("{name}-{}", &suffix[..8]))
    }
    /// Wraps a value read back from storage.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }
    /// The raw value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-App/providers/Microsoft.Web/sites/Shop";

    #[test]
    fn parses_and_keeps_casing() {
        let id = ResourceId::parse(SITE).unwrap();
        assert_eq!(id.as_str(), SITE);
        assert_eq!(id.key(), SITE.to_ascii_lowercase());
        assert_eq!(id.subscription(), "11111111-2222-3333-4444-555555555555");
        assert_eq!(id.resource_group(), Some("rg-App"));
        assert_eq!(id.resource_type().as_deref(), Some("Microsoft.Web/sites"));
        assert_eq!(id.name(), "Shop");
        assert!(id.is_type("microsoft.web/SITES"));
        assert!(id.parent().is_none());
    }

    #[test]
    fn double_slash_and_case_insensitive_equality() {
        let a = ResourceId::parse(&format!("/{SITE}")).unwrap();
        let b = ResourceId::parse(
            &SITE
                .to_ascii_uppercase()
                .replace("SUBSCRIPTIONS", "subscriptions"),
        )
        .unwrap();
        assert_eq!(a.as_str(), SITE);
        assert_eq!(a, b);
    }

    #[test]
    fn child_resources_and_parents() {
        let db = ResourceId::parse(
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourcegroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/orders",
        )
        .unwrap();
        assert_eq!(
            db.resource_type().as_deref(),
            Some("Microsoft.DBforPostgreSQL/flexibleServers/databases")
        );
        assert_eq!(db.parent().unwrap().name(), "pg");
        assert_eq!(db.resource_group(), Some("rg"));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "subscriptions/11111111-2222-3333-4444-555555555555",
            "/subscriptions/not-a-guid",
            "/subscriptions/11111111-2222-3333-4444-555555555555//resourceGroups/rg",
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg./providers/A.B/c/d",
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/A.B/c",
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/things/x",
            "/tenants/x",
            "/subscriptions/{11111111-2222-3333-4444-555555555555}",
            "/subscriptions/11111111222233334444555555555555",
            "/subscriptions/urn:uuid:11111111-2222-3333-4444-555555555555",
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/A.B/c/./d/e",
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/A.B/c/../d/e",
        ] {
            let err = ResourceId::parse(bad).unwrap_err();
            assert_eq!(err.code(), "LinkedInvalidPropertyId", "{bad}");
        }
    }

    #[test]
    fn linker_names() {
        assert!(LinkerName::parse("orders_db-1.x").is_ok());
        assert!(LinkerName::parse(&"a".repeat(260)).is_ok());
        for bad in [
            "",
            "a/b",
            "a%b",
            "a#",
            "a?b",
            "a:b",
            "a\u{1}b",
            ".",
            "..",
            &"a".repeat(261),
        ] {
            let err = LinkerName::parse(bad).unwrap_err();
            assert_eq!(err.code(), "InvalidParameter");
            assert_eq!(err.target(), Some("linkerName"));
        }
        assert_eq!(
            LinkerName::parse("Orders").unwrap(),
            LinkerName::parse("orders").unwrap()
        );
    }

    #[test]
    fn linker_resource_id() {
        let r = LinkerRef {
            scope: ResourceId::parse(SITE).unwrap(),
            name: LinkerName::parse("Db").unwrap(),
        };
        assert_eq!(
            r.resource_id(),
            format!("{SITE}/providers/Microsoft.ServiceLinker/linkers/Db")
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Segments built from pieces that matter to the parser, plus arbitrary text.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("subscriptions".to_string()),
            Just("resourceGroups".to_string()),
            Just("providers".to_string()),
            Just("11111111-2222-3333-4444-555555555555".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            "[A-Za-z0-9._()-]{1,12}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn parsing_any_text_never_panics_and_is_stable(input in any::<String>()) {
            if let Ok(id) = ResourceId::parse(&input) {
                let again = ResourceId::parse(id.as_str()).unwrap();
                prop_assert_eq!(again.as_str(), id.as_str());
                prop_assert_eq!(id.key(), id.as_str().to_ascii_lowercase());
            }
        }

        #[test]
        fn parsed_ids_answer_every_accessor(parts in proptest::collection::vec(segment(), 0..12)) {
            let input = format!("/{}", parts.join("/"));
            if let Ok(id) = ResourceId::parse(&input) {
                prop_assert!(is_canonical_guid(id.subscription()));
                let _ = (id.resource_group(), id.resource_type(), id.name(), id.parent());
                prop_assert!(!id.as_str().split('/').any(|s| s == "." || s == ".."));
            }
        }

        #[test]
        fn linker_names_never_panic(name in any::<String>()) {
            if let Ok(n) = LinkerName::parse(&name) {
                prop_assert_eq!(n.as_str(), name.as_str());
                prop_assert_eq!(LinkerName::parse(&n.key()).unwrap(), n);
            }
        }
    }
}
