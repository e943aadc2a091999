//! Pushing test images through the registry's HTTP API, as `docker push` does:
//! blob uploads (`POST` then `PUT ?digest=`) for a real config blob (with
//! `created` and labels) and a layer, then `PUT` of the manifest under each tag.
//! OCI and Docker v2 manifests, OCI indexes and Docker manifest lists.

use std::sync::Arc;

use capstan::registry::client::{
    DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
    sha256_digest,
};
use futures::StreamExt;

use super::registry::{Auth, Registry};
use super::token::TokenIssuer;

/// The image to build.
#[derive(Clone)]
pub struct Image {
    pub created: String,
    pub labels: Vec<(String, String)>,
    /// Docker v2 media types instead of OCI.
    pub docker: bool,
    pub os: String,
    pub arch: String,
}

impl Image {
    pub fn new(created: &str) -> Image {
        Image {
            created: created.to_string(),
            labels: Vec::new(),
            docker: false,
            os: "linux".into(),
            arch: "amd64".into(),
        }
    }
    pub fn label(mut self, key: &str, value: &str) -> Image {
        self.labels.push((key.into(), value.into()));
        self
    }
    pub fn docker(mut self) -> Image {
        self.docker = true;
        self
    }
    pub fn arch(mut self, arch: &str) -> Image {
        self.arch = arch.into();
        self
    }
}

/// A manifest that was pushed.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: String,
    pub media_type: String,
    pub body: Vec<u8>,
    pub config_digest: Option<String>,
}

enum PushAuth<'a> {
    None,
    Basic(String),
    Token(&'a TokenIssuer),
}

pub struct Pusher<'a> {
    base: String,
    http: reqwest::Client,
    auth: PushAuth<'a>,
}

impl<'a> Pusher<'a> {
    /// Pushes as the first htpasswd user, or anonymously.
    pub fn new(registry: &Registry) -> Pusher<'static> {
        let auth = match &registry.auth {
            Auth::None => PushAuth::None,
            Auth::Basic(users) => {
                let (u, p) = users.first().expect("a user to push as");
                PushAuth::Basic(basic(u, p))
            }
            Auth::Token { .. } => panic!("token registries need Pusher::with_issuer"),
        };
        Pusher {
            base: registry.url.clone(),
            http: client(registry.ca_pem.as_deref()),
            auth,
        }
    }

    /// Pushes with tokens minted by `issuer`.
    pub fn with_issuer(registry: &Registry, issuer: &'a TokenIssuer) -> Pusher<'a> {
        Pusher {
            base: registry.url.clone(),
            http: client(registry.ca_pem.as_deref()),
            auth: PushAuth::Token(issuer),
        }
    }

    fn authorization(&self, repo: &str) -> Option<String> {
        match &self.auth {
            PushAuth::None => None,
            PushAuth::Basic(h) => Some(h.clone()),
            PushAuth::Token(issuer) => {
                Some(format!("Bearer {}", issuer.mint(repo, &["pull", "push"])))
            }
        }
    }

    fn request(&self, method: reqwest::Method, url: &str, repo: &str) -> reqwest::RequestBuilder {
        let mut b = self.http.request(method, url);
        if let Some(a) = self.authorization(repo) {
            b = b.header("authorization", a);
        }
        b
    }

    /// Uploads a blob; returns its digest.
    pub async fn blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let start = self
            .request(
                reqwest::Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.base),
                repo,
            )
            .send()
            .await
            .expect("start upload");
        assert_eq!(
            start.status().as_u16(),
            202,
            "start upload: {:?}",
            start.text().await
        );
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload location")
            .to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let done = self
            .request(
                reqwest::Method::PUT,
                &format!("{location}{sep}digest={digest}"),
                repo,
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("finish upload");
        assert_eq!(
            done.status().as_u16(),
            201,
            "finish upload: {:?}",
            done.text().await
        );
        digest
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the digest.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self
            .request(
                reqwest::Method::PUT,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
                repo,
            )
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("put manifest");
        let status = resp.status().as_u16();
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(
            status,
            201,
            "put manifest {repo}:{reference}: {:?}",
            resp.text().await
        );
        let digest = digest.expect("Docker-Content-Digest on manifest PUT");
        assert_eq!(digest, sha256_digest(body));
        digest
    }

    /// Builds and pushes an image (config blob + one layer + manifest) under `tags`.
    pub async fn image(&self, repo: &str, image: &Image, tags: &[&str]) -> Pushed {
        let layer: Vec<u8> = (0..64).map(|_| fastrand::u8(..)).collect();
        let layer_digest = self.blob(repo, &layer).await;
        let labels: serde_json::Map<String, serde_json::Value> = image
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
            .collect();
        let config = serde_json::json!({
            "created": image.created,
            "architecture": image.arch,
            "os": image.os,
            "config": {"Labels": labels, "Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer)]},
            "history": [{"created": image.created, "created_by": "capstan test"}],
        })
        .to_string()
        .into_bytes();
        let config_digest = self.blob(repo, &config).await;
        let (manifest_type, config_type, layer_type) = if image.docker {
            (
                DOCKER_MANIFEST,
                DOCKER_CONFIG,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                OCI_MANIFEST,
                OCI_CONFIG,
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let digest = sha256_digest(&body);
        for tag in tags {
            self.manifest(repo, tag, manifest_type, &body).await;
        }
        if tags.is_empty() {
            self.manifest(repo, &digest, manifest_type, &body).await;
        }
        Pushed {
            digest,
            media_type: manifest_type.to_string(),
            body,
            config_digest: Some(config_digest),
        }
    }

    /// A multi-arch index over images already pushed (each by digest).
    pub async fn index(
        &self,
        repo: &str,
        children: &[(&Pushed, &str, &str)],
        docker: bool,
        tags: &[&str],
    ) -> Pushed {
        let media_type = if docker {
            DOCKER_MANIFEST_LIST
        } else {
            OCI_INDEX
        };
        let manifests: Vec<serde_json::Value> = children
            .iter()
            .map(|(p, os, arch)| {
                serde_json::json!({
                    "mediaType": p.media_type,
                    "digest": p.digest,
                    "size": p.body.len(),
                    "platform": {"os": os, "architecture": arch},
                })
            })
            .collect();
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": manifests,
        })
        .to_string()
        .into_bytes();
        for tag in tags {
            self.manifest(repo, tag, media_type, &body).await;
        }
        Pushed {
            digest: sha256_digest(&body),
            media_type: media_type.to_string(),
            body,
            config_digest: None,
        }
    }

    /// Puts an existing manifest under many tags, `parallel` at a time.
    pub async fn retag(&self, repo: &str, pushed: &Pushed, tags: &[String], parallel: usize) {
        futures::stream::iter(tags)
            .for_each_concurrent(parallel, |tag| async move {
                self.manifest(repo, tag, &pushed.media_type, &pushed.body)
                    .await;
            })
            .await;
    }
}

pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A plain reqwest client, trusting `ca_pem` when given.
pub fn client(ca_pem: Option<&str>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(32)
        .build()
        .expect("HTTP client")
}
