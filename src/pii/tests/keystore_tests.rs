use super::super::keystore::{BLIND_INDEX_ID, TREE_NAME};
use super::super::{open, KeyStatus, KeyStore, PiiError};
use super::seal;
use super::{master, open_db, open_store};

fn case(i: usize) -> String {
    format!("case-{i:06}")
}

/// Key id (bytes 1..9) of a stored wrapped entry.
fn stored_key_id(store: &KeyStore, id: &str) -> Vec<u8> {
    let v = store.tree.get(id).unwrap().unwrap();
    assert_eq!(v[0], 1);
    v[1..9].to_vec()
}

#[test]
fn create_get_erase_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let store = open_store(&db, 1);
    assert_eq!(
        db.tree_names()
            .iter()
            .filter(|n| n.as_ref() == TREE_NAME.as_bytes())
            .count(),
        1
    );

    assert_eq!(store.status("case-000123").unwrap(), KeyStatus::Unknown);
    assert!(store.get("case-000123").unwrap().is_none());
    assert!(matches!(store.require("case-000123"), Err(PiiError::NotFound)));

    let key = store.create("case-000123").unwrap();
    assert_eq!(store.status("case-000123").unwrap(), KeyStatus::Active);
    let sealed = seal(&key, "case-000123", "person.name", b"MARIA FERNANDA TESTNAME");
    drop(key);
    let again = store.get("case-000123").unwrap().expect("active key");
    assert_eq!(
        open(&again, "case-000123", "person.name", &sealed).unwrap(),
        b"MARIA FERNANDA TESTNAME"
    );
    drop(again);

    // Entry layout: format 1 || key id || nonce || ct+tag = 81 bytes, key id of master 1.
    let raw = store.tree.get("case-000123").unwrap().unwrap();
    assert_eq!(raw.len(), 81);
    assert_eq!(raw[1..9], master(1).key_id());

    assert_eq!(store.erase("case-000123").unwrap(), KeyStatus::Active);
    assert_eq!(store.status("case-000123").unwrap(), KeyStatus::Erased);
    assert!(store.get("case-000123").unwrap().is_none());
    assert!(matches!(store.require("case-000123"), Err(PiiError::Erased)));
    assert_eq!(store.tree.get("case-000123").unwrap().unwrap().as_ref(), &[0u8]);
    // Idempotent.
    assert_eq!(store.erase("case-000123").unwrap(), KeyStatus::Erased);
    // An erased id is never given a new key.
    assert!(matches!(
        store.create("case-000123"),
        Err(PiiError::AlreadyExists)
    ));

    // After a restart the sealed data is still unrecoverable.
    drop(store);
    drop(db);
    let db = open_db(dir.path());
    let store = open_store(&db, 1);
    assert_eq!(store.status("case-000123").unwrap(), KeyStatus::Erased);
    assert!(store.get("case-000123").unwrap().is_none());
}

#[test]
fn create_twice_fails_and_unknown_erase_leaves_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let store = open_store(&db, 1);
    store.create("case-1").unwrap();
    assert!(matches!(store.create("case-1"), Err(PiiError::AlreadyExists)));
    assert_eq!(store.erase("case-2").unwrap(), KeyStatus::Unknown);
    assert_eq!(store.status("case-2").unwrap(), KeyStatus::Erased);
    assert!(matches!(store.create("case-2"), Err(PiiError::AlreadyExists)));
}

#[test]
fn keys_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = {
        let db = open_db(dir.path());
        let store = open_store(&db, 1);
        let key = store.create("case-7").unwrap();
        seal(&key, "case-7", "f", b"data")
    };
    let db = open_db(dir.path());
    let store = open_store(&db, 1);
    let key = store.get("case-7").unwrap().unwrap();
    assert_eq!(open(&key, "case-7", "f", &sealed).unwrap(), b"data");
}

