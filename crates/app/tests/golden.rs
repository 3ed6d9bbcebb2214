//! Golden fixtures of persisted saga payloads: what the first release (`fixtures/v1`), the
//! second (`fixtures/v2`) and the current one (`fixtures/v3`) wrote to the `saga` table (`name`, `params`) and to
//! `saga_event` (`step`, `kind`, `data`), one file per saga, from real runs of `tether dev`.
//!
//! A saga started by one build may be finished by the next, so every fixture must still be
//! understood: its saga name resolves to a definition, each event names one of that
//! definition's steps and a known event kind, and the params and every step output and error
//! deserialize into their types and serialize back to exactly the stored JSON. Renaming a
//! saga, a step or a persisted field fails here (an added field must be skipped when absent);
//! so does changing a shipped definition's steps, or adding a saga without a fixture.
//!
//! How they were made (api-version 2022-05-01, `tether dev` with a fresh `--data-dir`;
//! secrets are sealed with that run's throw-away key, no plain password is in any file):
//!
//! - `v1`: the build of commit 57dce61. Linker `orders` on `demo-web` → `demo-pg/orders`,
//!   secret auth (`appuser`), `vNetSolution.type=firewall`, client `python`: create, validate,
//!   PATCH to client `java` and a new password, delete; then the mock fault
//!   `{"method":"PUT","path":"**/config/appsettings","count":1,"action":{"fail":{"status":409}}}`
//!   and a create of `broken` that unwinds (`linker-create-failed.json`).
//! - `v2`: the build of commit 8aeee06. The same linker with the demo user-assigned identity
//!   (`clientId` and `subscriptionId`) and firewall rules: create, validate, PUT to secret
//!   auth with client `java` kept in the demo Key Vault (`secretStore.keyVaultId`), delete;
//!   then the same fault and an unwound create of `broken`. `linker-update-v2-legacy.json` is
//!   the update of a first-release linker (the `tests/fixtures/upgrade-v1` installation, run by
//!   the build of 8aeee06 with a PUT to client `java` and a new password): it carries `legacy`.
//! - `v3`: the build that introduced `linker-create-v3` and `linker-update-v3` (`network` and
//!   `configuration` in one commit; the same step outputs as `v2`). The same create (the demo
//!   identity's `clientId`, firewall rules), the same PUT to secret auth in the demo Key Vault,
//!   then the same fault and an unwound create of `broken`.
//!
//! Extraction, per database (`OUT` the fixture directory):
//!
//! ```sh
//! sqlite3 -separator $'\t' tether.db "
//!   select name || iif(state = 'succeeded', '', '-' || state),
//!          json_object('name', name, 'params', json(params), 'events',
//!            (select json_group_array(json_object('step', step, 'kind', kind, 'data', json(data)))
//!               from (select * from saga_event where saga_id = saga.id order by rowid)))
//!     from saga order by created_at" |
//! while IFS=$'\t' read -r file fixture; do jq -S . <<<"$fixture" >"$OUT/$file.json"; done
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tether_app::sagas::{self, v1};
use tether_saga::{EventKind, StepError};

/// Which release wrote a fixture (its directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    V1,
    V2,
    V3,
}

impl Release {
    /// The first release's params and outputs are typed by the frozen `v1` module; every
    /// later release wrote today's types (`v3` changed when steps commit, not what they store).
    fn frozen_types(self) -> bool {
        self == Release::V1
    }
}

/// One persisted saga.
struct Fixture {
    path: PathBuf,
    release: Release,
    name: String,
    params: Value,
    events: Vec<(String, String, Value)>,
}

fn fixtures() -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut all = Vec::new();
    for (dir, release) in [
        ("v1", Release::V1),
        ("v2", Release::V2),
        ("v3", Release::V3),
    ] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("read {dir} fixtures: {e}"))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        assert!(!paths.is_empty(), "no fixtures in {dir}");
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("a readable fixture");
            let mut value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            let name = value["name"].as_str().expect("a saga name").to_string();
            let params = value["params"].take();
            let events = value["events"]
                .as_array()
                .expect("an event list")
                .iter()
                .map(|e| {
                    let text = |k: &str| e[k].as_str().expect("step and kind").to_string();
                    (text("step"), text("kind"), e["data"].clone())
                })
                .collect();
            all.push(Fixture {
                path,
                release,
                name,
                params,
                events,
            });
        }
    }
    all
}

