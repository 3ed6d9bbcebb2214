//! Targets: MySQL, Azure SQL, Storage, Key Vault, Service Bus, Redis, Cosmos DB and App
//! Configuration: computed fields, secrets hidden from GET and revealed by POST actions,
//! validation, network rules.

use serde_json::{Value, json};
use tether_mock_azure::demo;

use crate::support::{TestServer, accepted, expect_error, in_demo_rg, json};

/// Asserts that no GET of the resource (nor the collection it is in) shows `secret`.
async fn hidden(server: &TestServer, path: &str, secret: &str) {
    let one = server.get(path).await.text().await.unwrap();
    assert!(!one.contains(secret), "GET {path} shows a secret: {one}");
    let (collection, _) = path.rsplit_once('/').unwrap();
    let all = server.get(collection).await.text().await.unwrap();
    assert!(!all.contains(secret), "GET {collection} shows a secret");
}

#[tokio::test]
async fn mysql_servers_compute_fqdn_and_answer_children_asynchronously() {
    let server = TestServer::demo().await;
    let mysql = json(server.get(demo::MYSQL_SERVER_ID).await).await;
    assert_eq!(
        mysql["properties"]["fullyQualifiedDomainName"],
        "demo-mysql.mysql.database.azure.com"
    );
    let rule = format!("{}/firewallRules/allow", demo::MYSQL_SERVER_ID);
    let ips = json!({"properties": {"startIpAddress": "1.2.3.4", "endIpAddress": "1.2.3.5"}});
    let (status_url, _) = accepted(&server.put(&rule, ips).await);
    assert!(status_url.contains("/providers/Microsoft.DBforMySQL/locations/westus/"));
    assert_eq!(
        json(server.get(&rule).await).await["type"],
        "Microsoft.DBforMySQL/flexibleServers/firewallRules"
    );
    let bad = json!({"properties": {"startIpAddress": "1.2.3.6", "endIpAddress": "1.2.3.5"}});
    expect_error(server.put(&rule, bad).await, 400, "InvalidParameterValue").await;
    let shop = json(server.get(demo::MYSQL_DATABASE_ID).await).await;
    assert_eq!(shop["properties"]["charset"], "utf8mb4");
    accepted(&server.delete(&rule).await);
}

#[tokio::test]
async fn sql_servers_hide_the_password_and_rules_are_synchronous() {
    let server = TestServer::demo().await;
    let path = in_demo_rg("Microsoft.Sql/servers/Other-Sql");
    let body = json!({"location": "westus", "properties": {"administratorLogin": "a",
        "administratorLoginPassword": "hunter2"}});
    let created = server.put(&path, body).await;
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    assert_eq!(
        created["properties"]["fullyQualifiedDomainName"],
        "other-sql.database.windows.net"
    );
    assert!(!server.state().await.to_string().contains("hunter2"));
    let db = format!("{path}/databases/db1");
    expect_error(server.put(&db, json!({})).await, 400, "LocationRequired").await;
    accepted(&server.put(&db, json!({"location": "westus"})).await);
    let got = json(server.get(&db).await).await;
    assert_eq!(got["properties"]["status"], "Online");
    assert_eq!(
        got["properties"]["collation"],
        "SQL_Latin1_General_CP1_CI_AS"
    );
    let rule = format!("{path}/firewallRules/AllowAllWindowsAzureIps");
    let ips = json!({"properties": {"startIpAddress": "0.0.0.0", "endIpAddress": "0.0.0.0"}});
    let response = server.put(&rule, ips).await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        json(response).await["type"],
        "Microsoft.Sql/servers/firewallRules"
    );
    assert_eq!(server.delete(&rule).await.status(), 200);
}

