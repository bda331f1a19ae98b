//! A kubeconfig that points the standard kube client at the test server.

/// Context, cluster and user name inside the generated kubeconfig.
pub const CONTEXT: &str = "vipgate-test";

/// Kubeconfig YAML for `server` with bearer-token user `token`; the
/// context's namespace is `default`.
pub fn render(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server}
users:
- name: {CONTEXT}
  user:
    token: {token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
    namespace: default
current-context: {CONTEXT}
"
    )
}
