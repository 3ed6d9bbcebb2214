//! Microsoft.Authorization: role assignments at every scope kind, their conflicts and
//! validation, list filters, and the built-in role definitions.

use serde_json::{Value, json};
use tether_mock_azure::demo;

use crate::support::{TestServer, expect_error, json};

const BLOB_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const PRINCIPAL: &str = "6b2f1c7e-0000-4000-8000-000000000001";

fn role_id(role: &str) -> String {
    format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        demo::SUBSCRIPTION_ID
    )
}

fn assignment(scope: &str, name: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
}

fn body(role: &str, principal: &str) -> Value {
    json!({"properties": {"roleDefinitionId": role_id(role), "principalId": principal,
        "principalType": "ServicePrincipal"}})
}

#[tokio::test]
async fn role_assignments_work_at_every_scope() {
    let server = TestServer::demo().await;
    let before = server.state().await;
    let subscription = format!("/subscriptions/{}", demo::SUBSCRIPTION_ID);
    let blob = format!("{}/blobServices/default", demo::STORAGE_ACCOUNT_ID);
    let scopes = [
        subscription.as_str(),
        demo::RESOURCE_GROUP_ID,
        demo::STORAGE_ACCOUNT_ID,
        blob.as_str(),
    ];
    let mut ids = Vec::new();
    for (i, scope) in scopes.iter().enumerate() {
        let name = format!("00000000-0000-4000-8000-00000000000{i}");
        let path = assignment(scope, &name);
        let created = server.put(&path, body(READER, PRINCIPAL)).await;
        assert_eq!(created.status(), 201, "{scope}");
        let created = json(created).await;
        assert_eq!(created["id"], path);
        assert_eq!(created["type"], "Microsoft.Authorization/roleAssignments");
        assert_eq!(created["properties"]["scope"], *scope);
        assert_eq!(created["properties"]["roleDefinitionId"], role_id(READER));
        assert_eq!(created["properties"]["principalType"], "ServicePrincipal");
        assert_eq!(json(server.get(&path).await).await, created);
        ids.push(path);
    }
    // The same PUT again is idempotent.
    assert_eq!(
        server.put(&ids[2], body(READER, PRINCIPAL)).await.status(),
        201
    );

    // A Redis database scope (computed child) resolves too.
    let db0 = format!("{}/databases/0", demo::REDIS_ID);
    let path = assignment(&db0, "00000000-0000-4000-8000-000000000009");
    assert_eq!(
        server.put(&path, body(READER, PRINCIPAL)).await.status(),
        201
    );
    assert_eq!(server.delete(&path).await.status(), 200);

    // Listing: at, above and below by default; atScope() keeps at and above.
    let list = |scope: &str, filter: Option<&str>| {
        let query = filter
            .map(|f| format!("?$filter={}", f.replace(' ', "%20")))
            .unwrap_or_default();
        format!("{scope}/providers/Microsoft.Authorization/roleAssignments{query}")
    };
    let names = |v: Value| -> Vec<String> {
        let mut names: Vec<String> = v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let all = names(json(server.get(&list(demo::RESOURCE_GROUP_ID, None)).await).await);
    assert_eq!(all.len(), 4);
    let at_scope = names(
        json(
            server
                .get(&list(demo::STORAGE_ACCOUNT_ID, Some("atScope()")))
                .await,
        )
        .await,
    );
    assert_eq!(at_scope.len(), 3, "{at_scope:?}");
    let other = "6b2f1c7e-0000-4000-8000-000000000002";
    let filter = format!("principalId eq '{other}'");
    let none = names(
        json(
            server
                .get(&list(demo::RESOURCE_GROUP_ID, Some(&filter)))
                .await,
        )
        .await,
    );
    assert!(none.is_empty());
    let response = server
        .get(&list(demo::RESOURCE_GROUP_ID, Some("roleName eq 'x'")))
        .await;
    expect_error(response, 400, "UnsupportedQuery").await;

    for id in &ids {
        assert_eq!(server.delete(id).await.status(), 200);
        assert_eq!(server.delete(id).await.status(), 204);
    }
    assert_eq!(
        server.state().await,
        before,
        "created then deleted leaves no trace"
    );
}

#[tokio::test]
async fn role_assignments_are_validated_like_azure() {
    let server = TestServer::demo().await;
    let scope = demo::STORAGE_ACCOUNT_ID;
    let first = assignment(scope, "11111111-0000-4000-8000-000000000001");
    assert_eq!(
        server
            .put(&first, body(BLOB_CONTRIBUTOR, PRINCIPAL))
            .await
            .status(),
        201
    );

    let second = assignment(scope, "11111111-0000-4000-8000-000000000002");
    let conflict = server.put(&second, body(BLOB_CONTRIBUTOR, PRINCIPAL)).await;
    let error = expect_error(conflict, 409, "RoleAssignmentExists").await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("11111111-0000-4000-8000-000000000001")
    );
    // Same role and principal at another scope is fine.
    let elsewhere = assignment(
        demo::RESOURCE_GROUP_ID,
        "11111111-0000-4000-8000-000000000003",
    );
    assert_eq!(
        server
            .put(&elsewhere, body(BLOB_CONTRIBUTOR, PRINCIPAL))
            .await
            .status(),
        201
    );

    let update = server.put(&first, body(READER, PRINCIPAL)).await;
    expect_error(update, 400, "RoleAssignmentUpdateNotPermitted").await;
    let missing_role = server
        .put(
            &second,
            body("00000000-0000-0000-0000-00000000dead", PRINCIPAL),
        )
        .await;
    expect_error(missing_role, 400, "RoleDefinitionDoesNotExist").await;
    expect_error(
        server
            .put(&assignment(scope, "not-a-guid"), body(READER, PRINCIPAL))
            .await,
        400,
        "InvalidRoleAssignmentId",
    )
    .await;
    expect_error(
        server.put(&second, body(READER, "nobody")).await,
        400,
        "InvalidPrincipalId",
    )
    .await;
    let missing_scope = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/nope",
        demo::RESOURCE_GROUP_ID
    );
    expect_error(
        server
            .put(
                &assignment(&missing_scope, "11111111-0000-4000-8000-000000000004"),
                body(READER, PRINCIPAL),
            )
            .await,
        404,
        "ResourceNotFound",
    )
    .await;
    let missing_rg = format!(
        "/subscriptions/{}/resourceGroups/nope",
        demo::SUBSCRIPTION_ID
    );
    expect_error(
        server
            .put(
                &assignment(&missing_rg, "11111111-0000-4000-8000-000000000005"),
                body(READER, PRINCIPAL),
            )
            .await,
        404,
        "ResourceGroupNotFound",
    )
    .await;
    // Deleting the scope deletes its assignments.
    assert_eq!(server.delete(demo::STORAGE_ACCOUNT_ID).await.status(), 200);
    assert!(server.state().await.get(first.to_lowercase()).is_none());
}

