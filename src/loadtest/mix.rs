//! The operation mix: which kinds of request the load test sends, in what
//! proportions.

use std::fmt;
use std::str::FromStr;

/// One kind of operation of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// A command on an existing case: GetCase (to learn the version, as a
    /// caseworker's screen does) then UpdateResidence at that version.
    Command,
    /// RegisterPerson with a fresh request id: a new case.
    Register,
    /// GetCase with a purpose.
    Read,
    /// FindCasesByDocument.
    Lookup,
    /// Statistics.Caseload (by status, by department, by both published).
    Stats,
    /// Audit.GetCheckpoint, then an inclusion proof of a random event and a
    /// consistency proof from a random earlier size, both checked by the tool.
    Proof,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 6] = [
        OpKind::Command,
        OpKind::Register,
        OpKind::Read,
        OpKind::Lookup,
        OpKind::Stats,
        OpKind::Proof,
    ];

    /// The name used in `--mix`, the table and the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Command => "command",
            OpKind::Register => "register",
            OpKind::Read => "read",
            OpKind::Lookup => "lookup",
            OpKind::Stats => "stats",
            OpKind::Proof => "proof",
        }
    }

    /// Position in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    fn from_name(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Largest weight of one kind.
pub const WEIGHT_MAX: u32 = 1_000;

/// Relative weights of the operation kinds (any scale; usually per cent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 6],
}

impl Default for Mix {
    /// commands 25, new cases 5, reads 35, look-ups 15, statistics 10, proofs 10.
    fn default() -> Self {
        Mix {
            weights: [25, 5, 35, 15, 10, 10],
        }
    }
}

impl Mix {
    /// The weight of `kind`.
    pub fn weight(&self, kind: OpKind) -> u32 {
        self.weights[kind.index()]
    }

    /// Sum of the weights (at least 1).
    pub fn total(&self) -> u32 {
        self.weights.iter().sum()
    }

    /// The kind for a uniformly random `r`.
    pub fn pick(&self, r: u64) -> OpKind {
        let mut x = (r % u64::from(self.total())) as u32;
        for kind in OpKind::ALL {
            let w = self.weight(kind);
            if x < w {
                return kind;
            }
            x -= w;
        }
        unreachable!("x < total")
    }
}

/// Why a `--mix` does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// A part (shown) that is not `KIND=WEIGHT`.
    #[error("mix: expected KIND=WEIGHT, got {0:?}")]
    NotKindWeight(String),
    /// A kind (shown) that does not exist.
    #[error(
        "mix: unknown kind {0:?} (one of {kinds})",
        kinds = OpKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
    )]
    UnknownKind(String),
    /// A kind named twice.
    #[error("mix: {} named twice", .0.name())]
    NamedTwice(OpKind),
    /// A weight that is not a whole number.
    #[error("mix: weight of {} must be a whole number", .0.name())]
    NotAWholeNumber(OpKind),
    /// A weight over [`WEIGHT_MAX`].
    #[error("mix: weight of {} must be at most {WEIGHT_MAX}", .0.name())]
    TooHeavy(OpKind),
    /// Every weight is zero.
    #[error("mix: at least one weight must be positive")]
    AllZero,
}

impl FromStr for Mix {
    type Err = MixError;

    /// `command=25,register=5,read=35,lookup=15,stats=10,proof=10`; kinds not
    /// named get weight 0.
    fn from_str(s: &str) -> Result<Mix, MixError> {
        let mut weights = [0u32; 6];
        let mut seen = [false; 6];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| MixError::NotKindWeight(part.to_string()))?;
            let kind = OpKind::from_name(name.trim())
                .ok_or_else(|| MixError::UnknownKind(name.trim().to_string()))?;
            if seen[kind.index()] {
                return Err(MixError::NamedTwice(kind));
            }
            seen[kind.index()] = true;
            let weight: u32 = value
                .trim()
                .parse()
                .map_err(|_| MixError::NotAWholeNumber(kind))?;
            if weight > WEIGHT_MAX {
                return Err(MixError::TooHeavy(kind));
            }
            weights[kind.index()] = weight;
        }
        let mix = Mix { weights };
        if mix.total() == 0 {
            return Err(MixError::AllZero);
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = OpKind::ALL
            .iter()
            .map(|k| format!("{}={}", k.name(), self.weight(*k)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_default() {
        let d = Mix::default();
        assert_eq!(
            d.to_string(),
            "command=25,register=5,read=35,lookup=15,stats=10,proof=10"
        );
        assert_eq!(d.to_string().parse::<Mix>().unwrap(), d);
        assert_eq!(d.total(), 100);
    }

    #[test]
    fn unnamed_kinds_get_zero_and_bad_input_is_refused() {
        let m: Mix = "read=3, lookup=1".parse().unwrap();
        assert_eq!(m.weight(OpKind::Read), 3);
        assert_eq!(m.weight(OpKind::Command), 0);
        for bad in [
            "",
            "read=0",
            "read",
            "reads=1",
            "read=1,read=2",
            "read=-1",
            "read=1001",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn pick_follows_the_weights_exactly_over_one_cycle() {
        let m: Mix = "command=2,read=3,proof=1".parse().unwrap();
        let mut counts = [0u32; 6];
        for r in 0..u64::from(m.total()) * 10 {
            counts[m.pick(r).index()] += 1;
        }
        assert_eq!(counts, [20, 0, 30, 0, 0, 10]);
    }
}
