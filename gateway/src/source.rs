//! Where the gateway's Services come from: a YAML file (reloaded when it
//! changes) or the Kubernetes API (a watch); each publication is observed
//! by the metrics and its warnings logged.

use std::path::PathBuf;
use std::sync::Arc;

use control::admin::{Health, Metrics};
use control::file_source::{FileEvent, FileSource, DEFAULT_POLL};
use control::kube_source::{KubeSource, KubeSourceConfig, ZONE_LABEL};
use control::model::ModelOptions;
use control::publish::{Published, Publisher};
use control::service_health::ServiceHealthServer;
use dataplane::generation::Tables;

/// Where the Services and EndpointSlices come from.
#[derive(Clone, Debug)]
pub enum ServiceSource {
    /// A `kubectl get svc,endpointslices -A -o yaml` dump, polled for changes.
    File(PathBuf),
    /// The Kubernetes API: kubeconfig (default: KUBECONFIG, ~/.kube/config
    /// or in-cluster) and optionally one namespace.
    Kube {
        kubeconfig: Option<PathBuf>,
        namespace: Option<String>,
    },
}

/// A running source; dropping it stops it.
pub enum Running {
    File(FileSource),
    Kube(KubeSource),
}

impl Running {
    pub fn stop(self) {
        match self {
            Running::File(f) => f.stop(),
            Running::Kube(k) => k.stop(),
        }
    }
}

/// "1 service port", "7 service ports".
pub fn service_ports(n: usize) -> String {
    format!("{n} service port{}", if n == 1 { "" } else { "s" })
}

pub fn start(
    source: &ServiceSource,
    model: ModelOptions,
    tables: &Tables,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
    service_health: &Arc<ServiceHealthServer>,
) -> Result<Running, String> {
    let mut model = model;
    if let ServiceSource::Kube { kubeconfig, .. } = source {
        zone_from_node(&mut model, kubeconfig.clone());
    }
    let publisher = Publisher::new(tables.clone(), model);
    // The health check listeners follow each publication (bind failures
    // are logged by the server, once per Service and port).
    let sync_health = {
        let sh = Arc::clone(service_health);
        move |p: &Published| {
            sh.sync(&p.health_checks);
        }
    };
    match source {
        ServiceSource::File(path) => {
            let hf = Arc::clone(health);
            let mf = Arc::clone(metrics);
            let sync_loaded = sync_health.clone();
            let (src, first) =
                FileSource::start(path.clone(), publisher, DEFAULT_POLL, move |ev| match ev {
                    FileEvent::Loaded(p) => {
                        sync_loaded(&p);
                        mf.observe_publication(&(&p).into());
                        hf.add_skipped(p.warnings.len());
                        for w in &p.warnings {
                            tracing::warn!("{w}");
                        }
                        tracing::info!(
                            "services reloaded: generation {}, {}",
                            p.generation,
                            service_ports(p.stats.services)
                        );
                    }
                    FileEvent::Failed(e) => {
                        tracing::warn!("services reload failed, keeping the last tables: {e}")
                    }
                })
                // The loader's error names the file already.
                .map_err(|e| e.to_string())?;
            sync_health(&first);
            metrics.observe_publication(&(&first).into());
            health.add_skipped(first.warnings.len());
            for w in &first.warnings {
                tracing::warn!("{w}");
            }
            if first.stats.services == 0 {
                tracing::warn!(
                    "0 service ports loaded from {}: every packet goes to the \
                     kernel until the file holds Services with ClusterIPs and ports",
                    path.display()
                );
            }
            health.set_synced(true);
            Ok(Running::File(src))
        }
        ServiceSource::Kube {
            kubeconfig,
            namespace,
        } => {
            let cfg = KubeSourceConfig {
                kubeconfig: kubeconfig.clone(),
                namespace: namespace.clone(),
                ..KubeSourceConfig::default()
            };
            let h = Arc::clone(health);
            let m = Arc::clone(metrics);
            let mut publisher = publisher;
            let src = KubeSource::start(cfg, move |snap| {
                let p = publisher.publish_shared(&snap.services, &snap.slices);
                sync_health(&p);
                m.observe_publication(&(&p).into());
                h.add_skipped(p.warnings.len());
                for w in &p.warnings {
                    tracing::warn!("{w}");
                }
                h.set_synced(true);
            })
            .map_err(|e| format!("{e} (pass --services FILE or --kubeconfig PATH)"))?;
            Ok(Running::Kube(src))
        }
    }
}

/// Without `--zone`, reads the zone label of the `--node-name` Node once;
/// a Node that cannot be read (RBAC, not found) leaves zone hints ignored,
/// said in a warning.
fn zone_from_node(model: &mut ModelOptions, kubeconfig: Option<PathBuf>) {
    let (None, Some(node)) = (&model.zone, &model.node_name) else {
        return;
    };
    match control::kube_source::node_zone(kubeconfig, node) {
        Ok(Some(zone)) => {
            tracing::info!("zone {zone} (label {ZONE_LABEL} of Node {node})");
            model.zone = Some(zone);
        }
        Ok(None) => {
            tracing::info!("Node {node} has no {ZONE_LABEL} label: topology zone hints are ignored")
        }
        Err(e) => tracing::warn!(
            "cannot read Node {node} for its {ZONE_LABEL} label ({e}): topology zone \
             hints are ignored; pass --zone"
        ),
    }
}
