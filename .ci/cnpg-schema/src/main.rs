//! Prints CloudNativePG's `Cluster` CustomResourceDefinition, its OpenAPI v3 schema included, as
//! JSON on standard output: the schema `.ci/validate-manifests` checks the manifests' `Cluster`
//! against (the version is the `k8s-crds-cloud-native-pg` crate's, pinned in Cargo.toml).

use kube::CustomResourceExt;

fn main() -> Result<(), serde_json::Error> {
    let crd = k8s_crds_cloud_native_pg::Cluster::crd();
    println!("{}", serde_json::to_string(&crd)?);
    Ok(())
}
