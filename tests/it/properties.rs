//! Property tests: merging partial updates, and repeats. (JSON equality's are the
//! crate's own, in `model::json`.)

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::support::json_values::value;
use crate::support::{TestApp, posted};

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
}
