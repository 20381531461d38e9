//! JSON API CRUD and the read cache, against a real moto server.

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use support::{Options, TestApp, employee_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_crud_round_trip() {
    let app = TestApp::start(Options::default()).await;

    let r = app.get("/api/employees").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["count"], 0);

    let r = app
        .json("POST", "/api/employees", &employee_json("  Ada Lovelace "))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(
        r.header("location").unwrap(),
        format!("/api/employees/{id}")
    );
    assert_eq!(created["full_name"], "Ada Lovelace", "names are trimmed");
    assert_eq!(created["badges"], json!(["Mentor", "Innovator"]));
    assert!(created["photo_key"].is_null() && created["photo_url"].is_null());

    // Stored in the table as sent.
    let items = app.items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"].as_s().unwrap(), &id);
    assert_eq!(items[0]["job_title"].as_s().unwrap(), "Solutions Architect");

    let r = app.get(&format!("/api/employees/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["location"], "Seattle");

    let r = app
        .json(
            "PUT",
            &format!("/api/employees/{id}"),
            &json!({"full_name": "Ada King", "job_title": "Analyst", "location": "London", "badges": ["Leader"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["job_title"], "Analyst");

    let r = app.get("/api/employees").await;
    let list = r.json();
    assert_eq!(list["count"], 1);
    assert_eq!(list["employees"][0]["full_name"], "Ada King");
    assert_eq!(list["employees"][0]["badges"], json!(["Leader"]));

    let r = app
        .send("DELETE", &format!("/api/employees/{id}"), &[], "")
        .await;
    assert_eq!(r.status, 204);
    assert!(app.items().await.is_empty());
    assert_eq!(app.get(&format!("/api/employees/{id}")).await.status, 404);
    assert_eq!(
        app.send("DELETE", &format!("/api/employees/{id}"), &[], "")
            .await
            .status,
        404
    );

    // Updating a missing employee is a 404 and does not create it.
    let r = app
        .json(
            "PUT",
            &format!("/api/employees/{id}"),
            &employee_json("Ghost"),
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(app.items().await.is_empty());

    // Ids that cannot exist never reach the table; unknown API routes are JSON 404s.
    assert_eq!(app.get("/api/employees/..%2Fetc").await.status, 404);
    let r = app.get("/api/nothing").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_then_invalidates_on_write() {
    let app = TestApp::start(Options::default()).await;
    let counters = |info: &serde_json::Value| {
        (
            info["cache"]["hits"].as_u64().unwrap(),
            info["cache"]["misses"].as_u64().unwrap(),
        )
    };

    assert_eq!(app.get("/api/employees").await.json()["count"], 0);
    assert_eq!(counters(&app.info().await), (0, 1));
    assert_eq!(app.get("/api/employees").await.json()["count"], 0);
    assert_eq!(
        counters(&app.info().await),
        (1, 1),
        "second read is served from the cache"
    );

    // An item written behind the app's back stays invisible while the cached list is fresh...
    app.ddb
        .put_item()
        .table_name(&app.table)
        .item("id", AttributeValue::S("direct-1".into()))
        .item("full_name", AttributeValue::S("Written Directly".into()))
        .item("job_title", AttributeValue::S("Ghost".into()))
        .item("location", AttributeValue::S("Nowhere".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/employees").await.json()["count"],
        0,
        "served from the cache"
    );
    assert_eq!(counters(&app.info().await), (2, 1));

    // ...until this instance writes, which drops the cache.
    let r = app
        .json("POST", "/api/employees", &employee_json("Grace Hopper"))
        .await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let list = app.get("/api/employees").await.json();
    assert_eq!(list["count"], 2, "the write invalidated the cached list");
    assert_eq!(counters(&app.info().await), (2, 2));

    assert_eq!(app.get(&format!("/api/employees/{id}")).await.status, 200);
    assert_eq!(app.get(&format!("/api/employees/{id}")).await.status, 200);
    assert_eq!(
        counters(&app.info().await),
        (3, 3),
        "item read: miss then hit"
    );

    // Update through the app: the cached item must not be served afterwards.
    let mut changed = employee_json("Grace Hopper");
    changed["job_title"] = json!("Rear Admiral");
    assert_eq!(
        app.json("PUT", &format!("/api/employees/{id}"), &changed)
            .await
            .status,
        200
    );
    let r = app.get(&format!("/api/employees/{id}")).await;
    assert_eq!(r.json()["job_title"], "Rear Admiral");
    assert_eq!(counters(&app.info().await), (3, 4));

    let metrics = app.get("/metrics").await.text();
    assert!(metrics.contains("\ncache_hits_total 3\n"), "{metrics}");
    assert!(metrics.contains("\ncache_misses_total 4\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_ttl_disables_the_cache() {
    let app = TestApp::start(Options {
        cache_ttl_secs: 0,
        ..Options::default()
    })
    .await;
    let r = app
        .json("POST", "/api/employees", &employee_json("Alan Turing"))
        .await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/api/employees/{id}")).await.status, 200);
        assert_eq!(app.get("/api/employees").await.json()["count"], 1);
    }
    let info = app.info().await;
    assert_eq!(info["cache"]["hits"], 0);
    assert_eq!(info["cache"]["misses"], 6);
    assert_eq!(info["cache"]["ttl_secs"], 0);
}