#[test]
fn invalid_and_reserved_case_ids_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let store = open_store(&db, 1);
    let long = "c".repeat(129);
    for bad in [
        "",
        BLIND_INDEX_ID,
        "__x",
        "case 1",
        "caso-ñ",
        "case\n1",
        long.as_str(),
    ] {
        assert!(
            matches!(store.create(bad), Err(PiiError::InvalidCaseId { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(store.get(bad), Err(PiiError::InvalidCaseId { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(store.erase(bad), Err(PiiError::InvalidCaseId { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(store.status(bad), Err(PiiError::InvalidCaseId { .. })),
            "{bad:?}"
        );
    }
    // The blind-index key survived the attempts.
    assert!(store.blind_indexer().is_ok());
}

#[test]
fn wrong_master_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    drop(open_store(&db, 1));
    let err = KeyStore::open(&db, master(2)).unwrap_err();
    match &err {
        PiiError::WrongMasterKey { stored_id, held_ids } => {
            assert_eq!(stored_id, &master(1).key_id_hex());
            assert_eq!(held_ids, &master(2).key_id_hex());
        }
        other => panic!("expected WrongMasterKey, got {other:?}"),
    }
    assert!(!err.to_string().contains("0101010101010101010101"));
    // The right key still works.
    open_store(&db, 1);
}

#[test]
fn tampered_or_moved_entries_are_corrupt_not_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let store = open_store(&db, 1);
    store.create("case-a").unwrap();
    store.create("case-b").unwrap();
    let a = store.tree.get("case-a").unwrap().unwrap();
    // Moving A's wrapped key to B fails authentication (AAD binds the case id).
    store.tree.insert("case-b", a.clone()).unwrap();
    assert!(matches!(store.get("case-b"), Err(PiiError::Corrupt { .. })));
    // Any flipped byte after the key id fails authentication.
    for i in 9..a.len() {
        let mut t = a.to_vec();
        t[i] ^= 0x10;
        store.tree.insert("case-a", t).unwrap();
        assert!(
            matches!(store.get("case-a"), Err(PiiError::Corrupt { .. })),
            "byte {i}"
        );
    }
    // A flipped key id names an unknown master.
    let mut t = a.to_vec();
    t[3] ^= 0x10;
    store.tree.insert("case-a", t).unwrap();
    assert!(matches!(
        store.get("case-a"),
        Err(PiiError::WrongMasterKey { .. })
    ));
    // Unknown format or bad length.
    for bad in [&[][..], &[2u8][..], &[0u8, 0][..], &a[..80]] {
        store.tree.insert("case-a", bad).unwrap();
        assert!(matches!(store.get("case-a"), Err(PiiError::Corrupt { .. })));
        assert!(matches!(store.status("case-a"), Err(PiiError::Corrupt { .. })));
    }
    // Erasing a corrupt entry still works.
    store.erase("case-a").unwrap();
    assert_eq!(store.status("case-a").unwrap(), KeyStatus::Erased);
}

#[test]
fn rewrap_all_keeps_data_readable_and_erasures_erased() {
    let dir = tempfile::tempdir().unwrap();
    let n = 150;
    let mut sealed = Vec::new();
    let doc_index;
    {
        let db = open_db(dir.path());
        let store = open_store(&db, 1);
        doc_index = store
            .blind_indexer()
            .unwrap()
            .index("PPT", "V-12.345.678")
            .unwrap();
        for i in 0..n {
            let key = store.create(&case(i)).unwrap();
            sealed.push(seal(
                &key,
                &case(i),
                "person.name",
                format!("NAME {i}").as_bytes(),
            ));
        }
        for i in (0..n).step_by(10) {
            store.erase(&case(i)).unwrap();
        }
        let erased = n.div_ceil(10);
        // Small batches: several atomic batches.
        let done = store.rewrap_batched(master(2), 16, None).unwrap();
        assert_eq!(done, n - erased);
        assert_eq!(store.master_key_id(), master(2).key_id_hex());
        // Idempotent: nothing left to do.
        assert_eq!(store.rewrap_all(master(2)).unwrap(), 0);
        // The same open store reads everything.
        for (i, blob) in sealed.iter().enumerate() {
            let got = store.get(&case(i)).unwrap();
            if i % 10 == 0 {
                assert!(got.is_none());
                assert_eq!(store.status(&case(i)).unwrap(), KeyStatus::Erased);
            } else {
                let key = got.unwrap();
                assert_eq!(
                    open(&key, &case(i), "person.name", blob).unwrap(),
                    format!("NAME {i}").as_bytes()
                );
                assert_eq!(stored_key_id(&store, &case(i)), master(2).key_id());
            }
        }
        assert_eq!(stored_key_id(&store, BLIND_INDEX_ID), master(2).key_id());
    }
    let db = open_db(dir.path());
    // The old master can no longer read the store.
    assert!(matches!(
        KeyStore::open(&db, master(1)),
        Err(PiiError::WrongMasterKey { .. })
    ));
    let store = open_store(&db, 2);
    for (i, blob) in sealed.iter().enumerate() {
        match store.get(&case(i)).unwrap() {
            None => assert_eq!(i % 10, 0),
            Some(key) => {
                assert_ne!(i % 10, 0, "erased person came back");
                assert_eq!(
                    open(&key, &case(i), "person.name", blob).unwrap(),
                    format!("NAME {i}").as_bytes()
                );
            }
        }
    }
    // Blind index values are unchanged by rotation.
    assert_eq!(
        store.blind_indexer().unwrap().index("PPT", "v12345678").unwrap(),
        doc_index
    );
    // New keys are wrapped by the new master.
    store.create("case-new").unwrap();
    assert_eq!(stored_key_id(&store, "case-new"), master(2).key_id());
}

#[test]
fn interrupted_rewrap_resumes_and_mixed_state_reports_wrong_master() {
    let dir = tempfile::tempdir().unwrap();
    let n = 50;
    {
        let db = open_db(dir.path());
        let store = open_store(&db, 1);
        for i in 0..n {
            store.create(&case(i)).unwrap();
        }
        // Stop after 2 batches of 10, as if the process died.
        assert_eq!(store.rewrap_batched(master(2), 10, Some(2)).unwrap(), 20);
        // While the rotation is unfinished, rotating to a third key is refused.
        assert!(matches!(
            store.rewrap_all(master(3)),
            Err(PiiError::RotationInProgress)
        ));
        // The half-rotated store still reads everything (it holds both keys).
        for i in 0..n {
            assert!(store.get(&case(i)).unwrap().is_some());
        }
    }
    let db = open_db(dir.path());
    // The blind-index key moves last, so the old master still opens the store...
    let store = open_store(&db, 1);
    // ...but entries already moved need the new key: a clear error, never garbage.
    let moved = (0..n)
        .find(|&i| stored_key_id(&store, &case(i)) == master(2).key_id())
        .unwrap();
    match store.get(&case(moved)) {
        Err(PiiError::WrongMasterKey { stored_id, .. }) => assert_eq!(stored_id, master(2).key_id_hex()),
        other => panic!("expected WrongMasterKey, got {other:?}"),
    }
    // Running the rotation again finishes it, skipping what was done.
    assert_eq!(store.rewrap_all(master(2)).unwrap(), n - 20);
    drop(store);
    let store = open_store(&db, 2);
    for i in 0..n {
        assert!(store.get(&case(i)).unwrap().is_some());
    }
}

#[test]
fn rewrap_batch_never_undoes_a_racing_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let store = open_store(&db, 1);
    store.create("case-1").unwrap();
    store.create("case-2").unwrap();
    let new_id = master(2).key_id();
    // Read both entries and prepare their re-wrapped values, as a rotation would...
    let mut batch = Vec::new();
    for id in ["case-1", "case-2"] {
        let v = store.tree.get(id).unwrap().unwrap();
        let new_value = store.rewrapped(id.as_bytes(), &v, &new_id).unwrap().unwrap();
        batch.push((sled::IVec::from(id.as_bytes()), v, new_value));
    }
    // ...then case-1 is erased before the batch is applied.
    store.erase("case-1").unwrap();
    assert_eq!(store.apply_rewrap_batch(&batch).unwrap(), 1);
    assert_eq!(store.status("case-1").unwrap(), KeyStatus::Erased);
    assert_eq!(store.status("case-2").unwrap(), KeyStatus::Active);
}

#[test]
fn concurrent_create_erase_during_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let store = std::sync::Arc::new(open_store(&db, 1));
    for i in 0..100 {
        store.create(&case(i)).unwrap();
    }
    let worker = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..100 {
                if i % 2 == 0 {
                    store.erase(&case(i)).unwrap();
                }
                store.create(&case(1000 + i)).unwrap();
            }
        })
    };
    store.rewrap_batched(master(2), 8, None).unwrap();
    worker.join().unwrap();
    // Whatever the interleaving: erased stay erased, every active key is readable.
    for i in 0..100 {
        let got = store.get(&case(i)).unwrap();
        assert_eq!(got.is_none(), i % 2 == 0, "case {i}");
        assert!(store.get(&case(1000 + i)).unwrap().is_some());
    }
    // Finish moving anything created under the old key during the rotation (none
    // expected: creates after the switch use the new key), then the new key alone reads all.
    store.rewrap_all(master(2)).unwrap();
    drop(store);
    let store = open_store(&db, 2);
    for i in 0..100 {
        assert_eq!(store.get(&case(i)).unwrap().is_none(), i % 2 == 0);
        assert!(store.get(&case(1000 + i)).unwrap().is_some());
    }
}

/// A key made for a registration and stored later (with its events) is
/// re-wrapped by a rotation that started meanwhile: the rotation waits for
/// it, so the new master alone opens it afterwards.
#[test]
fn a_rotation_waits_for_new_keys_wrapped_by_the_old_master() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let store = std::sync::Arc::new(open_store(&db, 1));
    let new = store.new_key("case-late").unwrap();
    assert!(
        store.tree.get("case-late").unwrap().is_none(),
        "not stored by new_key"
    );
    assert!(matches!(
        store.new_key(BLIND_INDEX_ID),
        Err(PiiError::InvalidCaseId { .. })
    ));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let rotation = {
        let store = store.clone();
        std::thread::spawn(move || {
            let result = store.rewrap_all(master(2));
            done_tx.send(()).unwrap();
            result
        })
    };
    assert!(
        done_rx
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "the rotation went on while a key wrapped by the old master was pending"
    );
    // The registration's append stores the entry (as the writer does), then is answered.
    store.tree.insert("case-late", new.entry.clone()).unwrap();
    let sealed = seal(&new.key, "case-late", "identity", b"LATE REGISTRATION");
    drop(new);
    rotation.join().unwrap().unwrap();
    assert_eq!(stored_key_id(&store, "case-late"), master(2).key_id().to_vec());
    drop(store);
    let store = open_store(&db, 2);
    let key = store.get("case-late").unwrap().expect("active key");
    assert_eq!(
        open(&key, "case-late", "identity", &sealed).unwrap(),
        b"LATE REGISTRATION"
    );
}

#[test]
fn a_new_key_is_refused_for_an_id_that_has_one_or_was_erased() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let store = open_store(&db, 1);
    store.create("case-1").unwrap();
    store.erase("case-2").unwrap();
    assert!(matches!(store.new_key("case-1"), Err(PiiError::AlreadyExists)));
    assert!(matches!(store.new_key("case-2"), Err(PiiError::AlreadyExists)));
}
