//! Stored events of biometrics: the appointment and the capture.

use prost::Message;

use super::{days, pb, unknown_event_type, CodecError, Fields};
use crate::domain::Event;

/// Encodes a biometrics event (see [`super::encode`], which sends only those here).
pub(super) fn encode(event: &Event) -> Vec<u8> {
    match event {
        Event::BiometricAppointmentScheduled {
            on,
            appointment_on,
            site,
        } => pb::BiometricAppointmentScheduled {
            on_days: days(*on),
            appointment_on_days: days(*appointment_on),
            site: site.clone(),
        }
        .encode_to_vec(),
        Event::BiometricAppointmentMissed { on } => {
            pb::BiometricAppointmentMissed { on_days: days(*on) }.encode_to_vec()
        }
        Event::BiometricsCaptured {
            on,
            site,
            operator,
            biometric_ref,
        } => pb::BiometricsCaptured {
            on_days: days(*on),
            site: site.clone(),
            operator: operator.clone(),
            biometric_ref: biometric_ref.to_vec(),
        }
        .encode_to_vec(),
        other => unreachable!("{} is not a biometrics event", other.event_type()),
    }
}

/// Decodes a biometrics event (see [`super::decode`], which sends only those here).
pub(super) fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
    Ok(match event_type {
        "BiometricAppointmentScheduled" => {
            let m = pb::BiometricAppointmentScheduled::decode(payload)?;
            let f = Fields("BiometricAppointmentScheduled");
            Event::BiometricAppointmentScheduled {
                on: f.date("on_days", m.on_days)?,
                appointment_on: f.date("appointment_on_days", m.appointment_on_days)?,
                site: m.site,
            }
        }
        "BiometricAppointmentMissed" => {
            let m = pb::BiometricAppointmentMissed::decode(payload)?;
            let f = Fields("BiometricAppointmentMissed");
            Event::BiometricAppointmentMissed {
                on: f.date("on_days", m.on_days)?,
            }
        }
        "BiometricsCaptured" => {
            let m = pb::BiometricsCaptured::decode(payload)?;
            let f = Fields("BiometricsCaptured");
            Event::BiometricsCaptured {
                on: f.date("on_days", m.on_days)?,
                site: m.site,
                operator: m.operator,
                biometric_ref: <[u8; 32]>::try_from(m.biometric_ref.as_slice())
                    .map_err(|_| f.invalid("biometric_ref"))?,
            }
        }
        other => return Err(unknown_event_type(other)),
    })
}
