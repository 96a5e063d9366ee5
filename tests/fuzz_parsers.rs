//! Every parser of bytes that can come from outside (a store someone wrote
//! to, an export, a receipt, a checkpoint note, a key hand-over, a verifier key, a key file,
//! the access file) fed arbitrary input and mutations of valid input
//! (proptest-driven fuzzing; a bounded number of cases per run, so it runs
//! in CI). Each must answer with a value or an error, never panic, and a
//! valid input must survive its round trip unchanged.

use proptest::prelude::*;
use registry::audit::checkpoint::{Checkpoint, NoteSigner, Verifier};
use registry::audit::handover::{sign_handover, split_notes, KeyChain};
use registry::audit::receipt::Receipt;
use registry::log::casefile::CaseFile;
use registry::log::chunk::Chunk;
use registry::log::record::{Record, RecordView};
use registry::log::Actor;

fn record() -> Record {
    Record {
        seq: 42,
        recorded_at_us: 1_700_000_000_000_000,
        stream_id: "C-0123456789abcdef0123".into(),
        stream_version: 3,
        part: 0,
        parts: 2,
        event_type: "PermitIssued".into(),
        actor: Actor {
            user_id: "u-0042".into(),
            office: "BOG-CENTRO".into(),
        },
        request_id: "5f0c7d7e-1a2b-4c3d-8e9f-000000000001".into(),
        payload: vec![8, 1, 18, 4, 0xde, 0xad, 0xbe, 0xef],
        prev_hash: [9; 32],
    }
}

/// `bytes` with the edits applied: (position, new byte) overwrites, then a
/// truncation to `keep` bytes.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], keep: usize) -> Vec<u8> {
    if !bytes.is_empty() {
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = *b;
        }
    }
    bytes.truncate(keep.max(1).min(bytes.len()));
    bytes
}

fn signer() -> NoteSigner {
    NoteSigner::generate("registry.example/log").expect("signer")
}

