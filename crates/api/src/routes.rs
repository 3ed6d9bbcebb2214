//! Request routing by hand, because ARM paths carry a whole resource id as `{resourceUri}`:
//! the scope is everything before the **last** `/providers/Microsoft.ServiceLinker/`, keywords
//! match case-insensitively, one or two leading slashes are accepted, and each segment is
//! percent-decoded once.

use percent_encoding::percent_decode_str;
use tether_model::ids::{LinkerName, LinkerRef, OperationId, PROVIDER_NAMESPACE, ResourceId};
use tether_model::{ApiVersion, Error, ErrorKind};

/// What a request addresses.
#[derive(Debug)]
pub enum Route {
    /// `/providers/Microsoft.ServiceLinker/operations`
    Operations,
    /// `{scope}/providers/Microsoft.ServiceLinker/linkers`
    Linkers(ResourceId),
    /// `{scope}/providers/Microsoft.ServiceLinker/linkers/{name}`
    Linker(LinkerRef),
    /// `{scope}/providers/Microsoft.ServiceLinker/linkers/{name}/{action}`
    LinkerAction(LinkerRef, Action),
    /// `/subscriptions/{sub}/providers/Microsoft.ServiceLinker/locations/{loc}/operationStatuses/{id}`
    OperationStatus {
        subscription: String,
        id: Option<OperationId>,
    },
    /// `.../operationResults/{id}`
    OperationResult {
        subscription: String,
        id: Option<OperationId>,
    },
    /// `/providers/Microsoft.ServiceLinker/configurationNames`
    ConfigurationNames,
    /// `{scope}/providers/Microsoft.ServiceLinker/daprConfigurations`
    DaprConfigurations,
    /// A documented ServiceLinker operation Tether does not serve yet.
    Unsupported(&'static str),
    /// `{scope}/providers/Microsoft.Authorization/...` (see [`crate::authorization`]).
    Authorization(crate::authorization::AuthzRoute),
}

/// POST actions on a linker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `validateLinker`
    Validate,
    /// `listConfigurations`
    ListConfigurations,
    /// `generateConfigurations`
    GenerateConfigurations,
}

/// The route names used in logs (no ids: they can be personal data).
impl Route {
    /// A short name for logs and spans.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Operations => "operations",
            Route::Linkers(_) => "linkers",
            Route::Linker(_) => "linker",
            Route::LinkerAction(_, Action::Validate) => "linker/validateLinker",
            Route::LinkerAction(_, Action::ListConfigurations) => "linker/listConfigurations",
            Route::LinkerAction(_, Action::GenerateConfigurations) => {
                "linker/generateConfigurations"
            }
            Route::OperationStatus { .. } => "operationStatuses",
            Route::OperationResult { .. } => "operationResults",
            Route::ConfigurationNames => "configurationNames",
            Route::DaprConfigurations => "daprConfigurations",
            Route::Unsupported(what) => what,
            Route::Authorization(route) => route.name(),
        }
    }
}

