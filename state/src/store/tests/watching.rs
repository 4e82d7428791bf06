//! Addresses handed out (derived, pooled, watched from their commit), group
//! commits, dust, and confirmed payments reverted by a deep reorg.

use super::*;

struct FakeDeriver;

impl crate::AddressDeriver for FakeDeriver {
    fn derive(&self, index: u32) -> Result<String, String> {
        Ok(format!("D{index}"))
    }
    fn id(&self) -> String {
        "fake".into()
    }
}

#[test]
fn derived_addresses_are_never_handed_out_twice() {
    let mut policy = AssetPolicy::defaults(crate::Asset::Btc, vec!["POOL".into()]);
    policy.deriver = Some(crate::Deriver(std::sync::Arc::new(FakeDeriver)));
    let dir = Place::new();
    let mut chain = Chain::new(policy.clone());
    {
        let store = dir.open();
        store
            .apply_scan(&policy, &chain.update(vec![], Some(vec![]), None), t(0))
            .unwrap();
        let a = created(store.create_intent(&policy, new_intent(crate::Asset::Btc, "1"), t(1)));
        let b = created(store.create_intent(&policy, new_intent(crate::Asset::Btc, "1"), t(1)));
        assert_eq!((a.address.as_str(), b.address.as_str()), ("D0", "D1"));
        // An intent given D3 explicitly: derivation skips it later.
        let mut explicit = new_intent(crate::Asset::Btc, "1");
        explicit.address = Some("D3".into());
        created(store.create_intent(&policy, explicit, t(1)));
        // Cancelled long ago: still never reused.
        store.cancel_intent(&a.id, t(2)).unwrap();
    }
    let store = dir.open();
    let later = t(2) + Duration::days(10);
    let next: Vec<String> = (0..3)
        .map(|_| created(store.create_intent(&policy, new_intent(crate::Asset::Btc, "1"), later)).address)
        .collect();
    assert_eq!(next, ["D2", "D4", "D5"]);
    assert!(
        store
            .watched_addresses(crate::Asset::Btc)
            .unwrap()
            .contains(&"D5".to_string())
    );
}

#[test]
fn a_group_commit_keeps_every_answer_as_if_alone() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.match_mode = MatchMode::Amount;
    let (_dir, store, _chain) = setup(&policy);
    let mut with_ext = new_intent(crate::Asset::UsdtTrc20, "5");
    with_ext.external_id = Some("order-7".into());
    let mut conflicting = with_ext.clone();
    conflicting.amount = d("6.000000");
    let batch = vec![
        (&policy, new_intent(crate::Asset::UsdtTrc20, "10")),
        (&policy, new_intent(crate::Asset::UsdtTrc20, "10")),
        (&policy, with_ext.clone()),
        (&policy, with_ext),
        (&policy, conflicting),
    ];
    let answers = store.create_intents(batch, t(1)).unwrap();
    let created: Vec<IntentView> = answers[..3]
        .iter()
        .map(|a| match a {
            Ok(CreateOutcome::Created(v)) => v.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        (created[0].pay_amount, created[1].pay_amount),
        (d("10.000000"), d("10.010000")),
        "unique within the batch"
    );
    assert!(
        matches!(&answers[3], Ok(CreateOutcome::Existing(v)) if v.id == created[2].id),
        "idempotent within the batch"
    );
    assert!(matches!(&answers[4], Err(CreateError::ExternalIdConflict(_))));
    assert_eq!(store.intent_counts().unwrap().iter().map(|(_, _, n)| n).sum::<u64>(), 3);
}

#[test]
fn a_scan_computed_before_an_address_was_watched_is_refused() {
    let mut policy = AssetPolicy::defaults(crate::Asset::Btc, vec!["POOL".into()]);
    policy.deriver = Some(crate::Deriver(std::sync::Arc::new(FakeDeriver)));
    let (_dir, store, mut chain) = setup(&policy);
    store.watch_addresses(crate::Asset::Btc, &policy.addresses).unwrap();
    let (generation, watched) = store.watched_snapshot(crate::Asset::Btc).unwrap();
    assert_eq!(watched, ["POOL"]);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::Btc, "1"), t(1)));
    let (newer, added) = store.watched_since(crate::Asset::Btc, generation).unwrap();
    assert_eq!((newer, added), (generation + 1, vec![intent.address.clone()]));
    chain.height += 1;
    let mut stale = chain.update(vec![obs("tx1", &intent.address, "1", Some(chain.height))], None, None);
    stale.watch_generation = Some(generation);
    assert!(matches!(
        store.apply_scan(&policy, &stale, t(2)),
        Err(StoreError::WatchChanged { expected, found, .. }) if expected == generation && found == newer
    ));
    stale.watch_generation = Some(newer);
    let events = store.apply_scan(&policy, &stale, t(2)).unwrap();
    assert_eq!(kinds(&events), [EventType::IntentDetected]);
}

