//! The app's write credential: `up` generates it into an SSM SecureString, only the
//! parameter's name reaches the instances, the instance role may read that one
//! parameter, `stack token` prints it and `--rotate` replaces it, and `down` removes
//! it. Its value never appears in a plan, a saved plan, `up`'s output, the outputs or
//! user data.

mod support;

use support::*;

const PARAMETER: &str = "/stack/directory/write-token";

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
            user_data.contains(&format!("APP_WRITE_TOKEN_PARAMETER={PARAMETER}")),
            "the instances learn the parameter's name:\n{user_data}"
        );
        places.push(("user data", user_data));
    }
    for (place, content) in &places {
        assert!(
            !content.contains(&value),
            "the credential is in the {place}"
        );
    }

    // The SecureString is the stack's, and the instance role may read exactly it.
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
        policy.contains(&format!(
            "\"arn:aws:ssm:us-east-1:123456789012:parameter{PARAMETER}\""
        )) && policy.contains("\"ssm:GetParameter\""),
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
    // A rotation is not drift.
    assert_converged(&aws.url(), &file);

    let down = stack(&aws.url(), &["down", &file, "--yes"]);
    assert_ok(&down);
    assert_eq!(parameter_value(&moto.url(), PARAMETER).await, None);
    let after = stack(&aws.url(), &["token", &file]);
    assert_eq!(after.status.code(), Some(1));
    assert!(
        text(&after).contains("no write credential yet"),
        "{}",
        text(&after)
    );
}
