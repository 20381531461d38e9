//! The HTML side: CRUD through the `/admin` forms, and the read-only public pages.

mod support;

use support::http::Multipart;
use support::{Backend, Options, TestApp, employee_json, valid_form};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_crud_via_forms() {
    let app = TestApp::start(Options::default()).await;
    let host = app.state.hostname.clone();

    let r = app.get("/admin").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("The directory is empty."));
    let r = app.get("/admin/employees/new").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains(r#"enctype="multipart/form-data""#));

    // Create.
    let form = valid_form("Margaret Hamilton").text("badges", "Leader");
    let r = app.multipart("POST", "/admin/employees/new", form).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location").unwrap(), "/admin?notice=created");
    let items = app.items().await;
    assert_eq!(items.len(), 1);
    let id = items[0]["id"].as_s().unwrap().clone();
    let admin = app.get("/admin?notice=created").await.text();
    assert!(admin.contains("Employee added.") && admin.contains("Margaret Hamilton"));
    assert!(admin.contains(&format!("/admin/employees/{id}/edit")));

    // Public pages show it, and every page shows the serving host.
    let home = app.get("/").await;
    assert_eq!(home.status, 200);
    let home = home.text();
    assert!(
        home.contains("Margaret Hamilton")
            && home.contains("Support Engineer")
            && home.contains("Dublin")
    );
    assert!(home.contains(r#"<span class="badge">Leader</span>"#));
    assert!(home.contains(&format!("Served by <b>{host}</b>")));
    let profile = app.get(&format!("/employees/{id}")).await;
    assert_eq!(profile.status, 200);
    assert!(profile.text().contains("Team Player"));

    // Edit: the form is pre-filled, the POST replaces the fields.
    let edit = app.get(&format!("/admin/employees/{id}/edit")).await.text();
    assert!(edit.contains(r#"value="Margaret Hamilton""#));
    assert!(edit.contains(r#"value="Leader" checked"#));
    let form = Multipart::default()
        .text("full_name", "Margaret H. Hamilton")
        .text("job_title", "Director of Software Engineering")
        .text("location", "Cambridge, MA")
        .text("badges", "Innovator");
    let r = app
        .multipart("POST", &format!("/admin/employees/{id}/edit"), form)
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location").unwrap(), "/admin?notice=updated");
    let profile = app.get(&format!("/employees/{id}")).await.text();
    assert!(
        profile.contains("Director of Software Engineering") && profile.contains("Cambridge, MA")
    );
    assert!(!profile.contains("Team Player"));

    // Delete: a confirmation page, then the POST.
    let confirm = app.get(&format!("/admin/employees/{id}/delete")).await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm
            .text()
            .contains(&format!(r#"action="/admin/employees/{id}/delete""#))
    );
    let r = app
        .send("POST", &format!("/admin/employees/{id}/delete"), &[], "")
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location").unwrap(), "/admin?notice=deleted");
    assert!(app.items().await.is_empty());
    let gone = app.get(&format!("/employees/{id}")).await;
    assert_eq!(gone.status, 404);
    assert!(gone.text().contains(&host), "error pages show the host too");
    assert_eq!(
        app.send("POST", &format!("/admin/employees/{id}/delete"), &[], "")
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/admin/employees/{id}/edit")).await.status,
        404
    );

    // Plain URL-encoded forms (curl -d) work as well.
    let r = app
        .send(
            "POST",
            "/admin/employees/new",
            &[("content-type", "application/x-www-form-urlencoded")],
            "full_name=Katherine+Johnson&job_title=Mathematician&location=Hampton&badges=Mentor&badges=Leader",
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(app.get("/").await.text().contains("Katherine Johnson"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_escape_user_input() {
    let app = TestApp::start(Options::default()).await;
    let r = app
        .json(
            "POST",
            "/api/employees",
            &employee_json("<script>alert('x')</script>"),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    for path in [
        "/".to_owned(),
        "/admin".to_owned(),
        format!("/employees/{id}"),
        format!("/admin/employees/{id}/edit"),
    ] {
        let page = app.get(&path).await.text();
        assert!(!page.contains("<script>"), "{path} rendered raw markup");
        // maud escapes `&<>"`; a `'` is harmless as every attribute is double-quoted.
        assert!(
            page.contains("&lt;script&gt;alert('x')&lt;/script&gt;"),
            "{path}"
        );
    }
    // Arbitrary notice text is not reflected.
    let page = app.get("/admin?notice=%3Cb%3Ehi").await.text();
    assert!(!page.contains("<b>hi") && !page.contains("class=\"notice\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_side_is_read_only() {
    // Method checks happen before any AWS call, so no emulator is needed.
    let app = TestApp::start(Options {
        backend: Backend::Unreachable,
        ..Options::default()
    })
    .await;
    for (method, path) in [
        ("POST", "/"),
        ("POST", "/employees/abc"),
        ("DELETE", "/employees/abc"),
        ("PUT", "/employees/abc"),
    ] {
        let r = app.send(method, path, &[], "").await;
        assert_eq!(r.status, 405, "{method} {path}");
    }
    let r = app.get("/no/such/page").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains(&app.state.hostname));
}
