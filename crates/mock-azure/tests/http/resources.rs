//! Generic resource semantics: casing, replace/merge/delete, scopes, collections, resource groups.

use serde_json::json;
use tether_mock_azure::demo;

use crate::support::{TestServer, expect_error, in_demo_rg, json};

#[tokio::test]
async fn generic_resources_keep_creation_casing_and_match_case_insensitively() {
    let server = TestServer::demo().await;
    let path = in_demo_rg("Contoso.Things/Widgets/Widget-One");
    let body = json!({"location": "West US", "tags": {"a": "1"}, "properties": {"size": 3, "color": "red"}, "ignored": true});
    let created = server.put(&path, body.clone()).await;
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    assert_eq!(created["id"], path);
    assert_eq!(created["name"], "Widget-One");
    assert_eq!(created["type"], "Contoso.Things/Widgets");
    assert_eq!(created["location"], "westus");
    assert!(created.get("ignored").is_none());

    // Another casing and duplicate slashes address the same resource; the stored casing wins.
    let shouted = format!(
        "/{}",
        in_demo_rg("CONTOSO.things/widgets/WIDGET-ONE").to_uppercase()
    );
    let shouted = shouted.replace("/PROVIDERS/", "//providers//");
    let got = server.get(&shouted).await;
    assert_eq!(got.status(), 200);
    assert_eq!(json(got).await, created);

    let replaced = server
        .put(
            &shouted,
            json!({"location": "westus", "properties": {"size": 4}}),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let replaced = json(replaced).await;
    assert_eq!(replaced["id"], path);
    assert_eq!(replaced["properties"], json!({"size": 4}));
    assert!(
        replaced.get("tags").is_none(),
        "PUT replaces the whole resource"
    );

    let patched = server
        .patch(
            &path,
            json!({"tags": {"b": "2"}, "properties": {"size": null, "shape": "round"}, "name": "x"}),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let patched = json(patched).await;
    assert_eq!(patched["name"], "Widget-One");
    assert_eq!(patched["tags"], json!({"b": "2"}));
    assert_eq!(patched["properties"], json!({"shape": "round"}));
    assert_eq!(json(server.get(&path).await).await, patched);

    assert_eq!(server.delete(&shouted).await.status(), 200);
    assert_eq!(server.delete(&path).await.status(), 204);
    let body = expect_error(server.get(&path).await, 404, "ResourceNotFound").await;
    assert_eq!(
        body["error"]["message"],
        "The Resource 'Contoso.Things/Widgets/Widget-One' under resource group 'rg-demo' was not found."
    );
    expect_error(
        server.patch(&path, json!({})).await,
        404,
        "ResourceNotFound",
    )
    .await;
}

#[tokio::test]
async fn scopes_are_checked() {
    let server = TestServer::demo().await;
    let missing_rg = format!(
        "/subscriptions/{}/resourceGroups/rg-missing/providers/Microsoft.Web/sites/x",
        demo::SUBSCRIPTION_ID
    );
    let response = server.put(&missing_rg, json!({"location": "westus"})).await;
    expect_error(response, 404, "ResourceGroupNotFound").await;

    let orphan = in_demo_rg("Microsoft.DBforPostgreSQL/flexibleServers/nope/databases/db");
    expect_error(
        server.put(&orphan, json!({})).await,
        404,
        "ParentResourceNotFound",
    )
    .await;
    expect_error(server.get(&orphan).await, 404, "ParentResourceNotFound").await;

    let response = server
        .arm(
            reqwest::Method::PUT,
            &in_demo_rg("Contoso.Things/widgets/w"),
        )
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "InvalidRequestContent").await;
    let site = in_demo_rg("Microsoft.Web/sites/no-location");
    expect_error(server.put(&site, json!({})).await, 400, "LocationRequired").await;
}

#[tokio::test]
async fn collections_list_direct_children() {
    let server = TestServer::demo().await;
    let databases = json(
        server
            .get(&format!("{}/databases", demo::PG_SERVER_ID.to_uppercase()))
            .await,
    )
    .await;
    let mut ids: Vec<&str> = databases["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![demo::PG_DATABASE_2_ID, demo::PG_DATABASE_ID]);

    let sites = json(server.get(&in_demo_rg("microsoft.web/SITES")).await).await;
    assert_eq!(sites["value"].as_array().unwrap().len(), 3);
    let rules = json(
        server
            .get(&format!("{}/firewallRules", demo::PG_SERVER_ID))
            .await,
    )
    .await;
    assert_eq!(rules, json!({"value": []}));
}

#[tokio::test]
async fn resource_groups_are_created_and_deleted_with_their_contents() {
    let server = TestServer::start(tether_mock_azure::Config {
        accepted_tokens: vec![crate::support::TEST_TOKEN.to_owned()],
        seed: tether_mock_azure::Seed::Empty,
        ..tether_mock_azure::Config::demo()
    })
    .await;
    assert_eq!(server.state().await, json!({}));
    let sub = "01234567-89ab-4cde-8f01-23456789abcd";
    let rg = format!("/subscriptions/{sub}/resourceGroups/My-RG");
    expect_error(server.get(&rg).await, 404, "ResourceGroupNotFound").await;
    expect_error(server.put(&rg, json!({})).await, 400, "LocationRequired").await;
    let created = server.put(&rg, json!({"location": "eastus"})).await;
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    assert_eq!(created["type"], "Microsoft.Resources/resourceGroups");
    assert_eq!(created["name"], "My-RG");
    assert_eq!(
        server
            .put(&rg, json!({"location": "eastus"}))
            .await
            .status(),
        200
    );

    let widget = format!("{rg}/providers/Contoso.Things/widgets/w1");
    assert_eq!(server.put(&widget, json!({})).await.status(), 201);
    assert_eq!(
        server
            .put(&format!("{widget}/parts/p1"), json!({"properties": {}}))
            .await
            .status(),
        201
    );
    let list = json(
        server
            .get(&format!("/subscriptions/{sub}/resourcegroups"))
            .await,
    )
    .await;
    assert_eq!(list["value"][0]["id"], rg);
    assert_eq!(server.state().await.as_object().unwrap().len(), 3);

    assert_eq!(server.delete(&rg.to_lowercase()).await.status(), 200);
    assert_eq!(server.state().await, json!({}));
    assert_eq!(server.delete(&rg).await.status(), 204);
}

#[tokio::test]
async fn a_state_file_keeps_resources_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mock.json");
    let config = || {
        let mut config = tether_mock_azure::Config::demo();
        config
            .accepted_tokens
            .push(crate::support::TEST_TOKEN.to_owned());
        config.state_file = Some(file.clone());
        config
    };
    let rg = format!(
        "/subscriptions/{}/resourceGroups/kept",
        demo::SUBSCRIPTION_ID
    );
    {
        let server = TestServer::start(config()).await;
        assert!(!file.exists(), "nothing is written before a change");
        assert_eq!(
            server
                .put(&rg, json!({"location": "westus"}))
                .await
                .status(),
            201
        );
    }
    assert!(file.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the state holds secrets: owner only");
    }
    let restarted = TestServer::start(config()).await;
    let state = restarted.state().await;
    assert!(
        state.get(rg.to_ascii_lowercase()).is_some(),
        "the new resource group survived"
    );
    assert!(
        state.get(demo::WEB_APP_ID.to_ascii_lowercase()).is_some(),
        "so did the seed"
    );

    std::fs::write(&file, "not json").unwrap();
    let reseeded = TestServer::start(config()).await;
    assert!(
        reseeded
            .state()
            .await
            .get(rg.to_ascii_lowercase())
            .is_none(),
        "an unreadable file falls back to the seed"
    );
}
