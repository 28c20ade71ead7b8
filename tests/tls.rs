//! TLS on the listener (`tls:`), end to end: certificates made here (a CA and a leaf for localhost), the
//! gateway serving them over HTTP/1.1 and HTTP/2, the official TypeScript client paying over HTTPS, a
//! renewed certificate swapped in while running, a broken one refused with the running one kept, and
//! `check` pointing at a key that does not go with its certificate.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;
use support::{decode_header, free_port, node, run_client, spawn, Stack};

/// A CA and a leaf it signed for `localhost` and `127.0.0.1`, as PEM: (CA certificate, leaf, leaf's key).
fn issue(ca_name: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// Replaces `path`'s content at once, as a certificate manager does (write aside, rename over).
fn replace(path: &Path, content: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// A client builder that trusts only `ca_pem`.
fn trusting(ca_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
}

/// A client that trusts only `ca_pem`, on a fresh connection pool.
fn client_trusting(ca_pem: &str) -> reqwest::Client {
    trusting(ca_pem).build().unwrap()
}

/// Polls until a fresh client trusting `ca_pem` gets an answer from `url`; returns it.
async fn until_trusted(ca_pem: &str, url: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client_trusting(ca_pem).get(url).send().await {
            Ok(r) => return r,
            Err(e) => assert!(
                Instant::now() < deadline,
                "{url} never served a certificate of that CA: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of the samples of `name` with `label` in a Prometheus scrape.
fn sample(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Polls the admin `/metrics` until `name{label}` reaches `want`.
async fn metric_reaches(admin: &str, name: &str, label: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = reqwest::get(format!("{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if sample(&m, name, label) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{{{label}}} never reached {want}:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_serves_https_the_official_client_pays_over_it_and_a_renewed_certificate_is_swapped_in() {
    let stack = Stack::start(31_337, "").await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (ca_a, leaf_a, key_a) = issue("test CA A");
    std::fs::write(&cert, &leaf_a).unwrap();
    std::fs::write(&key, &key_a).unwrap();
    let ca_a_file = dir.path().join("ca-a.pem");
    std::fs::write(&ca_a_file, &ca_a).unwrap();

    let (port, admin_port) = (free_port(), free_port());
    let top = format!(
        "admin_listen: \"127.0.0.1:{admin_port}\"\nreload: {{interval: 200ms}}\ntls:\n  cert: \"{}\"\n  key: \"{}\"",
        cert.display(),
        key.display()
    );
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        stack.table(&top).replace("{listen}", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let _gw = spawn(
        &format!("gateway-tls-{port}"),
        &["run", "-c", config.to_str().unwrap()],
        &[],
    );
    let base = format!("https://localhost:{port}");
    let admin = format!("http://127.0.0.1:{admin_port}");

    // HTTPS with HTTP/2 by ALPN; the upstream is told the client used https.
    let free = until_trusted(&ca_a, &format!("{base}/free/tls")).await;
    assert_eq!(
        (free.status().as_u16(), free.version()),
        (200, reqwest::Version::HTTP_2)
    );
    let echo: Value = free.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "{echo}");
    // HTTP/1.1 too, for clients without h2.
    let h1 = trusting(&ca_a).http1_only().build().unwrap();
    let r = h1.get(format!("{base}/free/h1")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_11));
    // Nothing is served in the clear on that port.
    let clear = reqwest::get(format!("http://127.0.0.1:{port}/free/clear")).await;
    assert!(
        !clear.as_ref().is_ok_and(|r| r.status() == 200),
        "plain HTTP answered on the TLS listener: {clear:?}"
    );

    // The 402 names the https URL the client asked for.
    let challenge = client_trusting(&ca_a)
        .get(format!("{base}/paid/tls"))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 402);
    let required = decode_header(challenge.headers()["payment-required"].to_str().unwrap());
    assert_eq!(required["resource"]["url"], format!("{base}/paid/tls"), "{required}");

    // The official TypeScript client pays over HTTPS, trusting CA A the way Node is told to.
    let (payer, pk) = stack.devnet.account(2);
    let (payer_before, payee_before) = (
        stack.devnet.balance(payer).await,
        stack.devnet.balance(stack.pay_to).await,
    );
    let url = format!("{base}/paid/tls");
    let out = run_client(
        &node(),
        "pay_v2.mjs",
        &[
            ("URL", &url),
            ("PRIVATE_KEY", &pk),
            ("NODE_EXTRA_CA_CERTS", ca_a_file.to_str().unwrap()),
        ],
        None,
    );
    assert_eq!(out["status"], 200, "{out}");
    let tx = out["payment_response"]["transaction"].as_str().unwrap();
    assert_eq!(stack.devnet.receipt(tx).await["status"], "0x1", "{out}");
    assert_eq!(stack.devnet.balance(payer).await, payer_before - U256::from(1000));
    assert_eq!(
        stack.devnet.balance(stack.pay_to).await,
        payee_before + U256::from(1000)
    );

    // A renewed certificate (another CA here, so the two are told apart) is served without a restart.
    let (ca_b, leaf_b, key_b) = issue("test CA B");
    replace(&key, &key_b);
    replace(&cert, &leaf_b);
    let renewed = until_trusted(&ca_b, &format!("{base}/free/renewed")).await;
    assert_eq!(renewed.status(), 200);
    metric_reaches(&admin, "x402_tls_certificate_reloads_total", "result=\"success\"", 1.0).await;
    assert!(
        client_trusting(&ca_a)
            .get(format!("{base}/free/old"))
            .send()
            .await
            .is_err(),
        "a new connection still got the old certificate"
    );

    // A broken key is refused and counted; the running certificate stays.
    replace(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    metric_reaches(&admin, "x402_tls_certificate_reloads_total", "result=\"failure\"", 1.0).await;
    let kept = client_trusting(&ca_b)
        .get(format!("{base}/free/kept"))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 200);
}

#[test]
fn check_points_at_a_key_that_does_not_go_with_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (_, leaf, _) = issue("test CA");
    let (_, _, other_key) = issue("other CA");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, leaf).unwrap();
    std::fs::write(&key, other_key).unwrap();
    let config = dir.path().join("gateway.yaml");
    let yaml = format!(
        "upstreams:\n  default: http://127.0.0.1:3000\ntls:\n  cert: \"{}\"\n  key: \"{}\"\n",
        cert.display(),
        key.display()
    );
    let check = |yaml: &str| {
        std::fs::write(&config, yaml).unwrap();
        let out = std::process::Command::new(support::bin())
            .args(["check", "-c", config.to_str().unwrap()])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = check(&yaml);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("gateway.yaml:5:3:") && err.contains("tls.key") && err.contains("does not go with"),
        "{err}"
    );
    let (code, err) = check(&yaml.replace("tls.crt", "missing.crt"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("gateway.yaml:4:3:") && err.contains("tls.cert"), "{err}");
}
