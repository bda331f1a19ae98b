//! Services file -> dataplane specs, with every skipped object reported as
//! one warning line on stderr.

use std::path::Path;

use control::model::{self, ModelOptions};
use control::objects::{self, Objects};
use dataplane::service::ServiceSpec;

/// Loads a `kubectl get svc,endpointslices -A -o yaml` dump from a file.
pub fn load_file(path: &Path, opts: &ModelOptions) -> Result<Vec<ServiceSpec>, String> {
    let objs = objects::load_file(path).map_err(|e| e.to_string())?;
    Ok(to_specs(objs, opts, &path.display().to_string()))
}

/// Loads a dump held in memory (the built-in demo).
pub fn load_str(text: &str, origin: &str, opts: &ModelOptions) -> Result<Vec<ServiceSpec>, String> {
    let objs = objects::parse_str(text, Path::new(origin)).map_err(|e| e.to_string())?;
    Ok(to_specs(objs, opts, origin))
}

fn to_specs(objs: Objects, opts: &ModelOptions, origin: &str) -> Vec<ServiceSpec> {
    for w in &objs.warnings {
        tracing::warn!("{w}");
    }
    let m = model::build(&objs.services, &objs.slices, opts);
    for w in &m.warnings {
        tracing::warn!("{w}");
    }
    tracing::debug!(
        "{origin}: {} objects, {} service ports",
        objs.services.len() + objs.slices.len(),
        m.services.len()
    );
    if m.services.is_empty() {
        // Otherwise a replay reports 100 % "passed" without saying why.
        tracing::warn!(
            "0 service ports loaded from {origin}: no Service with a ClusterIP \
             and ports, so every packet is passed to the kernel"
        );
    }
    m.services
}