#[tokio::test]
async fn storage_accounts_hide_keys_and_validate_network_rules() {
    let server = TestServer::demo().await;
    let account = json(server.get(demo::STORAGE_ACCOUNT_ID).await).await;
    let props = &account["properties"];
    assert_eq!(
        props["primaryEndpoints"]["blob"],
        "https://demostorage.blob.core.windows.net/"
    );
    assert_eq!(
        props["primaryEndpoints"]["queue"],
        "https://demostorage.queue.core.windows.net/"
    );
    assert_eq!(props["networkAcls"]["defaultAction"], "Allow");
    for service in [
        "blobServices",
        "queueServices",
        "tableServices",
        "fileServices",
    ] {
        let got = server
            .get(&format!("{}/{service}/default", demo::STORAGE_ACCOUNT_ID))
            .await;
        assert_eq!(got.status(), 200, "{service}");
    }

    let keys = json(
        server
            .post(&format!("{}/listKeys", demo::STORAGE_ACCOUNT_ID), None)
            .await,
    )
    .await;
    let key1 = keys["keys"][0]["value"].as_str().unwrap().to_owned();
    assert_eq!(keys["keys"][0]["keyName"], "key1");
    assert_eq!(keys["keys"][1]["keyName"], "key2");
    assert_eq!(keys["keys"][0]["permissions"], "FULL");
    assert_eq!(key1.len(), 88);
    hidden(&server, demo::STORAGE_ACCOUNT_ID, &key1).await;
    let again = json(
        server
            .post(&format!("{}/listKeys", demo::STORAGE_ACCOUNT_ID), None)
            .await,
    )
    .await;
    assert_eq!(again, keys, "keys are stable");
    let regenerated = json(
        server
            .post(
                &format!("{}/regenerateKey", demo::STORAGE_ACCOUNT_ID),
                Some(json!({"keyName": "key1"})),
            )
            .await,
    )
    .await;
    assert_ne!(regenerated["keys"][0]["value"], key1.as_str());
    assert_eq!(regenerated["keys"][1], keys["keys"][1]);

    // PATCH replaces the ipRules array as a whole.
    let rules = |rules: Value| json!({"properties": {"networkAcls": {"defaultAction": "Deny", "ipRules": rules}}});
    let patched = json(
        server
            .patch(
                demo::STORAGE_ACCOUNT_ID,
                rules(json!([{"value": "20.42.0.1"}, {"value": "20.42.1.0/24"}])),
            )
            .await,
    )
    .await;
    assert_eq!(
        patched["properties"]["networkAcls"]["ipRules"],
        json!([{"value": "20.42.0.1", "action": "Allow"}, {"value": "20.42.1.0/24", "action": "Allow"}])
    );
    assert_eq!(
        patched["properties"]["networkAcls"]["bypass"],
        "AzureServices"
    );
    let patched = json(
        server
            .patch(
                demo::STORAGE_ACCOUNT_ID,
                rules(json!([{"value": "20.42.0.2"}])),
            )
            .await,
    )
    .await;
    assert_eq!(
        patched["properties"]["networkAcls"]["ipRules"],
        json!([{"value": "20.42.0.2", "action": "Allow"}])
    );
    for bad in ["300.1.1.1", "1.2.3.4/32", "nonsense"] {
        let response = server
            .patch(demo::STORAGE_ACCOUNT_ID, rules(json!([{ "value": bad }])))
            .await;
        expect_error(response, 400, "NetworkAclsValidationFailure").await;
    }
    let response = server
        .put(
            &in_demo_rg("Microsoft.Storage/storageAccounts/Bad_Name"),
            json!({"location": "westus"}),
        )
        .await;
    expect_error(response, 400, "AccountNameInvalid").await;
}

