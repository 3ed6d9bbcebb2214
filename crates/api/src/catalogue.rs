//! The catalogue operations: `configurationNames` (the configuration keys a connection writes,
//! per target kind × client type × auth type, from the same catalogue the sagas render from)
//! and `daprConfigurations` (Dapr component templates: Tether offers none, since it supports
//! no `dapr` client type yet). Both are static reads open to any authenticated caller, like
//! `operations`, and exist from api-version 2024-04-01 on.

use serde_json::{Value, json};
use tether_model::Error;
use tether_model::catalog::Catalog;
use tether_model::configuration::KeyNaming;

/// Entries per `configurationNames` page.
const PAGE: usize = 100;
/// The longest `$filter` accepted.
const MAX_FILTER: usize = 1024;

/// A `$filter`: `<field> eq '<value>'` clauses joined by `and`, over `targetService`,
/// `clientType` and `authType` (names and values compared case-insensitively).
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    target_service: Option<String>,
    client_type: Option<String>,
    auth_type: Option<String>,
}

impl Filter {
    /// Parses a `$filter`; anything outside the grammar above is a `400` naming `$filter`.
    pub fn parse(filter: Option<&str>) -> Result<Self, Error> {
        let mut out = Filter::default();
        let Some(text) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
            return Ok(out);
        };
        let invalid = |why: String| Error::invalid("InvalidFilter", why).with_target("$filter");
        if text.len() > MAX_FILTER {
            return Err(invalid(format!(
                "the filter is longer than {MAX_FILTER} characters"
            )));
        }
        for clause in split_and(text) {
            let (field, value) = clause
                .split_once(" eq ")
                .map(|(f, v)| (f.trim(), v.trim()))
                .and_then(|(f, v)| {
                    let v = v.strip_prefix('\'')?.strip_suffix('\'')?;
                    (!v.contains('\'')).then_some((f, v))
                })
                .ok_or_else(|| {
                    invalid(
                        "the filter must be clauses like targetService eq 'value' joined by 'and'"
                            .to_string(),
                    )
                })?;
            let slot = match field.to_ascii_lowercase().as_str() {
                "targetservice" => &mut out.target_service,
                "clienttype" => &mut out.client_type,
                "authtype" => &mut out.auth_type,
                _ => {
                    return Err(invalid(
                        "the filter may name targetService, clientType and authType".to_string(),
                    ));
                }
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(invalid(format!("the filter names '{field}' twice")));
            }
        }
        Ok(out)
    }

    fn admits(&self, target: &str, client: &str, auth: &str) -> bool {
        let matches = |want: &Option<String>, have: &str| {
            want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have))
        };
        matches(&self.target_service, target)
            && matches(&self.client_type, client)
            && matches(&self.auth_type, auth)
    }
}

/// Splits on ` and ` outside quotes, case-insensitively.
fn split_and(text: &str) -> Vec<&str> {
    let mut clauses = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (at, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted
                && text
                    .get(at..at + 5)
                    .is_some_and(|w| w.eq_ignore_ascii_case(" and ")) =>
            {
                clauses.push(&text[start..at]);
                start = at + 5;
            }
            _ => {}
        }
    }
    clauses.push(&text[start..]);
    clauses
}

/// One page of `configurationNames` starting at the entry `skip` (the `$skipToken`), and
/// whether more entries follow.
pub fn configuration_names(
    catalog: &Catalog,
    filter: &Filter,
    skip_token: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), Error> {
    let skip = match skip_token {
        None => 0,
        Some(token) => token.parse::<usize>().map_err(|_| {
            Error::invalid("InvalidParameter", "the $skipToken is not valid")
                .with_target("$skipToken")
        })?,
    };
    let mut entries = catalog.targets.iter().flat_map(|target| {
        let service = target.service_name();
        target.cells.iter().filter_map(move |cell| {
            let (client, auth) = (cell.client.as_str(), cell.auth.as_str());
            filter.admits(&service, client, auth).then(|| {
                let names: Vec<Value> = cell
                    .entries
                    .iter()
                    .map(|t| json!({ "value": t.key.name(&KeyNaming::Plain), "description": t.description }))
                    .collect();
                json!({ "properties": {
                    "targetService": service,
                    "clientType": client,
                    "authType": auth,
                    "names": names,
                }})
            })
        })
    });
    let page: Vec<Value> = entries.by_ref().skip(skip).take(PAGE).collect();
    let next = entries.next().map(|_| (skip + PAGE).to_string());
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_model::catalog::catalog;

    fn all(filter: &Filter) -> Vec<Value> {
        let catalog = catalog().unwrap();
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = configuration_names(catalog, filter, token.as_deref()).unwrap();
            assert!(page.len() <= PAGE);
            out.extend(page);
            match next {
                Some(next) => token = Some(next),
                None => return out,
            }
        }
    }

    #[test]
    fn every_cell_of_the_catalogue_is_listed_once_across_pages() {
        let catalog = catalog().unwrap();
        let cells: usize = catalog.targets.iter().map(|t| t.cells.len()).sum();
        let listed = all(&Filter::default());
        assert_eq!(listed.len(), cells);
        assert!(cells > PAGE, "the catalogue spans pages ({cells} cells)");
        for entry in &listed {
            let names = entry["properties"]["names"].as_array().unwrap();
            assert!(!names.is_empty(), "{entry}");
            for name in names {
                assert!(!name["value"].as_str().unwrap().is_empty(), "{entry}");
                assert!(!name["description"].as_str().unwrap().is_empty(), "{entry}");
            }
        }
    }

    #[test]
    fn the_documented_app_configuration_entry_is_there() {
        let filter = Filter::parse(Some(
            "targetService eq 'Microsoft.AppConfiguration/configurationStores' and clientType eq 'none' AND authType eq 'systemAssignedIdentity'",
        ))
        .unwrap();
        let listed = all(&filter);
        assert_eq!(listed.len(), 1, "{listed:#?}");
        let p = &listed[0]["properties"];
        assert_eq!(
            p["targetService"],
            "MICROSOFT.APPCONFIGURATION/CONFIGURATIONSTORES"
        );
        assert_eq!(p["names"][0]["value"], "AZURE_APPCONFIGURATION_ENDPOINT");
    }

    #[test]
    fn filters_outside_the_grammar_are_refused() {
        for bad in [
            "targetService ne 'x'",
            "targetService eq x",
            "region eq 'x'",
            "clientType eq 'a' and clientType eq 'b'",
            "clientType eq 'a' or authType eq 'b'",
        ] {
            let e = Filter::parse(Some(bad)).unwrap_err();
            assert_eq!(e.code(), "InvalidFilter", "{bad}");
            assert_eq!(e.target(), Some("$filter"), "{bad}");
        }
        assert_eq!(
            Filter::parse(Some(&"a".repeat(MAX_FILTER + 1)))
                .unwrap_err()
                .code(),
            "InvalidFilter"
        );
        // A quoted value may hold the word "and".
        let f = Filter::parse(Some("targetService eq 'x and y'")).unwrap();
        assert_eq!(f.target_service.as_deref(), Some("x and y"));
    }

    #[test]
    fn a_bad_skip_token_is_a_400() {
        let e =
            configuration_names(catalog().unwrap(), &Filter::default(), Some("-1")).unwrap_err();
        assert_eq!(e.target(), Some("$skipToken"));
    }
}
