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

/// Days since 1970-01-01 of a proleptic Gregorian date (`days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UNIX time of an RFC 3339 timestamp (`2026-11-24T10:00:00+00:00`,
/// `…Z`, fractions ignored); `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let num = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (clock, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => return None,
    };
    let clock = clock.split('.').next()?;
    let mut c = clock.split(':');
    let (h, mi, s) = (num(c.next()?)?, num(c.next()?)?, num(c.next()?)?);
    let off = match offset.as_bytes().first() {
        Some(b'Z' | b'z') => 0,
        Some(sign) => {
            let (oh, om) = offset[1..].split_once(':')?;
            let secs = num(oh)? * 3600 + num(om)? * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        None => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + s - off)
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
        assert_eq!(
            parse_rfc3339("2025-05-20T01:02:03Z"),
            Some(1_747_699_200 + 3_723)
        );
        assert_eq!(
            parse_rfc3339("2025-05-20T03:02:03.5+02:00"),
            Some(1_747_699_200 + 3_723)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00+00:00"),
            Some(951_782_400)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
