//! One launch template per service: AMI, instance type, rendered user data, the
//! service's security group, the instance profile, IMDSv2 required, ownership tags on
//! instances and volumes.
//! Templates are immutable here: one per build and configuration, named by its digest,
//! always at version 1. A change is a new template made before the old one goes
//! (`create_before_destroy`), the group rolls onto it, then the old one is deleted.
//! Groups pin the numbered version, which AWS needs for auto rollback; and moto cannot
//! launch from a second version that carries user data.

use super::LiveMap;
use super::instance_profile::InstanceProfileAttrs;
use super::security_group::SecurityGroupAttrs;
use super::{Created, Ctx, EC2_NOT_YET, absent_ok, ec2_tag_spec};
use crate::aws::{Clients, Context, Error, Patience, retry_codes};
use crate::desired::sha256_hex;
use crate::desired::{
    Build, Inputs, ROOT_VOLUME, VERIFIER_KEY, build_key, iam_name, launch_template_name, sha_of_key,
};
use crate::model::attr;
use crate::model::{Address, Attrs, Live};
use crate::model::{Desired, Kind};
use crate::model::{KindAttrs, Ref, from_attrs, ids, to_attrs};
use crate::spec::{Ami, ServiceSpec, Spec, render_user_data};
use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, Tag,
    VolumeType,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A launch template's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LaunchTemplateAttrs {
    /// `<stack>-<service>-<digest>`: the content's name.
    pub name: String,
    pub image_id: String,
    pub instance_type: String,
    /// The rendered user data's digest (the script itself is the payload).
    pub user_data_sha256: String,
    /// The service's group.
    pub security_group_ids: Vec<Ref<SecurityGroupAttrs>>,
    pub http_tokens: String,
    pub metadata_hop_limit: i64,
    pub root_volume: String,
    /// The stack's instance profile, or the existing one the file names.
    pub iam_instance_profile_arn: Ref<InstanceProfileAttrs>,
}

impl KindAttrs for LaunchTemplateAttrs {
    const KIND: Kind = Kind::LaunchTemplate;
}

/// What discovery records beside the attributes (`Live::extra`), by key.
pub mod extra {
    /// The template's latest version number.
    pub const LATEST_VERSION: &str = "latest_version";
    /// The user data script, so a plan can show what changes in it.
    pub const USER_DATA: &str = "user_data";
}

/// What a service's instances boot: the image, the rendered user data, and the digest
/// of all a template holds (it names the template; the fleet rolls when it changes).
pub struct Boot {
    pub image: String,
    pub user_data: String,
    pub digest: String,
}

pub fn boot(b: &Build, svc: &ServiceSpec) -> Boot {
    let (spec, inputs) = (b.spec, b.inputs);
    let image = match &svc.ami {
        Ami::Id(id) => id.clone(),
        Ami::Al2023 => inputs.amis.get(&svc.name).cloned().unwrap_or_default(),
    };
    let user_data = render_user_data(&svc.user_data_template, &template_vars(spec, inputs, svc));
    let profile = match &inputs.instance_profile_arn {
        Some(arn) => arn.clone(),
        None => iam_name(&spec.stack, &inputs.region),
    };
    let digest = sha256_hex(
        format!(
            "{image}\n{}\n{profile}\n{user_data}\n{ROOT_VOLUME}\nhop-limit-1{}",
            svc.instance_type,
            // Moving between public and private subnets replaces every instance.
            if spec.private_instances {
                "\nprivate"
            } else {
                ""
            }
        )
        .as_bytes(),
    );
    Boot {
        image,
        user_data,
        digest,
    }
}

