//! Authorization of the linker routes, end to end: principals of their own (applications
//! registered in the mock Azure backend, with its tokens) given roles through Tether's role
//! assignment API, against a real replica.
//!
//! - the matrix: role x scope of the assignment x operation, each cell's status (a refusal is
//!   `403 AuthorizationFailed` naming the missing action and scope, an operation status is
//!   hidden as `404`, a list only shrinks), and a refused request changing nothing;
//! - the resources a write names besides its source (a target in another resource group or
//!   subscription, a Key Vault, a user-assigned identity) need a write role of their own;
//! - the confused deputy: a stored password never follows a linker to another target;
//! - lists filtered down to what the caller may read;
//! - the audit trail of accepted writes and refusals, readable by operators only;
//! - throttling per principal and per class of request, with ARM's `429` and its audit record.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tether_app::auth::roles::{self, RoleDefinition};
use tether_mock_azure::demo;
use tether_test_utils::{Api, Backend, Replica, ReplicaOptions, Reply, TestEnv, eventually};

use crate::support::{
    API_APP_ID, PG_DATABASE_2_ID, PG_DATABASE_ID, PG_SERVER_ID, WEB_APP_ID, changed, comparable,
    differences, env, on_both_backends, secret_linker,
};

/// The api-version of Tether's role assignment API used here.
const AUTHORIZATION_API: &str = "2022-04-01";
/// A subscription other than the demo one.
const OTHER_SUBSCRIPTION: &str = "22222222-3333-4444-5555-666666666666";
/// The action a write needs on a PostgreSQL database it connects to.
const PG_DATABASE_WRITE: &str = "Microsoft.DBforPostgreSQL/flexibleServers/databases/write";

on_both_backends!(
    every_role_at_every_scope_may_do_what_its_actions_allow,
    a_write_needs_write_access_to_every_resource_it_names,
);

// ---------------------------------------------------------------------------------------------
// Principals and grants

/// A principal other than the bootstrap owner: an application registered in the mock, and a
/// client of the replica holding its token.
struct Principal {
    /// Its object id (the `oid` of its tokens, the `principalId` of its assignments).
    oid: String,
    api: Api,
}

/// Registers an application named `name` in the mock and returns it as a principal of
/// `replica` (it holds no role yet).
async fn principal(env: &TestEnv, replica: &Replica, name: &str) -> Principal {
    let response = reqwest::Client::new()
        .post(format!("{}/admin/applications", env.mock.url))
        .json(&json!({ "displayName": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "registering {name}");
    let app: Value = response.json().await.unwrap();
    let token = env.mock.token(app["clientId"].as_str().unwrap()).await;
    Principal {
        oid: app["objectId"].as_str().unwrap().to_string(),
        api: Api::new(&replica.url, &token),
    }
}

/// A fresh GUID (role assignment names).
fn guid() -> String {
    let hex = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Gives `who` the role at `scope` (`/` or an ARM id), through Tether's role assignment API as
/// the bootstrap owner. Takes effect at once on this replica.
async fn grant(owner: &Api, who: &Principal, role: &RoleDefinition, scope: &str) {
    let scope = scope.trim_end_matches('/');
    let definitions = match scope.split('/').nth(2) {
        Some(subscription) => format!("/subscriptions/{subscription}"),
        None => String::new(),
    };
    let body = json!({"properties": {
        "roleDefinitionId": format!("{definitions}/providers/Microsoft.Authorization/roleDefinitions/{}", role.id),
        "principalId": who.oid,
        "principalType": "ServicePrincipal",
    }});
    let path = format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{}",
        guid()
    );
    let reply = owner
        .version(AUTHORIZATION_API)
        .call("PUT", &path, Some(&body))
        .await;
    assert_eq!(
        reply.status, 201,
        "granting {} at {scope}: {}",
        role.name, reply.text
    );
}

/// Asserts `reply` is ARM's refusal of `action` over `scope` to `who` (ids compare
/// case-insensitively).
#[track_caller]
fn assert_refused(reply: &Reply, who: &Principal, action: &str, scope: &str, context: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (403, "AuthorizationFailed"),
        "{context}: {}",
        reply.text
    );
    let message = reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    let expected = format!(
        "the client '{oid}' with object id '{oid}' does not have authorization to perform action '{}' over scope '{}'",
        action.to_ascii_lowercase(),
        scope.to_ascii_lowercase(),
        oid = who.oid,
    );
    assert!(
        message.contains(&expected),
        "{context}: the refusal does not name {action} over {scope}: {message}"
    );
}

/// Asserts `reply` is a `400` whose error names the property `target`.
#[track_caller]
fn assert_invalid(reply: &Reply, target: &str, context: &str) {
    assert_eq!(reply.status, 400, "{context}: {}", reply.text);
    assert_eq!(
        reply.body["error"]["target"], target,
        "{context}: {}",
        reply.text
    );
}

/// What the owner sees of demo-web's linkers, and the backend's whole state: a refused
/// request must leave both as they were.
#[derive(Debug)]
struct Snapshot {
    linkers: Value,
    mock: BTreeMap<String, Value>,
}

impl Snapshot {
    async fn take(env: &TestEnv, owner: &Api) -> Self {
        let list = owner.list_linkers(WEB_APP_ID).await;
        assert_eq!(list.status, 200, "{}", list.text);
        Self {
            linkers: list.body["value"].clone(),
            mock: comparable(env.mock.state().await),
        }
    }

    /// Asserts that nothing changed since `self` was taken.
    async fn unchanged(&self, env: &TestEnv, owner: &Api, context: &str) {
        let now = Self::take(env, owner).await;
        assert_eq!(
            self.linkers, now.linkers,
            "{context}: a refused request changed the linkers"
        );
        let changed = differences(&self.mock, &now.mock);
        assert!(
            changed.is_empty(),
            "{context}: a refused request changed the backend: {changed:#?}"
        );
    }
}

/// Waits for an accepted operation (polled by `api`) and asserts it succeeded.
async fn succeeded(api: &Api, accepted: &Reply, context: &str) {
    let done = api.wait(accepted).await;
    assert_eq!(done["status"], "Succeeded", "{context}: {done}");
}

/// Creates or replaces a resource group in the mock.
async fn resource_group(env: &TestEnv, subscription: &str, name: &str) -> String {
    let id = format!("/subscriptions/{subscription}/resourceGroups/{name}");
    env.mock
        .put_resource(&id, json!({"location": demo::LOCATION}))
        .await;
    id
}

/// A PostgreSQL flexible server with one database in `group`; returns the database's id.
async fn pg_database(env: &TestEnv, group: &str, server: &str, database: &str) -> String {
    let server = format!("{group}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{server}");
    env.mock
        .put_resource(
            &server,
            json!({"location": demo::LOCATION,
                   "properties": {"administratorLogin": "pgadmin", "version": "16"}}),
        )
        .await;
    let database = format!("{server}/databases/{database}");
    env.mock
        .put_resource(
            &database,
            json!({"properties": {"charset": "UTF8", "collation": "en_US.utf8"}}),
        )
        .await;
    database
}

// ---------------------------------------------------------------------------------------------
// 1. The matrix

/// Where an assignment is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Root,
    Subscription,
    ResourceGroup,
    /// The source resource (the web app).
    Source,
    /// The target database.
    Target,
}

