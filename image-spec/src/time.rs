//! UNIX times as UTC calendar dates (proleptic Gregorian; Howard Hinnant's
//! `civil_from_days`), for `SOURCE_DATE_EPOCH` and the timestamps derived
//! from it. Pure arithmetic, no clock.

/// `(year, month, day)` of the UTC day holding `epoch` (seconds).
pub fn civil_date(epoch: i64) -> (i64, i64, i64) {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `YYYY-MM-DD` (UTC) of `epoch`.
pub fn date(epoch: i64) -> String {
    let (y, m, d) = civil_date(epoch);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds) of `epoch`.
pub fn rfc3339(epoch: i64) -> String {
    let secs = epoch.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(epoch),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_763_942_400), "2025-11-24");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(rfc3339(1_747_699_200 + 3_723), "2025-05-20T01:02:03Z");
        assert_eq!(civil_date(253_402_300_799), (9999, 12, 31));
    }
}
