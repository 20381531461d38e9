//! Asks an endpoint, once per service and without retries, whether it implements the
//! services a stack needs. LocalStack's community edition answers HTTP 501 for ELBv2
//! and Auto Scaling; the SDK would retry that until its budget is spent.

use super::{Clients, Error, classify};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

/// Probes that get no answer at all (a timeout, a refused connection) are tried this
/// many times before the endpoint is reported unreachable.
const PROBE_TRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Service {
    #[serde(rename = "ec2")]
    Ec2,
    #[serde(rename = "elbv2")]
    Elbv2,
    #[serde(rename = "autoscaling")]
    AutoScaling,
    #[serde(rename = "dynamodb")]
    DynamoDb,
    #[serde(rename = "s3")]
    S3,
    #[serde(rename = "iam")]
    Iam,
    #[serde(rename = "ssm")]
    Ssm,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Ec2 => "EC2",
            Service::Elbv2 => "Elastic Load Balancing v2",
            Service::AutoScaling => "Auto Scaling",
            Service::DynamoDb => "DynamoDB",
            Service::S3 => "S3",
            Service::Iam => "IAM",
            Service::Ssm => "Systems Manager",
        }
    }
}

/// A service the endpoint does not implement, with what it answered.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub service: Service,
    pub code: String,
    pub message: String,
}

enum Answer {
    Present,
    Missing(String, String),
    Unreachable(Error),
}

fn judge<T, E>(service: Service, r: Result<T, SdkError<E, Response>>) -> Answer
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match r {
        Ok(_) => Answer::Present,
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let (code, message) = classify(&e);
            match (status, &e) {
                (Some(501), _) => Answer::Missing(code, message),
                (_, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) => {
                    Answer::Unreachable(Error::Aws {
                        detail: None,
                        action: "reaching".into(),
                        resource: service.name().into(),
                        code,
                        message,
                    })
                }
                // Any other answer (access denied, a validation error) proves the
                // service is there; the real calls will report it properly.
                _ => Answer::Present,
            }
        }
    }
}

/// One line that says what did not answer and what to do about it.
fn unreachable(c: &Clients, service: Service, e: &Error) -> Error {
    let cause = match e {
        Error::Aws { message, .. } => message.clone(),
        other => other.to_string(),
    };
    Error::Config(match &c.endpoint_url {
        Some(url) => format!(
            "nothing answers at {url} ({cause}): start the emulator (`localstack/moto.sh start`) or check --endpoint-url"
        ),
        None => format!(
            "cannot reach AWS {} in {} ({cause}): check the network, and that `{}` is a region your account can use",
            service.name(),
            c.region,
            c.region
        ),
    })
}

/// The services among `need` that the endpoint lacks. Fails if the endpoint cannot be
/// reached at all.
pub async fn missing_services(c: &Clients, need: &[Service]) -> Result<Vec<Missing>, Error> {
    let p = &c.probe;
    let ask = |s: Service| async move {
        let answer = match s {
            Service::Ec2 => judge(
                s,
                p.ec2
                    .describe_vpcs()
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("tag:stack:probe")
                            .values("none")
                            .build(),
                    )
                    .send()
                    .await,
            ),
            Service::Elbv2 => judge(s, p.elb.describe_load_balancers().page_size(1).send().await),
            Service::AutoScaling => judge(
                s,
                p.asg
                    .describe_auto_scaling_groups()
                    .max_records(1)
                    .send()
                    .await,
            ),
            Service::DynamoDb => judge(s, p.ddb.list_tables().limit(1).send().await),
            Service::S3 => judge(s, p.s3.list_buckets().max_buckets(1).send().await),
            Service::Iam => judge(s, p.iam.list_roles().max_items(1).send().await),
            Service::Ssm => judge(s, p.ssm.describe_parameters().max_results(1).send().await),
        };
        (s, answer)
    };
    // No retries for what the endpoint answers (a 501 means "missing" at once), but a
    // probe that got no answer in time is asked again: a cold emulator, a slow link.
    let ask_patiently = |s: Service| async move {
        let mut tries = 1;
        loop {
            match ask(s).await {
                (_, Answer::Unreachable(_)) if tries < PROBE_TRIES => tries += 1,
                other => return other,
            }
        }
    };
    let answers = futures_util::future::join_all(need.iter().map(|&s| ask_patiently(s))).await;
    let mut missing = Vec::new();
    for (service, answer) in answers {
        match answer {
            Answer::Present => {}
            Answer::Missing(code, message) => missing.push(Missing {
                service,
                code,
                message,
            }),
            Answer::Unreachable(e) => return Err(unreachable(c, service, &e)),
        }
    }
    Ok(missing)
}
