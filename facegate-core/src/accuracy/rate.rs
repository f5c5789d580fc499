//! A rate kept as its two counts.

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// Errors out of trials. Every figure of this module is one, kept as counts
/// rather than as a float so that a report can be recomputed exactly from
/// per-probe results, and so that a rate of 0 out of 30 is not mistaken
/// for 0 out of 30,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    /// How many trials erred (a false positive, a miss, a false match).
    pub errors: usize,
    /// How many trials there were.
    pub trials: usize,
}

impl Rate {
    /// `errors / trials`, or `None` when there were no trials.
    pub fn value(&self) -> Option<f64> {
        (self.trials > 0).then(|| self.errors as f64 / self.trials as f64)
    }
}

/// Serialised as `{"errors", "trials", "rate"}` (`rate` null without
/// trials), so a JSON reader has both the counts and the quotient.
impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Rate", 3)?;
        st.serialize_field("errors", &self.errors)?;
        st.serialize_field("trials", &self.trials)?;
        st.serialize_field("rate", &self.value())?;
        st.end()
    }
}
