//! Shared application state, and the read/write operations handlers call.
//!
//! Reads go through the cache; writes go to the bucket first (photo), then the
//! table, then invalidate the cache. A photo orphaned by a failed table write
//! is deleted on a best-effort basis.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::OnceCell;

use crate::auth::WriteAuth;
use crate::cache::ReadCache;
use crate::config::Config;
use crate::imds::{self, HostInfo};
use crate::input::ValidEmployee;
use crate::metrics::Metrics;
use crate::model::{self, Employee};
use crate::store::{Store, StoreError};
use crate::stress::Stress;

/// The employee list as the cache keeps it: the records, their photo links, and the
/// API's JSON serialized once per table read rather than once per request.
#[derive(Debug)]
pub struct EmployeeList {
    /// Sorted by name.
    pub employees: Vec<Employee>,
    /// One per employee: a presigned link, or none without a photo.
    pub photo_urls: Vec<Option<String>>,
    /// `{"employees": [...], "count": n}`.
    pub json: Bytes,
}

pub type Cache = ReadCache<EmployeeList, Option<Employee>, StoreError>;

/// The longest a cached entry may live: it holds presigned photo links, valid for
/// [`crate::store::PRESIGN_TTL`], and may be served stale for one more TTL.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// Cheap to clone; everything lives behind one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub cache: Cache,
    pub metrics: Metrics,
    pub stress: Stress,
    pub auth: WriteAuth,
    pub hostname: String,
    /// The SHA-256 of this binary, sent as `x-app-build` on every response.
    pub build: String,
    host_info: OnceCell<HostInfo>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The SDK configuration `main` uses: region from `config`, credentials from
/// the standard chain (environment, profile, or the instance role on EC2).
pub async fn load_sdk_config(config: &Config) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .load()
        .await
}

impl AppState {
    /// Builds clients from `sdk`, applying the region and endpoint override from `config`.
    pub fn new(config: Config, sdk: &SdkConfig) -> AppState {
        let region = Region::new(config.region.clone());
        let mut ddb = aws_sdk_dynamodb::config::Builder::from(sdk).region(region.clone());
        let mut s3 = aws_sdk_s3::config::Builder::from(sdk).region(region);
        if let Some(url) = &config.endpoint_url {
            ddb = ddb.endpoint_url(url);
            // Emulators serve buckets by path, not by virtual-host subdomain.
            s3 = s3.endpoint_url(url).force_path_style(true);
        }
        let s3 = aws_sdk_s3::Client::from_conf(s3.build());
        let store = Store::new(
            aws_sdk_dynamodb::Client::from_conf(ddb.build()),
            s3.clone(),
            config.table.clone(),
            config.bucket.clone(),
        );
        let cache = Cache::new(config.cache_ttl.min(MAX_CACHE_TTL));
        let metrics = Metrics::new(&cache.stats);
        AppState(Arc::new(Inner {
            metrics,
            cache,
            stress: Stress::new(config.stress_enabled),
            auth: WriteAuth::new(&config.write_token, s3, &config.bucket),
            hostname: imds::hostname(),
            build: imds::build_digest(),
            host_info: OnceCell::new(),
            store,
            config,
        }))
    }

    /// Instance metadata, looked up once; concurrent callers share the one lookup.
    pub async fn host_info(&self) -> &HostInfo {
        self.host_info
            .get_or_init(|| imds::lookup(&self.config.imds_authority, self.hostname.clone()))
            .await
    }

    /// Instance metadata if the lookup has finished; pages never wait for it.
    pub fn host_info_now(&self) -> Option<&HostInfo> {
        self.host_info.get()
    }

    /// All employees sorted by name, from the cache (see [`crate::cache`]).
    pub async fn list_employees(&self) -> Result<Arc<EmployeeList>, StoreError> {
        let me = self.clone();
        self.cache
            .list(move || async move { me.read_list().await })
            .await
    }

    /// One table scan, turned into what every list request needs.
    async fn read_list(&self) -> Result<EmployeeList, StoreError> {
        let mut employees = self.store.list().await?;
        employees.sort_by_cached_key(|e| (e.full_name.to_lowercase(), e.id.clone()));
        let mut photo_urls = Vec::with_capacity(employees.len());
        let mut views = Vec::with_capacity(employees.len());
        for e in &employees {
            let url = self.photo_url(e).await;
            views.push(api_view(e, url.as_deref()));
            photo_urls.push(url);
        }
        let json = serde_json::json!({ "employees": views, "count": employees.len() });
        Ok(EmployeeList {
            photo_urls,
            json: Bytes::from(json.to_string()),
            employees,
        })
    }