/// A service's launch template; its payload is the rendered user data.
pub fn desired(b: &Build, svc: &ServiceSpec) -> Desired {
    let name = &svc.name;
    let Boot {
        image,
        user_data,
        digest,
    } = boot(b, svc);
    Desired {
        address: crate::desired::service(Kind::LaunchTemplate, name),
        attrs: to_attrs(&LaunchTemplateAttrs {
            // One template per build and configuration, never a second version: groups
            // pin version 1 (what auto rollback needs), and the name says the content.
            name: launch_template_name(&b.spec.stack, name, &digest),
            image_id: image,
            instance_type: svc.instance_type.clone(),
            user_data_sha256: sha256_hex(user_data.as_bytes()),
            security_group_ids: vec![Ref::to(name)],
            http_tokens: "required".into(),
            metadata_hop_limit: 1,
            root_volume: ROOT_VOLUME.into(),
            iam_instance_profile_arn: b.profile_arn.clone(),
        }),
        payload: Some(user_data),
        after: Vec::new(),
    }
}

fn template_vars<'a>(
    spec: &Spec,
    inputs: &Inputs,
    svc: &crate::spec::ServiceSpec,
) -> BTreeMap<&'a str, String> {
    let mut vars = BTreeMap::new();
    vars.insert("stack", spec.stack.clone());
    vars.insert("service", svc.name.clone());
    vars.insert("region", inputs.region.clone());
    vars.insert("port", svc.port.to_string());
    if let Some(t) = &spec.table {
        vars.insert("table", t.name.clone());
    }
    if let Some(b) = &spec.bucket {
        vars.insert("bucket", b.name.clone());
        vars.insert("artifact_bucket", b.name.clone());
    }
    if let Some(key) = build_key(inputs, &svc.name) {
        vars.insert("artifact_sha256", sha_of_key(&key).to_string());
        vars.insert("artifact_key", key);
    }
    vars.insert("stress", svc.stress.to_string());
    if spec.app.is_some() {
        // A digest only: the value stays in SSM.
        vars.insert("write_token_verifier", VERIFIER_KEY.to_string());
    }
    if let Some(e) = &inputs.endpoint_url {
        vars.insert("endpoint_url", e.clone());
    }
    vars
}

/// The only version a template made here has; groups pin it.
pub const VERSION: &str = "1";

/// A new template can stand beside the old one when its name differs (the content
/// digest moved); a template whose name stays can only be deleted first.
pub fn create_before_destroy(live: &Live, wanted: &Attrs) -> bool {
    let name = |a: &Attrs| from_attrs::<LaunchTemplateAttrs>(a).map(|t| t.name);
    name(&live.attrs).ok() != name(wanted).ok()
}

pub async fn discover(c: &Clients, stack: &str) -> Result<Vec<Live>, Error> {
    let templates = super::ec2_listing!(
        // moto drops filtered results past its first page; large pages avoid that.
        c.ec2.describe_launch_templates().max_results(200),
        stack,
        "launch templates",
        launch_templates
    );
    if templates.is_empty() {
        return Ok(Vec::new());
    }
    // One call for the default versions of all templates, not one per template.
    let mut defaults = BTreeMap::new();
    let mut pages = c
        .ec2
        .describe_launch_template_versions()
        .versions("$Default")
        .max_results(200)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for v in page
            .ctx("listing", &"launch template versions")?
            .launch_template_versions()
        {
            defaults.insert(
                v.launch_template_id().unwrap_or_default().to_string(),
                v.clone(),
            );
        }
    }
    let mut out = Vec::new();
    for (address, t) in templates {
        let id = t.launch_template_id().unwrap_or_default().to_string();
        let data = defaults.get(&id).and_then(|v| v.launch_template_data());
        let user_data = data
            .and_then(|d| d.user_data())
            .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok())
            .unwrap_or_default();
        let metadata = data.and_then(|d| d.metadata_options());
        let attrs = to_attrs(&LaunchTemplateAttrs {
            name: t.launch_template_name().unwrap_or_default().to_string(),
            image_id: data
                .and_then(|d| d.image_id())
                .unwrap_or_default()
                .to_string(),
            instance_type: data
                .and_then(|d| d.instance_type())
                .map(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            user_data_sha256: sha256_hex(&user_data),
            security_group_ids: data
                .map(|d| d.security_group_ids().iter().map(Ref::id).collect())
                .unwrap_or_default(),
            http_tokens: metadata
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            root_volume: root_volume_of(data),
            metadata_hop_limit: metadata
                .and_then(|m| m.http_put_response_hop_limit())
                .unwrap_or_default()
                .into(),
            iam_instance_profile_arn: Ref::id(
                data.and_then(|d| d.iam_instance_profile())
                    .and_then(|p| p.arn())
                    .unwrap_or_default(),
            ),
        });
        let extra = BTreeMap::from([
            (
                extra::LATEST_VERSION.to_string(),
                t.latest_version_number().unwrap_or_default().to_string(),
            ),
            // Kept so a plan can show what changes in the script, not only its digest.
            (
                extra::USER_DATA.to_string(),
                String::from_utf8_lossy(&user_data).into_owned(),
            ),
        ]);
        out.push(Live {
            address,
            id,
            attrs,
            extra,
        });
    }
    Ok(out)
}

