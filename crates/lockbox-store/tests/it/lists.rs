//! List queries: every combination of filters lists what filtering in Rust
//! does, page by page; and on SQLite the lists by tenant use an index.

use lockbox_core::*;
use lockbox_store::testing::{
    cases_list_sql, events_list_sql, grants_list_sql, open_counts_sql, requests_list_sql,
};
use lockbox_store::{
    Backend, CaseFilter, EventQuery, GrantFilter, PageRequest, RequestFilter, StatusAt,
};

use crate::fixture::*;
use crate::harness::TestStore;

/// Every page of a list, from the first, in pages of `limit`.
async fn all_pages<T>(
    limit: u32,
    mut list: impl AsyncFnMut(PageRequest) -> lockbox_store::Page<T>,
) -> Vec<T> {
    let mut items = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let got = list(page).await;
        assert!(got.items.len() <= limit as usize);
        items.extend(got.items);
        match got.next_cursor {
            Some(cursor) => page = PageRequest::after(limit, cursor),
            None => return items,
        }
    }
}

async fn every_filter_combination_lists_what_filtering_in_rust_does(s: TestStore) {
    let seeded = seed(&s, 1).await;
    let mut ids = Vec::new();
    for i in 0..9_i64 {
        let r = create_request(
            &s,
            "sam",
            seeded.case,
            Some(2),
            t0() + chrono::TimeDelta::seconds(i),
        )
        .await
        .unwrap();
        ids.push(r.id);
    }
    let later = t0() + chrono::TimeDelta::minutes(1);
    for (i, id) in ids.iter().enumerate() {
        let step = match i % 5 {
            1 | 4 => Step::Approve,
            2 => Step::Deny,
            3 => Step::Cancel,
            _ => continue,
        };
        let who = if matches!(step, Step::Cancel) {
            "sam"
        } else {
            "olivia"
        };
        transition(&s, *id, who, step, later).await.unwrap();
    }
    transition(&s, ids[1], "olivia", Step::Revoke, later + hours(1))
        .await
        .unwrap();

    let mut tx = s.read().await.unwrap();
    let every_request = tx
        .requests(&RequestFilter::default(), &PageRequest::first(500))
        .await
        .unwrap()
        .items;
    assert_eq!(every_request.len(), ids.len());
    let every_grant = tx
        .grants(&GrantFilter::default(), &PageRequest::first(500))
        .await
        .unwrap()
        .items;
    assert!(every_grant.len() >= 2, "the approved requests' grants");

    let tenants = [
        None,
        Some(tid()),
        Some(TenantId::parse("fabrikam").unwrap()),
    ];
    let principals = [None, Some(pid("sam")), Some(pid("oscar"))];
    // Before anything expires, while the grants run, and after they end.
    let instants = [later, later + hours(1), t0() + chrono::TimeDelta::days(30)];
    let mut statuses = vec![None];
    for at in instants {
        statuses.extend(RequestStatus::ALL.map(|status| Some(StatusAt { status, at })));
    }
    let mut combinations = 0;
    for tenant in &tenants {
        for status in &statuses {
            for requester in &principals {
                for case in [None, Some(seeded.case)] {
                    let filter = RequestFilter {
                        tenant: tenant.clone(),
                        status: *status,
                        requester: requester.clone(),
                        case,
                    };
                    let expected: Vec<_> = every_request
                        .iter()
                        .filter(|r| tenant.as_ref().is_none_or(|t| r.tenant == *t))
                        .filter(|r| status.is_none_or(|s| r.status_at(s.at) == s.status))
                        .filter(|r| requester.as_ref().is_none_or(|p| r.requester == *p))
                        .filter(|r| case.is_none_or(|c| r.case == c))
                        .cloned()
                        .collect();
                    for limit in [2, 500] {
                        let listed = all_pages(limit, async |page| {
                            tx.requests(&filter, &page).await.unwrap()
                        })
                        .await;
                        assert_eq!(listed, expected, "{filter:?}, pages of {limit}");
                        combinations += 1;
                    }
                }
            }
        }
    }
    assert!(combinations > 100);

    // The chains behind their checkpoint (none yet: every chain), one by one.
    let every_chain = tx.chains_behind_checkpoint(None, 100).await.unwrap();
    assert!(every_chain.len() >= 2, "the provider's and the tenant's");
    let mut one_by_one = Vec::new();
    let mut after = None;
    while let Some(head) = tx
        .chains_behind_checkpoint(after.as_ref(), 1)
        .await
        .unwrap()
        .pop()
    {
        after = Some(head.chain.clone());
        one_by_one.push(head);
    }
    assert_eq!(one_by_one, every_chain);

    let grant_instants = [
        None,
        Some(later),
        Some(later + hours(2)),
        Some(t0() + chrono::TimeDelta::days(30)),
    ];
    for tenant in &tenants {
        for principal in &principals {
            for active_at in grant_instants {
                let filter = GrantFilter {
                    tenant: tenant.clone(),
                    principal: principal.clone(),
                    active_at,
                };
                let expected: Vec<_> = every_grant
                    .iter()
                    .filter(|g| tenant.as_ref().is_none_or(|t| g.tenant == *t))
                    .filter(|g| principal.as_ref().is_none_or(|p| g.principal == *p))
                    .filter(|g| {
                        active_at.is_none_or(|at| g.state == GrantState::Active && g.not_after > at)
                    })
                    .cloned()
                    .collect();
                for limit in [1, 500] {
                    let listed =
                        all_pages(limit, async |page| tx.grants(&filter, &page).await.unwrap())
                            .await;
                    assert_eq!(listed, expected, "{filter:?}, pages of {limit}");
                }
            }
        }
    }
}

