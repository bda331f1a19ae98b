//! Service and EndpointSlice objects read from what
//! `kubectl get svc,endpointslices -A -o yaml` (or `-o json`) prints.
//!
//! Accepted shapes, in any mix: `v1 List`s (and typed lists such as
//! `ServiceList`), multi-document YAML streams, single objects, JSON. Every
//! item is dispatched on `apiVersion`/`kind`; anything that is not a `v1
//! Service` or a `discovery.k8s.io/v1 EndpointSlice` is skipped with one
//! warning naming it. Only a file that is not YAML/JSON text at all is an
//! error; a file without usable objects yields empty lists.

use std::path::Path;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;

use crate::error::{Error, Result};

/// The objects found in one dump, plus one line per item that was skipped.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    /// Human-readable, one per skipped item; the caller decides how to show them.
    pub warnings: Vec<String>,
}

/// Reads and parses one dump file.
pub fn load_file(path: &Path) -> Result<Objects> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // Binary input (a pcap passed by mistake) is a content problem, not an I/O one.
    let text = String::from_utf8(bytes).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })?;
    parse_str(&text, path)
}

/// Parses a dump already in memory; `origin` names it in errors and warnings.
pub fn parse_str(text: &str, origin: &Path) -> Result<Objects> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let documents = documents(text).map_err(|message| Error::Parse {
        path: origin.to_path_buf(),
        message,
    })?;
    let mut loader = Loader {
        origin: origin.display().to_string(),
        out: Objects::default(),
    };
    for (index, doc) in documents.into_iter().enumerate() {
        match doc {
            // `---` at the start or end of a stream yields empty documents.
            Value::Null => {}
            Value::Mapping(_) => loader.item(doc, &Place::Document(index + 1)),
            Value::Sequence(items) => loader.items(items, &Place::Document(index + 1)),
            Value::Tagged(_) => loader.warn(format!(
                "document {}: skipped a YAML-tagged value; expected a Kubernetes object",
                index + 1
            )),
            // Plain prose is valid YAML (one string); it is still not an object dump.
            Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                return Err(Error::Parse {
                    path: origin.to_path_buf(),
                    message: format!(
                        "document {} is a {}, not a Kubernetes object",
                        index + 1,
                        scalar_kind(&doc)
                    ),
                })
            }
        }
    }
    Ok(loader.out)
}

/// Splits the text into YAML documents, falling back to a stream of JSON
/// values for JSON that YAML rejects (objects concatenated without `---`).
fn documents(text: &str) -> Result<Vec<Value>, String> {
    let yaml_error = match yaml_documents(text) {
        Ok(docs) => return Ok(docs),
        Err(e) => e,
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return json_documents(text).map_err(|e| format!("not valid JSON: {e}"));
    }
    Err(format!("not valid YAML: {yaml_error}"))
}

fn yaml_documents(text: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let mut value = Value::deserialize(de)?;
        // Hand-written dumps use `<<: *anchor`; the API types know nothing of merge keys.
        value.apply_merge()?;
        docs.push(value);
    }
    Ok(docs)
}

fn json_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| e.to_string())?;
        docs.push(serde_yaml::to_value(value).map_err(|e| e.to_string())?);
    }
    Ok(docs)
}

fn scalar_kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        _ => "plain string",
    }
}

/// Where an item sits, for warnings about items without a usable name.
enum Place<'a> {
    Document(usize),
    Item(&'a Place<'a>, usize),
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Document(n) => write!(f, "document {n}"),
            Place::Item(parent, n) => write!(f, "{parent}, item {n}"),
        }
    }
}

struct Loader {
    origin: String,
    out: Objects,
}

impl Loader {
    fn warn(&mut self, message: String) {
        self.out
            .warnings
            .push(format!("{}: {message}", self.origin));
    }

    fn items(&mut self, items: Vec<Value>, parent: &Place<'_>) {
        for (index, item) in items.into_iter().enumerate() {
            self.item(item, &Place::Item(parent, index + 1));
        }
    }

