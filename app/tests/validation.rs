//! Every validation rule: each invalid write gets a 400 naming the field, and
//! neither the table nor the bucket is touched.

mod support;

use serde_json::{Value, json};
use support::http::Multipart;
use support::{Options, TestApp, employee_json, png, valid_form};

/// POSTs `body` as JSON, expects 400 with `field` message containing `needle`.
async fn rejects_json(app: &TestApp, body: Value, field: &str, needle: &str) {
    let r = app.json("POST", "/api/employees", &body).await;
    assert_eq!(r.status, 400, "{body} -> {}", r.text());
    let msg = r.json()["errors"][field].as_str().map(str::to_owned);
    assert!(
        msg.as_deref().is_some_and(|m| m.contains(needle)),
        "{body}: errors.{field} = {msg:?}, want {needle:?}; got {}",
        r.text()
    );
}

async fn rejects_multipart(app: &TestApp, form: Multipart, field: &str, needle: &str) {
    let r = app.multipart("POST", "/api/employees", form).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let errors = &r.json()["errors"];
    let msg = errors[field].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "errors.{field} = {msg:?}, want {needle:?}; all: {errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_field_rules() {
    let app = TestApp::start(Options::default()).await;
    for field in ["full_name", "job_title", "location"] {
        let with = |v: Value| {
            let mut b = employee_json("Valid Name");
            b[field] = v;
            b
        };
        let mut missing = employee_json("Valid Name");
        missing.as_object_mut().unwrap().remove(field);
        rejects_json(&app, missing, field, "is required").await;
        rejects_json(&app, with(json!("")), field, "is required").await;
        rejects_json(&app, with(json!("   \t ")), field, "is required").await;
        rejects_json(
            &app,
            with(json!("x".repeat(101))),
            field,
            "at most 100 characters",
        )
        .await;
        rejects_json(
            &app,
            with(json!("bad\u{0}value")),
            field,
            "control characters",
        )
        .await;
        rejects_json(&app, with(json!(42)), field, "must be a string").await;
    }
    // All errors are reported at once.
    let r = app.json("POST", "/api/employees", &json!({})).await;
    let errors = r.json()["errors"].clone();
    assert_eq!(errors.as_object().unwrap().len(), 3, "{errors}");

    // Bodies that are not an employee object at all.
    let r = app
        .send(
            "POST",
            "/api/employees",
            &[("content-type", "application/json")],
            "{nope",
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["errors"]["body"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    rejects_json(&app, json!(["a list"]), "body", "JSON object").await;
    let r = app
        .send(
            "POST",
            "/api/employees",
            &[("content-type", "text/plain")],
            "hello",
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["errors"]["body"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );

    // The same rules guard updates.
    app.assert_untouched().await;
    let r = app
        .json("POST", "/api/employees", &employee_json(&"é".repeat(100)))
        .await;
    assert_eq!(
        r.status,
        201,
        "100 characters is the limit, not bytes: {}",
        r.text()
    );
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = app
        .json(
            "PUT",
            &format!("/api/employees/{id}"),
            &json!({"full_name": "", "job_title": "a", "location": "b"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"]["full_name"], "is required");
    let items = app.items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["full_name"].as_s().unwrap(),
        &"é".repeat(100),
        "failed update changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badge_rules() {
    let app = TestApp::start(Options::default()).await;
    let with = |v: Value| {
        let mut b = employee_json("Valid Name");
        b["badges"] = v;
        b
    };
    rejects_json(
        &app,
        with(json!(["Mentor", "Wizard"])),
        "badges",
        "unknown badge \"Wizard\"",
    )
    .await;
    rejects_json(&app, with(json!(["mentor"])), "badges", "unknown badge").await;
    rejects_json(
        &app,
        with(json!(["Leader", "Leader"])),
        "badges",
        "duplicate badge \"Leader\"",
    )
    .await;
    rejects_json(&app, with(json!("Mentor")), "badges", "list of strings").await;
    rejects_json(&app, with(json!([1, 2])), "badges", "list of strings").await;
    let form = valid_form("Valid Name").text("badges", "Team Player");
    rejects_multipart(&app, form, "badges", "duplicate").await;
    app.assert_untouched().await;

    // Valid badges are stored in the canonical order, and none is fine too.
    let r = app
        .json(
            "POST",
            "/api/employees",
            &with(json!(["Security Champion", "Mentor"])),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["badges"], json!(["Mentor", "Security Champion"]));
    let r = app.json("POST", "/api/employees", &with(json!([]))).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["badges"], json!([]));
    assert_eq!(app.items().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_rules() {
    let app = TestApp::start(Options::default()).await;
    let good = png(40, 30);
    let form = || valid_form("Photo Person");

    rejects_multipart(
        &app,
        form().file("photo", "a.txt", Some("text/plain"), &good),
        "photo",
        "JPEG, PNG, GIF or WebP",
    )
    .await;
    rejects_multipart(
        &app,
        form().file("photo", "a.png", None, &good),
        "photo",
        "JPEG, PNG, GIF or WebP",
    )
    .await;
    rejects_multipart(
        &app,
        form().file("photo", "a.png", Some("image/png"), b"not an image"),
        "photo",
        "could not be decoded",
    )
    .await;
    rejects_multipart(
        &app,
        form().file("photo", "a.png", Some("image/png"), b""),
        "photo",
        "is empty",
    )
    .await;
    // An allowed type this build cannot decode is refused, not stored blindly.
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    rejects_multipart(
        &app,
        form().file("photo", "a.gif", Some("image/gif"), gif),
        "photo",
        "could not be decoded",
    )
    .await;
    // Declared PNG but JPEG-looking garbage: decoding is what counts.
    rejects_multipart(
        &app,
        form().file(
            "photo",
            "a.jpg",
            Some("image/jpeg"),
            &good[..good.len() / 2],
        ),
        "photo",
        "could not be decoded",
    )
    .await;

    // Size: one byte over 5 MiB, and a body far over the limit.
    let mut big = good.clone();
    big.resize(5 * 1024 * 1024 + 1, 0);
    rejects_multipart(
        &app,
        form().file("photo", "big.png", Some("image/png"), &big),
        "photo",
        "at most 5 MiB",
    )
    .await;
    big.resize(7 * 1024 * 1024, 0);
    rejects_multipart(
        &app,
        form().file("photo", "huge.png", Some("image/png"), &big),
        "photo",
        "at most 5 MiB",
    )
    .await;

    // A good photo with a bad field: nothing is uploaded.
    let bad_name = Multipart::default()
        .text("full_name", "")
        .text("job_title", "Engineer")
        .text("location", "Oslo")
        .file("photo", "ok.png", Some("image/png"), &good);
    rejects_multipart(&app, bad_name, "full_name", "is required").await;

    // Photos cannot be set through JSON.
    let mut body = employee_json("Json Photo");
    body["photo_key"] = json!("photos/someone-else.jpg");
    rejects_json(&app, body, "photo", "multipart").await;

    app.assert_untouched().await;

    // Exactly 5 MiB is allowed when it decodes: a valid PNG padded with trailing bytes.
    let mut padded = good.clone();
    padded.resize(5 * 1024 * 1024, 0);
    let r = app
        .multipart(
            "POST",
            "/api/employees",
            form().file("photo", "p.png", Some("image/png"), &padded),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(app.object_keys().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_form_reshows_errors() {
    let app = TestApp::start(Options::default()).await;
    let form = Multipart::default()
        .text("full_name", " ")
        .text("job_title", "Chief <Tinkerer>")
        .text("location", "x".repeat(150).as_str())
        .text("badges", "Mentor")
        .text("badges", "Wizard")
        .file("photo", "a.txt", Some("text/plain"), b"hello");
    let r = app.multipart("POST", "/admin/employees/new", form).await;
    assert_eq!(r.status, 400);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let page = r.text();
    assert!(
        page.contains(r#"<div class="error" id="full_name-error">is required</div>"#),
        "{page}"
    );
    assert!(page.contains(r#"id="location-error">must be at most 100 characters (got 150)"#));
    assert!(page.contains(r#"id="badges-error">unknown badge &quot;Wizard&quot;"#));
    assert!(page.contains(r#"id="photo-error">must be a JPEG, PNG, GIF or WebP image"#));
    assert!(
        !page.contains("job_title-error"),
        "valid fields carry no error"
    );
    // The submitted values are kept (escaped) so the user can fix them.
    assert!(page.contains(r#"value="Chief &lt;Tinkerer&gt;""#));
    assert!(page.contains(r#"value="Mentor" checked"#));
    assert!(page.contains(&app.state.hostname));
    app.assert_untouched().await;

    // Editing with an invalid value re-shows the edit form and changes nothing.
    let id = app
        .json("POST", "/api/employees", &employee_json("Keep Me"))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let form = valid_form("").text("badges", "Mentor");
    let r = app
        .multipart("POST", &format!("/admin/employees/{id}/edit"), form)
        .await;
    assert_eq!(r.status, 400);
    let page = r.text();
    assert!(page.contains(&format!(r#"action="/admin/employees/{id}/edit""#)));
    assert!(page.contains(r#"id="full_name-error">is required"#));
    let items = app.items().await;
    assert_eq!(items[0]["full_name"].as_s().unwrap(), "Keep Me");
}
