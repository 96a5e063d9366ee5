use proptest::prelude::*;

use super::super::{normalize, normalize_doc_type, PiiError};
use super::{master, open_db, open_store};

#[test]
fn normalization_equates_common_spellings() {
    let a = normalize("CEDULA_VE", "V-12.345.678").unwrap();
    assert_eq!(a, "V12345678");
    for other in ["v12345678", " v 12 345 678 ", "V.12-345-678", "\tv-12.345.678\n"] {
        assert_eq!(normalize("CEDULA_VE", other).unwrap(), a, "{other:?}");
    }
    assert_eq!(normalize_doc_type(" ppt ").unwrap(), "PPT");
}

#[test]
fn normalization_rejects_bad_input_without_quoting_it() {
    let long = "1".repeat(33);
    let huge = "1".repeat(1000);
    for bad in [
        "",
        "   ",
        "-.-",
        "AB#12",
        "ÑAB123",
        "12/34",
        "12_34",
        long.as_str(),
        huge.as_str(),
    ] {
        let err = normalize("PPT", bad).unwrap_err();
        assert!(matches!(err, PiiError::InvalidDocument { .. }), "{bad:?}");
        if !bad.trim().is_empty() {
            assert!(!err.to_string().contains(bad), "error quotes input");
        }
    }
    assert_eq!(normalize("PPT", &"1".repeat(32)).unwrap().len(), 32);
    for bad_type in ["", " ", "P P", "PPT\0", "PÑT", &"T".repeat(33)] {
        assert!(
            matches!(normalize(bad_type, "123"), Err(PiiError::InvalidDocument { .. })),
            "{bad_type:?}"
        );
    }
}

#[test]
fn index_is_stable_keyed_and_type_separated() {
    let dir = tempfile::tempdir().unwrap();
    let value;
    {
        let db = open_db(dir.path());
        let store = open_store(&db, 1);
        let ix = store.blind_indexer().unwrap();
        value = ix.index("CEDULA_VE", "V-12.345.678").unwrap();
        assert_eq!(ix.index("cedula_ve", "v12345678").unwrap(), value);
        assert_ne!(ix.index("PASSPORT", "V12345678").unwrap(), value);
        assert_ne!(ix.index("CEDULA_VE", "V12345679").unwrap(), value);
        // Spec: BLAKE3 keyed with the derived key over TYPE || 0x00 || number.
        let key = blake3::derive_key("migreg blind index v1", &[1u8; 32]);
        let mut h = blake3::Hasher::new_keyed(&key);
        h.update(b"CEDULA_VE\0V12345678");
        assert_eq!(*h.finalize().as_bytes(), value);
        assert!(ix.index("PPT", "").is_err());
        assert_eq!(format!("{ix:?}"), "BlindIndexer(..)");
    }
    // Stable across restarts.
    let db = open_db(dir.path());
    let store = open_store(&db, 1);
    assert_eq!(
        store
            .blind_indexer()
            .unwrap()
            .index("CEDULA_VE", "V12345678")
            .unwrap(),
        value
    );
    // Another registry (another master key) gets other values.
    let dir2 = tempfile::tempdir().unwrap();
    let db2 = open_db(dir2.path());
    let store2 = super::super::KeyStore::open(&db2, master(9)).unwrap();
    assert_ne!(
        store2
            .blind_indexer()
            .unwrap()
            .index("CEDULA_VE", "V12345678")
            .unwrap(),
        value
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn prop_normalize_is_idempotent_and_ignores_separators(num in "[A-Za-z0-9]{1,32}", seps in proptest::collection::vec(0usize..3, 0..8)) {
        let n = normalize("PPT", &num).unwrap();
        prop_assert_eq!(normalize("PPT", &n).unwrap(), n.clone());
        let mut decorated = String::new();
        for (i, c) in num.chars().enumerate() {
            if let Some(s) = seps.get(i) {
                decorated.push([' ', '.', '-'][*s]);
            }
            decorated.push(c);
        }
        prop_assert_eq!(normalize("PPT", &decorated).unwrap(), n);
    }
}