#[test]
fn dust_is_recorded_unmatched_and_silent_but_an_older_small_intent_still_gets_paid() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.mempool = false;
    let (_dir, store, mut chain) = setup(&policy);
    // Created while the minimum was lower (before an upgrade raised it).
    policy.min_amount = d("0.01");
    let small = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "0.05"), t(1)));
    policy.min_amount = d("0.1");
    chain.height += 1;
    let h = chain.height;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(
                vec![
                    obs("dust", "T1", "0.000001", Some(h)),
                    obs("pay", "T1", "0.05", Some(h)),
                ],
                None,
                None,
            ),
            t(2),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentDetected, EventType::IntentConfirmed]);
    assert_eq!(
        store.intent(&small.id).unwrap().unwrap().status,
        IntentStatus::Confirmed
    );
    let (all, _) = store
        .list_transfers(&TransferFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let dust = all.iter().find(|t| t.txid == "dust").unwrap();
    assert!(dust.dust && dust.intent_id.is_none());
}

#[test]
fn a_confirmed_payment_reverted_by_a_deep_reorg_and_mined_again_is_announced_both_ways() {
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec!["T1".into()]);
    policy.mempool = false;
    let (_dir, store, mut chain) = setup(&policy);
    let intent = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "10"), t(1)));
    chain.height = 101;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("x", "T1", "10", Some(101))], None, None),
            t(2),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::IntentDetected, EventType::IntentConfirmed]);
    // A reorg deeper than its depth removes it: the money left.
    chain.height = 102;
    let mut u = chain.update(vec![], None, None);
    u.rollback_to = Some(100);
    let ev = store.apply_scan(&policy, &u, t(3)).unwrap();
    assert_eq!(kinds(&ev), [EventType::TransferReverted]);
    assert_eq!(ev[0].intent.as_ref().unwrap().id, intent.id);
    // Mined again: it is that payment, back and confirmed, said once.
    chain.height = 103;
    let ev = store
        .apply_scan(
            &policy,
            &chain.update(vec![obs("x", "T1", "10", Some(103))], None, None),
            t(4),
        )
        .unwrap();
    assert_eq!(kinds(&ev), [EventType::TransferConfirmed]);
    chain.height = 104;
    let ev = store
        .apply_scan(&policy, &chain.update(vec![], None, None), t(5))
        .unwrap();
    assert!(ev.is_empty(), "announced once");
    let v = store.intent(&intent.id).unwrap().unwrap();
    assert_eq!(
        (v.status, v.payments[0].status, v.payments[0].late),
        (IntentStatus::Confirmed, TransferStatus::Confirmed, false)
    );
}

#[test]
fn pool_addresses_come_from_the_index_in_order_and_return_after_the_late_window() {
    let pool: Vec<String> = ["P0", "P1", "P2"].iter().map(|a| a.to_string()).collect();
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, pool.clone());
    let (dir, store, mut chain) = setup(&policy);
    let take =
        |store: &Store, policy: &AssetPolicy, at| store.create_intent(policy, new_intent(crate::Asset::Ltc, "1"), at);
    let handed: Vec<String> = (0..3).map(|_| created(take(&store, &policy, t(1))).address).collect();
    assert_eq!(handed, pool, "never-used addresses first, in config order");
    assert!(matches!(
        take(&store, &policy, t(1)),
        Err(CreateError::NoFreeAddress(_))
    ));

    // All three expire; a round past the deadline ends them.
    let deadline = t(1) + policy.expires_in;
    store
        .apply_scan(
            &policy,
            &chain.update(vec![], Some(vec![]), Some(deadline + Duration::seconds(1))),
            deadline + Duration::seconds(1),
        )
        .unwrap();
    // Within the late window their match keys stay reserved.
    assert!(matches!(
        take(&store, &policy, deadline + Duration::hours(1)),
        Err(CreateError::NoFreeAddress(_))
    ));
    let after = deadline + policy.late_window + Duration::minutes(1);
    let again = created(take(&store, &policy, after)).address;
    assert!(pool.contains(&again));

    // Restarted with P0 removed and P3 added: P3 is free, P0 is never handed out again.
    drop(store);
    let store = dir.open();
    let changed = AssetPolicy::defaults(crate::Asset::Ltc, vec!["P1".into(), "P2".into(), "P3".into()]);
    let mut seen = vec![again.clone()];
    while let Ok(CreateOutcome::Created(v)) = take(&store, &changed, after) {
        assert!(!seen.contains(&v.address), "{} handed out twice", v.address);
        seen.push(v.address);
    }
    seen.sort();
    let expected: Vec<String> = if again == "P0" {
        vec!["P0", "P1", "P2", "P3"]
    } else {
        vec!["P1", "P2", "P3"]
    }
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(seen, expected, "every configured address once, P0 never again");
}

