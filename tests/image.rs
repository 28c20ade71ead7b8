//! The container image (issue 9): `scripts/image` builds it offline from the binary under test (FROM scratch,
//! non-root), and a container run from it with a read-only root filesystem takes a real payment from the
//! official Python client against the devnet.

mod support;

use std::process::Command;

use alloy::primitives::U256;
use serde_json::Value;
use support::{decode_header, encode_header, free_port, get, price_table, python_sign, wait_http, Stack};

/// The `scripts/image run` process and its container's name: stopped however the test ends.
struct Container {
    name: String,
    podman: std::process::Child,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(support::repo().join("scripts/image"))
            .args(["stop", &self.name])
            .status();
        let _ = self.podman.kill();
        let _ = self.podman.wait();
    }
}

fn image(args: &[&str]) -> std::process::Output {
    let out = Command::new(support::repo().join("scripts/image"))
        .args(args)
        .env("X402_IMAGE", "localhost/x402-gateway:test")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/image {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_read_only_as_non_root_and_takes_a_payment() {
    let bin = support::bin();
    let built = image(&["build", "--binary", bin.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&built.stdout);
    println!("{said}");
    let size: u64 = said
        .split("): ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no size in {said:?}"));
    assert!(size < 100_000_000, "a small image: {size} bytes");
    let inspect = image(&["podman", "image", "inspect", "localhost/x402-gateway:test"]);
    let config: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let c = &config[0]["Config"];
    assert_eq!(c["User"], "65532:65532", "{c}");
    assert!(c.get("Healthcheck").is_none_or(Value::is_null), "no HEALTHCHECK: {c}");
    assert_eq!(c["Labels"]["org.opencontainers.image.title"], "x402-gateway");

    let stack = Stack::start(31_337, "").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    let (listen, admin) = (format!("127.0.0.1:{}", free_port()), free_port());
    let top = format!("admin_listen: \"127.0.0.1:{admin}\"");
    let yaml = price_table(
        &stack.devnet,
        &stack.upstream.url,
        &stack.facilitator.url,
        stack.pay_to,
        &top,
    );
    std::fs::write(&path, yaml.replace("{listen}", &listen)).unwrap();
    // The gateway in the container is uid 65532, not the file's owner.
    Command::new("chmod")
        .args(["a+r", path.to_str().unwrap()])
        .status()
        .unwrap();

    let name = format!("x402-test-{admin}");
    let logs = std::fs::File::create(support::repo().join(format!("target/test-logs/{name}.log"))).unwrap();
    let _container = Container {
        name: name.clone(),
        podman: Command::new(support::repo().join("scripts/image"))
            .args(["run", path.to_str().unwrap(), "--name", &name, "--replace"])
            .env("X402_IMAGE", "localhost/x402-gateway:test")
            .stdout(logs.try_clone().unwrap())
            .stderr(logs)
            .spawn()
            .unwrap(),
    };
    let url = format!("http://{listen}");
    wait_http(&url).await;
    let running = image(&["podman", "inspect", &name]);
    let running: Value = serde_json::from_slice(&running.stdout).unwrap();
    assert_eq!(running[0]["HostConfig"]["ReadonlyRootfs"], true);

    let (payer, key) = stack.devnet.account(3);
    let before = stack.devnet.balance(payer).await;
    let resp = get(&format!("{url}/paid/image"), &[]).await;
    assert_eq!(resp.status(), 402);
    let required = decode_header(resp.headers()["payment-required"].to_str().unwrap());
    let header = encode_header(&python_sign(&required, &key));
    let resp = get(&format!("{url}/paid/image"), &[("payment-signature", &header)]).await;
    assert_eq!(resp.status(), 200);
    let receipt = decode_header(resp.headers()["payment-response"].to_str().unwrap());
    assert_eq!(receipt["success"], true);
    let tx = receipt["transaction"].as_str().unwrap();
    assert_eq!(stack.devnet.receipt(tx).await["status"], "0x1");
    assert_eq!(stack.devnet.balance(payer).await, before - U256::from(1000u64));
    assert_eq!(
        get(&format!("http://127.0.0.1:{admin}/healthz"), &[]).await.status(),
        200
    );
}