fn note(signer: &NoteSigner) -> String {
    signer.sign_checkpoint(&Checkpoint {
        origin: "registry.example/log".into(),
        size: 7,
        root: [3; 32],
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn record_decoders_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let decoded = Record::decode(&bytes);
        let viewed = RecordView::parse(&bytes);
        prop_assert_eq!(decoded.is_ok(), viewed.is_ok(), "the two decoders agree");
        if let Ok(r) = decoded {
            prop_assert_eq!(&r.encode(), &bytes, "what decodes re-encodes to the same bytes");
        }
    }

    #[test]
    fn a_mutated_record_decodes_or_is_refused(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        keep in any::<usize>(),
    ) {
        let valid = record().encode();
        prop_assert_eq!(Record::decode(&valid).expect("valid"), record());
        let bytes = mutate(valid, &edits, keep % 400);
        if let Ok(r) = Record::decode(&bytes) {
            prop_assert_eq!(&r.encode(), &bytes);
        }
        let _ = RecordView::parse(&bytes);
    }

    #[test]
    fn chunks_and_case_files_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(chunk) = Chunk::parse(bytes.as_slice()) {
            for i in 0..chunk.len() {
                let _ = chunk.entry(i);
            }
        }
        if let Ok(cf) = CaseFile::decode(&bytes) {
            prop_assert_eq!(CaseFile::decode(&cf.encode()).expect("re-decodes"), cf);
        }
    }

    #[test]
    fn a_mutated_case_file_decodes_or_is_refused(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        keep in any::<usize>(),
    ) {
        let mut cf = CaseFile::default();
        for (i, seq) in [5u64, 9, 10, 200, 70_000].iter().enumerate() {
            cf.push(*seq, 0, &format!("request-{i}"));
        }
        let valid = cf.encode();
        prop_assert_eq!(&CaseFile::decode(&valid).expect("valid"), &cf);
        let bytes = mutate(valid, &edits, keep % 200);
        if let Ok(decoded) = CaseFile::decode(&bytes) {
            prop_assert_eq!(CaseFile::decode(&decoded.encode()).expect("re-decodes"), decoded);
        }
    }

    #[test]
    fn notes_keys_and_receipts_take_any_text(text in "\\PC{0,300}") {
        let signer = signer();
        let _ = Checkpoint::parse_body(&text);
        let _ = Verifier::parse(&text);
        let _ = NoteSigner::parse_key_file(&text);
        prop_assert!(signer.verifier().verify_checkpoint(&text).is_err(), "no signature forged from noise");
        let _ = Receipt::parse(&text);
    }

    #[test]
    fn handover_files_take_any_text(text in "\\PC{0,400}") {
        let old = signer();
        let notes = split_notes(&text);
        prop_assert!(
            KeyChain::follow(old.verifier().clone(), &notes).map_or(true, |c| c.handovers().is_empty()),
            "no hand-over forged from noise"
        );
        let _ = KeyChain::follow_from(old.verifier().clone(), &notes);
    }

    #[test]
    fn a_mutated_handover_is_refused_or_unchanged(
        at in any::<usize>(),
        ch in any::<char>(),
        keep in any::<usize>(),
    ) {
        let (old, new) = (signer(), signer());
        let valid = sign_handover(&old, &new, 7, &[3; 32], "2026-01-02T03:04:05Z");
        prop_assert!(KeyChain::follow(old.verifier().clone(), std::slice::from_ref(&valid)).is_ok());
        let mut chars: Vec<char> = valid.chars().collect();
        let i = at % chars.len();
        chars[i] = ch;
        chars.truncate(keep % (chars.len() + 1));
        let mutated: String = chars.into_iter().collect();
        if let Ok(chain) = KeyChain::follow(old.verifier().clone(), &split_notes(&mutated)) {
            for h in chain.handovers() {
                prop_assert_eq!(h.size, 7);
                prop_assert_eq!(h.root, [3; 32]);
                prop_assert_eq!(h.new.vkey(), new.verifier().vkey());
            }
        }
    }

    #[test]
    fn a_mutated_signed_note_verifies_only_unchanged(
        at in any::<usize>(),
        ch in any::<char>(),
        keep in any::<usize>(),
    ) {
        let signer = signer();
        let valid = note(&signer);
        prop_assert!(signer.verifier().verify_checkpoint(&valid).is_ok());
        let mut chars: Vec<char> = valid.chars().collect();
        let i = at % chars.len();
        chars[i] = ch;
        chars.truncate(keep % (chars.len() + 1));
        let mutated: String = chars.into_iter().collect();
        if mutated != valid {
            // A note may end in characters the verifier ignores (a final
            // newline); the body it accepts must still be the signed one.
            if let Ok(cp) = signer.verifier().verify_checkpoint(&mutated) {
                prop_assert_eq!(cp.size, 7);
                prop_assert_eq!(cp.root, [3; 32]);
            }
        }
        let vkey = signer.verifier().vkey();
        let mut key: Vec<char> = vkey.chars().collect();
        let j = at % key.len();
        key[j] = ch;
        let _ = Verifier::parse(&key.into_iter().collect::<String>());
    }

    #[test]
    fn exports_take_any_bytes(
        tail in prop::collection::vec(any::<u8>(), 0..600),
        good_magic in any::<bool>(),
    ) {
        let mut bytes = Vec::new();
        if good_magic {
            bytes.extend_from_slice(b"MIGREGEX");
        }
        bytes.extend_from_slice(&tail);
        let result = registry::audit::export::verify_export(bytes.as_slice(), None, &mut |_| {});
        // Nothing signed a stream of random bytes: it may only pass if empty of records.
        if let Ok(report) = result {
            prop_assert_eq!(report.count, 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_access_file_loader_takes_any_text(text in "\\PC{0,400}", json_like in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        let text = if json_like { format!("{{\"version\":1,\"tokens\":[{text}]}}") } else { text };
        std::fs::write(&path, &text).unwrap();
        let _ = registry::auth::access_file::AccessFile::load(&path);
    }
}
