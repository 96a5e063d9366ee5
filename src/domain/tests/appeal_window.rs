//! The appeal window of a denial in Colombian business days (CPACA art. 76:
//! "dentro de los diez (10) días siguientes"; the day of the decision not
//! counted), on known dates checked against `holidays_co.tsv`, and rules
//! recorded before the count was stated, which keep counting calendar days.

use super::*;

/// A case denied on `on` (decided on `today`), and the recorded deadline.
fn denied_on(on: &str, today: Date) -> (Case, Date) {
    let mut case = Case::etpv_at(Stage::UnderReview);
    let events = case
        .try_run(
            Command::Deny {
                on: d(on),
                reason: DenialReason::Annotation,
            },
            today,
        )
        .expect("denial accepted");
    let [Event::Denied { appeal_until, .. }] = events[..] else {
        panic!("one Denied event: {events:?}")
    };
    (case, appeal_until)
}

#[test]
fn a_denial_before_holy_week_may_be_appealed_on_the_tenth_business_day() {
    // Friday 2025-04-11. Business days after it: 14, 15, 16 April; Holy
    // Thursday 17 and Good Friday 18 (Easter 2025-04-20) do not count;
    // 21-25 April; 28 and 29 April. Ten calendar days would end on the 21st.
    let today = d("2025-06-01");
    let (mut on_time, until) = denied_on("2025-04-11", today);
    assert_eq!(until, d("2025-04-29"));
    assert_eq!(
        on_time
            .state
            .next_steps(d("2025-04-20"), &on_time.catalog)
            .iter()
            .find(|s| s.command == "FileAppeal")
            .and_then(|s| s.until),
        Some(d("2025-04-29")),
        "next steps show the same deadline"
    );
    assert_eq!(status(&on_time, "2025-04-29"), PersonStatus::InProcess);
    assert_eq!(status(&on_time, "2025-04-30"), PersonStatus::Irregular);
    let late = on_time.reject_on(Command::FileAppeal { on: d("2025-04-30") }, today);
    assert_eq!(
        late,
        illegal("FileAppeal", "DENIED", "the appeal window closed on 2025-04-29")
    );
    on_time
        .try_run(Command::FileAppeal { on: d("2025-04-29") }, today)
        .expect("an appeal on the last business day is on time");
    assert_eq!(on_time.state_name(), "APPEAL_FILED");
}

#[test]
fn a_denial_before_christmas_counts_over_the_year_end_holidays() {
    // Friday 2025-12-19. Business days after it: 22, 23, 24 December;
    // Christmas (Thursday 25) does not count; 26, 29, 30, 31 December;
    // New Year (Thursday 2026-01-01) does not count; 2 January; 5 and 6
    // January. Epiphany is moved by Ley 51 de 1983 to Monday 2026-01-12, so
    // Tuesday 6 January is a business day and the last day to appeal.
    assert!(calendar::is_holiday(d("2025-12-25")));
    assert!(calendar::is_holiday(d("2026-01-01")));
    assert!(calendar::is_holiday(d("2026-01-12")));
    assert!(calendar::is_business_day(d("2026-01-06")));
    let today = d("2026-02-01");
    let (case, until) = denied_on("2025-12-19", today);
    assert_eq!(until, d("2026-01-06"));
    assert_eq!(
        case.reject_on(Command::FileAppeal { on: d("2026-01-07") }, today),
        illegal("FileAppeal", "DENIED", "the appeal window closed on 2026-01-06")
    );
    let mut on_time = case;
    on_time
        .try_run(Command::FileAppeal { on: d("2026-01-06") }, today)
        .expect("an appeal on the last business day is on time");
}

#[test]
fn every_genesis_channel_counts_its_appeal_window_in_business_days() {
    let catalog = ChannelCatalog::builtin();
    for channel in catalog.channels() {
        assert_eq!(channel.appeal_window_days, 10, "{}", channel.code);
        assert_eq!(
            channel.appeal_window_count,
            DayCount::Business,
            "{}",
            channel.code
        );
        // A denial on a Saturday: the ten business days start on Monday.
        assert_eq!(channel.appeal_until(d("2025-05-03")), d("2025-05-16"));
    }
}

/// The genesis rules as a release before the count existed wrote them:
/// the same JSON without `appeal_window_count`.
fn old_form_rules() -> Vec<u8> {
    let rules = PolicyBook::genesis()[0].rules().expect("an adoption").clone();
    let json = String::from_utf8(rules.to_json()).expect("utf-8");
    assert!(json.contains(r#","appeal_window_count":"BUSINESS""#));
    json.replace(r#","appeal_window_count":"BUSINESS""#, "")
        .into_bytes()
}

#[test]
fn rules_written_before_the_count_keep_their_bytes_and_count_calendar_days() {
    let old = old_form_rules();
    let rules = PolicyRules::from_json(&old).expect("the old form parses");
    let etpv = &rules.channels[0];
    assert_eq!(etpv.appeal_window_count, DayCount::Calendar);
    // Same bytes when written again: same content hash, same meaning.
    assert_eq!(rules.to_json(), old);
    assert_eq!(rules.content_hash(), *blake3::hash(&old).as_bytes());
    // Calendar days: Friday 2025-04-11 + 10 = Monday 2025-04-21 (Easter Monday).
    assert_eq!(etpv.appeal_until(d("2025-04-11")), d("2025-04-21"));

    // A case decided under them (a log whose genesis is in the old form)
    // is denied with the calendar-day deadline, as when it was recorded.
    let mut book = PolicyBook::default();
    let mut genesis = PolicyBook::genesis();
    if let PolicyEvent::Adopted { rules: r, .. } = &mut genesis[0] {
        *r = rules.clone();
    }
    for (i, event) in genesis.into_iter().enumerate() {
        book.apply(i as u64 + 1, event);
    }
    let mut case = Case::etpv_at(Stage::UnderReview);
    case.catalog = book.catalog_on(Date::MAX, u64::MAX);
    let (events, until) = {
        let events = case
            .try_run(
                Command::Deny {
                    on: d("2025-04-11"),
                    reason: DenialReason::Annotation,
                },
                TODAY,
            )
            .expect("denial accepted");
        let Event::Denied { appeal_until, .. } = events[0] else {
            panic!("a Denied event")
        };
        (events, appeal_until)
    };
    assert_eq!(until, d("2025-04-21"));
    // Replaying the recorded events gives the same state and deadline.
    let mut replayed = CaseState::default();
    for event in &case.log {
        replayed.apply(event);
    }
    assert_eq!(replayed, case.state);
    assert_eq!(events.len(), 1);
    assert_eq!(
        case.reject_on(Command::FileAppeal { on: d("2025-04-22") }, TODAY),
        illegal("FileAppeal", "DENIED", "the appeal window closed on 2025-04-21")
    );
}
