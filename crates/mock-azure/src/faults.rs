//! Fault injection: the rule table, the path globs it matches with, and the rule wire format.
//!
//! Semantics (documented in `docs/mock-azure.md`): rules are checked in creation order and the
//! first rule whose method and path match, whose count is not exhausted and whose probability
//! roll (if it has one) succeeds is consumed; a rule whose roll fails lets the call fall through
//! to the next rule. Exactly one rule applies per call, so a delay rule never combines with a
//! later fail or throttle rule.

use serde::{Deserialize, Serialize};

/// What a matching rule does to the call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) enum FaultAction {
    /// Answer the given status with an error body.
    Fail(FailAction),
    /// Answer 429 `TooManyRequests` with a `Retry-After` header.
    Throttle(ThrottleAction),
    /// Wait, then handle the call normally.
    Delay(DelayAction),
}

/// Parameters of [`FaultAction::Fail`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FailAction {
    pub(crate) status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
}

/// Parameters of [`FaultAction::Throttle`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ThrottleAction {
    /// Seconds, sent as `Retry-After`.
    pub(crate) retry_after: u64,
}

/// Parameters of [`FaultAction::Delay`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DelayAction {
    pub(crate) ms: u64,
}

/// When a fail rule answers: before the state change (the default) or after it (a lost response).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) enum When {
    #[default]
    Before,
    After,
}

/// The body of `POST /admin/faults`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FaultSpec {
    #[serde(default = "any_method")]
    pub(crate) method: String,
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) count: Option<u64>,
    pub(crate) action: FaultAction,
    #[serde(default)]
    pub(crate) when: When,
    /// Apply to each matching call with this probability (0 < p <= 1); `null` = always.
    #[serde(default)]
    pub(crate) probability: Option<f64>,
    /// Matching calls to let through (to later rules) before the rule applies.
    #[serde(default)]
    pub(crate) skip: u64,
}

fn any_method() -> String {
    "*".to_owned()
}

/// Why a [`FaultSpec`] was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum FaultSpecError {
    #[error("fault status {0} is not an http error status (400-599)")]
    Status(u16),
    #[error("`when: after` is only supported for fail actions")]
    AfterNeedsFail,
    #[error("fault path glob must not be empty")]
    EmptyPath,
    #[error("fault probability must be greater than 0 and at most 1")]
    Probability,
}

/// A rule in the table, as listed by `GET /admin/faults`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FaultRule {
    pub(crate) id: u64,
    pub(crate) method: String,
    pub(crate) path: String,
    /// The count the rule was created with (`null` = unlimited).
    pub(crate) count: Option<u64>,
    /// Calls the rule may still affect (`null` = unlimited).
    pub(crate) remaining: Option<u64>,
    /// Calls the rule has affected so far.
    pub(crate) hits: u64,
    pub(crate) action: FaultAction,
    pub(crate) when: When,
    /// The chance that a matching call is affected (`null` = always).
    pub(crate) probability: Option<f64>,
    /// Matching calls still to let through before the rule applies.
    pub(crate) skip: u64,
}

/// A rule consumed by one call.
#[derive(Debug, Clone)]
pub(crate) struct AppliedFault {
    pub(crate) id: u64,
    pub(crate) action: FaultAction,
    pub(crate) when: When,
}

/// What an applied rule does to its call.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    /// Wait this long, then handle the call normally.
    Delay(std::time::Duration),
    /// Answer with an injected error; `after` means the call is applied first (a lost response).
    Respond { injected: Injected, after: bool },
}

/// An injected error response, before it is rendered for its route.
#[derive(Debug, Clone)]
pub(crate) struct Injected {
    pub(crate) rule_id: u64,
    pub(crate) status: u16,
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) retry_after: Option<u64>,
}