#[tokio::test]
async fn built_in_role_definitions_have_azure_ids() {
    let server = TestServer::demo().await;
    let root = format!("/providers/Microsoft.Authorization/roleDefinitions/{BLOB_CONTRIBUTOR}");
    let definition = json(server.get(&root).await).await;
    assert_eq!(definition["id"], root);
    assert_eq!(definition["name"], BLOB_CONTRIBUTOR);
    assert_eq!(
        definition["properties"]["roleName"],
        "Storage Blob Data Contributor"
    );
    assert_eq!(definition["properties"]["type"], "BuiltInRole");
    let at_sub = json(server.get(&role_id(BLOB_CONTRIBUTOR)).await).await;
    assert_eq!(at_sub["id"], role_id(BLOB_CONTRIBUTOR));

    let filtered = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName%20eq%20'Key%20Vault%20Secrets%20User'",
        demo::KEY_VAULT_ID
    );
    let listed = json(server.get(&filtered).await).await;
    let listed = listed["value"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "4633458b-17de-408a-b874-0445c86b69e6");
    let all = json(
        server
            .get(&format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions",
                demo::SUBSCRIPTION_ID
            ))
            .await,
    )
    .await;
    let names: Vec<&str> = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["properties"]["roleName"].as_str().unwrap())
        .collect();
    for wanted in [
        "Owner",
        "Contributor",
        "Reader",
        "User Access Administrator",
        "Azure Service Bus Data Sender",
        "App Configuration Data Reader",
        "Redis Cache Contributor",
        "DocumentDB Account Contributor",
    ] {
        assert!(names.contains(&wanted), "{wanted}");
    }
    let response = server
        .get("/providers/Microsoft.Authorization/roleDefinitions/00000000-0000-0000-0000-00000000dead")
        .await;
    expect_error(response, 404, "RoleDefinitionDoesNotExist").await;
}