impl At {
    fn scope(self) -> String {
        match self {
            At::Root => "/".to_string(),
            At::Subscription => format!("/subscriptions/{}", demo::SUBSCRIPTION_ID),
            At::ResourceGroup => demo::RESOURCE_GROUP_ID.to_string(),
            At::Source => WEB_APP_ID.to_string(),
            At::Target => PG_DATABASE_ID.to_string(),
        }
    }
}

/// What one cell expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Done (and for a list: the owner's list).
    Y,
    /// `403`: the operation's own action is missing over the linker.
    L,
    /// `403`: write access to the target is missing.
    T,
    /// `200` with an empty list.
    E,
    /// `404 OperationNotFound`.
    H,
}
use Expect::{E, H, L, T, Y};

/// The operations of a row, in the order they run (the delete last).
#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    List,
    ListConfigurations,
    Validate,
    Status,
    Patch,
    Put,
    Delete,
}

const OPS: [Op; 8] = [
    Op::Get,
    Op::List,
    Op::ListConfigurations,
    Op::Validate,
    Op::Status,
    Op::Patch,
    Op::Put,
    Op::Delete,
];

impl Op {
    /// The action the operation is checked for over the linker.
    fn action(self) -> &'static str {
        use roles::actions::*;
        match self {
            Op::Get | Op::List => LINKERS_READ,
            Op::ListConfigurations => LINKERS_LIST_CONFIGURATIONS,
            Op::Validate => LINKERS_VALIDATE,
            Op::Status => OPERATION_STATUSES_READ,
            Op::Patch | Op::Put => LINKERS_WRITE,
            Op::Delete => LINKERS_DELETE,
        }
    }

    fn is_write(self) -> bool {
        matches!(self, Op::Patch | Op::Put | Op::Delete)
    }
}

