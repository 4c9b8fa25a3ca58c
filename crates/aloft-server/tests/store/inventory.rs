//! Inventory, search and groups.

use aloft_server::store::{Filter, InventoryQuery, Store as _, StoreError};
use serde_json::{Value, json};

use crate::Db;
use crate::admission::accepted;

fn filter(scope: &str, attribute: &str, op: &str, value: Value) -> Filter {
    Filter {
        scope: scope.into(),
        attribute: attribute.into(),
        op: op.into(),
        value,
    }
}

async fn find(db: &Db, filters: Vec<Filter>) -> Vec<String> {
    let q = InventoryQuery {
        filters,
        page: 1,
        per_page: 100,
        ..InventoryQuery::default()
    };
    let (mut ids, total) = db.search_inventory(&q).await.unwrap();
    assert_eq!(u64::try_from(ids.len()).unwrap(), total);
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Three accepted devices with inventory: a (x86, 2 GiB, tags [blue, red]), b (arm, 512 MiB,
/// "blue"), c (arm, no memory).
async fn fleet(db: &Db) -> (String, String, String) {
    let (a, b, c) = (
        accepted(db, "a").await,
        accepted(db, "b").await,
        accepted(db, "c").await,
    );
    let put = |id: String, attrs: Vec<(&str, Value)>| {
        let db = db.clone();
        let attrs: Vec<(String, Value)> =
            attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        async move {
            db.put_inventory(&id, &attrs, true, 20).await.unwrap();
        }
    };
    put(
        a.clone(),
        vec![
            ("arch", json!("x86_64")),
            ("mem", json!(2048)),
            ("colors", json!(["blue", "red"])),
            ("version", json!("1.10")),
        ],
    )
    .await;
    put(
        b.clone(),
        vec![
            ("arch", json!("aarch64")),
            ("mem", json!(512)),
            ("colors", json!("blue")),
            ("version", json!("1.9")),
        ],
    )
    .await;
    put(
        c.clone(),
        vec![("arch", json!("aarch64")), ("Hostname", json!("Gateway-C"))],
    )
    .await;
    (a, b, c)
}

pub(crate) async fn inventory_replace_and_upsert(db: Db) {
    let id = accepted(&db, "a").await;
    db.put_inventory(
        &id,
        &[("x".into(), json!(1)), ("y".into(), json!("a"))],
        true,
        1,
    )
    .await
    .unwrap();
    db.put_inventory(&id, &[("y".into(), json!("b"))], false, 2)
        .await
        .unwrap();
    let attrs = db.attributes(&id).await.unwrap();
    let got: Vec<_> = attrs
        .iter()
        .map(|a| (a.name.as_str(), a.value.clone()))
        .collect();
    assert_eq!(got, [("x", json!(1)), ("y", json!("b"))]);
    db.put_inventory(&id, &[("z".into(), json!(true))], true, 3)
        .await
        .unwrap();
    assert_eq!(db.attributes(&id).await.unwrap().len(), 1);
    db.put_tags(
        &id,
        &[("site".into(), "berlin".into(), Some("where".into()))],
        false,
        4,
    )
    .await
    .unwrap();
    let tags: Vec<_> = db
        .attributes(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.scope == "tags")
        .collect();
    assert_eq!(
        (tags[0].value.clone(), tags[0].description.as_deref()),
        (json!("berlin"), Some("where"))
    );
    assert!(db.clear_inventory(&id, 5).await.unwrap());
    assert_eq!(db.attributes(&id).await.unwrap().len(), 1, "tags stay");
    assert!(matches!(
        db.put_tags("nobody", &[], true, 6).await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn filters_match_scalars_and_lists(db: Db) {
    let (a, b, c) = fleet(&db).await;
    assert_eq!(
        find(
            &db,
            vec![filter("inventory", "arch", "$eq", json!("aarch64"))]
        )
        .await,
        sorted(vec![b.clone(), c.clone()])
    );
    // A list attribute matches when it holds the value.
    assert_eq!(
        find(
            &db,
            vec![filter("inventory", "colors", "$eq", json!("blue"))]
        )
        .await,
        sorted(vec![a.clone(), b.clone()])
    );
    assert_eq!(
        find(
            &db,
            vec![filter("inventory", "colors", "$eq", json!("red"))]
        )
        .await,
        vec![a.clone()]
    );
    assert_eq!(
        find(
            &db,
            vec![filter(
                "inventory",
                "colors",
                "$in",
                json!(["red", "green"])
            )]
        )
        .await,
        vec![a.clone()]
    );
    // A missing attribute is "not equal".
    assert_eq!(
        find(
            &db,
            vec![filter("inventory", "colors", "$ne", json!("red"))]
        )
        .await,
        sorted(vec![b.clone(), c.clone()])
    );
    assert_eq!(
        find(
            &db,
            vec![filter("inventory", "arch", "$nin", json!(["x86_64"]))]
        )
        .await,
        sorted(vec![b.clone(), c.clone()])
    );
    assert_eq!(
        find(
            &db,
            vec![filter("inventory", "mem", "$exists", json!(false))]
        )
        .await,
        vec![c.clone()]
    );
    assert_eq!(
        find(&db, vec![filter("identity", "mac", "$eq", json!("b"))]).await,
        vec![b.clone()]
    );
    assert_eq!(
        find(
            &db,
            vec![filter("identity", "status", "$eq", json!("accepted"))]
        )
        .await
        .len(),
        3
    );
    assert_eq!(
        find(
            &db,
            vec![
                filter("inventory", "arch", "$eq", json!("aarch64")),
                filter("inventory", "mem", "$exists", json!(true))
            ]
        )
        .await,
        vec![b]
    );
    let bad = InventoryQuery {
        filters: vec![filter("nope", "x", "$eq", json!(1))],
        page: 1,
        per_page: 10,
        ..InventoryQuery::default()
    };
    assert!(matches!(
        db.search_inventory(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    let bad = InventoryQuery {
        filters: vec![filter("inventory", "x", "$in", json!(1))],
        page: 1,
        per_page: 10,
        ..InventoryQuery::default()
    };
    assert!(matches!(
        db.search_inventory(&bad).await,
        Err(StoreError::Invalid(_))
    ));
}

pub(crate) async fn ranges_compare_numbers_and_strings(db: Db) {
    let (a, b, _) = fleet(&db).await;
    assert_eq!(
        find(&db, vec![filter("inventory", "mem", "$gt", json!(1000))]).await,
        vec![a.clone()]
    );
    assert_eq!(
        find(&db, vec![filter("inventory", "mem", "$lte", json!(512))]).await,
        vec![b.clone()]
    );
    assert_eq!(
        find(&db, vec![filter("inventory", "mem", "$gte", json!(512.0))]).await,
        sorted(vec![a.clone(), b.clone()])
    );
    // Strings compare as strings: "1.9" > "1.10".
    assert_eq!(
        find(
            &db,
            vec![filter("inventory", "version", "$gt", json!("1.10"))]
        )
        .await,
        vec![b]
    );
    // A number never compares with a string attribute.
    assert!(
        find(&db, vec![filter("inventory", "arch", "$gt", json!(0))])
            .await
            .is_empty()
    );
}

pub(crate) async fn text_search_ignores_case(db: Db) {
    let (_, _, c) = fleet(&db).await;
    for text in ["gateway-c", "GATEWAY", "Gateway-C"] {
        let q = InventoryQuery {
            text: Some(text.into()),
            page: 1,
            per_page: 10,
            ..InventoryQuery::default()
        };
        assert_eq!(
            db.search_inventory(&q).await.unwrap().0,
            vec![c.clone()],
            "{text}"
        );
    }
}

pub(crate) async fn groups_sort_and_pages(db: Db) {
    let (a, b, c) = fleet(&db).await;
    assert_eq!(
        db.add_to_group("lab", &[a.clone(), b.clone(), "nobody".into()], 30)
            .await
            .unwrap(),
        (2, 2)
    );
    assert_eq!(
        db.add_to_group("lab", std::slice::from_ref(&a), 31)
            .await
            .unwrap(),
        (0, 1)
    );
    assert!(db.set_group(&c, Some("field"), 32).await.unwrap());
    assert_eq!(db.groups(true).await.unwrap(), ["field", "lab"]);
    let q = InventoryQuery {
        group: Some("lab".into()),
        page: 1,
        per_page: 10,
        ..InventoryQuery::default()
    };
    assert_eq!(
        sorted(db.search_inventory(&q).await.unwrap().0),
        sorted(vec![a.clone(), b.clone()])
    );
    assert_eq!(
        find(&db, vec![filter("system", "group", "$eq", json!("field"))]).await,
        vec![c.clone()]
    );
    // Sorted by an identity attribute, descending, two per page.
    let page = |n| InventoryQuery {
        sort: Some(("identity".into(), "mac".into(), true)),
        page: n,
        per_page: 2,
        ..InventoryQuery::default()
    };
    let (first, total) = db.search_inventory(&page(1)).await.unwrap();
    let (second, _) = db.search_inventory(&page(2)).await.unwrap();
    assert_eq!(
        (first, second, total),
        (vec![c.clone(), b.clone()], vec![a.clone()], 3)
    );
    assert_eq!(
        db.remove_from_group("lab", Some(std::slice::from_ref(&a)), 33)
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.remove_from_group("lab", None, 34).await.unwrap(), 1);
    assert_eq!(db.groups(false).await.unwrap(), ["field"]);
    let (devs, none) = (
        db.devices(Some(&["accepted".into()]), &[], 1, 2)
            .await
            .unwrap(),
        db.devices(None, &["nobody".into()], 0, 0).await.unwrap(),
    );
    assert_eq!((devs.len(), none.len()), (2, 0));
}

pub(crate) async fn inventory_pages_load_in_one_batch(db: Db) {
    let (a, b, c) = fleet(&db).await;
    let ids = vec![c.clone(), "nobody".to_owned(), a.clone()];
    let page = db.inventory_of(&ids).await.unwrap();
    let got: Vec<_> = page
        .iter()
        .map(|(d, attrs)| (d.id.clone(), attrs.len()))
        .collect();
    assert_eq!(
        got,
        [(c.clone(), 2), (a.clone(), 4)],
        "in the order asked, unknown ids left out"
    );
    assert_eq!(page[1].0.auth_sets.len(), 1);
    let single = db.attributes(&a).await.unwrap();
    assert_eq!(
        page[1].1.iter().map(|x| &x.name).collect::<Vec<_>>(),
        single.iter().map(|x| &x.name).collect::<Vec<_>>()
    );
    assert!(db.inventory_of(&[]).await.unwrap().is_empty());
    let _ = b;
}

pub(crate) async fn inventories_load_in_one_query_inventory_scope_only(db: Db) {
    let (a, b, c) = fleet(&db).await;
    db.put_tags(
        &a,
        &[("owner".to_owned(), "ops".to_owned(), None)],
        true,
        21,
    )
    .await
    .unwrap();
    let bare = accepted(&db, "bare").await;
    let ids = vec![c.clone(), "nobody".to_owned(), a.clone(), bare.clone()];
    let got = db.inventories(&ids).await.unwrap();
    let names: Vec<(&str, Vec<&str>)> = got
        .iter()
        .map(|i| {
            let mut n: Vec<&str> = i.attrs.iter().map(|x| x.name.as_str()).collect();
            n.sort_unstable();
            (i.id.as_str(), n)
        })
        .collect();
    assert_eq!(
        names,
        [
            (c.as_str(), vec!["Hostname", "arch"]),
            (a.as_str(), vec!["arch", "colors", "mem", "version"]),
            (bare.as_str(), vec![]),
        ],
        "in the order asked, unknown ids left out, no tags"
    );
    let device = db.device(&a).await.unwrap().unwrap();
    assert_eq!(got[1].created_ts, device.created_ts);
    let mem = got[1].attrs.iter().find(|x| x.name == "mem").unwrap();
    assert_eq!(mem.value, json!(2048));
    assert!(got[1].attrs.iter().all(|x| x.scope == "inventory"));
    assert!(db.inventories(&[]).await.unwrap().is_empty());
    let _ = b;
}

/// The inventories read in batches follow every write of a device's inventory (merge,
/// replace, clear) and agree with its attribute rows.
pub(crate) async fn batch_inventories_follow_every_inventory_write(db: Db) {
    let id = accepted(&db, "a").await;
    let read = |db: Db, id: String| async move {
        let got = db.inventories(std::slice::from_ref(&id)).await.unwrap();
        let mut batch: Vec<(String, Value)> = got[0]
            .attrs
            .iter()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        let rows: Vec<(String, Value)> = db
            .attributes(&id)
            .await
            .unwrap()
            .into_iter()
            .filter(|x| x.scope == "inventory")
            .map(|x| (x.name, x.value))
            .collect();
        assert_eq!(batch, rows, "the batch read agrees with the attribute rows");
        batch
    };
    let attrs = |pairs: &[(&str, Value)]| -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect()
    };
    db.put_inventory(
        &id,
        &attrs(&[("arch", json!("x86")), ("mem", json!(1))]),
        false,
        5,
    )
    .await
    .unwrap();
    db.put_inventory(
        &id,
        &attrs(&[("mem", json!(2)), ("os", json!(["a", "b"]))]),
        false,
        6,
    )
    .await
    .unwrap();
    assert_eq!(
        read(db.clone(), id.clone()).await,
        attrs(&[
            ("arch", json!("x86")),
            ("mem", json!(2)),
            ("os", json!(["a", "b"]))
        ]),
        "merged"
    );
    db.put_inventory(&id, &attrs(&[("kernel", json!("6.1"))]), true, 7)
        .await
        .unwrap();
    assert_eq!(
        read(db.clone(), id.clone()).await,
        attrs(&[("kernel", json!("6.1"))]),
        "replaced"
    );
    assert!(db.clear_inventory(&id, 8).await.unwrap());
    assert!(read(db.clone(), id.clone()).await.is_empty(), "cleared");
}

/// A search limited to recent changes finds the devices whose inventory, tags, group or
/// admission changed at or after the time given, and no other (the dynamic sweep's input).
pub(crate) async fn searches_can_keep_to_devices_changed_since(db: Db) {
    let (a, b, c) = fleet(&db).await; // accepted at 11, inventories at 20
    let changed = |since: i64| {
        let db = db.clone();
        async move {
            let q = InventoryQuery {
                changed_since: Some(since),
                ..InventoryQuery::default()
            };
            let mut ids = db.search_inventory(&q).await.unwrap().0;
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        changed(20).await,
        sorted(vec![a.clone(), b.clone(), c.clone()])
    );
    assert!(changed(21).await.is_empty());
    db.put_tags(&a, &[("ring".to_owned(), "1".to_owned(), None)], false, 30)
        .await
        .unwrap();
    db.set_group(&b, Some("lab"), 40).await.unwrap();
    db.put_inventory(&c, &[("mem".to_owned(), json!(1))], false, 50)
        .await
        .unwrap();
    assert_eq!(
        changed(30).await,
        sorted(vec![a.clone(), b.clone(), c.clone()])
    );
    assert_eq!(changed(31).await, sorted(vec![b.clone(), c.clone()]));
    assert_eq!(changed(41).await, vec![c.clone()]);
    assert!(changed(51).await.is_empty());
}

/// `PostgreSQL` text holds no NUL where `SQLite`'s does: either way a NUL in a name is never a
/// server error (it is refused as bad input, or kept as given).
pub(crate) async fn nul_characters_are_bad_input_not_a_failure(db: Db) {
    let id = accepted(&db, "a").await;
    let name = "lab\u{0}1";
    match db.add_to_group(name, std::slice::from_ref(&id), 1).await {
        Ok(_) => assert_eq!(db.groups(false).await.unwrap(), [name]),
        Err(StoreError::Invalid(why)) => assert!(why.contains("NUL"), "{why}"),
        Err(other) => panic!("a NUL in a group name gave {other:?}"),
    }
    match db.release_exists(name).await {
        Ok(found) => assert!(!found),
        Err(StoreError::Invalid(_)) => {}
        Err(other) => panic!("a NUL in a release name gave {other:?}"),
    }
}