impl AppliedFault {
    /// The rule's effect on the call.
    pub(crate) fn effect(&self) -> Effect {
        match &self.action {
            FaultAction::Delay(delay) => Effect::Delay(std::time::Duration::from_millis(delay.ms)),
            FaultAction::Fail(fail) => Effect::Respond {
                injected: Injected {
                    rule_id: self.id,
                    status: fail.status,
                    code: fail.code.clone(),
                    message: fail.message.clone(),
                    retry_after: None,
                },
                after: self.when == When::After,
            },
            FaultAction::Throttle(throttle) => Effect::Respond {
                injected: Injected {
                    rule_id: self.id,
                    status: 429,
                    code: None,
                    message: None,
                    retry_after: Some(throttle.retry_after),
                },
                after: false,
            },
        }
    }
}

/// The ordered rule table.
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    rules: Vec<FaultRule>,
    next_id: u64,
}

impl FaultTable {
    /// Validates and appends a rule; returns its id.
    pub(crate) fn add(&mut self, spec: FaultSpec) -> Result<u64, FaultSpecError> {
        if let FaultAction::Fail(fail) = &spec.action {
            if !(400..=599).contains(&fail.status) {
                return Err(FaultSpecError::Status(fail.status));
            }
        } else if spec.when == When::After {
            return Err(FaultSpecError::AfterNeedsFail);
        }
        if spec.path.trim_matches('/').is_empty() {
            return Err(FaultSpecError::EmptyPath);
        }
        if spec.probability.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return Err(FaultSpecError::Probability);
        }
        self.next_id += 1;
        let id = self.next_id;
        self.rules.push(FaultRule {
            id,
            method: spec.method.to_ascii_uppercase(),
            path: spec.path,
            count: spec.count,
            remaining: spec.count,
            hits: 0,
            action: spec.action,
            when: spec.when,
            probability: spec.probability,
            skip: spec.skip,
        });
        Ok(id)
    }

    /// All rules in evaluation order.
    pub(crate) fn list(&self) -> &[FaultRule] {
        &self.rules
    }

    /// Removes every rule (ids keep increasing).
    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// Removes one rule; false if it did not exist.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|rule| rule.id != id);
        self.rules.len() != before
    }

    /// Consumes the first live rule matching the call (and winning its probability roll), if
    /// any.
    pub(crate) fn take(&mut self, method: &str, segments: &[String]) -> Option<AppliedFault> {
        let mut found = None;
        for rule in &mut self.rules {
            let matches = rule.remaining != Some(0)
                && (rule.method == "*" || rule.method.eq_ignore_ascii_case(method))
                && glob_matches(&rule.path, segments);
            if !matches {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            if rule.probability.is_none_or(|p| rand::random::<f64>() < p) {
                found = Some(rule);
                break;
            }
        }
        let rule = found?;
        if let Some(remaining) = rule.remaining.as_mut() {
            *remaining -= 1;
        }
        rule.hits += 1;
        Some(AppliedFault {
            id: rule.id,
            action: rule.action.clone(),
            when: rule.when,
        })
    }
}

/// Matches a path glob against decoded path segments, ignoring ASCII case.
///
/// `*` and `?` match within one segment; a `**` segment matches zero or more whole segments.
/// Leading, trailing and duplicate slashes in the glob are ignored.
pub(crate) fn glob_matches(glob: &str, segments: &[String]) -> bool {
    let pattern: Vec<String> = glob
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase)
        .collect();
    let path: Vec<String> = segments.iter().map(|s| s.to_lowercase()).collect();
    match_segments(&pattern, &path)
}

