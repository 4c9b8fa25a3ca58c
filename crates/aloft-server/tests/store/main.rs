//! The store conformance suite: one test per rule, over the `Store` trait, run on `SQLite` (a
//! database file in WAL mode) and on `PostgreSQL` (a fresh database per test on the server at
//! `ALOFT_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, which
//! `scripts/test.sh` starts where the machine has none).

mod admission;
mod artifacts;
mod cluster;
mod deployments;
mod inventory;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aloft_server::store::{SqlStore, Store};
use futures::FutureExt as _;
use sqlx::Executor as _;

/// The store under test.
pub(crate) type Db = Arc<SqlStore>;

fn admin_url() -> String {
    std::env::var("ALOFT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base
        .rfind('/')
        .filter(|&i| i > base.find("://").unwrap_or(0) + 2);
    let root = cut.map_or(base, |i| &base[..i]);
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

async fn admin() -> sqlx::AnyConnection {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&admin_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} (set ALOFT_TEST_POSTGRES_URL; scripts/test.sh starts one): {e}",
                admin_url()
            )
        })
}

/// Runs `test` on a fresh `SQLite` database file.
pub(crate) async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&dir.path().join("aloft.db")).await.unwrap();
    store.migrate().await.unwrap();
    test(Arc::new(store)).await;
}

/// Runs `test` on a fresh `PostgreSQL` database, dropped afterwards (also when the test fails).
pub(crate) async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "aloft_store_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = admin().await;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let url = with_database(&admin_url(), &name);
    let outcome = std::panic::AssertUnwindSafe(async {
        let store = SqlStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let store = Arc::new(store);
        test(store.clone()).await;
        store.close().await;
    })
    .catch_unwind()
    .await;
    let _ = admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Declares each rule once and runs it on both backends.
macro_rules! conformance {
    ($($module:ident :: $rule:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    crate::on_sqlite(crate::$module::$rule).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    crate::on_postgres(crate::$module::$rule).await;
                }
            )*
        }
    };
}

conformance!(
    users::emails_are_unique,
    users::deleting_a_user_revokes_their_tokens,
    users::sessions_and_pats_are_bounded,
    users::expired_tokens_are_not_honoured,
    users::a_device_keeps_its_newest_tokens,
    users::revoking_a_subjects_tokens_keeps_the_named_one,
    admission::auth_requests_make_pending_devices_once,
    admission::accepting_a_key_rejects_the_other_and_revokes_tokens,
    admission::preauthorized_rekey_revokes_the_old_keys_tokens,
    admission::preauthorized_sets_do_not_change_by_hand,
    admission::deleting_the_accepted_set_revokes_tokens,
    admission::decommissioning_ends_open_deployments,
    admission::the_admission_footprint_counts_a_devices_auth_sets,
    admission::contact_times_are_written_in_batches_and_never_go_back,
    inventory::inventory_replace_and_upsert,
    inventory::filters_match_scalars_and_lists,
    inventory::ranges_compare_numbers_and_strings,
    inventory::text_search_ignores_case,
    inventory::groups_sort_and_pages,
    inventory::inventory_pages_load_in_one_batch,
    inventory::inventories_load_in_one_query_inventory_scope_only,
    inventory::batch_inventories_follow_every_inventory_write,
    inventory::searches_can_keep_to_devices_changed_since,
    inventory::nul_characters_are_bad_input_not_a_failure,
    artifacts::same_name_and_depends_conflict,
    artifacts::artifacts_in_active_deployments_stay,
    artifacts::artifact_lists_filter_and_page,
    deployments::duplicate_active_deployments_conflict,
    deployments::reports_move_devices_and_finish_the_deployment,
    deployments::final_statuses_are_kept,
    deployments::a_failed_device_starts_over_while_retries_are_left,
    deployments::aborting_stops_devices,
    deployments::concurrent_reports_finish_the_deployment,
    deployments::status_groups_filter_device_deployments,
    deployments::statistics_count_every_status,
    deployments::logs_are_kept_per_device,
    deployments::list_statistics_load_in_one_batch,
    deployments::rollout_states_change_by_compare_and_set,
    deployments::switches_engage_and_release,
    deployments::saved_filter_names_are_unique,
    deployments::devices_join_a_dynamic_deployment_up_to_its_cap,
    deployments::health_samples_keep_the_latest_per_bucket_newest_last,
    cluster::exactly_one_replica_claims_a_job,
    cluster::the_feed_carries_revocations_and_events,
    cluster::replicas_agree_on_keys_unless_the_old_ones_went_stale,
);

#[test]
fn database_names_replace_the_last_path_segment() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/db?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