/// The full template data: every version carries all of it, never a delta.
/// The root device of Amazon Linux 2023 images.
const ROOT_DEVICE: &str = "/dev/xvda";

/// The root volume, `gp3 8GiB encrypted` (Security Hub EC2.3), deleted with the
/// instance. The size is the AL2023 image's own: AWS refuses a root volume smaller
/// than its image's snapshot.
fn root_volume(t: &LaunchTemplateAttrs) -> LaunchTemplateBlockDeviceMappingRequest {
    let spec = &t.root_volume;
    let words: Vec<&str> = spec.split_whitespace().collect();
    let volume_type = words.first().copied().unwrap_or("gp3");
    let size = words
        .iter()
        .find_map(|w| w.strip_suffix("GiB"))
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(8);
    LaunchTemplateBlockDeviceMappingRequest::builder()
        .device_name(ROOT_DEVICE)
        .ebs(
            LaunchTemplateEbsBlockDeviceRequest::builder()
                .volume_type(VolumeType::from(volume_type))
                .volume_size(size)
                .encrypted(words.contains(&"encrypted"))
                .delete_on_termination(true)
                .build(),
        )
        .build()
}

/// `gp3 8GiB encrypted` as the template holds it.
fn root_volume_of(data: Option<&aws_sdk_ec2::types::ResponseLaunchTemplateData>) -> String {
    let Some(ebs) = data
        .map(|d| d.block_device_mappings())
        .unwrap_or_default()
        .iter()
        .find(|m| m.device_name() == Some(ROOT_DEVICE))
        .and_then(|m| m.ebs())
    else {
        return String::new();
    };
    let mut out = ebs
        .volume_type()
        .map(|t| t.as_str().to_string())
        .unwrap_or_default();
    if let Some(size) = ebs.volume_size() {
        out.push_str(&format!(" {size}GiB"));
    }
    if ebs.encrypted() == Some(true) {
        out.push_str(" encrypted");
    }
    out
}

fn data(
    ctx: &Ctx,
    a: &Address,
    t: &LaunchTemplateAttrs,
    user_data: &str,
) -> RequestLaunchTemplateData {
    let tags: Vec<Tag> = ctx
        .tags(a)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let tag_spec = |rt: ResourceType| {
        LaunchTemplateTagSpecificationRequest::builder()
            .resource_type(rt)
            .set_tags(Some(tags.clone()))
            .build()
    };
    RequestLaunchTemplateData::builder()
        .image_id(&t.image_id)
        .instance_type(t.instance_type.as_str().into())
        .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
        .set_security_group_ids(Some(ids(&t.security_group_ids)))
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .arn(t.iam_instance_profile_arn.as_id())
                .build(),
        )
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::from(t.http_tokens.as_str()))
                .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                // The app runs on the host: no container hop may reach the metadata.
                .http_put_response_hop_limit(t.metadata_hop_limit as i32)
                .build(),
        )
        .block_device_mappings(root_volume(t))
        .tag_specifications(tag_spec(ResourceType::Instance))
        .tag_specifications(tag_spec(ResourceType::Volume))
        .build()
}