    fn item(&mut self, item: Value, place: &Place<'_>) {
        let Value::Mapping(mut map) = item else {
            self.warn(format!("{place}: skipped, not an object"));
            return;
        };
        let field = |map: &serde_yaml::Mapping, key: &str| {
            map.get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let api_version = field(&map, "apiVersion");
        let kind = field(&map, "kind");
        let who = identify(&map, place);
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Service") => {
                let what = "v1 Service";
                if let Some(svc) = self.decode::<Service>(Value::Mapping(map), what, &who) {
                    self.out.services.push(svc);
                }
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                let what = "discovery.k8s.io/v1 EndpointSlice";
                if let Some(slice) = self.decode::<EndpointSlice>(Value::Mapping(map), what, &who) {
                    self.out.slices.push(slice);
                }
            }
            (_, "Service" | "EndpointSlice") => self.warn(format!(
                "skipped {api_version} {kind} {who}: unsupported apiVersion \
                 (vipgate reads v1 Service and discovery.k8s.io/v1 EndpointSlice)"
            )),
            (_, "") => self.warn(format!("skipped {who}: no kind")),
            (_, k) if k.ends_with("List") => match map.remove("items") {
                Some(Value::Sequence(items)) => self.items(items, place),
                // `items: null` or absent: an empty list.
                None | Some(Value::Null) => {}
                Some(_) => self.warn(format!(
                    "skipped {api_version} {kind} {who}: items is not a list"
                )),
            },
            _ => self.warn(format!(
                "skipped {api_version} {kind} {who}: not a Service or EndpointSlice"
            )),
        }
    }

    fn decode<T: DeserializeOwned>(&mut self, item: Value, what: &str, who: &str) -> Option<T> {
        match T::deserialize(item) {
            Ok(obj) => Some(obj),
            Err(e) => {
                self.warn(format!("skipped {what} {who}: {e}"));
                None
            }
        }
    }
}

/// `namespace/name` of an item, or its place in the file when it has no name.
fn identify(item: &serde_yaml::Mapping, place: &Place<'_>) -> String {
    let meta = item.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    match (namespace, name) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.to_string(),
        (_, None) => format!("(unnamed, {place})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Objects {
        parse_str(text, Path::new("t.yaml")).expect("parses")
    }

    #[test]
    fn empty_text_has_no_objects() {
        let o = parse("");
        assert!(o.services.is_empty() && o.slices.is_empty() && o.warnings.is_empty());
        let o = parse("---\n---\n");
        assert!(o.services.is_empty() && o.warnings.is_empty());
    }

    #[test]
    fn prose_is_a_parse_error() {
        let err = parse_str("hello, this is not a dump\n", Path::new("x.txt")).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{err}");
        assert!(err.to_string().contains("plain string"), "{err}");
    }

    #[test]
    fn concatenated_json_falls_back_to_a_json_stream() {
        // `kubectl get svc a -o json >> f; kubectl get svc b -o json >> f`:
        // YAML wants `---` between the two, JSON reads it as a stream.
        let one = |name: &str| {
            format!(
                "{{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Service\",\n\t\"metadata\": \
                 {{\"name\": \"{name}\", \"namespace\": \"default\"}}\n}}\n"
            )
        };
        let text = one("a") + &one("b");
        assert!(
            yaml_documents(&text).is_err(),
            "the fallback is not exercised"
        );
        let o = parse(&text);
        let names: Vec<_> = o
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        // Broken JSON reports the JSON error, not YAML's.
        let err = parse_str(&(one("a") + "{\"kind\": "), Path::new("j")).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    #[test]
    fn merge_keys_are_applied() {
        let text = "\
apiVersion: v1
kind: List
items:
- &base
  apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: default}
  spec: {clusterIP: 198.19.0.1, ports: [{port: 80}]}
- <<: *base
  metadata: {name: b, namespace: default}
";
        let o = parse(text);
        assert_eq!(o.warnings, Vec::<String>::new());
        let names: Vec<_> = o
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            o.services[1].spec.as_ref().unwrap().cluster_ip.as_deref(),
            Some("198.19.0.1")
        );
    }

    #[test]
    fn wrong_api_version_and_missing_kind_warn() {
        let text = "\
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata: {name: s, namespace: ns}
---
apiVersion: v1
metadata: {name: nokind}
---
- 5
";
        let o = parse(text);
        assert!(o.slices.is_empty());
        assert_eq!(o.warnings.len(), 3, "{:?}", o.warnings);
        assert!(o.warnings[0].contains("discovery.k8s.io/v1beta1 EndpointSlice ns/s"));
        assert!(o.warnings[1].contains("nokind: no kind"));
        assert!(o.warnings[2].contains("document 3, item 1"));
    }

    #[test]
    fn nested_typed_list_is_flattened() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"ServiceList","items":[
                {"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"n"}}]},
            {"apiVersion":"v1","kind":"List","items":null}]}"#;
        let o = parse(text);
        assert_eq!(o.services.len(), 1);
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = parse_str(&s, Path::new("p"));
        }

        #[test]
        fn yamlish_text_never_panics(s in "[-:{}\\[\\]\"' \n\tak0-9,&*!<>|#]{0,120}") {
            let _ = parse_str(&s, Path::new("p"));
        }
    }
}
