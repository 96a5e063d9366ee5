use super::rpc::expect;
use super::*;
use crate::domain::ChannelCatalog;
use crate::simulate::{plan_person, Tally};

#[test]
fn code_names_are_the_proto_enum_names() {
    assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
    assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
    assert_eq!(code_name(Code::Ok), "OK");
    assert_eq!(code_name(Code::DataLoss), "DATA_LOSS");
}

#[test]
fn the_local_decision_counts_like_the_direct_mode() {
    let catalog = ChannelCatalog::builtin();
    let mut tally = Tally::default();
    for i in 0..500 {
        let plan = plan_person(3, i);
        let steps = expect(&plan, &catalog, &mut tally);
        assert_eq!(
            steps.len(),
            plan.commands.len(),
            "person {i}: every step accepted"
        );
        assert_eq!(steps[0], ["PersonRegistered"]);
    }
    assert_eq!(tally.persons, 500);
    assert_eq!(tally.rejected, 0);
    assert_eq!(tally.status_mismatches, 0);
    assert_eq!(tally.events, tally.events_by_type.values().sum::<u64>());
}