/// `EXPLAIN QUERY PLAN` of `sql` on `s`'s SQLite database, one line per
/// step with its parent's id (0 at the top level; its parameters bound
/// to NULL: without statistics the plan does not depend on their values).
async fn plan(s: &TestStore, sql: &str) -> Vec<(i64, String)> {
    use sqlx::{Connection as _, Row as _};
    sqlx::any::install_default_drivers();
    let mut raw = sqlx::AnyConnection::connect(&s.url).await.unwrap();
    let params = (1..).take_while(|n| sql.contains(&format!("${n}"))).count();
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
    for _ in 0..params {
        q = q.bind(None::<String>);
    }
    q.fetch_all(&mut raw)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<i64, _>("parent"), row.get::<String, _>("detail")))
        .collect()
}

/// Asserts that the plan of `sql` reads `table` through `index`, in the
/// order asked for (no sorting at the top level), and scans it nowhere.
async fn assert_searches(s: &TestStore, what: &str, sql: &str, table: &str, index: &str) {
    let plan = plan(s, sql).await;
    let search = format!("SEARCH {table} USING INDEX {index} (");
    assert!(
        plan.iter().any(|(_, step)| step.starts_with(&search)),
        "{what}: {table} read through {index}: {plan:#?}\n{sql}"
    );
    let scan = format!("SCAN {table}");
    assert!(
        !plan.iter().any(|(_, step)| step.starts_with(&scan)),
        "{what}: no scan of {table}: {plan:#?}\n{sql}"
    );
    assert!(
        !plan
            .iter()
            .any(|(parent, step)| *parent == 0 && step.starts_with("USE TEMP B-TREE")),
        "{what}: no sort: {plan:#?}\n{sql}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lists_by_tenant_use_an_index() {
    let s = crate::harness::sqlite().await;
    let tenant = Some(tid());
    let first = PageRequest::first(50);
    let next = PageRequest::after(50, "req_x");
    let by_tenant = RequestFilter {
        tenant: tenant.clone(),
        ..RequestFilter::default()
    };
    let pending = RequestFilter {
        status: Some(StatusAt {
            status: RequestStatus::Pending,
            at: t0(),
        }),
        ..by_tenant.clone()
    };
    // By state too, SQLite walks the tenant's requests newest first and
    // stops at the page's end: with two stored states to look for, the
    // index by tenant and state would need a sort of all of them.
    for (what, filter, page, index) in [
        ("requests", &by_tenant, &first, "requests_by_tenant"),
        (
            "requests after a cursor",
            &by_tenant,
            &next,
            "requests_by_tenant",
        ),
        ("pending requests", &pending, &first, "requests_by_tenant"),
        (
            "pending requests after a cursor",
            &pending,
            &next,
            "requests_by_tenant",
        ),
    ] {
        let sql = requests_list_sql(Backend::Sqlite, filter, page);
        assert_searches(&s, what, &sql, "r", index).await;
    }

    let grants = GrantFilter {
        tenant: tenant.clone(),
        ..GrantFilter::default()
    };
    let active = GrantFilter {
        active_at: Some(t0()),
        ..grants.clone()
    };
    for (what, filter, page) in [
        ("grants", &grants, &first),
        ("grants after a cursor", &grants, &next),
        ("active grants", &active, &first),
        ("active grants after a cursor", &active, &next),
    ] {
        let sql = grants_list_sql(filter, page);
        assert_searches(&s, what, &sql, "grants", "grants_by_tenant").await;
    }

    let cases = CaseFilter {
        tenant: tenant.clone(),
        ..CaseFilter::default()
    };
    let open = CaseFilter {
        status: Some(CaseStatus::Open),
        ..cases.clone()
    };
    for (what, filter, page) in [
        ("cases", &cases, &first),
        ("cases after a cursor", &cases, &next),
        ("open cases after a cursor", &open, &next),
    ] {
        let sql = cases_list_sql(filter, page);
        assert_searches(&s, what, &sql, "cases", "cases_by_tenant").await;
    }

    let chain = Chain::Tenant(tid());
    let of_kind = EventQuery {
        kind: Some("request.created".to_owned()),
        ..EventQuery::default()
    };
    let sql = events_list_sql(&chain, &of_kind).unwrap();
    assert_searches(
        &s,
        "events of a kind",
        &sql,
        "audit_events",
        "audit_events_by_kind",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_counts_what_is_open_without_reading_history() {
    // Each count of the policy's limits reads the open rows only: a case
    // or an operator with a long history once made every new request read
    // all of it (the soak of issue 21 fell behind on it).
    let s = crate::harness::sqlite().await;
    let plan = plan(&s, open_counts_sql()).await;
    for index in [
        "requests_pending_by_requester (requester=? AND tenant_id=? AND expires_at_us>?)",
        "requests_pending_by_case (case_id=? AND expires_at_us>?)",
        "grants_active_by_holder_in_tenant (principal_id=? AND tenant_id=? AND not_after_us>?)",
    ] {
        assert!(
            plan.iter().any(
                |(_, step)| step.contains(&format!("USING COVERING INDEX {index}"))
                    || step.contains(&format!("USING INDEX {index}"))
            ),
            "{index}: {plan:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_finds_due_emergency_grants_without_reading_the_others() {
    // The sweeper's look for break-glass grants past their end reads the
    // active grants by end, in order: it once read every grant without a
    // request through the unique index of `request_id` and sorted them,
    // holding the only writer for 200 ms a sweep at 50 000 such grants.
    let s = crate::harness::sqlite().await;
    let sql = lockbox_store::testing::due_grants_sql(lockbox_store::Backend::Sqlite);
    assert_searches(
        &s,
        "due emergency grants",
        &sql,
        "g",
        "grants_active_by_end",
    )
    .await;
}

crate::conformance!(every_filter_combination_lists_what_filtering_in_rust_does);
