//! The proxy's real-AWS mode: where moto 5.2.5 is kinder than AWS, answer as AWS
//! does. One rule per documented behaviour, each citing where AWS documents it (the
//! service's API Reference, or terraform-provider-aws, which has met it in
//! production). docs/aws-fidelity.md lists every operation the engine calls and the
//! rule (or fault) that exercises it.
//!
//! Rules that need to know the emulator's state ask moto themselves, with the
//! client's own Authorization header (moto reads the region and service from it).

use super::proxy::{Request, aws_error, find, response_with_body};
use regex::Regex;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the real-AWS mode remembers between calls.
#[derive(Default)]
pub struct RealState {
    /// DynamoDB table → (status it reads while busy, calls naming it left until ACTIVE).
    tables: HashMap<String, (&'static str, u32)>,
    /// DynamoDB table → when it was created (backups are unavailable for a while).
    created: HashMap<String, Instant>,
}

/// The knobs of the real-AWS mode.
#[derive(Debug, Clone, Default)]
pub struct RealAws {
    pub on: bool,
    /// A table reads CREATING/UPDATING for this many calls naming it.
    pub table_busy_calls: u32,
    /// UpdateContinuousBackups answers ContinuousBackupsUnavailableException for this
    /// long after the table's CreateTable.
    pub pitr_unavailable: Duration,
}

impl RealAws {
    pub fn on() -> RealAws {
        RealAws {
            on: true,
            table_busy_calls: 2,
            pitr_unavailable: Duration::ZERO,
        }
    }
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid regex"))
}

/// `Name.member.N` / `Name=...` values of a form-encoded (already decoded) body.
fn form_values<'a>(body: &'a str, prefix: &str) -> Vec<&'a str> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == prefix || k.starts_with(&format!("{prefix}.")))
        .map(|(_, v)| v)
        .collect()
}

fn form_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn element<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// A top-level number of a JSON request body.
fn json_number(body: &str, key: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(body).ok()?[key].as_i64()
}

/// A top-level string of a JSON request body.
fn json_string(body: &str, key: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body).ok()?[key]
        .as_str()
        .map(str::to_owned)
}

fn table_name(body: &str) -> Option<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    re(&RE, r#""TableName"\s*:\s*"([^"]+)""#)
        .captures(body)
        .map(|c| c[1].to_string())
}

/// One form-encoded query call to moto with the client's credentials; the body text.
async fn ask_moto(port: u16, req: &Request, form: &[(&str, &str)]) -> Option<String> {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let auth = super::proxy::header(&req.head, "authorization").unwrap_or_default();
    let date = super::proxy::header(&req.head, "x-amz-date").unwrap_or_default();
    let text = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\nX-Amz-Date: {date}\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut up = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    up.write_all(text.as_bytes()).await.ok()?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await.ok()?;
    let end = find(&resp, b"\r\n\r\n")?;
    Some(String::from_utf8_lossy(&resp[end + 4..]).into_owned())
}