pub async fn create(
    ctx: &Ctx,
    a: &Address,
    want: LaunchTemplateAttrs,
    user_data: &str,
) -> Result<Created, Error> {
    let r = retry_codes(EC2_NOT_YET, Patience::FRESH_ID, || async {
        ctx.c
            .ec2
            .create_launch_template()
            .launch_template_name(&want.name)
            .launch_template_data(data(ctx, a, &want, user_data))
            .tag_specifications(ec2_tag_spec(ctx, a, ResourceType::LaunchTemplate))
            .send()
            .await
            .ctx("creating", a)
    })
    .await?;
    let id = r
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap_or_default()
        .to_string();
    Ok((id, Default::default()))
}

/// The default version's number of template `id`: what a group naming `$Default`
/// runs (groups made before templates were pinned).
pub async fn default_version(ctx: &Ctx, a: &Address, id: &str) -> Result<String, Error> {
    let r = ctx
        .c
        .ec2
        .describe_launch_templates()
        .launch_template_ids(id)
        .send()
        .await
        .ctx("reading the launch template of", a)?;
    Ok(r.launch_templates()
        .first()
        .and_then(|t| t.default_version_number())
        .unwrap_or(1)
        .to_string())
}

pub async fn delete(ctx: &Ctx, live: &Live) -> Result<(), Error> {
    absent_ok(
        ctx.c
            .ec2
            .delete_launch_template()
            .launch_template_id(&live.id)
            .send()
            .await
            .ctx("deleting", &live.address),
        &["InvalidLaunchTemplateId.NotFound"],
    )
}

impl super::KindOps for LaunchTemplateAttrs {
    /// Every attribute: a template never gets a second version.
    const FORCE_NEW: &'static [&'static str] = &[
        attr!(LaunchTemplateAttrs.name),
        attr!(LaunchTemplateAttrs.image_id),
        attr!(LaunchTemplateAttrs.instance_type),
        attr!(LaunchTemplateAttrs.user_data_sha256),
        attr!(LaunchTemplateAttrs.security_group_ids),
        attr!(LaunchTemplateAttrs.http_tokens),
        attr!(LaunchTemplateAttrs.root_volume),
        attr!(LaunchTemplateAttrs.metadata_hop_limit),
        attr!(LaunchTemplateAttrs.iam_instance_profile_arn),
    ];
    const REFERENCES: &'static [&'static str] = &[
        attr!(LaunchTemplateAttrs.iam_instance_profile_arn),
        attr!(LaunchTemplateAttrs.security_group_ids),
    ];
    const UNIQUE_NAME: Option<&'static str> = Some(attr!(LaunchTemplateAttrs.name));
    const SERVICE: crate::aws::probe::Service = crate::aws::probe::Service::Ec2;
    const LISTING: super::Listing = super::Listing::LaunchTemplates;

    async fn create(
        ctx: &super::Ctx,
        d: &crate::model::Desired,
        attrs: &crate::model::Attrs,
    ) -> Result<super::Created, crate::aws::Error> {
        let user_data = d.payload.as_deref().unwrap_or("");
        create(ctx, &d.address, crate::model::from_attrs(attrs)?, user_data).await
    }

    async fn update(
        _ctx: &super::Ctx,
        _d: &crate::model::Desired,
        live: &crate::model::Live,
        _attrs: &crate::model::Attrs,
        _changed: &[String],
    ) -> Result<String, crate::aws::Error> {
        // Every attribute forces a new template: the differ never plans an update.
        Err(crate::aws::Error::Refused {
            resource: live.address.to_string(),
            reason: "launch templates are replaced, never updated in place".into(),
        })
    }

    super::writes!(delete);

    fn create_before_destroy(
        live: &crate::model::Live,
        wanted: &crate::model::Attrs,
        _all: &std::collections::BTreeMap<crate::model::Address, crate::model::Live>,
    ) -> bool {
        create_before_destroy(live, wanted)
    }

    async fn names_taken(c: &Clients, names: &[String], _: &LiveMap) -> Result<Vec<String>, Error> {
        let r = c
            .ec2
            .describe_launch_templates()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("launch-template-name")
                    .set_values(Some(names.to_vec()))
                    .build(),
            )
            .send()
            .await
            .ctx("looking up", &"launch template names")?;
        Ok(r.launch_templates()
            .iter()
            .filter_map(|t| t.launch_template_name())
            .map(str::to_string)
            .collect())
    }
}
