use proptest::prelude::*;

use super::super::seal::SEALED_OVERHEAD;
use super::super::{open, open_json, seal_for_request, DataKey, PiiError};
use super::seal;

#[test]
fn round_trip_various_sizes() {
    let key = DataKey::generate();
    for len in [0usize, 1, 15, 16, 17, 64, 1000, 10_000] {
        let pt: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let sealed = seal(&key, "case-000123", "person.name", &pt);
        assert_eq!(sealed.len(), pt.len() + SEALED_OVERHEAD);
        assert_eq!(sealed[0], 1, "version byte");
        assert_eq!(open(&key, "case-000123", "person.name", &sealed).unwrap(), pt);
    }
}

#[test]
fn a_request_seals_to_the_same_bytes_and_opens_only_in_its_place() {
    let key = DataKey::generate();
    let pt = b"Maria Perez";
    let sealed = seal_for_request(&key, "case-000123", "person.name", "rq-1", pt);
    assert_eq!(sealed.len(), pt.len() + SEALED_OVERHEAD);
    // A retry of the request seals to the same bytes (the writer's idempotency check).
    assert_eq!(
        sealed,
        seal_for_request(&key, "case-000123", "person.name", "rq-1", pt)
    );
    // Another request, field, case, value or key: another nonce and ciphertext.
    for other in [
        seal_for_request(&key, "case-000123", "person.name", "rq-2", pt),
        seal_for_request(&key, "case-000123", "person.alias", "rq-1", pt),
        seal_for_request(&key, "case-000124", "person.name", "rq-1", pt),
        seal_for_request(&key, "case-000123", "person.name", "rq-1", b"Maria Perez "),
        seal_for_request(&DataKey::generate(), "case-000123", "person.name", "rq-1", pt),
    ] {
        assert_ne!(other[1..25], sealed[1..25], "nonce");
    }
    assert_eq!(open(&key, "case-000123", "person.name", &sealed).unwrap(), pt);
    assert!(open(&key, "case-000124", "person.name", &sealed).is_err());
    assert!(open(&key, "case-000123", "person.alias", &sealed).is_err());
    assert!(open(&DataKey::generate(), "case-000123", "person.name", &sealed).is_err());
}

#[test]
fn tampering_any_byte_fails() {
    let key = DataKey::generate();
    let sealed = seal(&key, "case-000123", "person.name", b"MARIA FERNANDA TESTNAME");
    for i in 0..sealed.len() {
        for flip in [0x01u8, 0x80] {
            let mut t = sealed.clone();
            t[i] ^= flip;
            let err = open(&key, "case-000123", "person.name", &t).unwrap_err();
            assert!(matches!(err, PiiError::Corrupt { .. }), "byte {i}: {err:?}");
        }
    }
    // Truncation and extension.
    for cut in 0..sealed.len() {
        assert!(
            open(&key, "case-000123", "person.name", &sealed[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(open(&key, "case-000123", "person.name", &longer).is_err());
}

#[test]
fn wrong_case_field_or_key_fails() {
    let key = DataKey::generate();
    let sealed = seal(&key, "case-000123", "person.name", b"secret");
    assert!(matches!(
        open(&key, "case-000124", "person.name", &sealed),
        Err(PiiError::Corrupt { .. })
    ));
    assert!(matches!(
        open(&key, "case-000123", "person.address", &sealed),
        Err(PiiError::Corrupt { .. })
    ));
    assert!(matches!(
        open(&key, "", "person.name", &sealed),
        Err(PiiError::Corrupt { .. })
    ));
    let other = DataKey::generate();
    assert!(matches!(
        open(&other, "case-000123", "person.name", &sealed),
        Err(PiiError::Corrupt { .. })
    ));
    assert_eq!(
        open(&key, "case-000123", "person.name", &sealed).unwrap(),
        b"secret"
    );
}

#[test]
fn aad_is_unambiguous() {
    // ("ab", "c") and ("a", "bc") concatenate alike; length prefixes keep them apart.
    let key = DataKey::generate();
    let sealed = seal(&key, "ab", "c", b"x");
    assert!(open(&key, "a", "bc", &sealed).is_err());
    assert!(open(&key, "abc", "", &sealed).is_err());
}

#[test]
fn json_round_trip_and_errors_hide_plaintext() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Name {
        given: String,
        family: String,
    }
    let key = DataKey::generate();
    let name = Name {
        given: "MARIA FERNANDA".into(),
        family: "TESTNAME".into(),
    };
    // As the case service seals an identity: its JSON, sealed for the request.
    let sealed = seal(&key, "case-9", "person.name", &serde_json::to_vec(&name).unwrap());
    let back: Name = open_json(&key, "case-9", "person.name", &sealed).unwrap();
    assert_eq!(back, name);
    // Decoding as the wrong type fails without quoting the plaintext.
    let err = open_json::<u32>(&key, "case-9", "person.name", &sealed).unwrap_err();
    assert!(matches!(err, PiiError::Json));
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains("MARIA") && !msg.contains("TESTNAME"), "{msg}");
    // Tampering is reported as Corrupt, not as a JSON error.
    let mut t = sealed.clone();
    *t.last_mut().unwrap() ^= 1;
    assert!(matches!(
        open_json::<Name>(&key, "case-9", "person.name", &t),
        Err(PiiError::Corrupt { .. })
    ));
}

#[test]
fn data_key_debug_prints_nothing() {
    let key = DataKey::generate();
    let text = format!("{key:?}");
    assert_eq!(text, "DataKey(..)");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_round_trip(pt in proptest::collection::vec(any::<u8>(), 0..512),
                       case in "[a-z0-9-]{1,20}", field in "[a-z.]{0,20}") {
        let key = DataKey::generate();
        let sealed = seal(&key, &case, &field, &pt);
        prop_assert_eq!(open(&key, &case, &field, &sealed).unwrap(), pt);
    }

    #[test]
    fn prop_other_context_fails(pt in proptest::collection::vec(any::<u8>(), 0..64),
                                case in "[a-z0-9-]{1,20}", other in "[a-z0-9-]{1,20}") {
        // `other` is tried both as another case id and as another field
        // name, so it must differ from both the case id and the field "f".
        prop_assume!(case != other && other != "f");
        let key = DataKey::generate();
        let sealed = seal(&key, &case, "f", &pt);
        prop_assert!(open(&key, &other, "f", &sealed).is_err());
        prop_assert!(open(&key, &case, &other, &sealed).is_err());
    }
}
