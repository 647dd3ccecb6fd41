//! Property tests: merging partial updates, repeats, and JSON equality.

use job_launcher_mock::model::json::json_eq;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::helpers::{TestApp, posted};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z\u{e9}\"\\\\]{0,4}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A partial update of run `r`: always running, with some of a few fields.
fn partial_update() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(vec!["hostname", "a", "b", "c"]),
        value(),
        0..4,
    )
    .prop_map(|fields| {
        let mut update = Map::new();
        update.insert("jobId".into(), json!("r"));
        update.insert("state".into(), json!("running"));
        for (key, value) in fields {
            update.insert(key.into(), value);
        }
        Value::Object(update)
    })
}

/// `value` as JSON text with every object's keys in an order drawn from `seed`.
fn shuffled_keys(value: &Value, seed: u64) -> String {
    match value {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            // A cheap deterministic shuffle: rotate by the seed, then reverse on odd seeds.
            if !members.is_empty() {
                let by = (seed as usize) % members.len();
                members.rotate_left(by);
            }
            if seed % 2 == 1 {
                members.reverse();
            }
            let inner: Vec<String> = members
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), shuffled_keys(v, seed / 2)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(|v| shuffled_keys(v, seed / 3)).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn current_status_is_the_top_level_merge_of_the_updates(
        updates in prop::collection::vec(partial_update(), 1..6)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let app = TestApp::new();
            let mut expected = Map::new();
            let mut recorded: Vec<Value> = Vec::new();
            for update in &updates {
                let answer = app.post(update.clone()).await;
                prop_assert_eq!(answer.status.as_u16(), 200, "{}", answer.text);
                for (key, value) in update.as_object().unwrap() {
                    if !value.is_null() {
                        expected.insert(key.clone(), value.clone());
                    }
                }
                if recorded.last() != Some(update) {
                    recorded.push(update.clone());
                }
            }
            prop_assert_eq!(&app.run("r").await["status"], &Value::Object(expected));
            prop_assert_eq!(posted(&app.history("r").await), recorded);
            Ok(())
        })?;
    }

    #[test]
    fn reformatting_never_changes_json_equality(value in value(), seed in any::<u64>()) {
        let compact = value.to_string();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        prop_assert!(json_eq(&compact, &pretty));
        let shuffled = shuffled_keys(&value, seed);
        prop_assert!(json_eq(&compact, &shuffled), "{} vs {}", compact, shuffled);
    }

    #[test]
    fn numbers_are_equal_however_they_are_spelt(
        digits in "[1-9][0-9]{0,25}",
        shift in 0usize..30,
        exponent in -400i32..400,
    ) {
        // digits x 10^exponent, written with the decimal point moved `shift` places left
        // and the exponent raised to match, and with trailing zeros.
        let plain = format!("{digits}e{exponent}");
        let padded = format!("{digits}000e{}", exponent - 3);
        let moved = format!("0.{}{digits}E{}", "0".repeat(shift), exponent + digits.len() as i32 + shift as i32);
        prop_assert!(json_eq(&plain, &padded), "{} vs {}", plain, padded);
        prop_assert!(json_eq(&plain, &moved), "{} vs {}", plain, moved);
        let off_by_one_digit = format!("{digits}1e{}", exponent - 1);
        prop_assert!(!json_eq(&plain, &off_by_one_digit), "{} vs {}", plain, off_by_one_digit);
        let negated = format!("-{}", plain);
        prop_assert!(!json_eq(&plain, &negated));
    }

    #[test]
    fn json_equality_agrees_with_value_equality(a in value(), b in value()) {
        prop_assert_eq!(json_eq(&a.to_string(), &b.to_string()), a == b);
    }
}
