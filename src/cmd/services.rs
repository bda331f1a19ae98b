//! Services file -> dataplane specs, with every skipped object reported as
//! one warning line on stderr.

use std::path::Path;

use control::model::{self, ModelOptions};
use control::objects::{self, Objects};
use dataplane::service::ServiceSpec;

/// Loads a `kubectl get svc,endpointslices -A -o yaml` dump from a file.
pub fn load_file(path: &Path, opts: &ModelOptions) -> Result<Vec<ServiceSpec>, String> {
    let objs = objects::load_file(path).map_err(|e| e.to_string())?;
    Ok(to_specs(objs, opts))
}

/// Loads a dump held in memory (the built-in demo).
pub fn load_str(text: &str, origin: &str, opts: &ModelOptions) -> Result<Vec<ServiceSpec>, String> {
    let objs = objects::parse_str(text, Path::new(origin)).map_err(|e| e.to_string())?;
    Ok(to_specs(objs, opts))
}

fn to_specs(objs: Objects, opts: &ModelOptions) -> Vec<ServiceSpec> {
    for w in &objs.warnings {
        eprintln!("vipgate: warning: {w}");
    }
    let m = model::build(&objs.services, &objs.slices, opts);
    for w in &m.warnings {
        eprintln!("vipgate: warning: {w}");
    }
    m.services
}
