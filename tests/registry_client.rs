//! The Distribution client against a real registry: tag listing with
//! pagination, digests, OCI and Docker manifests and indexes, config blobs, and
//! scanning a policy.

#[path = "registry_support/mod.rs"]
mod support;

use capstan::registry::client::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use capstan::registry::transport::RegistrySettings;
use capstan::registry::{ErrorKind, RegistryClient, ScanOptions, Scanner};
use support::proxy::Proxy;
use support::push::{Image, Pusher};
use support::registry::Registry;

fn client(host: &str) -> RegistryClient {
    RegistryClient::new(support::plain(host), support::fast_options()).expect("client")
}

fn client_with_page_size(host: &str, n: u32) -> RegistryClient {
    let options = capstan::registry::transport::ClientOptions {
        page_size: n,
        ..support::fast_options()
    };
    RegistryClient::new(support::plain(host), options).expect("client")
}

/// The registry's own order of tags (a raw `tags/list`).
async fn raw_tags(url: &str, repo: &str, query: &str) -> (serde_json::Value, Option<String>) {
    let resp = reqwest_plain()
        .get(format!("{url}/v2/{repo}/tags/list{query}"))
        .send()
        .await
        .expect("tags/list");
    let link = resp
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.expect("body");
    (serde_json::from_slice(&body).expect("json"), link)
}

