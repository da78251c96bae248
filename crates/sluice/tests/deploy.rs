//! The Kubernetes base in `deploy/kubernetes/base`: every manifest is valid for the cluster's
//! own schemas (`kubernetes-validate --strict`, from PyPI: `SLUICE_K8S_VALIDATE` names it;
//! `.ci/run` installs it and sets `SLUICE_REQUIRE_K8S_VALIDATE`), the kustomization lists them
//! all, and what the containers run is what this binary accepts: the gateway starts on the
//! base's own `gateway.yaml` with the containers' arguments, and so does the control plane.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on setup errors"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{sluice, spawn_with_banner};

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/base")
}

/// The container's `args` flow list in a Deployment manifest.
fn container_args(manifest: &str) -> Vec<String> {
    let text = std::fs::read_to_string(base().join(manifest)).unwrap();
    let start = text.find("args: [").unwrap() + "args: ".len();
    let end = start + text[start..].find(']').unwrap() + 1;
    serde_json::from_str(&text[start..end].replace('\n', " ")).unwrap()
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let kustomization = std::fs::read_to_string(base().join("kustomization.yaml")).unwrap();
    for entry in std::fs::read_dir(base()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == "kustomization.yaml" {
            continue;
        }
        let listed = if name == "gateway.yaml" {
            kustomization.contains("files: [gateway.yaml]")
        } else {
            kustomization.contains(&format!("  - {name}\n"))
        };
        assert!(listed, "{name} is not in the kustomization");
    }
}

#[test]
fn the_manifests_are_valid_for_kubernetes() {
    let Some(validate) = std::env::var_os("SLUICE_K8S_VALIDATE") else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_K8S_VALIDATE").is_none(),
            "SLUICE_K8S_VALIDATE is required here"
        );
        eprintln!("skipped: set SLUICE_K8S_VALIDATE to a kubernetes-validate binary");
        return;
    };
    let manifests: Vec<PathBuf> = std::fs::read_dir(base())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name != "kustomization.yaml" && name != "gateway.yaml"
        })
        .collect();
    let output = std::process::Command::new(&validate)
        .args(["-k", "1.32.0", "--strict"])
        .args(&manifests)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        manifests.len(),
        "{text}"
    );
    // And it does refuse what the API server would: a misspelt field.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(base().join("gateway-deployment.yaml"))
            .unwrap()
            .replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"),
    )
    .unwrap();
    let output = std::process::Command::new(&validate)
        .args(["-k", "1.32.0", "--strict"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!output.status.success());
}

/// The containers' arguments, with this machine's loopback addresses for the pods' and the
/// checkout's config for the mounted one, start the real binary.
#[test]
fn the_containers_arguments_start_the_gateway_and_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let local = |args: Vec<String>| -> Vec<String> {
        args.into_iter()
            .map(|a| match a.as_str() {
                "0.0.0.0:8080" | "0.0.0.0:8081" | "0.0.0.0:8090" => "127.0.0.1:0".to_owned(),
                "/etc/sluice/gateway.yaml" => base().join("gateway.yaml").display().to_string(),
                _ => a,
            })
            .collect()
    };
    for (manifest, expected) in [
        ("gateway-deployment.yaml", "Sluice gateway listening"),
        ("serve-deployment.yaml", "sluice serve: the control plane"),
    ] {
        let args = local(container_args(manifest));
        let mut command = sluice();
        command
            .env("SLUICE_STORE", dir.path().join("s.db"))
            .env("SLUICE_ADMIN_TOKEN", "a-token-long-enough-for-both")
            .args(&args);
        let (mut child, banner, _) = spawn_with_banner(&mut command);
        let _ = child.kill();
        let _ = child.wait();
        assert!(banner.contains(expected), "{manifest}: {args:?}: {banner}");
    }
}
