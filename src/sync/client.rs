//! The Kubernetes client of a target: its kubeconfig and context, or kubectl's
//! defaults (`KUBECONFIG`, `~/.kube/config`, in-cluster).

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::SyncError;
use crate::config::Target;

pub async fn client_for(target: &Target) -> Result<Client, SyncError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..Default::default()
    };
    let fail = |e: String| SyncError::Client(format!("target {}: {e}", target.name.value));
    let config = match &target.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| fail(format!("cannot read kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| fail(e.to_string()))?
        }
        None if target.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| fail(e.to_string()))?,
        None => Config::infer().await.map_err(|e| fail(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| fail(e.to_string()))
}
