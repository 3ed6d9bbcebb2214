//! ARM conventions that real clients rely on: api-version, authentication, error envelopes,
//! bad input, case-insensitive ids, paging, concurrency, operation lookups, key naming.

use serde_json::json;
use tether_test_utils::{Backend, Replica, TestEnv};

use crate::support::{
    API_APP_ID, PG_DATABASE_2_ID, PG_DATABASE_ID, WEB_APP_ID, env, secret_linker,
};

const LINKERS: &str = "/providers/Microsoft.ServiceLinker/linkers";

async fn start() -> (TestEnv, Replica) {
    let env = env(Backend::Sqlite).await;
    let replica = env.spawn().await;
    (env, replica)
}

#[tokio::test(flavor = "multi_thread")]
async fn api_version_and_authentication_are_enforced() {
    let (env, r) = start().await;
    let api = &r.api;
    let missing = api
        .send(api.raw("GET", "/providers/Microsoft.ServiceLinker/operations"))
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (400, "MissingApiVersionParameter")
    );
    let unsupported = api
        .send(api.raw(
            "GET",
            "/providers/Microsoft.ServiceLinker/operations?api-version=2023-04-01-preview",
        ))
        .await;
    assert_eq!(
        (unsupported.status, unsupported.code()),
        (400, "NoRegisteredProviderFound")
    );
    assert!(
        unsupported.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2024-07-01-preview")
    );
    let malformed = api
        .send(api.raw(
            "GET",
            "/providers/Microsoft.ServiceLinker/operations?api-version=latest",
        ))
        .await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (400, "InvalidApiVersionParameter")
    );

    let anonymous = api
        .send(api.anonymous(
            "GET",
            &format!("{WEB_APP_ID}{LINKERS}?api-version=2022-05-01"),
        ))
        .await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (401, "AuthenticationFailed")
    );
    let challenge = anonymous.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer authorization_uri="),
        "{challenge}"
    );
    let wrong = api
        .send(
            api.anonymous(
                "GET",
                &format!("{WEB_APP_ID}{LINKERS}?api-version=2022-05-01"),
            )
            .bearer_auth("nope"),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (401, "InvalidAuthenticationToken")
    );

    let ops = api
        .call("GET", "/providers/Microsoft.ServiceLinker/operations", None)
        .await;
    assert_eq!(ops.status, 200);
    let names: Vec<&str> = ops.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    for expected in [
        "Microsoft.ServiceLinker/register/action",
        "Microsoft.ServiceLinker/linkers/write",
        "Microsoft.ServiceLinker/linkers/validateLinker/action",
        "Microsoft.ServiceLinker/linkers/listConfigurations/action",
        "Microsoft.ServiceLinker/locations/operationStatuses/read",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let health = reqwest::get(format!("{}/readyz", r.url)).await.unwrap();
    assert_eq!(health.status(), 200);
    // Without regions a replica is active: its database took the heartbeat write.
    let ready: serde_json::Value = health.json().await.unwrap();
    assert_eq!(
        (
            &ready["role"],
            &ready["database"]["heartbeat"],
            &ready["epoch"]
        ),
        (&json!("active"), &json!(true), &json!(0)),
        "{ready}"
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_400_and_writes_nothing() {
    let (env, r) = start().await;
    let api = &r.api;
    let path = format!("{WEB_APP_ID}{LINKERS}/db?api-version=2022-05-01");
    let before = env.mock.state().await;
    let post = |body: &'static str| {
        api.raw("PUT", &path)
            .header("content-type", "application/json")
            .body(body)
    };

    let not_json = api.send(post("{\"properties\": ")).await;
    assert_eq!(
        (not_json.status, not_json.code()),
        (400, "InvalidRequestContent")
    );
    let no_properties = api.send(post("{\"name\": \"db\"}")).await;
    assert_eq!(
        (
            no_properties.status,
            no_properties.body["error"]["target"].as_str()
        ),
        (400, Some("properties"))
    );
    let not_object = api.send(post("[1, 2]")).await;
    assert_eq!(not_object.status, 400);

    let cases = [
        (
            json!({"bogus": 1}),
            "InvalidRequestContent",
            "properties.bogus",
        ),
        (
            json!({"targetService": {"type": "AzureResource", "id": "not-an-id"}}),
            "LinkedInvalidPropertyId",
            "properties.targetService.id",
        ),
        (
            json!({"targetService": {"type": "AzureResource", "id": WEB_APP_ID}, "authInfo": {"authType": "secret"}}),
            "InvalidParameter",
            "properties.targetService.id",
        ),
        (
            json!({"targetService": {"type": "AzureResource", "id": PG_DATABASE_ID}, "authInfo": {"authType": "servicePrincipalCertificate", "clientId": "c", "principalId": "p", "certificate": "MIIcertificate-body-9f3a"}}),
            "InvalidParameter",
            "properties.authInfo.authType",
        ),
        (
            json!({"targetService": {"type": "AzureResource", "id": PG_DATABASE_ID}, "authInfo": {"authType": "secret", "name": "u"}}),
            "InvalidParameter",
            "properties.authInfo.secretInfo",
        ),
        (
            json!({"targetService": {"type": "AzureResource", "id": PG_DATABASE_ID}, "authInfo": {"authType": "secret", "name": "u", "secretInfo": {"secretType": "rawValue", "value": 42}}}),
            "InvalidRequestContent",
            "properties.authInfo",
        ),
        (
            json!({"clientType": "cobol"}),
            "InvalidRequestContent",
            "properties.clientType",
        ),
        (
            json!({"publicNetworkSolution": {"action": "optOut"}}),
            "InvalidRequestContent",
            "properties.publicNetworkSolution",
        ),
    ];
    for (properties, code, target) in cases {
        let reply = api
            .call(
                "PUT",
                &format!("{WEB_APP_ID}{LINKERS}/db"),
                Some(&json!({"properties": properties})),
            )
            .await;
        assert_eq!(reply.status, 400, "{properties}: {}", reply.text);
        assert_eq!(reply.code(), code, "{properties}: {}", reply.text);
        assert_eq!(
            reply.body["error"]["target"], target,
            "{properties}: {}",
            reply.text
        );
        assert!(
            reply.header("retry-after").is_none(),
            "non-retryable errors carry no Retry-After"
        );
    }
    // A 2024 property is fine in 2024 (and then the missing target is what is wrong).
    let newer = r.api.version("2024-04-01");
    let reply = newer
        .put_linker(
            WEB_APP_ID,
            "db",
            json!({"publicNetworkSolution": {"action": "optOut"}}),
        )
        .await;
    assert_eq!(reply.body["error"]["target"], "properties.targetService");

    let big = "x".repeat(5 * 1024 * 1024);
    let too_big = api
        .send(
            api.raw("PUT", &path)
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
    assert_eq!(
        (too_big.status, too_big.code()),
        (413, "RequestBodyTooLarge")
    );
    let denied = api
        .send(api.raw(
            "GET",
            &format!("{WEB_APP_ID}{LINKERS}?api-version=2022-05-01&subscriptionId=x"),
        ))
        .await;
    assert_eq!(
        (denied.status, denied.code()),
        (400, "InvalidQueryParameter")
    );
    let bad_name = api
        .call("GET", &format!("{WEB_APP_ID}{LINKERS}/a%3Ab"), None)
        .await;
    assert_eq!(
        (bad_name.status, bad_name.code()),
        (400, "InvalidParameter")
    );
    let bad_type = api
        .call(
            "GET",
            &format!("{WEB_APP_ID}/providers/Microsoft.ServiceLinker/linkerz"),
            None,
        )
        .await;
    assert_eq!(
        (bad_type.status, bad_type.code()),
        (400, "InvalidResourceType")
    );
    let not_yet = api
        .version("2024-07-01-preview")
        .call(
            "GET",
            &format!("{WEB_APP_ID}/providers/Microsoft.ServiceLinker/dryruns"),
            None,
        )
        .await;
    assert_eq!((not_yet.status, not_yet.code()), (501, "NotImplemented"));
    let method = api
        .call("POST", &format!("{WEB_APP_ID}{LINKERS}/db"), None)
        .await;
    assert_eq!((method.status, method.code()), (405, "MethodNotAllowed"));

    assert_eq!(
        api.get_linker(WEB_APP_ID, "db").await.status,
        404,
        "nothing was written"
    );
    assert_eq!(env.mock.state().await, before);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_are_case_insensitive_and_keep_the_callers_latest_casing() {
    let (env, r) = start().await;
    let api = &r.api;
    let lower = WEB_APP_ID.to_ascii_lowercase();
    let created = api
        .put_linker(
            &lower,
            "OrdersDb",
            secret_linker(PG_DATABASE_ID, "pw1", "none", false),
        )
        .await;
    assert_eq!(created.status, 201);
    api.wait(&created).await;
    let upper_scope = WEB_APP_ID
        .replace("resourceGroups", "RESOURCEGROUPS")
        .replace("demo-web", "DEMO-WEB");
    let got = api.get_linker(&upper_scope, "ordersdb").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["id"], format!("{lower}{LINKERS}/OrdersDb"));
    // Double leading slashes are accepted (some clients splice a scope after a template slash).
    let doubled = api
        .call("GET", &format!("/{WEB_APP_ID}{LINKERS}/ORDERSDB"), None)
        .await;
    assert_eq!(doubled.status, 200);
    // A PUT with another casing is an update, and the id follows the new casing.
    let again = api
        .put_linker(
            WEB_APP_ID,
            "ORDERSDB",
            secret_linker(PG_DATABASE_ID, "pw1", "none", false),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    api.wait(&again).await;
    assert_eq!(
        api.get_linker(&lower, "ordersdb").await.body["id"],
        format!("{WEB_APP_ID}{LINKERS}/ORDERSDB")
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_with_tamper_proof_next_links() {
    let (env, r) = start().await;
    let api = &r.api;
    for name in ["c", "a", "b"] {
        let mut props = secret_linker(PG_DATABASE_ID, "pw", "none", false);
        props["configurationInfo"] = json!(null);
        let reply = api.put_linker(API_APP_ID, name, props).await;
        assert_eq!(api.wait(&reply).await["status"], "Succeeded");
    }
    let first = api
        .send(api.raw(
            "GET",
            &format!("{API_APP_ID}{LINKERS}?api-version=2022-05-01&$top=2"),
        ))
        .await;
    let names = |reply: &tether_test_utils::Reply| -> Vec<String> {
        reply.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&first), ["a", "b"]);
    let next = first.body["nextLink"].as_str().unwrap().to_string();
    assert!(
        next.starts_with(&r.url)
            && next.contains("api-version=2022-05-01")
            && next.contains("%24top=2"),
        "{next}"
    );
    let second = api.call_url("GET", &next, None).await;
    assert_eq!(names(&second), ["c"]);
    assert!(second.body.get("nextLink").is_none());

    let forged = next.replace("skipToken=", "skipToken=x");
    assert_eq!(
        api.call_url("GET", &forged, None).await.code(),
        "InvalidParameter"
    );
    let elsewhere = next.replace("demo-api", "demo-web");
    let replayed = api.call_url("GET", &elsewhere, None).await;
    assert_eq!(
        (replayed.status, replayed.body["error"]["target"].as_str()),
        (400, Some("$skipToken"))
    );
    let empty = api.list_linkers(WEB_APP_ID).await;
    assert_eq!(empty.body, json!({"value": []}));
    env.teardown().await;
}

/// `configurationNames` lists the catalogue's keys page by page (every answer checked against
/// the OpenAPI document), narrows with `$filter`, and, like `daprConfigurations`, exists from
/// 2024-04-01 on.
#[tokio::test(flavor = "multi_thread")]
async fn the_catalogue_operations_list_configuration_names_and_dapr_templates() {
    let (env, r) = start().await;
    let names_path = "/providers/Microsoft.ServiceLinker/configurationNames";
    for version in ["2024-04-01", "2024-07-01-preview"] {
        let api = r.api.version(version);
        let mut reply = api.call("GET", names_path, None).await;
        let mut entries = Vec::new();
        loop {
            assert_eq!(reply.status, 200, "{}", reply.text);
            entries.extend(reply.body["value"].as_array().unwrap().iter().cloned());
            match reply.body["nextLink"].as_str() {
                Some(next) => {
                    assert!(next.starts_with(&r.url) && next.contains(version), "{next}");
                    let next = next.to_string();
                    reply = api.call_url("GET", &next, None).await;
                }
                None => break,
            }
        }
        assert!(
            entries.len() > 100,
            "every target x client x auth: {}",
            entries.len()
        );
        let postgres_python_password = entries.iter().find(|e| {
            let p = &e["properties"];
            p["targetService"] == "MICROSOFT.DBFORPOSTGRESQL/FLEXIBLESERVERS/DATABASES"
                && p["clientType"] == "python"
                && p["authType"] == "secret"
        });
        assert!(postgres_python_password.is_some_and(|e| {
            e["properties"]["names"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["value"] == "AZURE_POSTGRESQL_CONNECTIONSTRING")
        }));

        let filtered = api
            .call_url(
                "GET",
                &format!(
                    "{}{names_path}?api-version={version}&$filter=targetService%20eq%20%27MICROSOFT.APPCONFIGURATION%2FCONFIGURATIONSTORES%27%20and%20authType%20eq%20%27systemAssignedIdentity%27",
                    r.url
                ),
                None,
            )
            .await;
        let value = filtered.body["value"].as_array().unwrap();
        assert!(!value.is_empty(), "{}", filtered.text);
        assert!(
            value
                .iter()
                .all(|e| e["properties"]["authType"] == "systemAssignedIdentity"
                    && e["properties"]["names"][0]["value"] == "AZURE_APPCONFIGURATION_ENDPOINT")
        );
        let bad = api
            .call_url(
                "GET",
                &format!(
                    "{}{names_path}?api-version={version}&$filter=region%20eq%20%27x%27",
                    r.url
                ),
                None,
            )
            .await;
        assert_eq!((bad.status, bad.code()), (400, "InvalidFilter"));

        let dapr = api
            .call(
                "GET",
                &format!("{WEB_APP_ID}/providers/Microsoft.ServiceLinker/daprConfigurations"),
                None,
            )
            .await;
        assert_eq!((dapr.status, &dapr.body), (200, &json!({"value": []})));
    }
    let old = r
        .api
        .version("2022-05-01")
        .call("GET", names_path, None)
        .await;
    assert_eq!((old.status, old.code()), (400, "InvalidResourceType"));
    env.teardown().await;
}

/// `generateConfigurations` renders a linker's configuration with another
/// `configurationInfo` (or its own, without a body), secrets redacted, changing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn generate_configurations_renders_another_configuration_info_and_changes_nothing() {
    let (env, r) = start().await;
    let api = r.api.version("2024-04-01");
    let reply = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw-generate", "python", false),
        )
        .await;
    assert_eq!(api.wait(&reply).await["status"], "Succeeded");
    let path = format!("{WEB_APP_ID}{LINKERS}/db/generateConfigurations");
    let names = |reply: &tether_test_utils::Reply| -> Vec<String> {
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body["configurations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let before = env.mock.state().await;

    let own = api.call("POST", &path, None).await;
    let listed = api.list_configurations(WEB_APP_ID, "db").await;
    assert_eq!(
        own.body, listed.body,
        "without a body: the linker's own configuration"
    );
    let renamed = api
        .call(
            "POST",
            &path,
            Some(&json!({
                "customizedKeys": { "AZURE_POSTGRESQL_CONNECTIONSTRING": "DB_URL" },
                "additionalConfigurations": { "EXTRA": "1" },
            })),
        )
        .await;
    let mut got = names(&renamed);
    got.sort();
    assert_eq!(got, ["DB_URL", "EXTRA"]);
    assert!(
        !renamed.text.contains("pw-generate"),
        "secrets stay redacted"
    );

    let bad = api
        .call(
            "POST",
            &path,
            Some(&json!({ "customizedKeys": "not a map" })),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (400, "InvalidRequestContent"));
    let old = r.api.version("2022-05-01").call("POST", &path, None).await;
    assert_eq!((old.status, old.code()), (400, "InvalidResourceType"));
    assert_eq!(env.mock.state().await, before, "nothing was applied");
    assert_eq!(
        names(&api.list_configurations(WEB_APP_ID, "db").await),
        names(&own)
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_during_a_running_operation_conflict_unless_they_repeat_it() {
    let (env, r) = start().await;
    let api = &r.api;
    env.mock.fault(json!({"method": "GET", "path": "**/sites/demo-web", "count": 1, "action": {"delay": {"ms": 1500}}})).await;
    let body = secret_linker(PG_DATABASE_ID, "pw", "python", false);
    let created = api.put_linker(WEB_APP_ID, "db", body.clone()).await;
    assert_eq!(created.status, 201);
    // A client retrying the same request (its response was lost) gets the same operation.
    let again = api.put_linker(WEB_APP_ID, "db", body.clone()).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(
        again.header("azure-asyncoperation"),
        created.header("azure-asyncoperation")
    );
    // Anything else waits for it.
    let other = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw", "go", false),
        )
        .await;
    assert_eq!(
        (other.status, other.code()),
        (409, "AnotherOperationInProgress")
    );
    let other_password = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw2", "python", false),
        )
        .await;
    assert_eq!(other_password.status, 409);
    let patch = api
        .patch_linker(WEB_APP_ID, "db", json!({"clientType": "go"}))
        .await;
    assert_eq!(patch.status, 409);
    assert_eq!(api.wait(&created).await["status"], "Succeeded");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_during_a_create_cancels_it_and_removes_everything() {
    let (env, r) = start().await;
    let api = &r.api;
    let clean = env.mock.state().await;
    // Reading the app takes a while: the delete arrives while the create runs.
    env.mock
        .fault(json!({"method": "GET", "path": "**/Microsoft.Web/sites/demo-web", "count": 1, "action": {"delay": {"ms": 1500}}}))
        .await;
    let created = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw", "python", true),
        )
        .await;
    assert_eq!(created.status, 201);
    let deleting = api.delete_linker(WEB_APP_ID, "db").await;
    assert_eq!(deleting.status, 202, "{}", deleting.text);
    // A repeated delete gets the same operation.
    let again = api.delete_linker(WEB_APP_ID, "db").await;
    assert_eq!(
        again.header("azure-asyncoperation"),
        deleting.header("azure-asyncoperation")
    );
    let linker = api.get_linker(WEB_APP_ID, "db").await;
    assert_eq!(
        linker.body["properties"]["provisioningState"], "Accepted",
        "the create is still running"
    );

    let create = api.wait(&created).await;
    assert_eq!(create["status"], "Canceled", "{create}");
    assert_eq!(create["error"]["code"], "OperationCanceled");
    assert_eq!(api.wait(&deleting).await["status"], "Succeeded");
    assert_eq!(api.get_linker(WEB_APP_ID, "db").await.status, 404);
    assert_eq!(env.mock.state().await, clean);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn further_connections_get_named_keys_and_collisions_are_refused() {
    let (env, r) = start().await;
    let api = &r.api;
    for (name, target) in [("orders", PG_DATABASE_ID), ("inventory", PG_DATABASE_2_ID)] {
        let reply = api
            .put_linker(
                WEB_APP_ID,
                name,
                secret_linker(target, "pw", "python", false),
            )
            .await;
        assert_eq!(api.wait(&reply).await["status"], "Succeeded");
    }
    let settings = env.mock.app_settings(WEB_APP_ID).await;
    assert!(settings["AZURE_POSTGRESQL_CONNECTIONSTRING"].contains("dbname=orders"));
    assert!(settings["AZURE_POSTGRESQL_INVENTORY_CONNECTIONSTRING"].contains("dbname=inventory"));

    let spring = |target| secret_linker(target, "pw", "springBoot", false);
    let reply = api
        .put_linker(API_APP_ID, "one", spring(PG_DATABASE_ID))
        .await;
    assert_eq!(api.wait(&reply).await["status"], "Succeeded");
    let clash = api
        .put_linker(API_APP_ID, "two", spring(PG_DATABASE_2_ID))
        .await;
    assert_eq!(
        (clash.status, clash.code()),
        (409, "ConfigurationKeyConflict")
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_are_private_to_their_subscription_and_ids_are_echoed() {
    let (env, r) = start().await;
    let api = &r.api;
    let created = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw", "python", false),
        )
        .await;
    let url = created.header("azure-asyncoperation").unwrap().to_string();
    let status = api.wait(&created).await;
    assert_eq!(
        status["name"].as_str().unwrap(),
        url.rsplit('/').next().unwrap().split('?').next().unwrap()
    );
    let foreign = url.replace(
        "11111111-2222-3333-4444-555555555555",
        "99999999-2222-3333-4444-555555555555",
    );
    assert_eq!(
        api.call_url("GET", &foreign, None).await.code(),
        "OperationNotFound"
    );
    let unknown = url.replace(
        status["name"].as_str().unwrap(),
        "00000000-0000-0000-0000-000000000000",
    );
    assert_eq!(api.call_url("GET", &unknown, None).await.status, 404);
    // Any supported api-version reads the status.
    let other_version = url.replace("2022-05-01", "2024-07-01-preview");
    assert_eq!(
        api.call_url("GET", &other_version, None).await.body["status"],
        "Succeeded"
    );

    let echoed = api
        .send(
            api.raw(
                "GET",
                &format!("{WEB_APP_ID}{LINKERS}/db?api-version=2022-05-01"),
            )
            .header("x-ms-correlation-request-id", "corr-1")
            .header("x-ms-client-request-id", "client-1")
            .header("x-ms-return-client-request-id", "true"),
        )
        .await;
    assert_eq!(echoed.header("x-ms-correlation-request-id"), Some("corr-1"));
    assert_eq!(echoed.header("x-ms-client-request-id"), Some("client-1"));
    // The saga's ARM calls carry its id as their correlation id.
    let calls = env.mock.calls().await;
    assert!(
        calls.iter().any(|c| c["method"] == "PUT"
            && c["correlationId"].as_str().is_some_and(|id| id.len() == 36))
    );
    env.teardown().await;
}
