//! The write side is closed to strangers: every write without the credential, or
//! with a wrong one, gets 401 and leaves the table and the bucket as they were. The
//! credential comes from moto's Parameter Store, as it does from SSM on EC2.

mod support;

use base64::Engine;
use support::{Options, TestApp, employee_json, png, valid_form};

/// Every request that can write, as (method, path, content type, body), against an
/// employee `id` that exists.
fn writes(id: &str) -> Vec<(&'static str, String, String, Vec<u8>)> {
    let json = employee_json("Mallory").to_string().into_bytes();
    let (form_ct, form) = valid_form("Mallory")
        .file("photo", "face.png", Some("image/png"), &png(40, 40))
        .finish();
    let ct_json = "application/json".to_owned();
    vec![
        (
            "POST",
            "/api/employees".into(),
            ct_json.clone(),
            json.clone(),
        ),
        (
            "POST",
            "/api/employees".into(),
            form_ct.clone(),
            form.clone(),
        ),
        (
            "PUT",
            format!("/api/employees/{id}"),
            ct_json.clone(),
            json.clone(),
        ),
        ("DELETE", format!("/api/employees/{id}"), ct_json, vec![]),
        (
            "POST",
            "/admin/employees/new".into(),
            form_ct.clone(),
            form.clone(),
        ),
        (
            "POST",
            format!("/admin/employees/{id}/edit"),
            form_ct.clone(),
            form,
        ),
        (
            "POST",
            format!("/admin/employees/{id}/delete"),
            form_ct,
            vec![],
        ),
    ]
}

async fn snapshot(app: &TestApp) -> (String, Vec<String>) {
    let mut items: Vec<String> = app
        .items()
        .await
        .iter()
        .map(|i| {
            format!(
                "{:?}",
                i.iter().collect::<std::collections::BTreeMap<_, _>>()
            )
        })
        .collect();
    items.sort();
    let mut keys = app.object_keys().await;
    keys.sort();
    (items.join("\n"), keys)
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_or_with_a_wrong_credential_change_nothing() {
    let app = TestApp::start(Options::default()).await;
    // One employee with a photo, written with the credential.
    let (ct, body) = valid_form("Ada Lovelace")
        .file("photo", "ada.png", Some("image/png"), &png(64, 64))
        .finish();
    let r = app
        .send("POST", "/api/employees", &[("content-type", &ct)], body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let before = snapshot(&app).await;
    assert_eq!(before.1.len(), 1, "the photo is stored");

    let wrong = [
        None,
        Some("Bearer not-the-token".to_owned()),
        Some(basic("admin", "not-the-token")),
        // The right secret in a scheme the app does not take.
        Some(format!("Token {}", app.token)),
        // A prefix of the right one.
        Some(format!("Bearer {}", &app.token[..app.token.len() - 1])),
    ];
    for credential in &wrong {
        for (method, path, ct, body) in writes(&id) {
            let mut headers = vec![("content-type", ct.as_str())];
            if let Some(c) = credential {
                headers.push(("authorization", c));
            }
            let r = app.send_anonymous(method, &path, &headers, body).await;
            assert_eq!(r.status, 401, "{method} {path} with {credential:?}");
            let challenge = r.header("www-authenticate").unwrap_or_default();
            let scheme = if path.starts_with("/api/") {
                "Bearer"
            } else {
                "Basic"
            };
            assert!(challenge.starts_with(scheme), "{path}: {challenge}");
        }
    }
    assert_eq!(snapshot(&app).await, before, "a refused write changed data");

    // The admin pages ask a browser for the password before showing any form.
    for page in ["/admin", "/admin/employees/new"] {
        let r = app.send_anonymous("GET", page, &[], vec![]).await;
        assert_eq!(r.status, 401, "{page}");
    }

    // Reads stay public.
    for page in ["/", "/api/employees", &format!("/api/employees/{id}")] {
        let r = app.send_anonymous("GET", page, &[], vec![]).await;
        assert_eq!(r.status, 200, "{page}");
    }

    // The right credential, either scheme, on either side.
    let r = app
        .send_anonymous(
            "GET",
            "/admin",
            &[("authorization", &basic("anyone", &app.token))],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200);
    let bearer = format!("Bearer {}", app.token);
    let r = app
        .send_anonymous(
            "DELETE",
            &format!("/api/employees/{id}"),
            &[("authorization", &bearer)],
            vec![],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(app.items().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_credential_replaces_the_old_one_within_seconds() {
    let app = TestApp::start(Options::default()).await;
    let key = app.token_verifier.clone().expect("moto backend");
    let old = basic("admin", &app.token);
    let r = app
        .send_anonymous("GET", "/admin", &[("authorization", &old)], vec![])
        .await;
    assert_eq!(r.status, 200, "the old credential works before rotation");

    let new_token = support::unique("rotated-token");
    support::moto::put_verifier(&app.endpoint, &app.bucket, &key, &new_token).await;
    let new = basic("admin", &new_token);
    // The app re-reads at most every few seconds when it sees a credential it does
    // not know: poll a read-only admin page until the new one is taken.
    let deadline = std::time::Instant::now() + stack_app::auth::REFRESH;
    loop {
        let r = app
            .send_anonymous("GET", "/admin", &[("authorization", &new)], vec![])
            .await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 401);
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated credential was not taken within {:?}",
            stack_app::auth::REFRESH
        );
        // A poll interval, not a synchronization: the loop ends on the condition.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let r = app
        .send_anonymous("GET", "/admin", &[("authorization", &old)], vec![])
        .await;
    assert_eq!(r.status, 401, "the old credential stops working");
}