/// Parses a request path (still percent-encoded). Each segment is decoded once and must be
/// UTF-8 without an encoded `/` or `\\` in it, so one path has one meaning.
pub fn parse(path: &str) -> Result<Route, Error> {
    let trimmed = path
        .strip_prefix("//")
        .or_else(|| path.strip_prefix('/'))
        .unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments: Vec<String> = trimmed
        .split('/')
        .map(decode_segment)
        .collect::<Result<_, _>>()?;
    if let Some(route) = crate::authorization::route(&segments)? {
        return Ok(Route::Authorization(route));
    }
    let at = segments
        .windows(2)
        .rposition(|w| {
            w[0].eq_ignore_ascii_case("providers") && w[1].eq_ignore_ascii_case(PROVIDER_NAMESPACE)
        })
        .ok_or_else(no_route)?;
    let scope = &segments[..at];
    let rest: Vec<&str> = segments[at + 2..].iter().map(String::as_str).collect();
    let is = |s: &str, keyword: &str| s.eq_ignore_ascii_case(keyword);

    if scope.is_empty() {
        return match rest.as_slice() {
            [op] if is(op, "operations") => Ok(Route::Operations),
            [cn] if is(cn, "configurationNames") => Ok(Route::ConfigurationNames),
            _ => Err(no_route()),
        };
    }
    if let [kind, _loc, collection, rest @ ..] = rest.as_slice() {
        if is(kind, "locations")
            && (is(collection, "operationStatuses") || is(collection, "operationResults"))
        {
            let subscription = match scope {
                [subs, sub] if is(subs, "subscriptions") => sub.to_ascii_lowercase(),
                _ => return Err(no_route()),
            };
            let [id] = rest else { return Err(no_route()) };
            let id = id.parse().ok();
            return Ok(if is(collection, "operationStatuses") {
                Route::OperationStatus { subscription, id }
            } else {
                Route::OperationResult { subscription, id }
            });
        }
        if is(kind, "locations") && (is(collection, "connectors") || is(collection, "dryruns")) {
            return Ok(Route::Unsupported("connectors"));
        }
    }
    let scope = ResourceId::parse(&format!("/{}", scope.join("/")))?;
    match rest.as_slice() {
        [linkers] if is(linkers, "linkers") => Ok(Route::Linkers(scope)),
        [linkers, name] if is(linkers, "linkers") => Ok(Route::Linker(linker(scope, name)?)),
        [linkers, name, action] if is(linkers, "linkers") => {
            let at = linker(scope, name)?;
            if is(action, "validateLinker") {
                Ok(Route::LinkerAction(at, Action::Validate))
            } else if is(action, "listConfigurations") {
                Ok(Route::LinkerAction(at, Action::ListConfigurations))
            } else if is(action, "generateConfigurations") {
                Ok(Route::LinkerAction(at, Action::GenerateConfigurations))
            } else {
                Err(no_route())
            }
        }
        [dryruns, ..] if is(dryruns, "dryruns") => Ok(Route::Unsupported("dryruns")),
        [dapr] if is(dapr, "daprConfigurations") => Ok(Route::DaprConfigurations),
        [other, ..] => Err(Error::invalid(
            "InvalidResourceType",
            format!(
                "the resource type '{other}' could not be found in the namespace '{PROVIDER_NAMESPACE}'"
            ),
        )),
        [] => Err(no_route()),
    }
}

fn decode_segment(segment: &str) -> Result<String, Error> {
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .filter(|s| !s.contains(['/', '\\']))
        .ok_or_else(|| {
            Error::invalid(
                "InvalidRequestUri",
                "the request path has a segment that is not UTF-8 or holds an encoded '/' or '\\'",
            )
        })?;
    Ok(decoded.into_owned())
}

fn linker(scope: ResourceId, name: &str) -> Result<LinkerRef, Error> {
    Ok(LinkerRef {
        scope,
        name: LinkerName::parse(name)?,
    })
}

fn no_route() -> Error {
    Error::new(ErrorKind::NotFound, "NotFound", "no such route")
}

/// The query parameters Tether reads.
#[derive(Debug, Default)]
pub struct Query {
    /// `api-version`, unparsed.
    pub api_version: Option<String>,
    /// `$top`.
    pub top: Option<u32>,
    /// `$skipToken`.
    pub skip_token: Option<String>,
    /// `$filter`.
    pub filter: Option<String>,
}

