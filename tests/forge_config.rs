//! `forge::from_config`: which forge a `capstan.yaml` builds, and the errors of a
//! bad GitHub App key, naming the file.

mod forge_support;

use capstan::config::Config;
use capstan::forge;
use forge_support::keys;

fn load(dir: &tempfile::TempDir, forge: &str) -> Config {
    let path = dir.path().join("capstan.yaml");
    std::fs::write(
        &path,
        format!("repository:\n  url: https://github.com/acme/fleet.git\n{forge}"),
    )
    .unwrap();
    Config::load(&path).expect("valid config")
}

#[tokio::test]
async fn the_configured_forge_is_built() {
    let dir = tempfile::tempdir().unwrap();
    assert!(forge::from_config(&load(&dir, "")).unwrap().is_none());

    let github = forge::from_config(&load(
        &dir,
        "forge:\n  kind: github\n  tokenEnv: CAPSTAN_TEST_UNSET_TOKEN\n",
    ))
    .unwrap()
    .expect("a forge");
    assert_eq!(github.kind(), "github");
    assert!(github.supports_deployments());

    let gitea = forge::from_config(&load(
        &dir,
        "forge:\n  kind: gitea\n  apiUrl: http://127.0.0.1:3000/api/v1\n  owner: acme\n  repo: fleet\n",
    ))
    .unwrap()
    .expect("a forge");
    assert_eq!(gitea.kind(), "gitea");
    assert!(!gitea.supports_deployments());
}

#[tokio::test]
async fn a_github_app_is_built_from_its_key_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.pem"), &keys().private_pem).unwrap();
    let config = load(
        &dir,
        "forge:\n  kind: github\n  githubApp:\n    appId: 12\n    installationId: 34\n    privateKeyFile: app.pem\n",
    );
    let installation = forge::installation_from_config(&config)
        .unwrap()
        .expect("an App");
    assert_eq!(installation.id, 34);
    assert_eq!(installation.provider.app_id(), 12);
    assert_eq!(installation.provider.installations(), [34]);
    assert_eq!(installation.cached_token(), None);
    let github = forge::from_config_with(&config, Some(installation))
        .unwrap()
        .expect("a forge");
    assert_eq!(github.kind(), "github");

    std::fs::write(
        dir.path().join("app.pem"),
        "-----BEGIN RSA PRIVATE KEY-----\nnope\n",
    )
    .unwrap();
    let err = forge::from_config(&config).unwrap_err().to_string();
    assert!(
        err.contains("app.pem") && err.contains("not an RSA PEM key"),
        "{err}"
    );
}
