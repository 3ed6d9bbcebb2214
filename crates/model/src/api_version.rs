//! The api-versions Tether serves and what each one can express.
//!
//! One superset model (the newest preview) serves every version: requests under an older
//! version may not use what it lacks ([`ApiVersion::check_request`]), and responses leave it
//! out ([`ApiVersion::strip_response`]). Both read the same table, [`VERSION_GAPS`].

use std::fmt;

use serde_json::Value;

use crate::Error;

/// A supported api-version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiVersion {
    /// The first stable version: linkers only.
    V2022_05_01,
    /// The newest stable version.
    V2024_04_01,
    /// The newest preview.
    V2024_07_01Preview,
}

impl ApiVersion {
    /// Every supported version, oldest first.
    pub const ALL: [ApiVersion; 3] = [
        ApiVersion::V2022_05_01,
        ApiVersion::V2024_04_01,
        ApiVersion::V2024_07_01Preview,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2022_05_01 => "2022-05-01",
            ApiVersion::V2024_04_01 => "2024-04-01",
            ApiVersion::V2024_07_01Preview => "2024-07-01-preview",
        }
    }

    /// Parses the `api-version` query value. Missing → `MissingApiVersionParameter`; malformed
    /// → `InvalidApiVersionParameter`; well-formed but unsupported → `NoRegisteredProviderFound`.
    pub fn parse(value: Option<&str>) -> Result<Self, Error> {
        let Some(value) = value else {
            return Err(Error::invalid(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        };
        if let Some(v) = Self::ALL
            .iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(value))
        {
            return Ok(*v);
        }
        let code = if is_well_formed(value) {
            "NoRegisteredProviderFound"
        } else {
            "InvalidApiVersionParameter"
        };
        Err(Error::invalid(
            code,
            format!(
                "The api-version '{}' is not supported for resource provider 'Microsoft.ServiceLinker'. The supported api-versions are '{}'.",
                crate::error::quoted(value),
                Self::ALL.map(|v| v.as_str()).join(", ")
            ),
        ))
    }

    /// Rejects request content that this version does not define, with a 400 that names it.
    /// `properties` is the `properties` object of a linker body or patch.
    pub fn check_request(self, properties: &Value) -> Result<(), Error> {
        let Some(gap) = VERSION_GAPS
            .iter()
            .find(|g| self < g.since && g.is_used_by(properties))
        else {
            return Ok(());
        };
        let path = gap.path;
        let what = match gap.value {
            Some(v) => format!("the value '{v}' of 'properties.{path}'"),
            None => format!("the property 'properties.{path}'"),
        };
        Err(Error::invalid(
            "InvalidRequestContent",
            format!(
                "{what} is not available in api-version {}; use {} or later",
                self.as_str(),
                gap.since.as_str()
            ),
        )
        .with_target(format!("properties.{path}")))
    }

    /// Removes from rendered linker properties everything this version does not define, so a
    /// linker written through a newer version still validates against an older document.
    pub fn strip_response(self, properties: &mut Value) {
        for gap in VERSION_GAPS
            .iter()
            .filter(|g| self < g.since && g.value.is_none())
        {
            gap.remove(properties);
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `YYYY-MM-DD` with an optional known suffix. Works on any UTF-8 (the first ten bytes may
/// end inside a character: then it is simply not a date).
fn is_well_formed(value: &str) -> bool {
    let Some((date, suffix)) = value.get(..10).zip(value.get(10..)) else {
        return false;
    };
    let date_ok = date.char_indices().all(|(i, c)| match i {
        4 | 7 => c == '-',
        _ => c.is_ascii_digit(),
    });
    let suffix_ok = suffix.is_empty()
        || ["-preview", "-alpha", "-beta", "-rc", "-privatepreview"]
            .iter()
            .any(|s| suffix.eq_ignore_ascii_case(s));
    date_ok && suffix_ok
}

/// Something a version lacks: a property (by its dot-separated path inside `properties`) or
/// one value of a property, and the first version that has it.
pub struct VersionGap {
    /// The path of the property inside `properties`, dot-separated.
    pub path: &'static str,
    /// `Some(v)`: only the value `v` is missing; `None`: the whole property is.
    pub value: Option<&'static str>,
    /// The first version that defines it.
    pub since: ApiVersion,
}

impl VersionGap {
    fn is_used_by(&self, properties: &Value) -> bool {
        let found = self.path.split('.').try_fold(properties, |v, k| v.get(k));
        match (found, self.value) {
            (None | Some(Value::Null), _) => false,
            (Some(_), None) => true,
            (Some(found), Some(v)) => found.as_str() == Some(v),
        }
    }

    fn remove(&self, properties: &mut Value) {
        let (parent, leaf) = match self.path.rsplit_once('.') {
            Some((p, leaf)) => (p.split('.').try_fold(properties, |v, k| v.get_mut(k)), leaf),
            None => (Some(properties), self.path),
        };
        if let Some(Value::Object(map)) = parent {
            map.remove(leaf);
        }
    }
}

use ApiVersion::{V2024_04_01 as V2024, V2024_07_01Preview as V2024_PREVIEW};

/// What each older version lacks (README of the reference documents, "Model properties and
/// enum values missing in 2022-05-01", and section 9 for the preview-only values).
pub const VERSION_GAPS: &[VersionGap] = &[
    VersionGap {
        path: "publicNetworkSolution",
        value: None,
        since: V2024,
    },
    VersionGap {
        path: "configurationInfo",
        value: None,
        since: V2024,
    },
    VersionGap {
        path: "authInfo.authMode",
        value: None,
        since: V2024,
    },
    VersionGap {
        path: "authInfo.userName",
        value: None,
        since: V2024,
    },
    VersionGap {
        path: "authInfo.deleteOrUpdateBehavior",
        value: None,
        since: V2024,
    },
    VersionGap {
        path: "authInfo.roles",
        value: None,
        since: V2024,
    },
    VersionGap {
        path: "vNetSolution.deleteOrUpdateBehavior",
        value: None,
        since: V2024,
    },
    VersionGap {
        path: "secretStore.keyVaultSecretName",
        value: None,
        since: V2024,
    },
    VersionGap {
        path: "targetService.type",
        value: Some("SelfHostedServer"),
        since: V2024,
    },
    VersionGap {
        path: "authInfo.authType",
        value: Some("accessKey"),
        since: V2024,
    },
    VersionGap {
        path: "authInfo.authType",
        value: Some("userAccount"),
        since: V2024,
    },
    VersionGap {
        path: "authInfo.authType",
        value: Some("easyAuthMicrosoftEntraID"),
        since: V2024,
    },
    VersionGap {
        path: "clientType",
        value: Some("jms-springBoot"),
        since: V2024,
    },
    VersionGap {
        path: "clientType",
        value: Some("dapr"),
        since: V2024,
    },
    VersionGap {
        path: "targetService.type",
        value: Some("FabricPlatform"),
        since: V2024_PREVIEW,
    },
    VersionGap {
        path: "targetService.resourceProperties.type",
        value: Some("AppConfig"),
        since: V2024_PREVIEW,
    },
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_versions_with_arm_codes() {
        assert_eq!(
            ApiVersion::parse(Some("2022-05-01")).unwrap(),
            ApiVersion::V2022_05_01
        );
        assert_eq!(
            ApiVersion::parse(Some("2024-07-01-PREVIEW")).unwrap(),
            ApiVersion::V2024_07_01Preview
        );
        assert_eq!(
            ApiVersion::parse(None).unwrap_err().code(),
            "MissingApiVersionParameter"
        );
        assert_eq!(
            ApiVersion::parse(Some("2023-01-01")).unwrap_err().code(),
            "NoRegisteredProviderFound"
        );
        assert_eq!(
            ApiVersion::parse(Some("2023-01-01-preview"))
                .unwrap_err()
                .code(),
            "NoRegisteredProviderFound"
        );
        let err = ApiVersion::parse(Some("yesterday")).unwrap_err();
        assert_eq!(err.code(), "InvalidApiVersionParameter");
        assert!(
            err.detail()
                .message
                .contains("2022-05-01, 2024-04-01, 2024-07-01-preview")
        );
    }

    #[test]
    fn older_versions_reject_newer_content() {
        let props = json!({"publicNetworkSolution": {"action": "optOut"}});
        let err = ApiVersion::V2022_05_01.check_request(&props).unwrap_err();
        assert_eq!(err.target(), Some("properties.publicNetworkSolution"));
        assert!(ApiVersion::V2024_04_01.check_request(&props).is_ok());

        let fabric = json!({"targetService": {"type": "FabricPlatform", "endpoint": "x"}});
        assert!(ApiVersion::V2024_04_01.check_request(&fabric).is_err());
        assert!(
            ApiVersion::V2024_07_01Preview
                .check_request(&fabric)
                .is_ok()
        );

        let auth = json!({"authInfo": {"authType": "secret", "authMode": "optInAllAuth"}});
        assert!(ApiVersion::V2022_05_01.check_request(&auth).is_err());
        let null_ok = json!({"publicNetworkSolution": null});
        assert!(ApiVersion::V2022_05_01.check_request(&null_ok).is_ok());
    }

    #[test]
    fn responses_drop_what_a_version_lacks() {
        let mut props = json!({
            "clientType": "python",
            "configurationInfo": {"action": "enable"},
            "authInfo": {"authType": "secret", "authMode": "optInAllAuth", "name": "u"},
            "vNetSolution": {"type": "serviceEndpoint", "deleteOrUpdateBehavior": "Default"}
        });
        ApiVersion::V2022_05_01.strip_response(&mut props);
        assert_eq!(
            props,
            json!({
                "clientType": "python",
                "authInfo": {"authType": "secret", "name": "u"},
                "vNetSolution": {"type": "serviceEndpoint"}
            })
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_value_parses_or_gets_a_400(value in any::<String>()) {
            match ApiVersion::parse(Some(&value)) {
                Ok(v) => prop_assert!(v.as_str().eq_ignore_ascii_case(&value)),
                Err(e) => {
                    prop_assert!(matches!(e.code(), "InvalidApiVersionParameter" | "NoRegisteredProviderFound"));
                    prop_assert!(e.detail().message.len() < 1024);
                }
            }
        }

        #[test]
        fn dates_with_any_suffix_never_panic(date in "[0-9]{4}-[0-9]{2}-[0-9]{2}", suffix in any::<String>()) {
            let _ = ApiVersion::parse(Some(&format!("{date}{suffix}")));
        }
    }

    #[test]
    fn multibyte_text_is_a_400() {
        let err = ApiVersion::parse(Some("123456789\u{e9}")).unwrap_err();
        assert_eq!(err.code(), "InvalidApiVersionParameter");
    }
}
