//! A service's Prometheus text exposition, as its tests and the benchmark read it: fetched from
//! its operations port, a series' value (or a metric's, summed over its label sets) looked up,
//! and every family checked for a `# HELP` line.

use std::net::SocketAddr;

/// The body of `GET http://{ops}/metrics`, whatever its status.
///
/// # Panics
///
/// If the request or reading its body fails.
pub async fn metrics_of(ops: SocketAddr) -> String {
    reqwest::get(format!("http://{ops}/metrics"))
        .await
        .expect("GET /metrics is answered")
        .text()
        .await
        .expect("the body of /metrics is read")
}

/// The value of `series` in a Prometheus text exposition: a whole series (`name{labels}`), or
/// a metric's name, whose series are then added up across their label sets; `None` if absent.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    let values = text.lines().filter_map(|line| {
        let rest = line.strip_prefix(series)?;
        let rest = match rest.strip_prefix('{') {
            Some(labels) => &labels[labels.rfind('}')? + 1..],
            None => rest,
        };
        rest.strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse::<f64>()
            .ok()
    });
    values.reduce(|sum, value| sum + value)
}

/// The metric families in a Prometheus text exposition that have a `# TYPE` line, each with
/// whether a `# HELP` line with some text describes it.
pub fn families_and_help(text: &str) -> Vec<(&str, bool)> {
    let helped: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, help)| !help.trim().is_empty())
        .map(|(name, _)| name)
        .collect();
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(|name| (name, helped.contains(&name)))
        .collect()
}

/// Checks a Prometheus text exposition: each family named in `expected` is there (it has a
/// `# TYPE` line), and every family there has a `# HELP` line with some text.
///
/// # Panics
///
/// Naming the first family of `expected` missing, or every family without help; with `text`.
pub fn assert_families_described(text: &str, expected: &[&str]) {
    let families = families_and_help(text);
    for name in expected {
        assert!(
            families.iter().any(|(family, _)| family == name),
            "no {name}: {text}"
        );
    }
    let undescribed: Vec<&str> = families
        .iter()
        .filter(|(_, helped)| !helped)
        .map(|(family, _)| *family)
        .collect();
    assert!(
        undescribed.is_empty(),
        "no # HELP for {undescribed:?}: {text}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP a_total Things done.\n\
                        # TYPE a_total counter\n\
                        a_total{kind=\"x\"} 3\n\
                        # HELP b_open \n\
                        # TYPE b_open gauge\n\
                        b_open 1.5\n\
                        b_open_total 9\n\
                        a_total{kind=\"y\",note=\"} \"} 4 1700000000000\n";

    #[test]
    fn a_series_value_is_looked_up_by_its_line_start() {
        assert_eq!(metric(TEXT, r#"a_total{kind="x"}"#), Some(3.0));
        assert_eq!(metric(TEXT, "b_open"), Some(1.5), "not b_open_total");
        assert_eq!(
            metric(TEXT, "a_total"),
            Some(7.0),
            "summed over its label sets"
        );
        assert_eq!(metric(TEXT, "c_total"), None);
    }

    #[test]
    fn a_family_with_an_empty_help_line_is_not_described() {
        assert_eq!(
            families_and_help(TEXT),
            [("a_total", true), ("b_open", false)]
        );
    }

    #[test]
    #[should_panic(expected = r#"no # HELP for ["b_open"]"#)]
    fn every_family_must_be_described() {
        assert_families_described(TEXT, &["a_total", "b_open"]);
    }

    #[test]
    #[should_panic(expected = "no c_total")]
    fn an_expected_family_must_be_there() {
        assert_families_described(TEXT, &["c_total"]);
    }
}