/// A row: the grants of a fresh principal, and what it may do with a linker of the web app
/// `demo-web` to the database `orders` in `rg-demo`.
struct Row {
    grants: Vec<(&'static RoleDefinition, At)>,
    /// GET, list, listConfigurations, validateLinker, operation status, PATCH, PUT (create),
    /// DELETE.
    expect: [Expect; 8],
}

fn row(grants: &[(&'static RoleDefinition, At)], expect: [Expect; 8]) -> Row {
    Row {
        grants: grants.to_vec(),
        expect,
    }
}

/// The matrix. Reading a linker and polling its operations need `*/read`; listing its
/// configurations, validating and deleting it need a ServiceLinker action; a PUT or PATCH
/// needs `linkers/write` and also write access to the target, which Owner and Contributor have
/// only when their scope covers the database as well.
fn matrix() -> Vec<Row> {
    use At::*;
    use roles::{
        CONTRIBUTOR, OWNER, READER, SERVICE_LINKER_CONTRIBUTOR as SLC, TETHER_OPERATOR,
        USER_ACCESS_ADMINISTRATOR as UAA,
    };
    //            get list conf val stat patch put del
    vec![
        row(&[(&OWNER, Subscription)], [Y, Y, Y, Y, Y, Y, Y, Y]),
        row(&[(&OWNER, ResourceGroup)], [Y, Y, Y, Y, Y, Y, Y, Y]),
        row(&[(&OWNER, Source)], [Y, Y, Y, Y, Y, T, T, Y]),
        row(&[(&CONTRIBUTOR, Subscription)], [Y, Y, Y, Y, Y, Y, Y, Y]),
        row(&[(&CONTRIBUTOR, ResourceGroup)], [Y, Y, Y, Y, Y, Y, Y, Y]),
        row(&[(&CONTRIBUTOR, Source)], [Y, Y, Y, Y, Y, T, T, Y]),
        row(&[(&READER, Subscription)], [Y, Y, L, L, Y, L, L, L]),
        row(&[(&READER, ResourceGroup)], [Y, Y, L, L, Y, L, L, L]),
        row(&[(&READER, Source)], [Y, Y, L, L, Y, L, L, L]),
        row(&[(&SLC, Subscription)], [Y, Y, Y, Y, Y, T, T, Y]),
        row(&[(&SLC, ResourceGroup)], [Y, Y, Y, Y, Y, T, T, Y]),
        row(&[(&SLC, Source)], [Y, Y, Y, Y, Y, T, T, Y]),
        row(&[(&UAA, ResourceGroup)], [Y, Y, L, L, Y, L, L, L]),
        row(&[(&TETHER_OPERATOR, Root)], [L, E, L, L, H, L, L, L]),
        row(&[], [L, E, L, L, H, L, L, L]),
        // Write access to the target alone opens nothing on the source.
        row(&[(&CONTRIBUTOR, Target)], [L, E, L, L, H, L, L, L]),
        // Write access to the target completes a source-side role.
        row(
            &[(&SLC, Source), (&CONTRIBUTOR, Target)],
            [Y, Y, Y, Y, Y, Y, Y, Y],
        ),
        row(
            &[(&OWNER, Source), (&OWNER, Target)],
            [Y, Y, Y, Y, Y, Y, Y, Y],
        ),
        // Reader on the target is not enough.
        row(
            &[(&CONTRIBUTOR, Source), (&READER, Target)],
            [Y, Y, Y, Y, Y, T, T, Y],
        ),
    ]
}

fn label(grants: &[(&RoleDefinition, At)]) -> String {
    if grants.is_empty() {
        return "no role".to_string();
    }
    let parts: Vec<String> = grants
        .iter()
        .map(|(role, at)| format!("{} at {at:?}", role.name))
        .collect();
    parts.join(" + ")
}

async fn every_role_at_every_scope_may_do_what_its_actions_allow(backend: Backend) {
    let env = env(backend).await;
    let replica = env.spawn().await;
    let owner = &replica.api;
    for (n, row) in matrix().iter().enumerate() {
        let who = label(&row.grants);
        let principal = principal(&env, &replica, &format!("matrix-{n}")).await;
        for (role, at) in &row.grants {
            grant(owner, &principal, role, &at.scope()).await;
        }
        // A linker of the owner's, with a finished create operation to poll.
        let name = format!("m{n:02}");
        let created = owner
            .put_linker(
                WEB_APP_ID,
                &name,
                secret_linker(PG_DATABASE_ID, &format!("pw-{n}"), "python", false),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let status_url = created.header("azure-asyncoperation").unwrap().to_string();
        succeeded(owner, &created, "the owner's create").await;
        for (op, expect) in OPS.into_iter().zip(row.expect) {
            let context = format!("{who}: {op:?}");
            let before = Snapshot::take(&env, owner).await;
            let cell = Cell {
                owner,
                api: &principal.api,
                name: &name,
                status_url: &status_url,
                context: &context,
            };
            let reply = cell.run(op).await;
            match expect {
                Y => cell.done(op, &reply, &before).await,
                L => {
                    let linker = if matches!(op, Op::Put) {
                        format!("{name}-new")
                    } else {
                        name.clone()
                    };
                    let scope = Api::linker_path(WEB_APP_ID, &linker);
                    assert_refused(&reply, &principal, op.action(), &scope, &context);
                }
                T => assert_refused(
                    &reply,
                    &principal,
                    PG_DATABASE_WRITE,
                    PG_DATABASE_ID,
                    &context,
                ),
                E => {
                    assert_eq!(reply.status, 200, "{context}: {}", reply.text);
                    assert_eq!(reply.body["value"], json!([]), "{context}");
                }
                H => {
                    assert_eq!(
                        (reply.status, reply.code()),
                        (404, "OperationNotFound"),
                        "{context}: {}",
                        reply.text
                    );
                    // Exactly what an operation that does not exist gets.
                    let (path, query) = status_url.split_once('?').unwrap();
                    let (collection, _) = path.rsplit_once('/').unwrap();
                    let unknown = format!("{collection}/{}?{query}", guid());
                    let unknown = principal.api.call_url("GET", &unknown, None).await;
                    assert_eq!(
                        (reply.status, &reply.body),
                        (unknown.status, &unknown.body),
                        "{context}"
                    );
                }
            }
            if expect != Y {
                before.unchanged(&env, owner, &context).await;
            }
        }
    }
    drop(replica);
    env.teardown().await;
}

/// One cell of the matrix: a principal's request on the owner's linker `name`.
struct Cell<'a> {
    owner: &'a Api,
    api: &'a Api,
    name: &'a str,
    /// The status URL of the linker's create operation.
    status_url: &'a str,
    context: &'a str,
}

impl Cell<'_> {
    async fn run(&self, op: Op) -> Reply {
        let (api, name) = (self.api, self.name);
        match op {
            Op::Get => api.get_linker(WEB_APP_ID, name).await,
            Op::List => api.list_linkers(WEB_APP_ID).await,
            Op::ListConfigurations => api.list_configurations(WEB_APP_ID, name).await,
            Op::Validate => api.validate(WEB_APP_ID, name).await,
            Op::Status => api.call_url("GET", self.status_url, None).await,
            Op::Patch => {
                api.patch_linker(WEB_APP_ID, name, json!({"clientType": "dotnet"}))
                    .await
            }
            Op::Put => {
                let properties = secret_linker(PG_DATABASE_ID, "pw-new", "python", false);
                api.put_linker(WEB_APP_ID, &format!("{name}-new"), properties)
                    .await
            }
            Op::Delete => api.delete_linker(WEB_APP_ID, name).await,
        }
    }

    /// Asserts that an allowed operation did what it does.
    async fn done(&self, op: Op, reply: &Reply, before: &Snapshot) {
        let (owner, api, name, context) = (self.owner, self.api, self.name, self.context);
        match op {
            Op::Get => {
                assert_eq!(reply.status, 200, "{context}: {}", reply.text);
                assert_eq!(reply.body["name"], name, "{context}");
            }
            Op::List => {
                assert_eq!(reply.status, 200, "{context}: {}", reply.text);
                assert_eq!(
                    reply.body["value"], before.linkers,
                    "{context}: the list is the owner's"
                );
            }
            Op::ListConfigurations => {
                assert_eq!(reply.status, 200, "{context}: {}", reply.text);
                assert!(
                    !reply.body["configurations"].as_array().unwrap().is_empty(),
                    "{context}: {}",
                    reply.text
                );
            }
            Op::Validate | Op::Delete => {
                assert_eq!(reply.status, 202, "{context}: {}", reply.text);
                succeeded(api, reply, context).await;
            }
            Op::Status => {
                assert_eq!(reply.status, 200, "{context}: {}", reply.text);
                assert_eq!(reply.body["status"], "Succeeded", "{context}");
            }
            Op::Patch | Op::Put => {
                assert_eq!(reply.status, 201, "{context}: {}", reply.text);
                succeeded(api, reply, context).await;
            }
        }
        if op.is_write() {
            // The owner sees the change.
            let (linker, gone) = match op {
                Op::Put => (format!("{name}-new"), false),
                Op::Delete => (name.to_string(), true),
                _ => (name.to_string(), false),
            };
            let got = owner.get_linker(WEB_APP_ID, &linker).await;
            if gone {
                assert_eq!(got.status, 404, "{context}: {}", got.text);
            } else {
                assert_eq!(got.status, 200, "{context}: {}", got.text);
                assert_eq!(got.body["properties"]["provisioningState"], "Succeeded");
            }
            if matches!(op, Op::Patch) {
                assert_eq!(got.body["properties"]["clientType"], "dotnet", "{context}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. What a write names besides its source

/// Resources outside `rg-demo` for the named-resource checks.
struct Elsewhere {
    /// A database in another resource group of the demo subscription (`rg-data`).
    data_db: String,
    /// A database in a resource group of another subscription.
    remote_db: String,
    /// The remote database's server.
    remote_server: String,
    /// A Key Vault in `rg-vault`.
    vault: String,
    /// A user-assigned identity in `rg-identity`, and its client id.
    identity: String,
    identity_client_id: String,
}

async fn elsewhere(env: &TestEnv) -> Elsewhere {
    let sub = demo::SUBSCRIPTION_ID;
    let data = resource_group(env, sub, "rg-data").await;
    let data_db = pg_database(env, &data, "data-pg", "ledger").await;
    let remote = resource_group(env, OTHER_SUBSCRIPTION, "rg-remote").await;
    let remote_db = pg_database(env, &remote, "remote-pg", "archive").await;
    let remote_server = remote_db.rsplit_once("/databases/").unwrap().0.to_string();
    let vaults = resource_group(env, sub, "rg-vault").await;
    let vault = format!("{vaults}/providers/Microsoft.KeyVault/vaults/data-kv");
    env.mock
        .put_resource(
            &vault,
            json!({"location": demo::LOCATION, "properties": {}}),
        )
        .await;
    let identities = resource_group(env, sub, "rg-identity").await;
    let identity =
        format!("{identities}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/worker");
    let created = env
        .mock
        .put_resource(
            &identity,
            json!({"location": demo::LOCATION, "properties": {}}),
        )
        .await;
    let identity_client_id = created["properties"]["clientId"]
        .as_str()
        .unwrap()
        .to_string();
    Elsewhere {
        data_db,
        remote_db,
        remote_server,
        vault,
        identity,
        identity_client_id,
    }
}

/// A write naming a resource the caller may not write yet.
struct NamedCase {
    what: &'static str,
    /// The linker's `properties`.
    properties: Value,
    /// Grants besides Contributor on the source.
    base: Vec<(&'static RoleDefinition, String)>,
    /// The resource refused, and the action missing on it.
    refused: String,
    action: &'static str,
    /// Refused as if it did not exist (`400` naming `authInfo.clientId`): a user-assigned
    /// identity is looked up by client id, so its refusal must not reveal that it exists.
    hidden: bool,
    /// A role on the named resource that is still not enough.
    weak: (&'static RoleDefinition, String),
    /// The grant that lets the write through.
    enough: (&'static RoleDefinition, String),
    /// What the accepted write changes in the backend: something at or under this id, or
    /// something that now refers to it.
    touched: String,
}

fn named_cases(x: &Elsewhere) -> Vec<NamedCase> {
    use roles::{
        CONTRIBUTOR, OWNER, READER, SERVICE_LINKER_CONTRIBUTOR, USER_ACCESS_ADMINISTRATOR,
    };
    let blob = format!("{}/blobServices/default", demo::STORAGE_ACCOUNT_ID);
    vec![
        NamedCase {
            what: "a target in another resource group",
            properties: secret_linker(&x.data_db, "pw-data", "python", true),
            base: vec![],
            refused: x.data_db.clone(),
            action: PG_DATABASE_WRITE,
            hidden: false,
            weak: (&READER, x.data_db.clone()),
            enough: (
                &CONTRIBUTOR,
                format!(
                    "/subscriptions/{}/resourceGroups/rg-data",
                    demo::SUBSCRIPTION_ID
                ),
            ),
            // Its firewall rules.
            touched: x.data_db.rsplit_once("/databases/").unwrap().0.to_string(),
        },
        NamedCase {
            what: "a target in another subscription",
            properties: secret_linker(&x.remote_db, "pw-remote", "python", true),
            base: vec![],
            refused: x.remote_db.clone(),
            action: PG_DATABASE_WRITE,
            hidden: false,
            weak: (
                &SERVICE_LINKER_CONTRIBUTOR,
                format!("/subscriptions/{OTHER_SUBSCRIPTION}"),
            ),
            // On the server: its databases inherit it.
            enough: (&OWNER, x.remote_server.clone()),
            touched: x.remote_server.clone(),
        },
        NamedCase {
            what: "a Key Vault in another resource group",
            properties: json!({
                "targetService": {"type": "AzureResource", "id": demo::SERVICE_BUS_ID},
                "authInfo": {"authType": "secret"},
                "clientType": "dotnet",
                "secretStore": {"keyVaultId": x.vault},
            }),
            base: vec![(&CONTRIBUTOR, demo::SERVICE_BUS_ID.to_string())],
            refused: x.vault.clone(),
            action: "Microsoft.KeyVault/vaults/write",
            hidden: false,
            weak: (&READER, x.vault.clone()),
            enough: (&CONTRIBUTOR, x.vault.clone()),
            // The secret it keeps.
            touched: x.vault.clone(),
        },
        NamedCase {
            what: "a user-assigned identity in another resource group",
            properties: json!({
                "targetService": {"type": "AzureResource", "id": blob},
                "authInfo": {"authType": "userAssignedIdentity", "clientId": x.identity_client_id},
                "clientType": "dotnet",
            }),
            base: vec![(&CONTRIBUTOR, demo::STORAGE_ACCOUNT_ID.to_string())],
            refused: x.identity.clone(),
            action: "Microsoft.ManagedIdentity/userAssignedIdentities/write",
            hidden: true,
            weak: (&USER_ACCESS_ADMINISTRATOR, x.identity.clone()),
            enough: (&CONTRIBUTOR, x.identity.clone()),
            // The web app it is attached to.
            touched: x.identity.clone(),
        },
    ]
}

async fn a_write_needs_write_access_to_every_resource_it_names(backend: Backend) {
    let env = env(backend).await;
    let replica = env.spawn().await;
    let owner = &replica.api;
    let x = elsewhere(&env).await;
    for (n, case) in named_cases(&x).into_iter().enumerate() {
        let what = case.what;
        let principal = principal(&env, &replica, &format!("named-{n}")).await;
        grant(owner, &principal, &roles::CONTRIBUTOR, WEB_APP_ID).await;
        for (role, scope) in &case.base {
            grant(owner, &principal, role, scope).await;
        }
        let name = format!("named{n}");
        for step in ["no role", "a role that cannot write it"] {
            if step != "no role" {
                grant(owner, &principal, case.weak.0, &case.weak.1).await;
            }
            let context = format!("{what}, {step}");
            let before = Snapshot::take(&env, owner).await;
            let reply = principal
                .api
                .put_linker(WEB_APP_ID, &name, case.properties.clone())
                .await;
            if case.hidden {
                assert_invalid(&reply, "properties.authInfo.clientId", &context);
            } else {
                assert_refused(&reply, &principal, case.action, &case.refused, &context);
            }
            assert_eq!(owner.get_linker(WEB_APP_ID, &name).await.status, 404);
            before.unchanged(&env, owner, &context).await;
        }
        grant(owner, &principal, case.enough.0, &case.enough.1).await;
        let before = env.mock.state().await;
        let accepted = principal
            .api
            .put_linker(WEB_APP_ID, &name, case.properties.clone())
            .await;
        assert_eq!(accepted.status, 201, "{what}: {}", accepted.text);
        succeeded(&principal.api, &accepted, what).await;
        let after = env.mock.state().await;
        let touched = case.touched.to_ascii_lowercase();
        let acted = changed(&before, &after).iter().any(|id| {
            id.starts_with(&touched)
                || after
                    .get(id)
                    .is_some_and(|r| r.to_string().to_ascii_lowercase().contains(&touched))
        });
        assert!(
            acted,
            "{what}: the connection did nothing with {}: {:#?}",
            case.touched,
            differences(&before, &after)
        );
    }

    // An identity that does not exist is the caller's mistake, whatever its roles.
    let context = "an unknown identity";
    let before = Snapshot::take(&env, owner).await;
    let unknown = json!({
        "targetService": {"type": "AzureResource", "id": format!("{}/blobServices/default", demo::STORAGE_ACCOUNT_ID)},
        "authInfo": {"authType": "userAssignedIdentity", "clientId": guid()},
        "clientType": "dotnet",
    });
    let reply = owner.put_linker(WEB_APP_ID, "nobody", unknown).await;
    assert_invalid(&reply, "properties.authInfo.clientId", context);
    before.unchanged(&env, owner, context).await;
    drop(replica);
    env.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. The confused deputy

/// The owner's secret-auth linker `payroll` from demo-web to `orders` (password stored,
/// firewall opened), another database `ledger` on another server in `rg-data`, and what the
/// backend holds of the connection.
struct Payroll {
    env: TestEnv,
    replica: Replica,
    ledger: String,
    ledger_server: String,
    settings: BTreeMap<String, String>,
    rules: [BTreeMap<String, (String, String)>; 2],
}

const PAYROLL_PASSWORD: &str = "S3cret-payroll-pw";

impl Payroll {
    async fn new(backend: Backend) -> Self {
        let env = env(backend).await;
        let replica = env.spawn().await;
        let data = resource_group(&env, demo::SUBSCRIPTION_ID, "rg-data").await;
        let ledger = pg_database(&env, &data, "data-pg", "ledger").await;
        let ledger_server = ledger.rsplit_once("/databases/").unwrap().0.to_string();
        let owner = &replica.api;
        let created = owner
            .put_linker(
                WEB_APP_ID,
                "payroll",
                secret_linker(PG_DATABASE_ID, PAYROLL_PASSWORD, "python", true),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        succeeded(owner, &created, "the owner's create").await;
        let settings = env.mock.app_settings(WEB_APP_ID).await;
        let rules = [
            env.mock.firewall_rules(PG_SERVER_ID).await,
            env.mock.firewall_rules(&ledger_server).await,
        ];
        assert!(!rules[0].is_empty() && rules[1].is_empty(), "{rules:?}");
        Self {
            env,
            replica,
            ledger,
            ledger_server,
            settings,
            rules,
        }
    }

    /// A principal with Contributor on the source, and on `ledger` if `on_ledger`.
    async fn writer(&self, name: &str, on_ledger: bool) -> Principal {
        let who = principal(&self.env, &self.replica, name).await;
        let owner = &self.replica.api;
        grant(owner, &who, &roles::CONTRIBUTOR, WEB_APP_ID).await;
        if on_ledger {
            grant(owner, &who, &roles::CONTRIBUTOR, &self.ledger).await;
        }
        who
    }

    /// Asserts that the app settings and both servers' firewall rules are as created.
    async fn untouched(&self, context: &str) {
        let mock = &self.env.mock;
        assert_eq!(
            mock.app_settings(WEB_APP_ID).await,
            self.settings,
            "{context}"
        );
        let rules = [
            mock.firewall_rules(PG_SERVER_ID).await,
            mock.firewall_rules(&self.ledger_server).await,
        ];
        assert_eq!(rules, self.rules, "{context}");
    }

    async fn teardown(self) {
        drop(self.replica);
        self.env.teardown().await;
    }
}

/// A stored password is bound to its linker and target: moving the linker to another
/// database, user name or auth type without sending the secret again is a `400` naming
/// the secret — for any caller allowed to write what the result names, the owner included — so
/// a principal who may write the source and some other database cannot have Tether hand the
/// first database's password to the second (nor open that server's firewall for it). A caller
/// who may not write what the result names is refused (with a password sent here; without one
/// in `a_move_to_a_database_the_caller_may_not_write_is_refused`).
#[tokio::test(flavor = "multi_thread")]
async fn a_stored_password_never_follows_a_linker_elsewhere() {
    let payroll = Payroll::new(Backend::Postgres).await;
    let (env, owner, ledger) = (&payroll.env, &payroll.replica.api, &payroll.ledger);
    let deputy = payroll.writer("deputy", true).await;
    let intruder = payroll.writer("intruder", false).await;

    let to_ledger = json!({"targetService": {"type": "AzureResource", "id": ledger}});
    let as_admin = json!({"authInfo": {"authType": "secret", "name": "payroll_admin"}});
    let both = json!({
        "targetService": {"type": "AzureResource", "id": ledger},
        "authInfo": {"authType": "secret", "name": "payroll_admin"},
    });
    let as_a_service_principal = json!({"authInfo": {
        "authType": "servicePrincipalSecret", "name": null, "secretInfo": null,
        "clientId": "6c1d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f",
        "principalId": "2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091",
    }});
    let with_a_password = json!({
        "targetService": {"type": "AzureResource", "id": ledger},
        "authInfo": {"authType": "secret", "name": "appuser",
                     "secretInfo": {"secretType": "rawValue", "value": "Intruder-pw-1"}},
    });
    let boss = Principal {
        oid: demo::CLIENT_OBJECT_ID.to_string(),
        api: owner.clone(),
    };
    let (secret_info, secret) = (
        Some("properties.authInfo.secretInfo"),
        Some("properties.authInfo.secret"),
    );
    // (who, what it sends, the secret property a 400 names; None: refused)
    let cases: [(&str, &Principal, &Value, Option<&str>); 6] = [
        (
            "a writer of the source and ledger",
            &deputy,
            &to_ledger,
            secret_info,
        ),
        (
            "a writer of the source and ledger",
            &deputy,
            &both,
            secret_info,
        ),
        ("the owner", &boss, &to_ledger, secret_info),
        ("the owner", &boss, &as_admin, secret_info),
        ("the owner", &boss, &as_a_service_principal, secret),
        // Sending a password passes the secret check; the target's is still missing.
        (
            "a writer of the source only",
            &intruder,
            &with_a_password,
            None,
        ),
    ];
    for (who, principal, patch, invalid) in cases {
        let context = format!("{who} patching {patch}");
        let before = Snapshot::take(env, owner).await;
        let reply = principal
            .api
            .patch_linker(WEB_APP_ID, "payroll", patch.clone())
            .await;
        match invalid {
            Some(property) => assert_invalid(&reply, property, &context),
            None => assert_refused(&reply, principal, PG_DATABASE_WRITE, ledger, &context),
        }
        before.unchanged(env, owner, &context).await;
        payroll.untouched(&context).await;
    }

    // With the other database's password, the writer of ledger may move the linker there.
    let moved = deputy
        .api
        .patch_linker(
            WEB_APP_ID,
            "payroll",
            json!({"targetService": {"type": "AzureResource", "id": ledger},
                   "authInfo": {"authType": "secret", "name": "appuser",
                                "secretInfo": {"secretType": "rawValue", "value": "Ledger-pw-2"}}}),
        )
        .await;
    assert_eq!(moved.status, 201, "{}", moved.text);
    succeeded(&deputy.api, &moved, "the move with a password").await;
    let settings = env.mock.app_settings(WEB_APP_ID).await;
    let connection = &settings["AZURE_POSTGRESQL_CONNECTIONSTRING"];
    assert!(
        connection.contains("host=data-pg.") && connection.contains("password=Ledger-pw-2"),
        "{connection}"
    );
    assert!(!connection.contains(PAYROLL_PASSWORD));
    assert!(env.mock.firewall_rules(PG_SERVER_ID).await.is_empty());
    assert!(
        !env.mock
            .firewall_rules(&payroll.ledger_server)
            .await
            .is_empty()
    );
    payroll.teardown().await;
}

/// A principal without a role on the other database is refused the move (`403`, audited as
/// a refusal), whether or not it sends a password: the target's authorization comes before
/// the checks of the request's content.
#[tokio::test(flavor = "multi_thread")]
async fn a_move_to_a_database_the_caller_may_not_write_is_refused() {
    let payroll = Payroll::new(Backend::Sqlite).await;
    let (env, owner, ledger) = (&payroll.env, &payroll.replica.api, &payroll.ledger);
    let intruder = payroll.writer("intruder", false).await;
    let context = "a writer of the source only moving the linker";
    let before = Snapshot::take(env, owner).await;
    let reply = intruder
        .api
        .patch_linker(
            WEB_APP_ID,
            "payroll",
            json!({"targetService": {"type": "AzureResource", "id": ledger}}),
        )
        .await;
    assert_refused(&reply, &intruder, PG_DATABASE_WRITE, ledger, context);
    before.unchanged(env, owner, context).await;
    payroll.untouched(context).await;
    let records = audit_of(owner, &intruder.oid).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "refused", "{records:#?}");
    payroll.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Lists

/// Every page of a source's linkers, as `api` sees them.
async fn listed(api: &Api, source: &str, top: Option<u32>) -> Vec<String> {
    let mut reply = match top {
        None => api.list_linkers(source).await,
        Some(top) => {
            let url = format!(
                "{}{source}/providers/Microsoft.ServiceLinker/linkers?api-version=2022-05-01&$top={top}",
                api.base()
            );
            api.call_url("GET", &url, None).await
        }
    };
    let mut names = Vec::new();
    for _ in 0..20 {
        assert_eq!(reply.status, 200, "{}", reply.text);
        names.extend(
            reply.body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["name"].as_str().unwrap().to_string()),
        );
        match reply.body["nextLink"].as_str() {
            Some(next) => reply = api.call_url("GET", next, None).await,
            None => return names,
        }
    }
    panic!("more than 20 pages of {source}: {names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_show_only_what_the_caller_may_read() {
    let env = env(Backend::Sqlite).await;
    let replica = env.spawn().await;
    let owner = &replica.api;
    for (source, name, target) in [
        (WEB_APP_ID, "alpha", PG_DATABASE_ID),
        (WEB_APP_ID, "beta", PG_DATABASE_2_ID),
        (WEB_APP_ID, "gamma", PG_DATABASE_ID),
        (API_APP_ID, "delta", PG_DATABASE_ID),
    ] {
        let created = owner
            .put_linker(source, name, secret_linker(target, "pw", "python", false))
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        succeeded(owner, &created, name).await;
    }

    let api_reader = principal(&env, &replica, "api-reader").await;
    grant(owner, &api_reader, &roles::READER, API_APP_ID).await;
    let beta_reader = principal(&env, &replica, "beta-reader").await;
    let beta = Api::linker_path(WEB_APP_ID, "beta");
    grant(owner, &beta_reader, &roles::READER, &beta).await;
    let nobody = principal(&env, &replica, "nobody").await;

    let all_web = ["alpha", "beta", "gamma"].map(String::from).to_vec();
    for (who, api, source, expected) in [
        ("the owner", owner, WEB_APP_ID, all_web.clone()),
        (
            "a reader of demo-api",
            &api_reader.api,
            API_APP_ID,
            vec!["delta".to_string()],
        ),
        ("a reader of demo-api", &api_reader.api, WEB_APP_ID, vec![]),
        (
            "a reader of one linker",
            &beta_reader.api,
            WEB_APP_ID,
            vec!["beta".to_string()],
        ),
        (
            "a reader of one linker",
            &beta_reader.api,
            API_APP_ID,
            vec![],
        ),
        ("no role", &nobody.api, WEB_APP_ID, vec![]),
    ] {
        for top in [None, Some(1)] {
            assert_eq!(
                listed(api, source, top).await,
                expected,
                "{who} listing {source} ($top {top:?})"
            );
        }
    }
    // What a list leaves out cannot be read directly either.
    let refused = api_reader.api.get_linker(WEB_APP_ID, "alpha").await;
    let alpha = Api::linker_path(WEB_APP_ID, "alpha");
    assert_refused(
        &refused,
        &api_reader,
        roles::actions::LINKERS_READ,
        &alpha,
        "reading alpha",
    );
    assert_eq!(
        beta_reader.api.get_linker(WEB_APP_ID, "beta").await.status,
        200
    );
    let refused = beta_reader.api.get_linker(WEB_APP_ID, "gamma").await;
    let gamma = Api::linker_path(WEB_APP_ID, "gamma");
    assert_refused(
        &refused,
        &beta_reader,
        roles::actions::LINKERS_READ,
        &gamma,
        "reading gamma",
    );
    drop(replica);
    env.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. The audit trail

/// The audit records of `principal`, newest first, as the owner reads them.
async fn audit_of(owner: &Api, principal: &str) -> Vec<Value> {
    let url = format!(
        "{}/admin/audit?principal={principal}&limit=1000",
        owner.base()
    );
    let reply = owner.call_url("GET", &url, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["value"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_writes_and_refusals_are_audited_for_operators_only() {
    let env = env(Backend::Postgres).await;
    let replica = env.spawn().await;
    let owner = &replica.api;
    let data = resource_group(&env, demo::SUBSCRIPTION_ID, "rg-data").await;
    let ledger = pg_database(&env, &data, "data-pg", "ledger").await;
    // Contributor on rg-demo: a connection from demo-web to `orders` passes, one to `ledger`
    // (in rg-data) is refused.
    let writer = principal(&env, &replica, "writer").await;
    grant(owner, &writer, &roles::CONTRIBUTOR, demo::RESOURCE_GROUP_ID).await;

    let accepted = writer
        .api
        .put_linker(
            WEB_APP_ID,
            "audited",
            secret_linker(PG_DATABASE_ID, "pw-audited", "python", false),
        )
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.text);
    let operation = accepted
        .header("azure-asyncoperation")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    succeeded(&writer.api, &accepted, "the accepted write").await;
    let refused = writer
        .api
        .put_linker(
            WEB_APP_ID,
            "refused",
            secret_linker(&ledger, "pw-refused", "python", false),
        )
        .await;
    assert_refused(
        &refused,
        &writer,
        PG_DATABASE_WRITE,
        &ledger,
        "the refused write",
    );
    // Outside rg-demo: refused before anything is looked up (the source does not exist).
    let elsewhere = format!(
        "/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg-other/providers/Microsoft.Web/sites/other-web"
    );
    let refused_read = writer.api.get_linker(&elsewhere, "anything").await;
    let read_scope = Api::linker_path(&elsewhere, "anything");
    assert_refused(
        &refused_read,
        &writer,
        roles::actions::LINKERS_READ,
        &read_scope,
        "the refused read",
    );
    // An accepted read is not audited.
    assert_eq!(
        writer.api.get_linker(WEB_APP_ID, "audited").await.status,
        200
    );

    let records = audit_of(owner, &writer.oid).await;
    let find = |scope: &str, outcome: &str| {
        records
            .iter()
            .find(|r| {
                r["scope"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(scope))
                    && r["outcome"] == outcome
            })
            .unwrap_or_else(|| panic!("no {outcome} record over {scope}: {records:#?}"))
            .clone()
    };
    let write = roles::actions::LINKERS_WRITE;
    let record = find(&Api::linker_path(WEB_APP_ID, "audited"), "accepted");
    assert_eq!(record["principalId"], writer.oid.as_str());
    assert_eq!(record["tenantId"], demo::TENANT_ID);
    assert_eq!(record["action"], write);
    assert!(
        record["target"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case(PG_DATABASE_ID)),
        "{record}"
    );
    assert_eq!(record["operationId"], operation.as_str(), "{record}");
    assert_eq!(record["status"], 201);
    assert_eq!(
        record["requestId"],
        accepted.header("x-ms-request-id").unwrap()
    );
    assert_eq!(
        record["correlationId"],
        accepted.header("x-ms-correlation-request-id").unwrap()
    );

    let record = find(&Api::linker_path(WEB_APP_ID, "refused"), "refused");
    assert_eq!(record["principalId"], writer.oid.as_str());
    assert_eq!(record["action"], write);
    assert_eq!(record["status"], 403);
    assert_eq!(record["errorCode"], "AuthorizationFailed");
    assert!(record["operationId"].is_null(), "{record}");
    assert_eq!(
        record["requestId"],
        refused.header("x-ms-request-id").unwrap()
    );
    // (Which target it was refused for: `a_refused_write_is_audited_with_its_target`.)

    let record = find(&read_scope, "refused");
    assert_eq!(record["action"], roles::actions::LINKERS_READ);
    assert_eq!(record["status"], 403);
    assert_eq!(
        records.len(),
        3,
        "one record per write and refusal, none for the accepted read: {records:#?}"
    );

    // The audit trail and the sagas are for operators: roles below the root do not open them,
    // not even Owner of a whole subscription; Tether Operator at the root does.
    let subscription_owner = principal(&env, &replica, "subscription-owner").await;
    let subscription = format!("/subscriptions/{}", demo::SUBSCRIPTION_ID);
    grant(owner, &subscription_owner, &roles::OWNER, &subscription).await;
    let operator = principal(&env, &replica, "operator").await;
    grant(owner, &operator, &roles::TETHER_OPERATOR, "/").await;
    for (who, api, allowed) in [
        ("a Contributor", &writer.api, false),
        ("a subscription Owner", &subscription_owner.api, false),
        ("a Tether Operator", &operator.api, true),
    ] {
        for path in ["/admin/audit", "/admin/sagas"] {
            let reply = api
                .call_url("GET", &format!("{}{path}", api.base()), None)
                .await;
            if allowed {
                assert_eq!(reply.status, 200, "{who} {path}: {}", reply.text);
            } else {
                assert_eq!(
                    (reply.status, reply.code()),
                    (403, "AuthorizationFailed"),
                    "{who} {path}: {}",
                    reply.text
                );
            }
        }
    }
    let mut refusals: Vec<String> = audit_of(owner, &subscription_owner.oid)
        .await
        .iter()
        .filter(|r| r["outcome"] == "refused" && r["scope"] == "/")
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    refusals.sort();
    assert_eq!(
        refusals,
        [
            roles::actions::OPERATOR_AUDIT_LIST,
            roles::actions::OPERATOR_SAGAS_LIST
        ],
        "the operator refusals are audited"
    );
    drop(replica);
    env.teardown().await;
}

/// The audit record of a write refused for a resource it names says which: its `target`.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_write_is_audited_with_its_target() {
    let env = env(Backend::Sqlite).await;
    let replica = env.spawn().await;
    let owner = &replica.api;
    let data = resource_group(&env, demo::SUBSCRIPTION_ID, "rg-data").await;
    let ledger = pg_database(&env, &data, "data-pg", "ledger").await;
    let writer = principal(&env, &replica, "writer").await;
    grant(owner, &writer, &roles::CONTRIBUTOR, WEB_APP_ID).await;
    let refused = writer
        .api
        .put_linker(
            WEB_APP_ID,
            "refused",
            secret_linker(&ledger, "pw-refused", "python", false),
        )
        .await;
    assert_refused(
        &refused,
        &writer,
        PG_DATABASE_WRITE,
        &ledger,
        "the refused write",
    );
    let records = audit_of(owner, &writer.oid).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(record["outcome"], "refused", "{record}");
    assert!(
        record["target"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case(&ledger)),
        "the record names the target the write was refused for: {record}"
    );
    drop(replica);
    env.teardown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Throttling

#[tokio::test(flavor = "multi_thread")]
async fn a_principal_over_its_budget_is_throttled_alone_and_audited() {
    let env = env(Backend::Postgres).await;
    // Five reads at once, then one a second: a burst of GETs runs out within a few requests.
    let replica = env
        .spawn_with(
            ReplicaOptions::default()
                .env("TETHER__THROTTLE__PRINCIPAL_BURST", "5")
                .env("TETHER__THROTTLE__PER_PRINCIPAL_PER_MINUTE", "60"),
        )
        .await;
    let owner = &replica.api;
    let reader = principal(&env, &replica, "reader").await;
    grant(owner, &reader, &roles::READER, demo::RESOURCE_GROUP_ID).await;

    let mut answered = 0;
    let throttled = loop {
        let reply = owner.get_linker(WEB_APP_ID, "absent").await;
        if reply.status == 429 {
            break reply;
        }
        assert_eq!(reply.status, 404, "{}", reply.text);
        answered += 1;
        assert!(answered < 30, "30 reads in a row were never throttled");
    };
    assert!(answered >= 1, "the first read is within the burst");
    assert_eq!(
        throttled.body["error"]["code"], "SubscriptionRequestsThrottled",
        "{}",
        throttled.text
    );
    let message = throttled.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with("Number of read requests for principal")
            && message.contains("exceeded the limit"),
        "ARM's wording: {message}"
    );
    let retry_after: u64 = throttled
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a 429 says when to retry");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");

    // The budget is per principal and per class: another principal reads, the owner writes.
    let other = reader.api.get_linker(WEB_APP_ID, "absent").await;
    assert_eq!(
        other.status, 404,
        "another principal is not throttled: {}",
        other.text
    );
    let write = owner
        .call("DELETE", &Api::linker_path(WEB_APP_ID, "absent"), None)
        .await;
    assert_eq!(
        write.status, 204,
        "writes have their own budget: {}",
        write.text
    );

    // The refusal is in the audit trail (read once the owner's budget has refilled).
    let records = eventually(
        Duration::from_secs(30),
        Duration::from_millis(500),
        async || {
            let url = format!(
                "{}/admin/audit?principal={}&limit=1000",
                owner.base(),
                demo::CLIENT_OBJECT_ID
            );
            let reply = owner.call_url("GET", &url, None).await;
            match reply.status {
                200 => Ok(reply.body["value"].as_array().cloned().unwrap_or_default()),
                _ => Err(format!("the audit trail stayed unreadable: {}", reply.text)),
            }
        },
    )
    .await;
    assert!(
        records.iter().any(|r| r["action"] == "throttle"
            && r["outcome"] == "refused"
            && r["status"] == 429
            && r["errorCode"] == "SubscriptionRequestsThrottled"),
        "no throttle record: {records:#?}"
    );
    drop(replica);
    env.teardown().await;
}