/// Deserializes `value` as `T` and serializes it back: it must come out identical, so a
/// renamed or retyped field shows as a difference here.
fn round_trip<T: Serialize + DeserializeOwned>(what: &str, value: &Value) {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| {
        panic!(
            "{what} does not deserialize as {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let again = serde_json::to_value(&typed).expect("serializes");
    assert_eq!(
        &again,
        value,
        "{what} changed through {}",
        std::any::type_name::<T>()
    );
}

/// The output of `validate` is untyped JSON (ARM's `ValidateResult`, rendered as stored by
/// the API), so its keys are pinned here.
fn check_validation(what: &str, value: &Value) {
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .unwrap_or_else(|| panic!("{what} is not an object"))
            .keys()
            .cloned()
            .collect()
    };
    let top: BTreeSet<String> = [
        "authType",
        "isConnectionAvailable",
        "linkerName",
        "sourceId",
        "targetId",
        "validationDetail",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys(value), top, "{what}: keys");
    let items = value["validationDetail"].as_array().expect("detail items");
    assert!(!items.is_empty(), "{what}: no detail items");
    let allowed: BTreeSet<String> = ["description", "errorCode", "errorMessage", "name", "result"]
        .map(String::from)
        .into();
    for item in items {
        let item_keys = keys(item);
        assert!(
            item_keys.is_subset(&allowed),
            "{what}: item keys {item_keys:?}"
        );
        for required in ["description", "name", "result"] {
            assert!(
                item_keys.contains(required),
                "{what}: item without {required}"
            );
        }
    }
}

/// Checks the output of `step` as the release's step wrote it.
fn check_output(release: Release, step: &str, what: &str, data: &Value) {
    match (release.frozen_types(), step) {
        (_, "validate") => check_validation(what, data),
        (true, "resolve") => round_trip::<v1::Resolved>(what, data),
        (true, "network") => round_trip::<v1::NetworkOut>(what, data),
        (true, "configuration") => round_trip::<v1::ConfigurationOut>(what, data),
        (false, "resolve") => round_trip::<sagas::Resolved>(what, data),
        (false, "identity") => round_trip::<sagas::IdentityOut>(what, data),
        (false, "auth") => round_trip::<sagas::AuthOut>(what, data),
        (false, "secret_store") => round_trip::<sagas::SecretsOut>(what, data),
        (false, "network") => round_trip::<sagas::NetworkOut>(what, data),
        (false, "configuration") => round_trip::<sagas::ConfigurationOut>(what, data),
        _ => panic!("{what}: no output type is known for step {step} of {release:?}"),
    }
}

fn check_params(fixture: &Fixture) {
    let what = format!("{}: params", fixture.path.display());
    let validation = fixture.name.starts_with("linker-validate");
    match (fixture.release.frozen_types(), validation) {
        (true, false) => round_trip::<v1::LinkerParams>(&what, &fixture.params),
        (true, true) => round_trip::<v1::ValidateParams>(&what, &fixture.params),
        (false, false) => round_trip::<sagas::LinkerParams>(&what, &fixture.params),
        (false, true) => round_trip::<sagas::ValidateParams>(&what, &fixture.params),
    }
}

#[test]
fn every_persisted_saga_is_still_understood() {
    let definitions = sagas::definitions(16);
    for fixture in fixtures() {
        let file = fixture.path.display().to_string();
        let definition = definitions
            .iter()
            .find(|d| d.name() == fixture.name)
            .unwrap_or_else(|| panic!("{file}: no saga definition named {}", fixture.name));
        let steps = definition.step_names();
        check_params(&fixture);
        assert!(!fixture.events.is_empty(), "{file}: no events");
        for (step, kind, data) in &fixture.events {
            let what = format!("{file}: {step} {kind}");
            assert!(
                steps.contains(&step.as_str()),
                "{what}: {} has no step {step} (steps: {steps:?})",
                fixture.name
            );
            let parsed = EventKind::parse(kind).unwrap_or_else(|| panic!("{what}: unknown kind"));
            assert_eq!(parsed.as_str(), kind, "{what}: kind spelling");
            match parsed {
                EventKind::Succeeded => check_output(fixture.release, step, &what, data),
                EventKind::Failed | EventKind::UndoFailed => round_trip::<StepError>(&what, data),
                EventKind::Started | EventKind::UndoStarted | EventKind::UndoFinished => {
                    assert!(data.is_null(), "{what}: unexpected data {data}")
                }
            }
        }
    }
}

/// A saga that ran to the end logged one `succeeded` per step, in the definition's order: a
/// shipped definition keeps its steps (a saga in flight resumes by position in that list).
#[test]
fn shipped_definitions_keep_their_steps() {
    let definitions = sagas::definitions(16);
    for fixture in fixtures() {
        let unwound = fixture
            .events
            .iter()
            .any(|(_, kind, _)| kind != "started" && kind != "succeeded");
        if unwound {
            continue;
        }
        let definition = definitions
            .iter()
            .find(|d| d.name() == fixture.name)
            .unwrap_or_else(|| panic!("no saga definition named {}", fixture.name));
        let succeeded: Vec<&str> = fixture
            .events
            .iter()
            .filter(|(_, kind, _)| kind == "succeeded")
            .map(|(step, _, _)| step.as_str())
            .collect();
        assert_eq!(
            succeeded,
            definition.step_names(),
            "{}: the steps of {}",
            fixture.path.display(),
            fixture.name
        );
    }
}

/// Every saga definition is pinned by a fixture that ran it to the end, and an unwound one
/// is kept for each release.
#[test]
fn every_definition_has_a_fixture() {
    let fixtures = fixtures();
    for definition in sagas::definitions(16) {
        assert!(
            fixtures.iter().any(|f| f.name == definition.name()),
            "no fixture for the saga {}: add one (see the top of this file)",
            definition.name()
        );
    }
    for release in [Release::V1, Release::V2, Release::V3] {
        assert!(
            fixtures.iter().any(|f| f.release == release
                && f.events.iter().any(|(_, kind, _)| kind == "undo_finished")),
            "no unwound saga among the {release:?} fixtures"
        );
    }
}
