//! Publishes GitHub App installation tokens to Kubernetes, one Secret per
//! installation, for other workloads of the cluster (CI runners, image pullers)
//! that need a GitHub token but should not hold the App's private key.
//!
//! The Secret `<name>-<installationId>` in the configured namespace is written
//! with server-side apply (field manager `capstan`) each time the provider gets
//! a new token: `stringData`-equivalent keys `token`, `expiresAt` (RFC 3339) and
//! `installationId`. Because the provider refreshes a token at the latest 30
//! minutes after issue, a reader of the Secret always finds one valid for at
//! least 25 more minutes, provided the daemon calls
//! `AppTokenProvider::refresh_due` periodically. A removed installation's Secret
//! is deleted. The token is never logged.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::ForgeFuture;
use super::error::ForgeError;
use super::github_app::TokenSink;
use crate::sync::FIELD_MANAGER;

/// Label on every token Secret, so they can be listed.
pub const APP_LABEL: &str = "capstan.io/github-app-installation";

#[derive(Clone)]
pub struct SecretSink {
    api: Api<Secret>,
    namespace: String,
    prefix: String,
}

impl std::fmt::Debug for SecretSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSink")
            .field("namespace", &self.namespace)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SecretSink {
    /// Secrets `<prefix>-<installationId>` in `namespace`.
    pub fn new(client: Client, namespace: &str, prefix: &str) -> SecretSink {
        SecretSink {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            prefix: prefix.to_string(),
        }
    }

    /// The Secret's name for an installation.
    pub fn secret_name(&self, installation: u64) -> String {
        format!("{}-{installation}", self.prefix)
    }

    fn kube_error(&self, what: &str, name: &str, e: kube::Error) -> ForgeError {
        ForgeError::Api {
            operation: format!("{what} Secret {}/{name}", self.namespace),
            message: crate::registry::transport::error_chain(&e),
        }
    }
}

impl TokenSink for SecretSink {
    fn store<'a>(
        &'a self,
        installation: u64,
        token: &'a str,
        expires_at: SystemTime,
    ) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            let name = self.secret_name(installation);
            let expires = jiff::Timestamp::try_from(expires_at)
                .map(|t| t.to_string())
                .unwrap_or_default();
            let data: BTreeMap<String, ByteString> = [
                ("token", token.to_string()),
                ("expiresAt", expires),
                ("installationId", installation.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
            .collect();
            let secret = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": {
                        "app.kubernetes.io/managed-by": FIELD_MANAGER,
                        APP_LABEL: installation.to_string(),
                    },
                },
                "data": data,
            });
            self.api
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await
                .map_err(|e| self.kube_error("write", &name, e))?;
            tracing::info!(installation, secret = %format!("{}/{name}", self.namespace), "installation token published");
            Ok(())
        })
    }

    fn remove(&self, installation: u64) -> ForgeFuture<'_, ()> {
        Box::pin(async move {
            let name = self.secret_name(installation);
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(e) => Err(self.kube_error("delete", &name, e)),
            }
        })
    }
}