fn match_segments(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                let pattern: Vec<char> = first.chars().collect();
                let text: Vec<char> = segment.chars().collect();
                match_one(&pattern, &text) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// Wildcard match of one segment: `*` is any run of characters, `?` exactly one character.
fn match_one(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| match_one(rest, &text[skip..])),
        Some(('?', rest)) => !text.is_empty() && match_one(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && match_one(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn globs_match_within_and_across_segments() {
        let path = segs(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/firewallRules/r1",
        );
        assert!(glob_matches("**/firewallRules/*", &path));
        assert!(glob_matches("**/FIREWALLRULES/r?", &path));
        assert!(glob_matches("/subscriptions/*/resourceGroups/rg/**", &path));
        assert!(glob_matches("**", &path));
        assert!(glob_matches("**/flexibleServers/**", &path));
        assert!(!glob_matches("**/firewallRules", &path));
        assert!(!glob_matches("/subscriptions/*/providers/**", &path));
        assert!(!glob_matches("**/databases/*", &path));
        assert!(glob_matches("**/pg*/firewallRules/r*", &path));
        assert!(!glob_matches("*/firewallRules/*", &path));
    }

    #[test]
    fn skip_lets_matching_calls_through_first() {
        let mut table = FaultTable::default();
        let id = table
            .add(FaultSpec {
                method: "post".into(),
                path: "/dataplane/sql".into(),
                count: Some(1),
                action: FaultAction::Delay(DelayAction { ms: 1 }),
                when: When::Before,
                probability: None,
                skip: 2,
            })
            .unwrap();
        let path = segs("/dataplane/sql");
        assert!(table.take("POST", &path).is_none());
        assert!(table.take("POST", &path).is_none());
        assert_eq!(table.take("POST", &path).unwrap().id, id);
        assert!(table.take("POST", &path).is_none(), "count exhausted");
    }

    #[test]
    fn take_consumes_counts_in_order() {
        let mut table = FaultTable::default();
        let spec = |count| FaultSpec {
            method: "put".into(),
            path: "**/sites/*".into(),
            count,
            action: FaultAction::Delay(DelayAction { ms: 1 }),
            when: When::Before,
            probability: None,
            skip: 0,
        };
        let first = table.add(spec(Some(1))).unwrap();
        let second = table.add(spec(None)).unwrap();
        let path = segs("/x/sites/a");
        assert_eq!(table.take("PUT", &path).unwrap().id, first);
        assert_eq!(table.take("PUT", &path).unwrap().id, second);
        assert_eq!(table.take("PUT", &path).unwrap().id, second);
        assert!(table.take("GET", &path).is_none());
        assert_eq!(table.list()[0].remaining, Some(0));
        assert_eq!(table.list()[1].hits, 2);
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let mut table = FaultTable::default();
        let err = table.add(FaultSpec {
            method: "*".into(),
            path: "**".into(),
            count: None,
            action: FaultAction::Throttle(ThrottleAction { retry_after: 1 }),
            when: When::After,
            probability: None,
            skip: 0,
        });
        assert_eq!(err, Err(FaultSpecError::AfterNeedsFail));
        let err = table.add(FaultSpec {
            method: "*".into(),
            path: "**".into(),
            count: None,
            action: FaultAction::Fail(FailAction {
                status: 200,
                code: None,
                message: None,
            }),
            when: When::Before,
            probability: None,
            skip: 0,
        });
        assert_eq!(err, Err(FaultSpecError::Status(200)));
        let err = table.add(FaultSpec {
            method: "*".into(),
            path: "**".into(),
            count: None,
            action: FaultAction::Delay(DelayAction { ms: 1 }),
            when: When::Before,
            probability: Some(0.0),
            skip: 0,
        });
        assert_eq!(err, Err(FaultSpecError::Probability));
    }

    #[test]
    fn a_rule_that_loses_its_roll_lets_the_call_fall_through() {
        let mut table = FaultTable::default();
        let rule = |probability| FaultSpec {
            method: "*".into(),
            path: "**".into(),
            count: None,
            action: FaultAction::Delay(DelayAction { ms: 1 }),
            when: When::Before,
            probability,
            skip: 0,
        };
        let sometimes = table.add(rule(Some(0.25))).unwrap();
        let always = table.add(rule(None)).unwrap();
        let path = segs("/x");
        let first_wins = (0..4000)
            .filter(|_| table.take("GET", &path).unwrap().id == sometimes)
            .count();
        // Binomial(4000, 0.25): mean 1000, sd ~27; a 10-sd band never fails by chance.
        assert!((730..=1270).contains(&first_wins), "{first_wins}");
        assert_eq!(table.list()[1].hits, 4000 - first_wins as u64);
        assert_eq!(table.list()[1].id, always);
    }
}
