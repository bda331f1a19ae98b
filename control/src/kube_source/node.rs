//! This node's zone, from its Node object's `topology.kubernetes.io/zone`
//! label, read once when the source starts. kube-proxy watches its Node
//! for the same label; a node's zone does not change while it runs in
//! practice, so one `get` (RBAC: `nodes` `get`) is all vipgate asks for.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;

use super::{connect, SourceStatus};

/// The well-known zone label (`v1.LabelTopologyZone`).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// How long the one read may take before the gateway starts without it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads Node `node`'s zone label: `Ok(None)` when the Node has none (or
/// an empty one), `Err` when it cannot be read. Blocks; call it outside
/// any async runtime.
pub fn node_zone(kubeconfig: Option<PathBuf>, node: &str) -> Result<Option<String>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = connect(kubeconfig, &SourceStatus::default())
            .await
            .map_err(|e| e.to_string())?;
        let nodes = Api::<Node>::all(client);
        let n = tokio::time::timeout(READ_TIMEOUT, nodes.get(node))
            .await
            .map_err(|_| format!("no answer within {READ_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(n.metadata
            .labels
            .and_then(|mut l| l.remove(ZONE_LABEL))
            .filter(|z| !z.is_empty()))
    })
}
