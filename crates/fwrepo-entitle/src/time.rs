//! Seconds since the Unix epoch, the unit of JWT `NumericDate` and of every timestamp here.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A point in time, whole seconds since 1970-01-01T00:00:00Z.
///
/// Verification takes the current time as a parameter instead of reading the clock, so it is
/// a pure function that tests can drive to any instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The system clock.
    pub fn now() -> UnixTime {
        UnixTime::at(std::time::SystemTime::now())
    }

    /// `time`, in whole seconds (0 before the epoch).
    pub fn at(time: std::time::SystemTime) -> UnixTime {
        UnixTime(time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0))
    }

    /// `self + secs`, saturating.
    pub fn plus(self, secs: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }

    /// The first second of `date` (UTC).
    pub fn start_of(date: NaiveDate) -> UnixTime {
        UnixTime(date.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(i64::MIN))
    }

    /// The first second after `date` (UTC): an end date is inclusive, so coverage that ends on
    /// 2025-12-31 lasts through that whole day.
    pub fn end_of(date: NaiveDate) -> UnixTime {
        match date.succ_opt() {
            Some(next) => UnixTime::start_of(next),
            None => UnixTime(i64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_dates_are_inclusive_days_in_utc() {
        let d = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
        assert_eq!(UnixTime::start_of(d), UnixTime(1_767_139_200));
        assert_eq!(UnixTime::end_of(d), UnixTime(1_767_225_600));
        assert_eq!(UnixTime::end_of(NaiveDate::MAX), UnixTime(i64::MAX));
    }

    #[test]
    fn a_time_is_its_whole_seconds_and_nothing_before_the_epoch() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(UnixTime::at(UNIX_EPOCH + Duration::from_millis(1_767_139_200_999)), UnixTime(1_767_139_200));
        assert_eq!(UnixTime::at(UNIX_EPOCH - Duration::from_secs(1)), UnixTime(0));
    }
}