impl Query {
    /// Parses a query string. ARM's denylisted subscription parameters are a 400.
    pub fn parse(query: Option<&str>) -> Result<Self, Error> {
        let mut out = Query::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let key = key.to_ascii_lowercase();
            match key.as_str() {
                "api-version" => out.api_version = Some(value.into_owned()),
                "$top" => {
                    let top = value
                        .parse::<u32>()
                        .ok()
                        .filter(|t| *t > 0)
                        .ok_or_else(|| {
                            Error::invalid("InvalidParameter", "$top must be a positive integer")
                                .with_target("$top")
                        })?;
                    out.top = Some(top);
                }
                "$skiptoken" => out.skip_token = Some(value.into_owned()),
                "$filter" => out.filter = Some(value.into_owned()),
                "sub" | "subid" | "subscription" | "subscriptionid" => {
                    return Err(Error::invalid(
                        "InvalidQueryParameter",
                        format!("the query parameter '{key}' is not allowed"),
                    ));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The api-version, checked.
    pub fn version(&self) -> Result<ApiVersion, Error> {
        ApiVersion::parse(self.api_version.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Web/sites/app";

    #[test]
    fn splits_on_the_last_servicelinker_provider() {
        let Route::Linker(at) = parse(&format!(
            "/{SITE}/providers/Microsoft.ServiceLinker/linkers/Db"
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(at.scope.as_str(), format!("/{SITE}"));
        assert_eq!(at.name.as_str(), "Db");
        // A scope that itself contains the namespace (a linker's own id) still splits last.
        let nested = format!(
            "/{SITE}/providers/microsoft.servicelinker/linkers/a/providers/Microsoft.ServiceLinker/linkers"
        );
        let Route::Linkers(scope) = parse(&nested).unwrap() else {
            panic!("expected a linker list")
        };
        assert_eq!(
            scope.as_str(),
            format!("/{SITE}/providers/microsoft.servicelinker/linkers/a")
        );
        let Route::Linkers(scope) = parse(&format!(
            "//{SITE}/PROVIDERS/microsoft.SERVICELINKER/LINKERS"
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(scope.as_str(), format!("/{SITE}"));
    }

    #[test]
    fn actions_operations_and_statuses() {
        assert!(matches!(
            parse(&format!(
                "/{SITE}/providers/Microsoft.ServiceLinker/linkers/db/validateLinker"
            ))
            .unwrap(),
            Route::LinkerAction(_, Action::Validate)
        ));
        assert!(matches!(
            parse(&format!(
                "/{SITE}/providers/Microsoft.ServiceLinker/linkers/db/LISTCONFIGURATIONS"
            ))
            .unwrap(),
            Route::LinkerAction(_, Action::ListConfigurations)
        ));
        assert!(matches!(
            parse("/providers/Microsoft.ServiceLinker/operations").unwrap(),
            Route::Operations
        ));
        let id = OperationId::new();
        let Route::OperationStatus { subscription, id: Some(got) } = parse(&format!(
            "/subscriptions/11111111-2222-3333-4444-555555555555/providers/Microsoft.ServiceLinker/locations/local/operationStatuses/{id}"
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (subscription.as_str(), got),
            ("11111111-2222-3333-4444-555555555555", id)
        );
    }

    #[test]
    fn bad_paths_are_client_errors() {
        let code = |p: &str| parse(p).unwrap_err().code().to_string();
        assert_eq!(
            code(&format!(
                "/{SITE}/providers/Microsoft.ServiceLinker/linkerz"
            )),
            "InvalidResourceType"
        );
        assert_eq!(
            code("/subscriptions/nope/providers/Microsoft.ServiceLinker/linkers"),
            "LinkedInvalidPropertyId"
        );
        assert_eq!(
            code(&format!(
                "/{SITE}/providers/Microsoft.ServiceLinker/linkers/a%3Ab"
            )),
            "InvalidParameter"
        );
        assert_eq!(code("/healthz/whatever"), "NotFound");
        for aliased in [
            format!("/{SITE}%2Fproviders%2FMicrosoft.ServiceLinker%2Flinkers"),
            format!("/{SITE}/providers/Microsoft.ServiceLinker/linkers/a%5Cb"),
            format!("/{SITE}/providers/Microsoft.ServiceLinker/linkers/a%FFb"),
        ] {
            assert_eq!(code(&aliased), "InvalidRequestUri", "{aliased}");
        }
        assert_eq!(
            code(&format!(
                "/{SITE}/providers/Microsoft.ServiceLinker/linkers/.."
            )),
            "InvalidParameter"
        );
        assert!(matches!(
            parse(&format!(
                "/{SITE}/providers/Microsoft.ServiceLinker/dryruns/x"
            ))
            .unwrap(),
            Route::Unsupported(_)
        ));
    }

    #[test]
    fn query_parameters() {
        let q = Query::parse(Some("api-version=2022-05-01&%24top=5&%24skipToken=abc")).unwrap();
        assert_eq!(
            (q.api_version.as_deref(), q.top, q.skip_token.as_deref()),
            (Some("2022-05-01"), Some(5), Some("abc"))
        );
        assert_eq!(
            Query::parse(Some("subscriptionId=x")).unwrap_err().code(),
            "InvalidQueryParameter"
        );
        assert_eq!(
            Query::parse(Some("$top=0")).unwrap_err().target(),
            Some("$top")
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "subscriptions",
                "11111111-2222-3333-4444-555555555555",
                "resourceGroups",
                "rg",
                "providers",
                "Microsoft.Web",
                "sites",
                "app",
                "Microsoft.ServiceLinker",
                "linkers",
                "locations",
                "operationStatuses",
                "operationResults",
                "operations",
                "validateLinker",
                "listConfigurations",
                "dryruns",
                "connectors",
                "%2F",
                "%FF",
                ".",
                "..",
                "",
            ])
            .prop_map(str::to_string),
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn any_path_routes_or_gets_a_client_error(parts in prop::collection::vec(segment(), 0..14)) {
            let path = format!("/{}", parts.join("/"));
            if let Err(e) = parse(&path) {
                prop_assert!(matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound), "{e:?}");
            }
        }

        #[test]
        fn any_query_parses_or_gets_a_400(query in any::<String>()) {
            if let Err(e) = Query::parse(Some(&query)) {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
            }
        }
    }
}