/// moto's DescribeAutoScalingGroups answer for one group name.
async fn group_xml(port: u16, req: &Request, name: &str) -> String {
    ask_moto(
        port,
        req,
        &[
            ("Action", "DescribeAutoScalingGroups"),
            ("Version", "2011-01-01"),
            ("AutoScalingGroupNames.member.1", name),
        ],
    )
    .await
    .unwrap_or_default()
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What the mode does with a call before it reaches moto.
pub enum Verdict {
    /// Answer the client with this instead.
    Answer(Vec<u8>),
    /// Let moto handle it.
    Forward,
}

/// Decides a call by the rules below; `None` when no rule applies.
pub async fn before(
    cfg: &RealAws,
    st: &Arc<Mutex<RealState>>,
    port: u16,
    req: &Request,
    service: &str,
    action: &str,
    body: &str,
) -> Verdict {
    if !cfg.on {
        return Verdict::Forward;
    }
    let head_only = req.method() == "HEAD";
    let err = |status: u16, code: &str, message: &str| {
        Verdict::Answer(aws_error(service, status, code, message, head_only))
    };
    match (service, action) {
        // SSM API Reference, GetParametersByPath, MaxResults: "Valid Range: Minimum
        // value of 1. Maximum value of 10." moto takes any number.
        ("ssm", "GetParametersByPath")
            if json_number(body, "MaxResults").is_some_and(|n| !(1..=10).contains(&n)) =>
        {
            err(
                400,
                "ValidationException",
                "1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 10",
            )
        }
        // SSM API Reference, PutParameter: a name may not begin with `aws` or `ssm`,
        // and a hierarchical name needs its leading `/`. moto checks the first only.
        ("ssm", "PutParameter")
            if json_string(body, "Name")
                .is_some_and(|n| n.contains('/') && !n.starts_with('/')) =>
        {
            err(
                400,
                "ValidationException",
                "Parameter name must be a fully qualified name.",
            )
        }
        // EC2 API Reference, CreateNetworkAclEntry, RuleNumber: "Constraints: Positive
        // integer from 1 to 32766." moto takes any number.
        ("ec2", "CreateNetworkAclEntry" | "ReplaceNetworkAclEntry")
            if form_value(body, "RuleNumber")
                .and_then(|n| n.parse::<i64>().ok())
                .is_some_and(|n| !(1..=32766).contains(&n)) =>
        {
            err(
                400,
                "InvalidParameterValue",
                "Invalid value for parameter ruleNumber: must be between 1 and 32766",
            )
        }
        // ELB User Guide, "Enable access logs": the prefix "can't include AWSLogs".
        // moto stores any prefix.
        ("elasticloadbalancing", "ModifyLoadBalancerAttributes")
            if body.contains("access_logs.s3.prefix")
                && body
                    .split('&')
                    .any(|kv| kv.starts_with("Attributes.member.") && kv.contains("AWSLogs")) =>
        {
            err(
                400,
                "InvalidConfigurationRequest",
                "The prefix for access logs cannot contain 'AWSLogs'",
            )
        }
        // ELBv2 API Reference, CreateListener / ModifyListener, Certificates: "if the
        // protocol is HTTPS … you must specify exactly one certificate". moto accepts
        // an HTTPS listener without one.
        ("elasticloadbalancing", "CreateListener" | "ModifyListener")
            if form_value(body, "Protocol") == Some("HTTPS")
                && !body.contains("Certificates.member.1.CertificateArn=") =>
        {
            err(
                400,
                "ValidationError",
                "A certificate must be specified for HTTPS listeners",
            )
        }
        // ELBv2 API Reference, CreateLoadBalancer, Name: "must not begin with
        // `internal-`". moto accepts it.
        ("elasticloadbalancing", "CreateLoadBalancer")
            if form_value(body, "Name").is_some_and(|n| n.starts_with("internal-")) =>
        {
            err(
                400,
                "ValidationError",
                "The load balancer name cannot begin with 'internal-'",
            )
        }
        // ELBv2 API Reference, DeleteLoadBalancer: "If deletion protection is enabled,
        // the load balancer cannot be deleted" (OperationNotPermitted). moto deletes it.
        ("elasticloadbalancing", "DeleteLoadBalancer") => {
            let arn = form_value(body, "LoadBalancerArn").unwrap_or_default();
            let attributes = ask_moto(
                port,
                req,
                &[
                    ("Action", "DescribeLoadBalancerAttributes"),
                    ("Version", "2015-12-01"),
                    ("LoadBalancerArn", arn),
                ],
            )
            .await
            .unwrap_or_default();
            static RE: OnceLock<Regex> = OnceLock::new();
            let protected = re(
                &RE,
                r"<Key>deletion_protection\.enabled</Key>\s*<Value>true</Value>",
            )
            .is_match(&attributes);
            if protected {
                err(
                    400,
                    "OperationNotPermitted",
                    &format!(
                        "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
                    ),
                )
            } else {
                Verdict::Forward
            }
        }
        // ELBv2 API Reference, DescribeTags, ResourceArns: "Maximum number of 20 items".
        ("elasticloadbalancing", "DescribeTags")
            if form_values(body, "ResourceArns.member").len() > 20 =>
        {
            err(
                400,
                "ValidationError",
                "1 validation error detected: Value at 'resourceArns' failed to satisfy constraint: Member must have length less than or equal to 20",
            )
        }
        // ELBv2 API Reference, SetRulePriorities: the priorities of the rules named in
        // one call change together; a priority held by a rule NOT in the call answers
        // PriorityInUse. moto checks each new priority against every rule, the ones in
        // the call included, so it refuses the swap AWS accepts: the mode checks as AWS
        // does and then applies the change through free priorities.
        ("elasticloadbalancing", "SetRulePriorities") => {
            set_rule_priorities(port, req, body, head_only).await
        }
        // EC2 API Reference, CreateVpcEndpoint: RouteTableId is for gateway endpoints
        // only, SubnetId, SecurityGroupId and PrivateDnsEnabled for interface ones
        // (AWS: "Route table IDs are only supported for Gateway type VPC Endpoint").
        // moto stores whatever it is sent.
        ("ec2", "CreateVpcEndpoint") => {
            let gateway = form_value(body, "VpcEndpointType").is_none_or(|t| t == "Gateway");
            let has = |k: &str| body.split('&').any(|kv| kv.starts_with(k));
            if !gateway && has("RouteTableId.") {
                err(
                    400,
                    "InvalidParameter",
                    "Route table IDs are only supported for Gateway type VPC Endpoint",
                )
            } else if gateway
                && (has("SubnetId.") || has("SecurityGroupId.") || has("PrivateDnsEnabled="))
            {
                err(
                    400,
                    "InvalidParameter",
                    "Subnets, security groups and private DNS are only supported for Interface type VPC Endpoint",
                )
            } else {
                Verdict::Forward
            }
        }
        // EC2 API Reference, CreateSecurityGroup, GroupName: "Cannot start with sg-".
        ("ec2", "CreateSecurityGroup")
            if form_value(body, "GroupName").is_some_and(|n| n.starts_with("sg-")) =>
        {
            err(
                400,
                "InvalidParameterValue",
                "Value for parameter GroupName is invalid: group names may not be in the format sg-*",
            )
        }
        // EC2 API Reference, DescribeLaunchTemplates / DescribeLaunchTemplateVersions,
        // MaxResults: "a value between 1 and 200"; other Describe calls: 5 to 1000.
        ("ec2", a) if a.starts_with("Describe") => {
            let max = if a.starts_with("DescribeLaunchTemplate") {
                200
            } else {
                1000
            };
            match form_value(body, "MaxResults").and_then(|m| m.parse::<u32>().ok()) {
                Some(m) if m > max => err(
                    400,
                    "InvalidParameterValue",
                    &format!("MaxResults must be at most {max}, not {m}"),
                ),
                _ => Verdict::Forward,
            }
        }
        // EC2 API Reference, DeleteSecurityGroup: a group "referenced by another
        // security group in the same VPC" cannot be deleted (DependencyViolation).
        ("ec2", "DeleteSecurityGroup") => {
            let Some(id) = form_value(body, "GroupId") else {
                return Verdict::Forward;
            };
            let Some(all) = ask_moto(
                port,
                req,
                &[
                    ("Action", "DescribeSecurityGroups"),
                    ("Version", "2016-11-15"),
                ],
            )
            .await
            else {
                return Verdict::Forward;
            };
            match referencing_group(&all, id) {
                Some(other) => err(
                    400,
                    "DependencyViolation",
                    &format!("resource {id} has a dependent object ({other} references it)"),
                ),
                None => Verdict::Forward,
            }
        }
        // Auto Scaling API Reference, CreateAutoScalingGroup, Errors: AlreadyExists
        // ("You already have an Auto Scaling group ... with the name"). moto silently
        // replaces the group.
        ("autoscaling", "CreateAutoScalingGroup") => {
            let Some(name) = form_value(body, "AutoScalingGroupName") else {
                return Verdict::Forward;
            };
            let existing = group_xml(port, req, name).await;
            if element(&existing, "AutoScalingGroupName").contains(&name) {
                err(
                    400,
                    "AlreadyExists",
                    &format!(
                        "AutoScalingGroup by this name already exists - A group with the name {name} already exists"
                    ),
                )
            } else {
                Verdict::Forward
            }
        }
        // Auto Scaling API Reference, DeleteAutoScalingGroup: "If the group has
        // instances or scaling activities in progress, you must specify the option to
        // force the deletion" (ResourceInUse / ScalingActivityInProgress).
        ("autoscaling", "DeleteAutoScalingGroup")
            if form_value(body, "ForceDelete") != Some("true") =>
        {
            let name = form_value(body, "AutoScalingGroupName").unwrap_or_default();
            let g = group_xml(port, req, name).await;
            if element(&g, "InstanceId").is_empty() {
                Verdict::Forward
            } else {
                err(
                    400,
                    "ResourceInUse",
                    "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.",
                )
            }
        }
        // Auto Scaling API Reference, DescribeAutoScalingGroups / DescribePolicies,
        // MaxRecords: "The maximum value is 100".
        ("autoscaling", "DescribeAutoScalingGroups" | "DescribePolicies")
            if form_value(body, "MaxRecords")
                .and_then(|m| m.parse::<u32>().ok())
                .is_some_and(|m| m > 100) =>
        {
            err(400, "ValidationError", "MaxRecords must be at most 100")
        }
        // S3 API Reference, CreateBucket: in us-east-1 a LocationConstraint is refused
        // (InvalidLocationConstraint); elsewhere it must name the region
        // (IllegalLocationConstraintException).
        ("s3", "CreateBucket") => {
            let region = super::proxy::credential_region(&req.head);
            let says = element(body, "LocationConstraint")
                .first()
                .map(|s| s.to_string());
            match (region.as_str(), says) {
                ("us-east-1", Some(c)) if !c.is_empty() => err(
                    400,
                    "InvalidLocationConstraint",
                    "The specified location-constraint is not valid",
                ),
                (r, None) if r != "us-east-1" => err(
                    400,
                    "IllegalLocationConstraintException",
                    "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to.",
                ),
                _ => Verdict::Forward,
            }
        }
        ("dynamodb", _) => dynamodb(cfg, st, action, body, head_only),
        _ => Verdict::Forward,
    }
}

/// DynamoDB API Reference: a table is CREATING after CreateTable and UPDATING after
/// UpdateTable before it is ACTIVE. DeleteTable, UpdateTable and
/// UpdateContinuousBackups on a table in those states answer ResourceInUseException;
/// item calls on a CREATING table answer ResourceNotFoundException.
/// UpdateContinuousBackups answers ContinuousBackupsUnavailableException while backups
/// are being enabled on a new table (terraform-provider-aws table.go waits 20 minutes).
fn dynamodb(
    cfg: &RealAws,
    st: &Arc<Mutex<RealState>>,
    action: &str,
    body: &str,
    head_only: bool,
) -> Verdict {
    // DescribeTable counts in `after`, where its answer is rewritten.
    let Some(table) = table_name(body).filter(|_| action != "DescribeTable") else {
        return Verdict::Forward;
    };
    let mut st = st.lock().unwrap();
    if action == "UpdateContinuousBackups"
        && st
            .created
            .get(&table)
            .is_some_and(|at| at.elapsed() < cfg.pitr_unavailable)
    {
        return Verdict::Answer(aws_error(
            "dynamodb",
            400,
            "ContinuousBackupsUnavailableException",
            "Backups are being enabled for the table. Please retry later",
            head_only,
        ));
    }
    let Some((status, left)) = st.tables.get_mut(&table) else {
        return Verdict::Forward;
    };
    let status = *status;
    *left = left.saturating_sub(1);
    if *left == 0 {
        st.tables.remove(&table);
    }
    match action {
        "DeleteTable" | "UpdateTable" | "UpdateContinuousBackups" => Verdict::Answer(aws_error(
            "dynamodb",
            400,
            "ResourceInUseException",
            &format!(
                "Attempt to change a resource which is still in use: Table is being {}: {table}",
                status.to_lowercase()
            ),
            head_only,
        )),
        "PutItem" | "GetItem" | "DeleteItem" | "UpdateItem" | "Query" | "Scan"
            if status == "CREATING" =>
        {
            Verdict::Answer(aws_error(
                "dynamodb",
                400,
                "ResourceNotFoundException",
                "Requested resource not found",
                head_only,
            ))
        }
        _ => Verdict::Forward,
    }
}

/// What the mode changes in moto's answer.
pub fn after(
    cfg: &RealAws,
    st: &Arc<Mutex<RealState>>,
    service: &str,
    action: &str,
    body: &str,
    resp_body: &str,
) -> Option<String> {
    if !cfg.on {
        return None;
    }
    match (service, action) {
        // IAM API Reference, ListRoles / ListInstanceProfiles / ListUsers: "This
        // operation does not return tags, even though they are an attribute of the
        // returned object. To view all of the information ..., use GetRole" (and
        // GetInstanceProfile, ListInstanceProfileTags). moto returns them.
        ("iam", "ListRoles" | "ListInstanceProfiles" | "ListUsers") => {
            static RE: OnceLock<Regex> = OnceLock::new();
            let stripped = re(&RE, r"(?s)<Tags>.*?</Tags>").replace_all(resp_body, "");
            Some(stripped.into_owned())
        }
        ("dynamodb", "CreateTable" | "UpdateTable") => {
            let table = table_name(body)?;
            let mut st = st.lock().unwrap();
            if action == "CreateTable" {
                st.created.insert(table.clone(), Instant::now());
            }
            if cfg.table_busy_calls > 0 {
                let status = if action == "CreateTable" {
                    "CREATING"
                } else {
                    "UPDATING"
                };
                st.tables.insert(table, (status, cfg.table_busy_calls));
                return Some(set_table_status(resp_body, status));
            }
            None
        }
        ("dynamodb", "DescribeTable") => {
            let table = table_name(body)?;
            let mut st = st.lock().unwrap();
            let (status, left) = st.tables.get_mut(&table)?;
            let status = *status;
            *left = left.saturating_sub(1);
            if *left == 0 {
                st.tables.remove(&table);
            }
            Some(set_table_status(resp_body, status))
        }
        _ => None,
    }
}

fn set_table_status(body: &str, status: &str) -> String {
    static RE: OnceLock<Regex> = OnceLock::new();
    re(&RE, r#""TableStatus"\s*:\s*"ACTIVE""#)
        .replace_all(body, format!("\"TableStatus\": \"{status}\"").as_str())
        .into_owned()
}

/// The group (other than `id`) whose rules name `id`, in a DescribeSecurityGroups
/// answer.
pub fn referencing_group(xml: &str, id: &str) -> Option<String> {
    let needle = format!("<groupId>{id}</groupId>");
    let mut owner_from = 0;
    let mut rest_at = 0;
    while let Some(i) = xml[rest_at..].find("<ipPermissions>") {
        let start = rest_at + i;
        let end = xml[start..].find("</ipPermissions>").map(|j| start + j)?;
        // The group owning this block: the last <groupId> between the previous block
        // and this one.
        let owner = element(&xml[owner_from..start], "groupId")
            .last()
            .map(|s| s.to_string());
        if xml[start..end].contains(&needle) && owner.as_deref() != Some(id) {
            return Some(owner.unwrap_or_default());
        }
        owner_from = end;
        rest_at = end;
    }
    None
}

async fn set_rule_priorities(port: u16, req: &Request, body: &str, head_only: bool) -> Verdict {
    // Pairs arrive as RulePriorities.member.N.RuleArn / .Priority.
    let mut pairs: Vec<(String, String)> = Vec::new();
    for n in 1.. {
        let arn = form_value(body, &format!("RulePriorities.member.{n}.RuleArn"));
        let prio = form_value(body, &format!("RulePriorities.member.{n}.Priority"));
        match (arn, prio) {
            (Some(a), Some(p)) => pairs.push((a.to_string(), p.to_string())),
            _ => break,
        }
    }
    if pairs.is_empty() {
        return Verdict::Forward;
    }
    // arn:…:listener-rule/app/LB/ID/LISTENER/RULE → arn:…:listener/app/LB/ID/LISTENER
    let listener = pairs[0]
        .0
        .replacen(":listener-rule/", ":listener/", 1)
        .rsplit_once('/')
        .map(|(l, _)| l.to_string())
        .unwrap_or_default();
    let Some(rules) = ask_moto(
        port,
        req,
        &[
            ("Action", "DescribeRules"),
            ("Version", "2015-12-01"),
            ("ListenerArn", &listener),
        ],
    )
    .await
    else {
        return Verdict::Forward;
    };
    // Each rule's ARN, then its priority before the next rule's ARN.
    let held: Vec<(String, String)> = rules
        .split("<RuleArn>")
        .skip(1)
        .filter_map(|chunk| {
            let arn = chunk.split("</RuleArn>").next()?.to_string();
            let prio = element(chunk, "Priority").first()?.to_string();
            Some((arn, prio))
        })
        .collect();
    let moving: Vec<&str> = pairs.iter().map(|(a, _)| a.as_str()).collect();
    for (_, p) in &pairs {
        if held
            .iter()
            .any(|(arn, hp)| hp == p && !moving.contains(&arn.as_str()))
        {
            return Verdict::Answer(aws_error(
                "elasticloadbalancing",
                400,
                "PriorityInUse",
                &format!("Priority '{p}' is currently in use"),
                head_only,
            ));
        }
    }
    // Valid for AWS: apply it on moto one rule at a time, through free priorities.
    let taken: Vec<u32> = held.iter().filter_map(|(_, p)| p.parse().ok()).collect();
    let mut free = (40_000u32..).filter(|p| !taken.contains(p));
    for (arn, _) in &pairs {
        let tmp = free.next().unwrap_or(49_999).to_string();
        one_priority(port, req, arn, &tmp).await;
    }
    for (arn, p) in &pairs {
        one_priority(port, req, arn, p).await;
    }
    let rid = "real-aws-mode";
    Verdict::Answer(response_with_body(
        200,
        "text/xml",
        &format!(
            "<SetRulePrioritiesResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><SetRulePrioritiesResult><Rules/></SetRulePrioritiesResult><ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></SetRulePrioritiesResponse>"
        ),
        head_only,
    ))
}

async fn one_priority(port: u16, req: &Request, arn: &str, priority: &str) {
    ask_moto(
        port,
        req,
        &[
            ("Action", "SetRulePriorities"),
            ("Version", "2015-12-01"),
            ("RulePriorities.member.1.RuleArn", arn),
            ("RulePriorities.member.1.Priority", priority),
        ],
    )
    .await;
}