    pub async fn get_employee(&self, id: &str) -> Result<Option<Arc<Employee>>, StoreError> {
        if !model::plausible_id(id) {
            return Ok(None);
        }
        let (me, key) = (self.clone(), id.to_owned());
        let found = self
            .cache
            .item(id, Option::is_some, move || async move {
                me.store.get(&key, false).await
            })
            .await?;
        // The cache shares one value between requests; hand out the record itself.
        Ok(found.as_ref().clone().map(Arc::new))
    }

    /// Fresh from the table, bypassing the cache; for edit forms.
    pub async fn get_employee_fresh(&self, id: &str) -> Result<Option<Employee>, StoreError> {
        if !model::plausible_id(id) {
            return Ok(None);
        }
        self.store.get(id, true).await
    }

    pub async fn create_employee(&self, input: ValidEmployee) -> Result<Employee, StoreError> {
        let id = model::new_id();
        let photo_key = match input.photo {
            Some(jpeg) => Some(self.upload_photo(&id, jpeg).await?),
            None => None,
        };
        let e = Employee {
            id,
            full_name: input.full_name,
            job_title: input.job_title,
            location: input.location,
            badges: input.badges,
            photo_key,
        };
        let result = self.store.insert(&e).await;
        self.cache.invalidate();
        if let Err(err) = result {
            self.discard_photo(e.photo_key.as_deref()).await;
            return Err(err);
        }
        tracing::info!(id = %e.id, "employee created");
        Ok(e)
    }

    /// Replaces an employee's fields; `Ok(None)` if it does not exist.
    pub async fn update_employee(
        &self,
        id: &str,
        input: ValidEmployee,
    ) -> Result<Option<Employee>, StoreError> {
        let Some(old) = self.get_employee_fresh(id).await? else {
            return Ok(None);
        };
        let photo_key = match input.photo {
            Some(jpeg) => Some(self.upload_photo(id, jpeg).await?),
            None if input.remove_photo => None,
            None => old.photo_key.clone(),
        };
        let e = Employee {
            id: old.id.clone(),
            full_name: input.full_name,
            job_title: input.job_title,
            location: input.location,
            badges: input.badges,
            photo_key,
        };
        let result = self.store.replace(&e).await;
        self.cache.invalidate();
        let replaced_photo = e.photo_key != old.photo_key;
        match result {
            Ok(true) => {
                if replaced_photo {
                    self.discard_photo(old.photo_key.as_deref()).await;
                }
                tracing::info!(id = %e.id, "employee updated");
                Ok(Some(e))
            }
            Ok(false) | Err(_) => {
                if replaced_photo {
                    self.discard_photo(e.photo_key.as_deref()).await;
                }
                result.map(|_| None)
            }
        }
    }

    /// Deletes an employee and its photo; `Ok(false)` if it did not exist.
    pub async fn delete_employee(&self, id: &str) -> Result<bool, StoreError> {
        if !model::plausible_id(id) {
            return Ok(false);
        }
        let deleted = self.store.delete(id).await;
        self.cache.invalidate();
        match deleted? {
            Some(e) => {
                self.discard_photo(e.photo_key.as_deref()).await;
                tracing::info!(id = %e.id, "employee deleted");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub async fn photo_url(&self, e: &Employee) -> Option<String> {
        let key = e.photo_key.as_deref()?;
        match self.store.photo_url(key).await {
            Ok(url) => Some(url),
            Err(err) => {
                log_store_error(&err);
                None
            }
        }
    }

    async fn upload_photo(&self, id: &str, jpeg: Vec<u8>) -> Result<String, StoreError> {
        // A fresh key per upload: cached pages and presigned links never show a mix of old and new.
        let key = format!("photos/{id}-{:08x}.jpg", fastrand::u32(..));
        self.store.put_photo(&key, jpeg).await?;
        Ok(key)
    }

    /// Deletes a photo nobody references any more; failure only leaves an orphan object.
    async fn discard_photo(&self, key: Option<&str>) {
        if let Some(key) = key
            && let Err(err) = self.store.delete_photo(key).await
        {
            log_store_error(&err);
        }
    }
}

/// The API's view of an employee: its stored fields plus the photo link.
pub fn api_view(e: &Employee, photo_url: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    v["photo_url"] = photo_url.map_or(serde_json::Value::Null, serde_json::Value::from);
    v
}

/// Logs an AWS failure with its error code.
pub fn log_store_error(err: &StoreError) {
    tracing::error!(
        op = err.op,
        code = %err.code,
        error = %err.message,
        "aws call failed"
    );
}
