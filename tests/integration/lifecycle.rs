//! A connection's whole life through the API, for every api-version, with the backend's state
//! checked after each step: create, read, list, list configurations, validate, patch,
//! replace, delete.

use serde_json::json;
use tether_mock_azure::demo;
use tether_test_utils::{Backend, openapi::API_VERSIONS};

use crate::support::{
    PG_DATABASE_ID, PG_SERVER_ID, WEB_APP_ID, env, on_both_backends, secret_linker,
};

on_both_backends!(a_connection_is_created_used_changed_and_removed);

async fn a_connection_is_created_used_changed_and_removed(backend: Backend) {
    let env = env(backend).await;
    let replica = env.spawn().await;
    let start = env.mock.state().await;
    for version in API_VERSIONS {
        let api = replica.api.version(version);
        let name = format!("orders-{}", &version[..4]);
        let password = format!("pw for {version}; it's 'quoted'");

        // Create: 201, a non-terminal state and absolute polling URLs on our host.
        let created = api
            .put_linker(
                WEB_APP_ID,
                &name,
                secret_linker(PG_DATABASE_ID, &password, "python", true),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["properties"]["provisioningState"], "Accepted");
        let poll = created.header("azure-asyncoperation").unwrap();
        assert!(
            poll.starts_with(&format!("{}/subscriptions/", api.base())),
            "{poll}"
        );
        assert!(poll.contains(&format!("api-version={version}")), "{poll}");
        assert!(
            created
                .header("retry-after")
                .unwrap()
                .parse::<u32>()
                .unwrap()
                >= 1
        );
        assert!(
            created.header("retry-after-ms").is_some(),
            "the first answer hints a short first poll"
        );
        let done = api.wait(&created).await;
        assert_eq!(done["status"], "Succeeded", "{done}");
        assert!(done["endTime"].is_string());

        let got = api.get_linker(WEB_APP_ID, &name).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body["properties"]["provisioningState"], "Succeeded");
        assert_eq!(
            got.body["properties"]["authInfo"],
            json!({"authType": "secret", "name": "appuser", "secretInfo": {"secretType": "rawValue"}})
        );
        assert_eq!(got.body["systemData"]["createdBy"], demo::CLIENT_ID);

        // The backend: the exact connection string, and a rule per outbound address.
        let settings = env.mock.app_settings(WEB_APP_ID).await;
        assert_eq!(
            settings.get("AZURE_POSTGRESQL_CONNECTIONSTRING").map(String::as_str),
            Some(format!("dbname=orders host=demo-pg.postgres.database.azure.com port=5432 sslmode=require user=appuser password='pw for {version}; it\\'s \\'quoted\\''").as_str())
        );
        let rules = env.mock.firewall_rules(PG_SERVER_ID).await;
        let ranges: Vec<_> = rules.values().cloned().collect();
        assert_eq!(
            ranges,
            [
                ("20.42.0.1".to_string(), "20.42.0.1".to_string()),
                ("20.42.0.2".to_string(), "20.42.0.2".to_string())
            ]
        );

        let list = api.list_linkers(WEB_APP_ID).await;
        assert_eq!(list.status, 200);
        let names: Vec<&str> = list.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [name.as_str()]);

        let configs = api.list_configurations(WEB_APP_ID, &name).await;
        assert_eq!(configs.status, 200, "{}", configs.text);
        assert_eq!(
            configs.body["configurations"],
            json!([{"name": "AZURE_POSTGRESQL_CONNECTIONSTRING",
                    "value": "dbname=orders host=demo-pg.postgres.database.azure.com port=5432 sslmode=require user=appuser password=<redacted>"}])
        );

        // Validate: 202 with both polling headers; the status body and the Location URL carry
        // the result.
        let validating = api.validate(WEB_APP_ID, &name).await;
        assert_eq!(validating.status, 202, "{}", validating.text);
        assert!(validating.text.is_empty());
        let location = validating.header("location").unwrap().to_string();
        let validated = api.wait(&validating).await;
        assert_eq!(validated["status"], "Succeeded");
        let result = &validated["properties"];
        assert_eq!(result["isConnectionAvailable"], true, "{validated}");
        let checks: Vec<(&str, &str)> = result["validationDetail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["name"].as_str().unwrap(), d["result"].as_str().unwrap()))
            .collect();
        assert_eq!(
            checks,
            [
                ("SourceExistence", "success"),
                ("TargetExistence", "success"),
                ("ConfigurationPresence", "success"),
                ("TargetNetworkAccess", "success")
            ]
        );
        let by_location = api.call_url("GET", &location, None).await;
        assert_eq!(by_location.status, 200);
        assert_eq!(
            by_location.body["properties"]["isConnectionAvailable"],
            true
        );

        // PATCH: another client type; the stored password is kept.
        let patched = api
            .patch_linker(WEB_APP_ID, &name, json!({"clientType": "java"}))
            .await;
        assert_eq!(patched.status, 201, "{}", patched.text);
        assert_eq!(patched.body["properties"]["provisioningState"], "Updating");
        assert_eq!(api.wait(&patched).await["status"], "Succeeded");
        let settings = env.mock.app_settings(WEB_APP_ID).await;
        let jdbc = settings["AZURE_POSTGRESQL_CONNECTIONSTRING"].as_str();
        assert!(jdbc.starts_with("jdbc:postgresql://demo-pg.postgres.database.azure.com:5432/orders?sslmode=require&user=appuser&password=pw%20for"), "{jdbc}");
        assert_eq!(
            api.get_linker(WEB_APP_ID, &name).await.body["properties"]["clientType"],
            "java"
        );

        // PUT over it: django keys and no firewall; the old key and the rules go away.
        let replaced = api
            .put_linker(
                WEB_APP_ID,
                &name,
                secret_linker(PG_DATABASE_ID, &password, "django", false),
            )
            .await;
        assert_eq!(replaced.status, 200, "{}", replaced.text);
        assert_eq!(api.wait(&replaced).await["status"], "Succeeded");
        let settings = env.mock.app_settings(WEB_APP_ID).await;
        let keys: Vec<&str> = settings.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "AZURE_POSTGRESQL_HOST",
                "AZURE_POSTGRESQL_NAME",
                "AZURE_POSTGRESQL_PASSWORD",
                "AZURE_POSTGRESQL_USER",
                "WEBSITE_RUN_FROM_PACKAGE"
            ]
        );
        assert_eq!(settings["AZURE_POSTGRESQL_PASSWORD"], password);
        assert!(env.mock.firewall_rules(PG_SERVER_ID).await.is_empty());

        // DELETE: 202 with both headers, then 404, and the backend is as it was.
        let deleting = api.delete_linker(WEB_APP_ID, &name).await;
        assert_eq!(deleting.status, 202, "{}", deleting.text);
        let location = deleting.header("location").unwrap().to_string();
        assert_eq!(api.wait(&deleting).await["status"], "Succeeded");
        assert_eq!(api.get_linker(WEB_APP_ID, &name).await.status, 404);
        assert_eq!(api.call_url("GET", &location, None).await.status, 204);
        assert_eq!(api.delete_linker(WEB_APP_ID, &name).await.status, 204);
        assert_eq!(
            env.mock.state().await,
            start,
            "the backend is back to its starting state"
        );
    }
    env.teardown().await;
}