#[test]
fn an_address_given_explicitly_is_not_handed_out_again_from_the_pool() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["P0".into(), "P1".into()]);
    let (_dir, store, _chain) = setup(&policy);
    let mut explicit = new_intent(crate::Asset::Ltc, "1");
    explicit.address = Some("P1".into());
    created(store.create_intent(&policy, explicit, t(1)));
    let first = created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(1)));
    assert_eq!(first.address, "P0");
    assert!(matches!(
        store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), t(1)),
        Err(CreateError::NoFreeAddress(_))
    ));
}

/// The pool addresses queued as free, with when: (free_at_ms, address).
fn queued(store: &Store) -> Vec<(u64, String)> {
    let r = store.read().unwrap();
    let t = r.open_table(super::super::tables::POOL_FREE).unwrap();
    t.iter()
        .unwrap()
        .map(|e| {
            let key = e.unwrap().0.value().to_string();
            let parts: Vec<&str> = key.splitn(4, '/').collect();
            (parts[1].parse().unwrap(), parts[3].to_string())
        })
        .collect()
}

#[test]
fn a_pool_address_asked_for_too_early_stays_queued_for_the_end_of_its_late_window() {
    let policy = AssetPolicy::defaults(crate::Asset::Ltc, vec!["P0".into()]);
    let (_dir, store, mut chain) = setup(&policy);
    // Times with sub-millisecond parts, as the system clock gives them.
    let start = t(1) + Duration::nanoseconds(123_456);
    created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), start));
    assert!(queued(&store).is_empty(), "handed out: off the queue");
    let ended = start + policy.expires_in + Duration::nanoseconds(700_001);
    store
        .apply_scan(&policy, &chain.update(vec![], Some(vec![]), Some(ended)), ended)
        .unwrap();
    let free_at = ended + policy.late_window;
    let due_ms = free_at.timestamp_millis() as u64 + 1;
    assert_eq!(
        queued(&store),
        [(due_ms, "P0".to_string())],
        "queued for the end of the late window, rounded up"
    );
    // Asked for within the same millisecond the window ends in: still
    // held, and still queued (not lost).
    let early = free_at - Duration::nanoseconds(1);
    assert!(matches!(
        store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), early),
        Err(CreateError::NoFreeAddress(_))
    ));
    assert_eq!(queued(&store), [(due_ms, "P0".to_string())]);
    let after = free_at + Duration::milliseconds(1);
    assert_eq!(
        created(store.create_intent(&policy, new_intent(crate::Asset::Ltc, "1"), after)).address,
        "P0"
    );
    assert!(queued(&store).is_empty());
}

#[test]
fn a_pool_address_still_reserved_when_first_queued_is_queued_again_not_lost() {
    // P0 served an intent (given explicitly) before it joined the pool: its
    // end queued nothing, and P0 joins the queue as never used.
    let before = AssetPolicy::defaults(crate::Asset::Ltc, vec!["P1".into()]);
    let (dir, store, mut chain) = setup(&before);
    let mut explicit = new_intent(crate::Asset::Ltc, "1");
    explicit.address = Some("P0".into());
    created(store.create_intent(&before, explicit, t(1)));
    let ended = t(1) + before.expires_in + Duration::seconds(1);
    store
        .apply_scan(&before, &chain.update(vec![], Some(vec![]), Some(ended)), ended)
        .unwrap();
    drop(store);
    let store = dir.open();
    let after = AssetPolicy::defaults(crate::Asset::Ltc, vec!["P0".into(), "P1".into()]);
    // Within P0's late window: P1 is handed out, P0 goes back in the queue
    // for when its window ends.
    let v = created(store.create_intent(&after, new_intent(crate::Asset::Ltc, "1"), ended + Duration::hours(1)));
    assert_eq!(v.address, "P1");
    let free_at_ms = (ended + before.late_window).timestamp_millis() as u64;
    assert_eq!(queued(&store), [(free_at_ms, "P0".to_string())]);
}

#[test]
fn a_derived_address_already_watched_is_skipped() {
    // D0 was the shared address of `amount` mode before the switch to
    // derived addresses: handing it out would route its payments here.
    let mut policy = AssetPolicy::defaults(crate::Asset::UsdtTrc20, vec![]);
    policy.match_mode = MatchMode::Address;
    policy.deriver = Some(crate::Deriver(std::sync::Arc::new(FakeDeriver)));
    let (_dir, store, _chain) = setup(&policy);
    store
        .watch_addresses(crate::Asset::UsdtTrc20, &["D0".to_string()])
        .unwrap();
    let first = created(store.create_intent(&policy, new_intent(crate::Asset::UsdtTrc20, "1"), t(1)));
    assert_eq!(first.address, "D1");
}