fn reqwest_plain() -> reqwest::Client {
    support::push::client(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_than_a_thousand_tags_through_link_pagination() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    let repo = "team/many";
    let first = pusher
        .image(repo, &Image::new("2024-01-01T00:00:00Z"), &["seed"])
        .await;
    let tags: Vec<String> = (0..1_100)
        .map(|i| format!("1.{}.{}", i / 100, i % 100))
        .collect();
    pusher.retag(repo, &first, &tags, 16).await;

    // Distribution 2.8 ignores `n`: everything at once, no Link header. This is
    // why the pages come from the proxy below.
    let (all, link) = raw_tags(&registry.url, repo, "?n=10").await;
    let registry_order: Vec<String> = serde_json::from_value(all["tags"].clone()).expect("tags");
    assert_eq!(registry_order.len(), 1_101);
    assert_eq!(link, None);

    // A Docker Hub-like front: at most 100 per page, Link: rel="next".
    let proxy = Proxy::paging(&registry, 100).await;
    let client = client_with_page_size(&proxy.host(), 1000);
    let listed = client.list_tags(repo).await.expect("lists");
    assert_eq!(
        listed, registry_order,
        "every tag, once, in the registry's order"
    );
    let pages = proxy.count("GET", "/tags/list");
    assert_eq!(pages, 12, "1,101 tags at 100 per page");
    let log = proxy.log();
    assert!(log[0].path.ends_with("tags/list?n=1000"), "{}", log[0].path);
    assert!(log[1].path.contains("last="), "{}", log[1].path);

    // The client's own page size is honoured when it is the smaller one.
    proxy.clear_log();
    let small = client_with_page_size(&proxy.host(), 500);
    assert_eq!(small.list_tags(repo).await.expect("lists").len(), 1_101);
    assert_eq!(proxy.count("GET", "/tags/list"), 12);
    assert!(proxy.log()[1].path.contains("n=100"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_manifests_and_configs_for_oci_and_docker_images() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    let repo = "acme/app";
    let oci = pusher
        .image(
            repo,
            &Image::new("2024-05-01T12:30:00.123456789Z")
                .label(
                    "org.opencontainers.image.source",
                    "https://github.com/acme/app",
                )
                .label("org.opencontainers.image.revision", "0123abc")
                .label("org.opencontainers.image.version", "1.0.0"),
            &["1.0.0"],
        )
        .await;
    let docker = pusher
        .image(
            repo,
            &Image::new("2023-01-02T03:04:05Z")
                .docker()
                .label("team", "web"),
            &["0.9.0"],
        )
        .await;
    let arm = pusher
        .image(
            repo,
            &Image::new("2024-06-01T00:00:00Z")
                .arch("arm64")
                .label("arch", "arm64"),
            &[],
        )
        .await;
    let amd = pusher
        .image(
            repo,
            &Image::new("2024-06-01T00:00:01Z").label("arch", "amd64"),
            &[],
        )
        .await;
    let index = pusher
        .index(
            repo,
            &[(&arm, "linux", "arm64"), (&amd, "linux", "amd64")],
            false,
            &["2.0.0"],
        )
        .await;
    let d_arm = pusher
        .image(
            repo,
            &Image::new("2024-07-01T00:00:00Z").docker().arch("arm64"),
            &[],
        )
        .await;
    let d_amd = pusher
        .image(
            repo,
            &Image::new("2024-07-01T00:00:01Z")
                .docker()
                .label("arch", "amd64"),
            &[],
        )
        .await;
    let list = pusher
        .index(
            repo,
            &[(&d_arm, "linux", "arm64"), (&d_amd, "linux", "amd64")],
            true,
            &["3.0.0"],
        )
        .await;

    let client = client(&registry.host);
    let mut tags = client.list_tags(repo).await.expect("tags");
    tags.sort();
    assert_eq!(tags, ["0.9.0", "1.0.0", "2.0.0", "3.0.0"]);

    for (tag, pushed, media_type) in [
        ("1.0.0", &oci, OCI_MANIFEST),
        ("0.9.0", &docker, DOCKER_MANIFEST),
        ("2.0.0", &index, OCI_INDEX),
        ("3.0.0", &list, DOCKER_MANIFEST_LIST),
    ] {
        let r = client.resolve(repo, tag).await.expect("HEAD");
        assert_eq!(r.digest, pushed.digest, "{tag}");
        assert_eq!(r.media_type, media_type, "{tag}");
        let (m, _) = client.manifest(repo, tag).await.expect("GET");
        assert_eq!(m.digest, pushed.digest, "{tag}: recomputed digest");
    }

    let info = client.image_info(repo, "1.0.0").await.expect("config");
    assert_eq!(info.digest, oci.digest);
    assert_eq!(
        info.created.map(|t| t.to_string()).as_deref(),
        Some("2024-05-01T12:30:00.123456789Z")
    );
    assert_eq!(info.source(), Some("https://github.com/acme/app"));
    assert_eq!(info.revision(), Some("0123abc"));
    assert_eq!(info.version(), Some("1.0.0"));

    let info = client
        .image_info(repo, "0.9.0")
        .await
        .expect("docker config");
    assert_eq!(info.label("team"), Some("web"));
    assert_eq!(info.source(), None);

    // Multi-arch: the digest is the index's; created/labels from linux/amd64.
    let info = client
        .image_info(repo, "2.0.0")
        .await
        .expect("index config");
    assert_eq!(info.digest, index.digest);
    assert_eq!(info.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(info.label("arch"), Some("amd64"));
    let info = client.image_info(repo, "3.0.0").await.expect("list config");
    assert_eq!(info.digest, list.digest);
    assert_eq!(info.label("arch"), Some("amd64"));

    // By digest, too.
    let info = client
        .image_info(repo, &oci.digest)
        .await
        .expect("by digest");
    assert_eq!(info.version(), Some("1.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repositories_and_tags_name_registry_and_image() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    pusher
        .image("acme/app", &Image::new("2024-01-01T00:00:00Z"), &["1.0.0"])
        .await;
    let client = client(&registry.host);

    let err = client
        .list_tags("acme/nothing")
        .await
        .expect_err("no such repository");
    assert!(matches!(err.kind, ErrorKind::NotFound(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("registry `{}`", registry.host)),
        "{text}"
    );
    assert!(text.contains("image `acme/nothing`"), "{text}");

    let err = client
        .resolve("acme/app", "9.9.9")
        .await
        .expect_err("no such tag");
    assert!(matches!(err.kind, ErrorKind::NotFound(_)), "{err}");
    assert!(err.to_string().contains("manifest `9.9.9`"), "{err}");

    let err = client
        .list_tags("Bad/Name")
        .await
        .expect_err("invalid name");
    assert!(err.to_string().contains("not a valid repository"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanning_decides_pins_and_caches_configs_by_digest() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    let repo = "acme/web";
    let old = pusher
        .image(
            repo,
            &Image::new("2024-01-01T00:00:00Z"),
            &["1.2.0", "1.3.0-rc.1"],
        )
        .await;
    let new = pusher
        .image(
            repo,
            &Image::new("2024-02-01T00:00:00Z").label("org.opencontainers.image.revision", "beef"),
            &["1.4.1"],
        )
        .await;
    pusher
        .image(
            repo,
            &Image::new("2024-03-01T00:00:00Z"),
            &["2.0.0", "latest"],
        )
        .await;
    assert_ne!(old.digest, new.digest);

    let proxy = Proxy::start(&registry).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_file = dir.path().join("web.yaml");
    std::fs::write(
        &policy_file,
        format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: web\nspec:\n  image: {}/{repo}\n  policy:\n    semver:\n      range: '>=1.0.0 <2.0.0'\n  digest: pin\n",
            proxy.host()
        ),
    )
    .expect("write policy");
    let policies = capstan::policy::load_file(&policy_file).expect("policy");

    let scanner = Scanner::new(
        vec![(
            proxy.host(),
            Ok(RegistrySettings {
                ..support::plain(&proxy.host())
            }),
        )],
        support::fast_options(),
        ScanOptions {
            fetch_info: true,
            ..ScanOptions::default()
        },
    );
    let result = scanner.scan(&policies[0]).await;
    let scanned = result
        .fresh()
        .unwrap_or_else(|| panic!("fresh: {:?}", result.error()));
    let chosen = scanned.chosen.as_ref().expect("a tag qualifies");
    assert_eq!(chosen.tag, "1.4.1");
    assert_eq!(chosen.digest.as_deref(), Some(new.digest.as_str()));
    assert_eq!(chosen.reference(), format!("1.4.1@{}", new.digest));
    let info = chosen.info.as_ref().expect("config read");
    assert_eq!(info.revision(), Some("beef"));
    assert_eq!(scanned.tags.len(), 5);
    assert_eq!(proxy.count("GET", "/blobs/"), 1, "one config blob");

    // Again: the tag did not move, so no manifest or blob is read again.
    proxy.clear_log();
    let again = scanner.scan(&policies[0]).await;
    assert!(again.fresh().is_some());
    assert_eq!(
        proxy.count("GET", "/blobs/"),
        0,
        "config served from the cache"
    );
    assert_eq!(proxy.count("GET", "/manifests/"), 0);
    assert_eq!(
        proxy.count("HEAD", "/manifests/1.4.1"),
        1,
        "only the digest is checked"
    );
    assert_eq!(scanner.cached_configs(), 1);
}
