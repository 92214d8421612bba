//! Judging a `[[checks]]` SQL rule: `expect` compares the first column of the first row
//! exactly (as text); `expect-min` / `expect-max` compare it as a number.

use lifeboat_core::config::CheckConfig;

/// `Ok(detail)` when the value satisfies the rule, `Err(detail)` otherwise. `value` is the
/// first column of the first row, `None` for SQL NULL or no row.
pub fn judge(rule: &CheckConfig, value: Option<&str>) -> Result<String, String> {
    let shown = value.unwrap_or("NULL");
    if let Some(want) = &rule.expect {
        return if value == Some(want.as_str()) {
            Ok(format!("got {shown}, as expected"))
        } else {
            Err(format!("expected {want}, got {shown}"))
        };
    }
    if rule.expect_min.is_none() && rule.expect_max.is_none() {
        return Ok(format!("got {shown} (no expectation set)"));
    }
    let Some(n) = value.and_then(|v| v.trim().parse::<f64>().ok()) else {
        return Err(format!("expected a number, got {shown}"));
    };
    if let Some(min) = rule.expect_min
        && n < min
    {
        return Err(format!("got {shown}, below the minimum {min}"));
    }
    if let Some(max) = rule.expect_max
        && n > max
    {
        return Err(format!("got {shown}, above the maximum {max}"));
    }
    Ok(format!("got {shown}, within bounds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(expect: Option<&str>, min: Option<f64>, max: Option<f64>) -> CheckConfig {
        CheckConfig {
            target: "app".into(),
            name: "r".into(),
            sql: Some("SELECT 1".into()),
            command: None,
            expect: expect.map(String::from),
            expect_min: min,
            expect_max: max,
            on: None,
        }
    }

    #[test]
    fn exact() {
        assert!(judge(&rule(Some("0"), None, None), Some("0")).is_ok());
        let e = judge(&rule(Some("0"), None, None), Some("3")).unwrap_err();
        assert_eq!(e, "expected 0, got 3");
        assert!(judge(&rule(Some("0"), None, None), None).is_err());
    }

    #[test]
    fn bounds() {
        let r = rule(None, Some(10.0), Some(20.0));
        assert!(judge(&r, Some("10")).is_ok());
        assert!(judge(&r, Some("20.0")).is_ok());
        assert!(judge(&r, Some("9.99")).unwrap_err().contains("below"));
        assert!(judge(&r, Some("21")).unwrap_err().contains("above"));
        assert!(judge(&r, Some("many")).unwrap_err().contains("number"));
        assert!(judge(&r, None).is_err());
    }
}
