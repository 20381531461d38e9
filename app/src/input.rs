//! Reading an employee submission from a request body, and validating it.
//!
//! The same extractor serves the JSON API and the HTML forms: JSON bodies,
//! `multipart/form-data` (the only way to send a photo) and URL-encoded forms.
//! Problems found while reading (wrong JSON types, an oversized body) become
//! field errors, so every caller reports them in the same `{"errors": ...}` shape.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::model::{self, FieldErrors};
use crate::photo::{self, MAX_PHOTO_BYTES, Upload};

/// A submission as sent, before validation; also what a form is re-shown with.
#[derive(Clone, Debug, Default)]
pub struct Submission {
    pub full_name: Option<String>,
    pub job_title: Option<String>,
    pub location: Option<String>,
    pub badges: Vec<String>,
    pub photo: Option<Upload>,
    pub remove_photo: bool,
    /// Problems found while reading the body.
    pub errors: FieldErrors,
}

/// A submission that passed every rule; the photo is already a thumbnail.
#[derive(Clone, Debug)]
pub struct ValidEmployee {
    pub full_name: String,
    pub job_title: String,
    pub location: String,
    pub badges: Vec<String>,
    /// JPEG thumbnail bytes.
    pub photo: Option<Vec<u8>>,
    pub remove_photo: bool,
}

impl<S: Send + Sync> FromRequest<S> for Submission {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut sub = Submission::default();
        if ct.starts_with("application/json") {
            match Bytes::from_request(req, state).await {
                Ok(body) => sub.read_json(&body),
                Err(e) => body_error(&mut sub, e.status().as_u16(), &e.body_text()),
            }
        } else if ct.starts_with("multipart/form-data") {
            match Multipart::from_request(req, state).await {
                Ok(mp) => sub.read_multipart(mp).await,
                Err(e) => body_error(&mut sub, e.status().as_u16(), &e.body_text()),
            }
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            match Bytes::from_request(req, state).await {
                Ok(body) => sub.read_urlencoded(&body),
                Err(e) => body_error(&mut sub, e.status().as_u16(), &e.body_text()),
            }
        } else {
            sub.errors.insert(
                "body".into(),
                "send application/json, multipart/form-data or application/x-www-form-urlencoded"
                    .into(),
            );
        }
        Ok(sub)
    }
}

fn body_error(sub: &mut Submission, status: u16, text: &str) {
    if status == 413 {
        // Only a photo can make a body this large.
        sub.errors
            .insert("photo".into(), "must be at most 5 MiB".into());
    } else {
        sub.errors
            .insert("body".into(), format!("could not be read: {text}"));
    }
}

impl Submission {
    fn read_json(&mut self, body: &[u8]) {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                self.errors
                    .insert("body".into(), format!("invalid JSON: {e}"));
                return;
            }
        };
        let Some(obj) = v.as_object() else {
            self.errors
                .insert("body".into(), "must be a JSON object".into());
            return;
        };
        let mut text = |name: &str| match obj.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.errors.insert(name.into(), "must be a string".into());
                None
            }
        };
        self.full_name = text("full_name");
        self.job_title = text("job_title");
        self.location = text("location");
        match obj.get("badges") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                self.badges = items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect();
            }
            Some(_) => {
                self.errors
                    .insert("badges".into(), "must be a list of strings".into());
            }
        }
        match obj.get("remove_photo") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => self.remove_photo = *b,
            Some(_) => {
                self.errors
                    .insert("remove_photo".into(), "must be true or false".into());
            }
        }
        if obj.contains_key("photo") || obj.contains_key("photo_key") {
            self.errors.insert(
                "photo".into(),
                "cannot be set in JSON; upload it as multipart/form-data".into(),
            );
        }
    }

    fn read_urlencoded(&mut self, body: &[u8]) {
        match serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    self.set_text(&k, v);
                }
            }
            Err(e) => {
                self.errors
                    .insert("body".into(), format!("invalid form: {e}"));
            }
        }
    }

    async fn read_multipart(&mut self, mut mp: Multipart) {
        loop {
            let mut field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    body_error(self, e.status().as_u16(), &e.body_text());
                    break;
                }
            };
            let name = field.name().unwrap_or("").to_owned();
            if name == "photo" {
                // Browsers send an empty part with an empty filename when no file was chosen.
                let no_file = field.file_name().is_none_or(str::is_empty);
                let content_type = field.content_type().map(str::to_owned);
                let mut buf = BytesMut::new();
                let mut too_large = false;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            // Keep reading past the limit (the part must be consumed) but stop storing.
                            if buf.len() + chunk.len() > MAX_PHOTO_BYTES {
                                too_large = true;
                            } else {
                                buf.extend_from_slice(&chunk);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            body_error(self, e.status().as_u16(), &e.body_text());
                            return;
                        }
                    }
                }
                if no_file && buf.is_empty() && !too_large {
                    continue;
                }
                self.photo = Some(Upload {
                    content_type,
                    bytes: buf.freeze(),
                    too_large,
                });
            } else {
                match field.text().await {
                    Ok(v) => self.set_text(&name, v),
                    Err(e) => {
                        body_error(self, e.status().as_u16(), &e.body_text());
                        return;
                    }
                }
            }
        }
    }

    fn set_text(&mut self, name: &str, v: String) {
        match name {
            "full_name" => self.full_name = Some(v),
            "job_title" => self.job_title = Some(v),
            "location" => self.location = Some(v),
            "badges" => self.badges.push(v),
            "remove_photo" => self.remove_photo = matches!(v.as_str(), "1" | "on" | "true" | "yes"),
            _ => {}
        }
    }

    /// Applies every rule; on failure returns all field errors at once.
    ///
    /// Nothing is written before this returns `Ok`, so an invalid submission
    /// never reaches the table or the bucket.
    pub async fn validate(&self) -> Result<ValidEmployee, FieldErrors> {
        let mut rules = FieldErrors::new();
        let full_name = model::check_text("full_name", self.full_name.as_deref(), &mut rules);
        let job_title = model::check_text("job_title", self.job_title.as_deref(), &mut rules);
        let location = model::check_text("location", self.location.as_deref(), &mut rules);
        let badges = model::check_badges(&self.badges, &mut rules);
        // A reading error (e.g. a number where a string belongs) is the more
        // useful message, so it wins over a rule error for the same field.
        let mut errors = self.errors.clone();
        for (k, v) in rules {
            errors.entry(k).or_insert(v);
        }

        let mut photo_jpeg = None;
        if let Some(upload) = &self.photo
            && !errors.contains_key("photo")
        {
            match photo::check_declared(upload) {
                Err(msg) => {
                    errors.insert("photo".into(), msg);
                }
                Ok(()) => {
                    let bytes = upload.bytes.clone();
                    let result = tokio::task::spawn_blocking(move || photo::thumbnail_jpeg(&bytes))
                        .await
                        .unwrap_or_else(|_| Err("could not be processed".to_owned()));
                    match result {
                        Ok(jpeg) => photo_jpeg = Some(jpeg),
                        Err(msg) => {
                            errors.insert("photo".into(), msg);
                        }
                    }
                }
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ValidEmployee {
            full_name,
            job_title,
            location,
            badges,
            photo: photo_jpeg,
            remove_photo: self.remove_photo,
        })
    }

    /// The submitted values of an existing employee, for an edit form.
    pub fn from_employee(e: &model::Employee) -> Submission {
        Submission {
            full_name: Some(e.full_name.clone()),
            job_title: Some(e.job_title.clone()),
            location: Some(e.location.clone()),
            badges: e.badges.clone(),
            ..Submission::default()
        }
    }
}
