//! Artifacts.

use std::collections::BTreeMap;

use aloft_server::store::{ArtifactQuery, ArtifactRow, Store as _, StoreError};
use serde_json::json;

use crate::Db;
use crate::admission::{accepted, deployment};

pub(crate) fn artifact(
    id: &str,
    name: &str,
    types: &[&str],
    checksum: Option<&str>,
) -> ArtifactRow {
    let mut depends = BTreeMap::new();
    depends.insert("device_type".to_owned(), json!(types));
    if let Some(c) = checksum {
        depends.insert("rootfs-image.checksum".to_owned(), json!(c));
    }
    ArtifactRow {
        id: id.into(),
        name: name.into(),
        description: format!("Artifact {id}"),
        device_types: types.iter().map(|t| (*t).to_owned()).collect(),
        depends,
        provides: BTreeMap::new(),
        clears: Vec::new(),
        updates: json!([]),
        format_version: 3,
        signed: true,
        size: 1000,
        sha256: format!("sha-{id}"),
        modified: 1,
    }
}

pub(crate) async fn same_name_and_depends_conflict(db: Db) {
    db.insert_artifact(&artifact("a1", "rel", &["pi", "bbb"], None))
        .await
        .unwrap();
    let clash = db
        .insert_artifact(&artifact("a2", "rel", &["x86", "bbb"], None))
        .await;
    assert!(
        matches!(&clash, Err(StoreError::Conflict(t)) if t == "bbb"),
        "{clash:?}"
    );
    assert!(
        db.artifact("a2").await.unwrap().is_none(),
        "a refused artifact leaves no row"
    );
    db.insert_artifact(&artifact("a3", "rel", &["bbb"], Some("abc")))
        .await
        .unwrap();
    db.insert_artifact(&artifact("a4", "rel", &["x86"], None))
        .await
        .unwrap();
    let a1 = db.artifact("a1").await.unwrap().unwrap();
    assert_eq!((a1.signed, a1.format_version, a1.size), (true, 3, 1000));
    assert_eq!(db.artifacts_for("rel", "bbb").await.unwrap().len(), 2);
    assert!(db.release_exists("rel").await.unwrap());
}

pub(crate) async fn artifacts_in_active_deployments_stay(db: Db) {
    db.insert_artifact(&artifact("a1", "rel", &["pi"], None))
        .await
        .unwrap();
    let mut twin = artifact("a2", "other", &["pi"], None);
    twin.sha256 = "sha-a1".into();
    db.insert_artifact(&twin).await.unwrap();
    let dev = accepted(&db, "a").await;
    db.create_deployment(
        &deployment("d1", "rel"),
        std::slice::from_ref(&dev),
        &[],
        "fp",
    )
    .await
    .unwrap();
    assert!(matches!(
        db.delete_artifact("a1").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        db.set_artifact_description("a1", "new").await,
        Ok(())
    ));
    let (dds, _) = db.device_deployments("d1", None, 0, 0).await.unwrap();
    db.assign(&dds[0].id, Some("a1"), None, 50).await.unwrap();
    assert!(matches!(
        db.set_artifact_description("a1", "newer").await,
        Err(StoreError::Rule(_))
    ));
    db.report_status("d1", &dev, "success", None, 51)
        .await
        .unwrap();
    // Finished: it may go; the file stays while the twin uses it.
    assert!(
        db.delete_artifact("a1").await.unwrap(),
        "the blob is shared"
    );
    assert!(db.blob_in_use("sha-a1").await.unwrap());
    assert!(!db.delete_artifact("a2").await.unwrap());
    assert!(!db.blob_in_use("sha-a1").await.unwrap());
    assert!(matches!(
        db.delete_artifact("a2").await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn artifact_lists_filter_and_page(db: Db) {
    for (i, name) in ["b", "a", "c"].iter().enumerate() {
        let mut a = artifact(&format!("id{i}"), name, &["pi"], None);
        a.modified = i64::try_from(i).unwrap();
        a.description = format!("Build {name} for the Lab");
        db.insert_artifact(&a).await.unwrap();
    }
    let q = |page, sort: (&str, bool)| ArtifactQuery {
        sort: (sort.0.into(), sort.1),
        page,
        per_page: 2,
        ..ArtifactQuery::default()
    };
    let (first, total) = db.artifacts(&q(1, ("name", false))).await.unwrap();
    let names: Vec<_> = first.iter().map(|a| a.name.as_str()).collect();
    assert_eq!((names, total), (vec!["a", "b"], 3));
    let (all, _) = db.artifacts(&q(0, ("modified", true))).await.unwrap();
    let names: Vec<_> = all.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["c", "a", "b"]);
    let found = db
        .artifacts(&ArtifactQuery {
            description: Some("LAB".into()),
            device_type: Some("pi".into()),
            sort: ("name".into(), false),
            ..ArtifactQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(found.1, 3);
}
