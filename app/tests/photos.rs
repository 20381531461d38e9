//! Photo upload: thumbnail in the bucket, presigned link served by moto,
//! replacement and removal clean up the old object.

mod support;

use serde_json::json;
use support::http::{self, Multipart};
use support::{Options, TestApp, png, valid_form};

fn decode(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory(bytes).expect("an image")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_thumbnail_presign_replace_remove() {
    let app = TestApp::start(Options::default()).await;

    let form =
        valid_form("Photo Person").file("photo", "me.png", Some("image/png"), &png(600, 400));
    let r = app.multipart("POST", "/api/employees", form).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["photo_key"].as_str().unwrap().to_owned();
    assert!(
        key.starts_with(&format!("photos/{id}-")) && key.ends_with(".jpg"),
        "{key}"
    );
    assert_eq!(app.object_keys().await, vec![key.clone()]);

    // The stored object is a JPEG thumbnail, at most 256 px on its longest side.
    let obj = app
        .s3
        .get_object()
        .bucket(&app.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(obj.content_type(), Some("image/jpeg"));
    let stored = obj.body.collect().await.unwrap().into_bytes();
    assert_eq!(
        image::guess_format(&stored).unwrap(),
        image::ImageFormat::Jpeg
    );
    let thumb = decode(&stored);
    assert_eq!((thumb.width(), thumb.height()), (256, 171));

    // The presigned link points at the emulator and serves the image over HTTP.
    let url = created["photo_url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/{}/{key}?", app.endpoint, app.bucket)),
        "{url}"
    );
    assert!(
        url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=900"),
        "{url}"
    );
    let fetched = http::get(&url).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(decode(&fetched.body).width(), 256);

    // Pages embed a presigned link.
    let page = app.get(&format!("/employees/{id}")).await.text();
    assert!(
        page.contains(&format!("{}/{}/{key}?", app.endpoint, app.bucket)),
        "{page}"
    );

    // Replacing the photo stores a new object and deletes the old one.
    let form =
        valid_form("Photo Person").file("photo", "new.png", Some("image/png"), &png(100, 300));
    let r = app
        .multipart("PUT", &format!("/api/employees/{id}"), form)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let new_key = r.json()["photo_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(app.object_keys().await, vec![new_key.clone()]);

    // An update without a photo keeps it.
    let body = json!({"full_name": "Photo Person", "job_title": "Lead", "location": "Lima"});
    let r = app
        .json("PUT", &format!("/api/employees/{id}"), &body)
        .await;
    assert_eq!(r.json()["photo_key"], new_key.as_str());

    // remove_photo drops it from the record and the bucket.
    let mut body = body.clone();
    body["remove_photo"] = json!(true);
    let r = app
        .json("PUT", &format!("/api/employees/{id}"), &body)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["photo_key"].is_null());
    assert!(app.object_keys().await.is_empty());
    assert!(!app.items().await[0].contains_key("photo_key"));

    // Through the HTML edit form, then deleting the employee removes the photo too.
    let form = Multipart::default()
        .text("full_name", "Photo Person")
        .text("job_title", "Lead")
        .text("location", "Lima")
        .file("photo", "f.png", Some("image/png"), &png(64, 64));
    let r = app
        .multipart("POST", &format!("/admin/employees/{id}/edit"), form)
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(app.object_keys().await.len(), 1);
    let edit = app.get(&format!("/admin/employees/{id}/edit")).await.text();
    assert!(edit.contains(r#"name="remove_photo""#));
    assert_eq!(
        app.send("DELETE", &format!("/api/employees/{id}"), &[], "")
            .await
            .status,
        204
    );
    assert!(app.object_keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_form_without_a_file_is_not_a_photo() {
    let app = TestApp::start(Options::default()).await;
    // What a browser sends when no file was chosen: an empty part with an empty filename.
    let form = valid_form("No Photo").file("photo", "", Some("application/octet-stream"), b"");
    let r = app.multipart("POST", "/admin/employees/new", form).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(app.object_keys().await.is_empty());
    assert!(!app.items().await[0].contains_key("photo_key"));
}
