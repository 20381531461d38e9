//! The app's write credential: `up` generates it into an SSM SecureString and writes
//! its SHA-256 to the app bucket; only that digest's key reaches the instances, and
//! the instance role has no grant on Parameter Store. `stack token` prints it,
//! `--rotate` replaces it and its digest, a lost or stale digest is planned and
//! written again, and `down` removes both. Its value never appears in a plan, a saved
//! plan, `up`'s output, the outputs or user data.

mod support;

use support::*;

const PARAMETER: &str = "/stack/directory/write-token";
const VERIFIER: &str = ".stack/write-token.sha256";
const BUCKET: &str = "directory-photos-demo";

/// The verifier object's body and the parameter version it records.
async fn verifier(endpoint: &str) -> Option<(String, String)> {
    let s3 = s3(&sdk(endpoint).await);
    let out = s3
        .get_object()
        .bucket(BUCKET)
        .key(VERIFIER)
        .send()
        .await
        .ok()?;
    let version = out
        .metadata()
        .and_then(|m| m.get("parameter-version"))
        .cloned()
        .unwrap_or_default();
    let body = out.body.collect().await.unwrap().into_bytes();
    Some((String::from_utf8(body.to_vec()).unwrap(), version))
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_write_credential_stays_in_parameter_store() {
    let moto = Moto::start();
    let aws = Proxy::start(Some(moto.port), &[]).await;
    let work = Workdir::new();
    let file = work.file("stacks/web.yaml");
    let saved = work.file("saved.plan");

    let plan = stack(&aws.url(), &["plan", &file, "--out", &saved]);
    assert_ok(&plan);
    assert!(
        text(&plan).contains("+ ssm_parameter.write_token"),
        "{}",
        text(&plan)
    );
    assert!(text(&plan).contains("\"SecureString\""), "{}", text(&plan));
    let up = stack(&aws.url(), &["up", &file, "--yes", "--json"]);
    assert_ok(&up);
    let outputs = stack(&aws.url(), &["outputs", &file]);
    assert_ok(&outputs);
    assert!(
        text(&outputs).contains(&format!("write_token_parameter = {PARAMETER}"))
            && text(&outputs).contains("stack token"),
        "{}",
        text(&outputs)
    );

    // The app's bucket, not the log bucket beside it.
    let bucket_line = text(&outputs)
        .lines()
        .find(|l| l.trim_start().starts_with("bucket "))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        bucket_line.ends_with(&format!("= {BUCKET}")),
        "{}",
        text(&outputs)
    );

    let (value, version) = parameter_value(&moto.url(), PARAMETER)
        .await
        .expect("up stored the credential");
    assert!(value.len() >= 40, "a 256-bit value: {value}");
    assert_eq!(version, 1);

    // Nowhere but in Parameter Store.
    let conf = sdk(&moto.url()).await;
    let mut places = vec![
        ("plan", text(&plan)),
        ("saved plan", std::fs::read_to_string(&saved).unwrap()),
        ("up --json", text(&up)),
        ("outputs", text(&outputs)),
    ];
    for service in ["web", "admin"] {
        let user_data = template_user_data(&conf, &format!("directory-{service}")).await;
        assert!(
            user_data.contains(&format!("APP_WRITE_TOKEN_VERIFIER={VERIFIER}")),
            "the instances learn where the digest is:\n{user_data}"
        );
        places.push(("user data", user_data));
    }
    for (place, content) in &places {
        assert!(
            !content.contains(&value),
            "the credential is in the {place}"
        );
    }

    // The instances check against its digest, taken from version 1.
    assert_eq!(
        verifier(&moto.url()).await,
        Some((sha256_hex(&value), "1".to_string()))
    );

    // The SecureString is the stack's, and the instance role cannot read it.
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let described = ssm.get_parameter().name(PARAMETER).send().await.unwrap();
    assert_eq!(
        described.parameter().unwrap().r#type().unwrap().as_str(),
        "SecureString"
    );
    assert!(
        tagged(&moto.url(), "directory")
            .await
            .contains(&format!("ssm_parameter {PARAMETER}"))
    );
    let iam = aws_sdk_iam::Client::new(&conf);
    let policy = iam
        .get_role_policy()
        .role_name("directory-us-east-1-instance")
        .policy_name("stack-access")
        .send()
        .await
        .unwrap();
    let policy = percent_decode(policy.policy_document());
    assert!(
        !policy.contains("ssm:") && policy.contains(&format!("{BUCKET}/.stack/*")),
        "{policy}"
    );
    assert_converged(&aws.url(), &file);

    // `stack token` prints exactly the value; `--rotate` replaces it and prints nothing.
    let shown = stack(&aws.url(), &["token", &file]);
    assert_ok(&shown);
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), value);
    let rotated = stack(&aws.url(), &["token", &file, "--rotate"]);
    assert_ok(&rotated);
    assert!(rotated.stdout.is_empty(), "{}", text(&rotated));
    let (new_value, version) = parameter_value(&moto.url(), PARAMETER).await.unwrap();
    assert_ne!(new_value, value);
    assert_eq!(version, 2);
    assert!(!text(&rotated).contains(&new_value));
    assert_eq!(
        verifier(&moto.url()).await,
        Some((sha256_hex(&new_value), "2".to_string())),
        "the rotation wrote the new digest"
    );
    // A rotation is not drift.
    assert_converged(&aws.url(), &file);

    // A verifier lost (or a rotation cut short) is planned and written again.
    s3(&conf)
        .delete_object()
        .bucket(BUCKET)
        .key(VERIFIER)
        .send()
        .await
        .unwrap();
    let plan = stack(&aws.url(), &["plan", &file]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let drift = text(&plan);
    assert!(
        drift.contains("~ ssm_parameter.write_token") && drift.contains("\"missing\""),
        "{drift}"
    );
    assert_ok(&stack(&aws.url(), &["up", &file, "--yes"]));
    assert_eq!(
        verifier(&moto.url()).await,
        Some((sha256_hex(&new_value), "2".to_string()))
    );
    assert_converged(&aws.url(), &file);

    let down = stack(&aws.url(), &["down", &file, "--yes"]);
    assert_ok(&down);
    assert_eq!(parameter_value(&moto.url(), PARAMETER).await, None);
    assert_eq!(verifier(&moto.url()).await, None);
    let after = stack(&aws.url(), &["token", &file]);
    assert_eq!(after.status.code(), Some(1));
    assert!(
        text(&after).contains("no write credential yet"),
        "{}",
        text(&after)
    );
}
