//! DynamoDB and S3 access: employees in a table, thumbnails in a bucket.
//!
//! Every SDK failure becomes a [`StoreError`] carrying the AWS error code, so
//! the code reaches the logs while users see only a generic 502.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use crate::model::Employee;

/// How long a photo link on a page stays valid.
pub const PRESIGN_TTL: Duration = Duration::from_secs(15 * 60);

/// A failed AWS call: which operation, the AWS error code, and the full message.
#[derive(Debug, Clone)]
pub struct StoreError {
    pub op: &'static str,
    pub code: String,
    pub message: String,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}: {}", self.op, self.code, self.message)
    }
}

impl std::error::Error for StoreError {}

fn sdk_error<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = match (&err, err.code()) {
        (_, Some(code)) => code.to_owned(),
        (SdkError::TimeoutError(_), _) => "Timeout".to_owned(),
        (SdkError::DispatchFailure(_), _) => "DispatchFailure".to_owned(),
        (SdkError::ConstructionFailure(_), _) => "ConstructionFailure".to_owned(),
        (SdkError::ResponseError(_), _) => "ResponseError".to_owned(),
        (SdkError::ServiceError(e), None) => format!("HTTP{}", e.raw().status().as_u16()),
        _ => "Unknown".to_owned(),
    };
    StoreError {
        op,
        code,
        message: DisplayErrorContext(&err).to_string(),
    }
}

/// Handles to the table and the bucket.
#[derive(Clone, Debug)]
pub struct Store {
    ddb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    table: String,
    bucket: String,
}

impl Store {
    pub fn new(
        ddb: aws_sdk_dynamodb::Client,
        s3: aws_sdk_s3::Client,
        table: String,
        bucket: String,
    ) -> Store {
        Store {
            ddb,
            s3,
            table,
            bucket,
        }
    }

    /// Every employee; follows scan pages until the end. Malformed items are skipped and logged.
    pub async fn list(&self) -> Result<Vec<Employee>, StoreError> {
        let mut pages = self
            .ddb
            .scan()
            .table_name(&self.table)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_error("Scan", e))?;
            match from_item(&item) {
                Some(e) => out.push(e),
                None => tracing::warn!(
                    id = item
                        .get("id")
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str),
                    "skipping malformed item"
                ),
            }
        }
        Ok(out)
    }

    pub async fn get(&self, id: &str, consistent: bool) -> Result<Option<Employee>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        match out.item() {
            None => Ok(None),
            Some(item) => from_item(item).map(Some).ok_or_else(|| StoreError {
                op: "GetItem",
                code: "MalformedItem".to_owned(),
                message: format!("item {id:?} lacks required attributes"),
            }),
        }
    }

    /// Writes a new employee; refuses to overwrite an existing id.
    pub async fn insert(&self, e: &Employee) -> Result<(), StoreError> {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(e)))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(|err| sdk_error("PutItem", err))?;
        Ok(())
    }

    /// Replaces an existing employee; `Ok(false)` if it no longer exists
    /// (so a concurrent delete is not undone).
    pub async fn replace(&self, e: &Employee) -> Result<bool, StoreError> {
        let res = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(e)))
            .condition_expression("attribute_exists(id)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(sdk_error("PutItem", err)),
        }
    }

    /// Deletes an employee; returns what was deleted, if anything.
    pub async fn delete(&self, id: &str) -> Result<Option<Employee>, StoreError> {
        let out = self
            .ddb
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(out.attributes().and_then(from_item))
    }

    pub async fn put_photo(&self, key: &str, jpeg: Vec<u8>) -> Result<(), StoreError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("image/jpeg")
            .body(ByteStream::from(jpeg))
            .send()
            .await
            .map_err(|e| sdk_error("PutObject", e))?;
        Ok(())
    }

    pub async fn delete_photo(&self, key: &str) -> Result<(), StoreError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteObject", e))?;
        Ok(())
    }

    /// A time-limited GET link for a photo; signing is local, no network call.
    pub async fn photo_url(&self, key: &str) -> Result<String, StoreError> {
        let cfg = PresigningConfig::expires_in(PRESIGN_TTL).map_err(|e| StoreError {
            op: "Presign",
            code: "InvalidConfig".to_owned(),
            message: e.to_string(),
        })?;
        let req = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(cfg)
            .await
            .map_err(|e| sdk_error("Presign", e))?;
        Ok(req.uri().to_owned())
    }

    /// Cheapest read the app's own permissions allow: one item of a scan.
    pub async fn check_table(&self) -> Result<(), StoreError> {
        self.ddb
            .scan()
            .table_name(&self.table)
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error("Scan", e))?;
        Ok(())
    }

    pub async fn check_bucket(&self) -> Result<(), StoreError> {
        self.s3
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| sdk_error("HeadBucket", e))?;
        Ok(())
    }
}

fn to_item(e: &Employee) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("id".to_owned(), AttributeValue::S(e.id.clone())),
        (
            "full_name".to_owned(),
            AttributeValue::S(e.full_name.clone()),
        ),
        (
            "job_title".to_owned(),
            AttributeValue::S(e.job_title.clone()),
        ),
        ("location".to_owned(), AttributeValue::S(e.location.clone())),
        // A list, not a string set: string sets cannot be empty.
        (
            "badges".to_owned(),
            AttributeValue::L(e.badges.iter().cloned().map(AttributeValue::S).collect()),
        ),
    ]);
    if let Some(k) = &e.photo_key {
        item.insert("photo_key".to_owned(), AttributeValue::S(k.clone()));
    }
    item
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Employee> {
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let badges = match item.get("badges") {
        None => Vec::new(),
        Some(AttributeValue::L(l)) => l.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        Some(AttributeValue::Ss(ss)) => ss.clone(),
        Some(_) => return None,
    };
    Some(Employee {
        id: s("id")?,
        full_name: s("full_name")?,
        job_title: s("job_title")?,
        location: s("location")?,
        badges,
        photo_key: s("photo_key"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_round_trip() {
        let e = Employee {
            id: "x".into(),
            full_name: "Ada".into(),
            job_title: "Engineer".into(),
            location: "London".into(),
            badges: vec!["Mentor".into()],
            photo_key: Some("photos/x-1.jpg".into()),
        };
        assert_eq!(from_item(&to_item(&e)), Some(e.clone()));
        let no_photo = Employee {
            photo_key: None,
            badges: vec![],
            ..e
        };
        assert_eq!(from_item(&to_item(&no_photo)), Some(no_photo));
        assert_eq!(from_item(&HashMap::new()), None);
    }
}