#[tokio::test]
async fn key_vault_secrets_never_show_their_value() {
    let server = TestServer::demo().await;
    let vault = json(server.get(demo::KEY_VAULT_ID).await).await;
    assert_eq!(
        vault["properties"]["vaultUri"],
        "https://demo-kv.vault.azure.net/"
    );
    assert_eq!(vault["properties"]["tenantId"], demo::TENANT_ID);
    assert_eq!(vault["properties"]["enableRbacAuthorization"], false);

    let secret = format!("{}/secrets/db-password", demo::KEY_VAULT_ID);
    let created = server
        .put(
            &secret,
            json!({"properties": {"value": "hunter2", "contentType": "text/plain"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let text = created.text().await.unwrap();
    assert!(!text.contains("hunter2"));
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["type"], "Microsoft.KeyVault/vaults/secrets");
    let props = &created["properties"];
    assert_eq!(
        props["secretUri"],
        "https://demo-kv.vault.azure.net/secrets/db-password"
    );
    let versioned = props["secretUriWithVersion"].as_str().unwrap().to_owned();
    assert!(versioned.starts_with("https://demo-kv.vault.azure.net/secrets/db-password/"));
    assert_eq!(props["contentType"], "text/plain");
    hidden(&server, &secret, "hunter2").await;
    // The value is in the admin state, next to the secret.
    let state = server.state().await;
    let stored = &state[format!("{}/$secret", secret.to_lowercase())];
    assert_eq!(stored["value"], "hunter2");

    // The same value keeps the version; a new value makes a new one.
    let same = json(
        server
            .put(&secret, json!({"properties": {"value": "hunter2"}}))
            .await,
    )
    .await;
    assert_eq!(
        same["properties"]["secretUriWithVersion"],
        versioned.as_str()
    );
    let changed = json(
        server
            .put(&secret, json!({"properties": {"value": "hunter3"}}))
            .await,
    )
    .await;
    assert_ne!(
        changed["properties"]["secretUriWithVersion"],
        versioned.as_str()
    );
    let missing = format!("{}/secrets/no-value", demo::KEY_VAULT_ID);
    expect_error(
        server.put(&missing, json!({"properties": {}})).await,
        400,
        "BadRequest",
    )
    .await;
    assert_eq!(server.delete(&secret).await.status(), 200);
    assert!(
        server
            .state()
            .await
            .get(format!("{}/$secret", secret.to_lowercase()))
            .is_none()
    );

    // Vault network rules: PATCH replaces the array; values must be addresses or ranges.
    let acl = |rules: Value| json!({"properties": {"networkAcls": {"ipRules": rules}}});
    let patched = json(
        server
            .patch(demo::KEY_VAULT_ID, acl(json!([{"value": "20.42.0.1/32"}])))
            .await,
    )
    .await;
    assert_eq!(
        patched["properties"]["networkAcls"]["ipRules"],
        json!([{"value": "20.42.0.1/32"}])
    );
    let response = server
        .patch(demo::KEY_VAULT_ID, acl(json!([{"value": "x"}])))
        .await;
    expect_error(response, 400, "BadRequest").await;
}

#[tokio::test]
async fn service_bus_rules_reveal_connection_strings_only_through_list_keys() {
    let server = TestServer::demo().await;
    let ns = json(server.get(demo::SERVICE_BUS_ID).await).await;
    assert_eq!(
        ns["properties"]["serviceBusEndpoint"],
        "https://demo-sb.servicebus.windows.net:443/"
    );
    let root = format!(
        "{}/authorizationRules/RootManageSharedAccessKey",
        demo::SERVICE_BUS_ID
    );
    let rule = json(server.get(&root).await).await;
    assert_eq!(
        rule["properties"]["rights"],
        json!(["Listen", "Manage", "Send"])
    );
    let keys = json(server.post(&format!("{root}/listKeys"), None).await).await;
    let primary = keys["primaryKey"].as_str().unwrap().to_owned();
    assert_eq!(keys["keyName"], "RootManageSharedAccessKey");
    assert_eq!(
        keys["primaryConnectionString"],
        format!(
            "Endpoint=sb://demo-sb.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={primary}"
        )
    );
    assert!(keys["secondaryConnectionString"].is_string());
    hidden(&server, &root, &primary).await;

    let send = format!(
        "{}/queues/orders/authorizationRules/send",
        demo::SERVICE_BUS_ID
    );
    server
        .put(
            &format!("{}/queues/orders", demo::SERVICE_BUS_ID),
            json!({"properties": {}}),
        )
        .await;
    let created = server
        .put(&send, json!({"properties": {"rights": ["send"]}}))
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(json(created).await["properties"]["rights"], json!(["Send"]));
    let keys = json(server.post(&format!("{send}/listKeys"), None).await).await;
    assert!(
        keys["primaryConnectionString"]
            .as_str()
            .unwrap()
            .ends_with(";EntityPath=orders")
    );
    let response = server
        .put(&send, json!({"properties": {"rights": ["Manage"]}}))
        .await;
    expect_error(response, 400, "BadRequest").await;

    let rules = format!("{}/networkRuleSets/default", demo::SERVICE_BUS_ID);
    let set = json(server.get(&rules).await).await;
    assert_eq!(set["properties"]["ipRules"], json!([]));
    let updated = json(
        server
            .put(
                &rules,
                json!({"properties": {"defaultAction": "Deny",
                "ipRules": [{"ipMask": "20.42.0.1"}]}}),
            )
            .await,
    )
    .await;
    assert_eq!(
        updated["properties"]["ipRules"],
        json!([{"ipMask": "20.42.0.1", "action": "Allow"}])
    );
    let response = server
        .put(
            &rules,
            json!({"properties": {"ipRules": [{"ipMask": "1.2.3"}]}}),
        )
        .await;
    expect_error(response, 400, "BadRequest").await;
}

#[tokio::test]
async fn redis_keys_firewall_rules_access_policies_and_databases() {
    let server = TestServer::demo().await;
    let cache = json(server.get(demo::REDIS_ID).await).await;
    assert_eq!(
        cache["properties"]["hostName"],
        "demo-redis.redis.cache.windows.net"
    );
    assert_eq!(cache["properties"]["port"], 6379);
    assert_eq!(cache["properties"]["sslPort"], 6380);
    let keys = json(
        server
            .post(&format!("{}/listKeys", demo::REDIS_ID), None)
            .await,
    )
    .await;
    let primary = keys["primaryKey"].as_str().unwrap().to_owned();
    assert!(keys["secondaryKey"].is_string());
    hidden(&server, demo::REDIS_ID, &primary).await;

    let rule = format!("{}/firewallRules/allowweb", demo::REDIS_ID);
    let created = server
        .put(
            &rule,
            json!({"properties": {"startIP": "20.42.0.1", "endIP": "20.42.0.2"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let bad = server
        .put(
            &rule,
            json!({"properties": {"startIP": "20.42.0.3", "endIP": "20.42.0.2"}}),
        )
        .await;
    expect_error(bad, 400, "BadRequest").await;

    let assignment = format!("{}/accessPolicyAssignments/web", demo::REDIS_ID);
    let body = |policy: &str| {
        json!({"properties": {"accessPolicyName": policy,
        "objectId": "6b2f1c7e-0000-4000-8000-000000000001", "objectIdAlias": "web"}})
    };
    accepted(&server.put(&assignment, body("Data Contributor")).await);
    assert_eq!(
        json(server.get(&assignment).await).await["properties"]["accessPolicyName"],
        "Data Contributor"
    );
    let response = server.put(&assignment, body("Data Janitor")).await;
    expect_error(response, 400, "BadRequest").await;

    let db0 = format!("{}/databases/0", demo::REDIS_ID);
    let got = json(server.get(&db0).await).await;
    assert_eq!(got["id"], db0);
    assert_eq!(
        server
            .get(&format!("{}/databases/15", demo::REDIS_ID))
            .await
            .status(),
        200
    );
    for missing in ["16", "x", "01"] {
        let response = server
            .get(&format!("{}/databases/{missing}", demo::REDIS_ID))
            .await;
        expect_error(response, 404, "ResourceNotFound").await;
    }
    expect_error(server.put(&db0, json!({})).await, 405, "MethodNotAllowed").await;
}

#[tokio::test]
async fn cosmos_keys_connection_strings_and_sql_role_assignments() {
    let server = TestServer::demo().await;
    let account = json(server.get(demo::COSMOS_ACCOUNT_ID).await).await;
    assert_eq!(
        account["properties"]["documentEndpoint"],
        "https://demo-cosmos.documents.azure.com:443/"
    );
    let keys = json(
        server
            .post(&format!("{}/listKeys", demo::COSMOS_ACCOUNT_ID), None)
            .await,
    )
    .await;
    let primary = keys["primaryMasterKey"].as_str().unwrap().to_owned();
    for field in [
        "secondaryMasterKey",
        "primaryReadonlyMasterKey",
        "secondaryReadonlyMasterKey",
    ] {
        assert!(keys[field].is_string(), "{field}");
    }
    hidden(&server, demo::COSMOS_ACCOUNT_ID, &primary).await;
    let strings = json(
        server
            .post(
                &format!("{}/listConnectionStrings", demo::COSMOS_ACCOUNT_ID),
                None,
            )
            .await,
    )
    .await;
    let first = &strings["connectionStrings"][0];
    assert_eq!(
        first["connectionString"],
        format!(
            "AccountEndpoint=https://demo-cosmos.documents.azure.com:443/;AccountKey={primary};"
        )
    );
    assert_eq!(first["keyKind"], "Primary");
    assert_eq!(first["type"], "Sql");
    assert_eq!(strings["connectionStrings"].as_array().unwrap().len(), 4);

    let definitions = json(
        server
            .get(&format!("{}/sqlRoleDefinitions", demo::COSMOS_ACCOUNT_ID))
            .await,
    )
    .await;
    assert_eq!(definitions["value"].as_array().unwrap().len(), 2);
    let contributor = format!(
        "{}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002",
        demo::COSMOS_ACCOUNT_ID
    );
    let definition = json(server.get(&contributor).await).await;
    assert_eq!(
        definition["properties"]["roleName"],
        "Cosmos DB Built-in Data Contributor"
    );

    let assignment = format!(
        "{}/sqlRoleAssignments/7d3b1a2c-0000-4000-8000-000000000001",
        demo::COSMOS_ACCOUNT_ID
    );
    let body = |role: &str, scope: &str| {
        json!({"properties": {"roleDefinitionId": role,
        "scope": scope, "principalId": "6b2f1c7e-0000-4000-8000-000000000001"}})
    };
    let db_scope = format!("{}/dbs/catalog", demo::COSMOS_ACCOUNT_ID);
    accepted(&server.put(&assignment, body(&contributor, &db_scope)).await);
    let missing_role = contributor.replace("0002", "0009");
    expect_error(
        server
            .put(&assignment, body(&missing_role, &db_scope))
            .await,
        400,
        "BadRequest",
    )
    .await;
    let elsewhere = in_demo_rg("Microsoft.DocumentDB/databaseAccounts/other");
    expect_error(
        server
            .put(&assignment, body(&contributor, &elsewhere))
            .await,
        400,
        "BadRequest",
    )
    .await;
    let catalog = json(server.get(demo::COSMOS_DATABASE_ID).await).await;
    assert_eq!(catalog["properties"]["resource"]["id"], "catalog");
}

#[tokio::test]
async fn app_configuration_keys_carry_connection_strings() {
    let server = TestServer::demo().await;
    let store = json(server.get(demo::APP_CONFIG_ID).await).await;
    assert_eq!(
        store["properties"]["endpoint"],
        "https://demo-appconfig.azconfig.io"
    );
    let keys = json(
        server
            .post(&format!("{}/listKeys", demo::APP_CONFIG_ID), None)
            .await,
    )
    .await;
    let keys = keys["value"].as_array().unwrap();
    assert_eq!(keys.len(), 4);
    let read_only: Vec<bool> = keys
        .iter()
        .map(|k| k["readOnly"].as_bool().unwrap())
        .collect();
    assert_eq!(read_only, vec![false, false, true, true]);
    let first = &keys[0];
    assert_eq!(
        first["connectionString"],
        format!(
            "Endpoint=https://demo-appconfig.azconfig.io;Id={};Secret={}",
            first["id"].as_str().unwrap(),
            first["value"].as_str().unwrap()
        )
    );
    hidden(
        &server,
        demo::APP_CONFIG_ID,
        first["value"].as_str().unwrap(),
    )
    .await;
}
